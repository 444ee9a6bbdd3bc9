/**
 * `npm run bench`: chatkit-backend's compiled server (production mode on PostgreSQL + Redis, or the
 * embedded default with `--embedded`) against `bench/baseline.mjs`, a bare node:http + pg server
 * answering the same JSON from the same database, driven by wrk in the same run. Per scenario:
 * req/s, p50/p95/p99, errors, the ratio to the baseline, CPU µs per request of both and their ratio
 * (steadier than req/s when other work shares the cores), the server's RSS after it; start-up time.
 * Printed as a table and written to bench/results/latest.json.
 *
 *   npm run bench [-- --embedded] [-- --seconds 10 --warmup 3 --connections 64 --runs 1]
 *   npm run bench -- --only "cache warm" --repeat 5             (RSS after each of 5 runs on one server)
 *   npm run bench -- --only "cache warm" --profile /tmp/prof   (one scenario, the server under --cpu-prof;
 *                                                             node bench/profile-top.mjs /tmp/prof/*.cpuprofile)
 *
 * PostgreSQL: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres), where a
 * fresh database is created and dropped; Redis: BENCH_REDIS_URL (default redis://127.0.0.1:6379),
 * under a key namespace of its own.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"

import { Algorithm, hash as argon2Hash } from "@node-rs/argon2"
import pg from "pg"

import { PRODUCTION_ARGON2 } from "../src/features/auth/Passwords.js"
import { freePort } from "../test/support/network.js"
import { ensureWrk, wrk, type WrkResult } from "./wrk.js"

const { values: args } = parseArgs({
  options: {
    embedded: { type: "boolean", default: false },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "3" },
    connections: { type: "string", default: "64" },
    runs: { type: "string", default: "1" },
    only: { type: "string" },
    repeat: { type: "string", default: "1" },
    profile: { type: "string" }
  }
})
const load = {
  seconds: Number(args.seconds),
  warmupSeconds: Number(args.warmup),
  connections: Number(args.connections)
}
const serverUrl = new URL(process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres")
const redisUrl = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379"

const ADMIN_EMAIL = "bench-admin@example.com"
const PASSWORD = "correct horse battery staple"
/**
 * Users the login scenario spreads over: each email may try 5 times a minute, so with too few the
 * scenario measures 429s. On PostgreSQL they are inserted directly (one argon2id hash for all).
 */
const LOGIN_USERS = args.embedded ? 200 : 5_000
const MODELS = 180
const MODELS_PAGE = "/api/v1/models?page=3&page_size=20"

const LOGIN = "POST /auth/login (argon2id)"
const CACHE_OFF = "models page, cache off"
/** each scenario this many times on the same server, to see whether its memory keeps growing */
const repeat = Number(args.repeat)
const selected = (scenario: string) => args.only === undefined || scenario.includes(args.only)
const appNodeFlags = args.profile === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${args.profile}`]

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const rssMb = (pid: number) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
  return Number(line?.replace(/\D+/g, "")) / 1024
}

/** Polls `url` until it answers 200; the time from `started` to then. */
const ready = async (url: string, child: ChildProcess, started: number) => {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}; see its log`)
    const ok = await fetch(url).then((r) => r.status === 200, () => false)
    if (ok) return performance.now() - started
    await sleep(20)
  }
}

interface Server {
  readonly child: ChildProcess
  readonly base: string
  readonly startupMs: number
  readonly log: string
}

const start = async (command: ReadonlyArray<string>, env: Record<string, string>, readyPath: string) => {
  const port = await freePort()
  const log = join(tmpdir(), `chatkit-bench-${port}.log`)
  const out = openSync(log, "w")
  const started = performance.now()
  const child = spawn(process.execPath, [...command], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), ...env },
    stdio: ["ignore", out, out]
  })
  closeSync(out)
  const base = `http://127.0.0.1:${port}`
  return { child, base, log, startupMs: await ready(`${base}${readyPath}`, child, started) } satisfies Server
}

const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve()
    child.on("exit", () => resolve())
    child.kill("SIGTERM")
  })

const api = async (base: string, method: string, path: string, body?: unknown, token?: string) => {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      "content-type": "application/json",
      "x-forwarded-for": `10.9.${Math.floor(Math.random() * 255)}.${1 + Math.floor(Math.random() * 250)}`,
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 200)}`)
  return text === "" ? undefined : JSON.parse(text)
}

/** 180 models through the API and the login users (through the API, or straight into `databaseUrl`) (what a deployment holds), the admin's token. */
const seed = async (base: string, databaseUrl?: string) => {
  const { access_token: token } = await api(base, "POST", "/api/v1/auth/login", {
    email: ADMIN_EMAIL,
    password: PASSWORD
  })
  for (let i = 0; i < MODELS; i += 20) {
    await Promise.all(
      Array.from({ length: Math.min(20, MODELS - i) }, (_, k) =>
        api(base, "POST", "/api/v1/admin/models", {
          name: `bench-model-${i + k}`,
          display_name: `Bench model ${String(i + k).padStart(3, "0")}`,
          description: "A model of the benchmark catalog"
        }, token))
    )
  }
  if (databaseUrl !== undefined) {
    const passwordHash = await argon2Hash(PASSWORD, { ...PRODUCTION_ARGON2, algorithm: Algorithm.Argon2id })
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    await client.query(
      `INSERT INTO users (email, password_hash)
        SELECT 'bench-user-' || i || '@example.com', $1 FROM generate_series(0, $2 - 1) AS i`,
      [passwordHash, LOGIN_USERS]
    )
    await client.end()
    return token as string
  }
  for (let i = 0; i < LOGIN_USERS; i += 10) {
    await Promise.all(
      Array.from({ length: 10 }, (_, k) =>
        api(
          base,
          "POST",
          "/api/v1/admin/users",
          { email: `bench-user-${i + k}@example.com`, password: PASSWORD },
          token
        ))
    )
  }
  return token as string
}

/** The embedded server's catalog, ids and timestamps included, into a migrated PostgreSQL database. */
const copyCatalog = async (base: string, token: string, databaseUrl: string) => {
  execFileSync(process.execPath, ["dist/cli/migrate.js", "up"], {
    env: { PATH: process.env.PATH ?? "", DATABASE_URL: databaseUrl },
    stdio: "ignore"
  })
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    for (let page = 1; page <= Math.ceil(MODELS / 100); page++) {
      const { items } = await api(base, "GET", `/api/v1/admin/models?page=${page}&page_size=100`, undefined, token)
      for (const m of items) {
        await client.query(
          `INSERT INTO models (id, name, display_name, description, provider_id, provider_slug, supports_reasoning,
            supports_streaming, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [
            m.id,
            m.name,
            m.display_name,
            m.description,
            m.provider_id,
            m.provider_slug,
            m.supports_reasoning,
            m.supports_streaming,
            m.created_at,
            m.updated_at
          ]
        )
      }
    }
  } finally {
    await client.end()
  }
}

interface Row {
  readonly scenario: string
  readonly app: WrkResult
  readonly baseline?: WrkResult
  /** app req/s over the baseline's */
  readonly ratio?: number
  /** the baseline's CPU per request over the app's: the req/s ratio if both were CPU-bound on a quiet machine */
  readonly cpuRatio?: number
  readonly rssMb: number
}

const run = async (round: number) => {
  const database = `chatkit_bench_${randomBytes(4).toString("hex")}`
  const admin = new pg.Client({ connectionString: serverUrl.toString() })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${database}`)
  const databaseUrl = new URL(serverUrl)
  databaseUrl.pathname = `/${database}`
  const common = {
    AUTH_SECRET_KEY: "bench-secret-key-0123456789-abcdefghijklmnop",
    ADMIN_EMAIL,
    ADMIN_PASSWORD: PASSWORD,
    TRUST_PROXY: "1",
    RATE_LIMIT_API_PER_MINUTE: "10000000",
    LOG_LEVEL: "info"
  }
  const appEnv = (extra: Record<string, string>) =>
    args.embedded
      ? { ...common, NODE_ENV: "development", CHATKIT_DATA_DIR: "memory://", ...extra }
      : {
        ...common,
        NODE_ENV: "production",
        DATABASE_URL: databaseUrl.toString(),
        REDIS_URL: redisUrl,
        REDIS_NAMESPACE: `bench-${database}`,
        ALLOWED_ORIGINS: "http://localhost:5173",
        MIGRATE_ON_START: "true",
        SHUTDOWN_GRACE_MS: "1000",
        ...extra
      }
  const rows: Array<Row> = []
  let baseline: Server | undefined
  let app: Server | undefined
  try {
    app = await start([...appNodeFlags, "dist/main.js"], appEnv({}), "/health/ready")
    const startupMs = app.startupMs
    const token = await seed(app.base, args.embedded ? undefined : databaseUrl.toString())
    // the baseline reads the same rows: on PostgreSQL the app's own database; embedded, a copy of its catalog
    if (args.embedded) await copyCatalog(app.base, token, databaseUrl.toString())
    baseline = await start(["bench/baseline.mjs"], { DATABASE_URL: databaseUrl.toString() }, "/health")
    const appPage = await api(app.base, "GET", MODELS_PAGE, undefined, token)
    const basePage = await api(baseline.base, "GET", MODELS_PAGE)
    if (JSON.stringify(appPage) !== JSON.stringify(basePage)) throw new Error("the baseline's models page differs")
    const idleRss = rssMb(app.child.pid!)

    const auth = { authorization: `Bearer ${token}` }
    const measure = async (
      scenario: string,
      path: string,
      basePath?: string,
      headers: Record<string, string> = auth
    ) => {
      if (!selected(scenario)) return
      for (let time = 1; time <= repeat; time++) {
        const baseResult = basePath === undefined
          ? undefined
          : await wrk({ url: `${baseline!.base}${basePath}` }, load, baseline!.child.pid)
        const appResult = await wrk({ url: `${app!.base}${path}`, headers }, load, app!.child.pid)
        rows.push({
          scenario: repeat === 1 ? scenario : `${scenario} #${time}`,
          app: appResult,
          ...(baseResult === undefined
            ? {}
            : {
              baseline: baseResult,
              ratio: appResult.requestsPerSecond / baseResult.requestsPerSecond,
              cpuRatio: (baseResult.cpuUsPerRequest ?? 0) / (appResult.cpuUsPerRequest ?? 1)
            }),
          rssMb: rssMb(app!.child.pid!)
        })
      }
    }
    await measure("GET /health", "/health", "/health", {})
    await measure("models page, cache warm", MODELS_PAGE, MODELS_PAGE)
    await measure("GET /auth/me (vs baseline models page)", "/api/v1/auth/me", MODELS_PAGE)
    if (selected(LOGIN)) {
      const login = await wrk(
        {
          url: `${app.base}/api/v1/auth/login`,
          postBody: JSON.stringify({ email: "bench-user-{{i}}@example.com", password: PASSWORD }),
          indexBelow: LOGIN_USERS
        },
        load,
        app.child.pid
      )
      rows.push({ scenario: LOGIN, app: login, rssMb: rssMb(app.child.pid!) })
    }
    await stop(app.child)
    if (!selected(CACHE_OFF)) return { round, startupMs, idleRssMb: idleRss, rows }

    app = await start([...appNodeFlags, "dist/main.js"], appEnv({ CACHE_DISABLED: "true" }), "/health/ready")
    const fresh = await api(app.base, "POST", "/api/v1/auth/login", { email: ADMIN_EMAIL, password: PASSWORD })
    await measure(CACHE_OFF, MODELS_PAGE, MODELS_PAGE, { authorization: `Bearer ${fresh.access_token}` })
    return { round, startupMs, idleRssMb: idleRss, rows }
  } finally {
    if (app !== undefined) await stop(app.child)
    if (baseline !== undefined) await stop(baseline.child)
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
    await admin.end()
  }
}

const ms = (n: number) => n.toFixed(1).padStart(6)
const print = (result: Awaited<ReturnType<typeof run>>) => {
  console.log(
    `\nround ${result.round}: start-up ${result.startupMs.toFixed(0)} ms, idle RSS ${result.idleRssMb.toFixed(0)} MB`
  )
  console.log(
    `${"scenario".padEnd(40)} ${"req/s".padStart(8)} ${"p50".padStart(6)} ${"p95".padStart(6)} ${"p99".padStart(6)} ${
      "err".padStart(5)
    } ${"baseline".padStart(9)} ${"ratio".padStart(6)} ${"µs/req".padStart(7)} ${"base µs".padStart(7)} ${
      "CPU ratio".padStart(9)
    } ${"RSS MB".padStart(7)}`
  )
  for (const row of result.rows) {
    console.log(
      `${row.scenario.padEnd(40)} ${row.app.requestsPerSecond.toFixed(0).padStart(8)} ${ms(row.app.p50)} ${
        ms(row.app.p95)
      } ${ms(row.app.p99)} ${String(row.app.errors).padStart(5)} ${
        (row.baseline?.requestsPerSecond.toFixed(0) ?? "–").padStart(9)
      } ${(row.ratio?.toFixed(2) ?? "–").padStart(6)} ${(row.app.cpuUsPerRequest?.toFixed(0) ?? "–").padStart(7)} ${
        (row.baseline?.cpuUsPerRequest?.toFixed(0) ?? "–").padStart(7)
      } ${(row.cpuRatio?.toFixed(2) ?? "–").padStart(9)} ${row.rssMb.toFixed(0).padStart(7)}`
    )
  }
}

const main = async () => {
  ensureWrk()
  console.log("building dist/ (npm run build) ...")
  execFileSync("npm", ["run", "build", "--silent"], { stdio: "inherit" })
  console.log(
    `wrk: ${load.connections} connections, ${load.seconds} s after a ${load.warmupSeconds} s warm-up; ${
      args.embedded ? "embedded" : "PostgreSQL + Redis, production mode"
    }`
  )
  const results = []
  for (let round = 1; round <= Number(args.runs); round++) {
    const result = await run(round)
    print(result)
    results.push(result)
  }
  mkdirSync("bench/results", { recursive: true })
  writeFileSync(
    "bench/results/latest.json",
    JSON.stringify({ at: new Date().toISOString(), load, embedded: args.embedded, results }, null, 2)
  )
  console.log("\nwritten: bench/results/latest.json")
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
