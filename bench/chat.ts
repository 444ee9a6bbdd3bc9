/**
 * Chat streaming benchmark: the latency the backend adds to a streamed answer. A fake
 * OpenAI-compatible provider (in this process) sends one token every 20 ms; 50 concurrent clients
 * (in this process too, so one clock: `performance.now()`) run `threads.create` on
 * POST /api/v1/chatkit against the backend (a child process, LLM_PROVIDER=openai pointed at the
 * fake) and read its SSE as it arrives. Each client puts a marker in its message; the fake reads
 * it from the request body and records when it wrote each token, so every delta the client
 * receives is matched to the token it carries.
 *
 * - first-delta latency: client receive time of the first delta − provider send time of token 0;
 * - per-token latency: for each token i, client receive time of its delta − provider send time of i;
 * - request to first delta: client receive time of the first delta − when the client sent its
 *   request, what a user waits for (the turn's set-up, the provider's 20 ms, the relay).
 *
 * The baseline, measured in the same rounds: the same clients reading the fake directly (the same
 * SSE through no backend), i.e. the cost of loopback and of this process's own event loop.
 * "added" = backend − direct, percentile by percentile. Each round prints its own percentiles, then
 * come their medians and ("all") the percentiles of every measured stream pooled, on which the
 * target is checked: backend first-delta p95 < 5 ms.
 * Each round also reads the backend's /metrics before and after it: SQL statements per stream
 * (db_queries_total) and garbage-collection pauses (nodejs_gc_duration_seconds), which every token
 * arriving during one waits out.
 * The thread.title job each new thread queues calls the provider too: the fake answers those
 * requests at once (two tokens), counts them apart, and they run during the rounds, as they would.
 * JSON goes to bench/results/chat.json (bench/results/chat-postgres.json with --postgres).
 *
 * The backend runs on its embedded database (PGlite, in memory) and in-memory limits by default;
 * with `--postgres` (or BENCH_DATABASE_URL) on a PostgreSQL database created for the run and
 * dropped after, and on Redis (REDIS_URL, under a namespace of its own whose keys are deleted
 * after), as production runs.
 *
 *   npm run bench:chat                 (embedded)
 *   npm run bench:chat -- --postgres   (PostgreSQL on BENCH_DATABASE_URL, default
 *                                       postgres://postgres@127.0.0.1:5432/postgres, whose server
 *                                       gets the fresh database; Redis on BENCH_REDIS_URL, default
 *                                       redis://127.0.0.1:6379)
 *   (BENCH_CHAT_STREAMS 50, BENCH_CHAT_TOKENS 20, BENCH_CHAT_ROUNDS 3, BENCH_CHAT_RAMP_MS 0,
 *    BENCH_CHAT_CPU_PROF=<dir> starts the backend with node --cpu-prof --cpu-prof-dir=<dir>,
 *    BENCH_CHAT_NODE_FLAGS="<flags>" adds node flags to the backend's command line,
 *    BENCH_CHAT_STDOUT=<file> keeps the backend's output, e.g. with BENCH_CHAT_NODE_FLAGS=--trace-gc)
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createWriteStream } from "node:fs"
import { mkdir, readFile, writeFile } from "node:fs/promises"
import * as http from "node:http"

import { Redis } from "ioredis"
import pg from "pg"

import { freePort } from "../test/support/network.js"
import { median, stop } from "./support.js"

const STREAMS = Number(process.env.BENCH_CHAT_STREAMS ?? 50)
const TOKENS = Number(process.env.BENCH_CHAT_TOKENS ?? 20)
const ROUNDS = Number(process.env.BENCH_CHAT_ROUNDS ?? 3)
/**
 * A round at the measured concurrency first, not measured: V8 compiles the concurrent paths in it
 * (after a warm-up of 5 streams, the first measured round cost ~2x the CPU of the next ones).
 */
const WARMUP_STREAMS = STREAMS
/** BENCH_CHAT_RAMP_MS: starts spread over this many ms (clients arriving over time), 0: all at once (the worst case) */
const RAMP_MS = Number(process.env.BENCH_CHAT_RAMP_MS ?? 0)
const TOKEN_INTERVAL_MS = 20
const TARGET_P95_MS = 5
const CPU_PROF_DIR = process.env.BENCH_CHAT_CPU_PROF
/** BENCH_CHAT_NODE_FLAGS: more node flags for the backend, space-separated (to compare V8 settings) */
const NODE_FLAGS = (process.env.BENCH_CHAT_NODE_FLAGS ?? "").split(" ").filter((flag) => flag !== "")
/** BENCH_CHAT_STDOUT=<file>: the backend's output after it listens (its logs, --trace-gc's lines) goes there */
const STDOUT_FILE = process.env.BENCH_CHAT_STDOUT
/** BENCH_CHAT_BY_TOKEN=1: also the median latency of each token index, per round */
const BY_TOKEN = process.env.BENCH_CHAT_BY_TOKEN === "1"
const POSTGRES = process.argv.includes("--postgres") || (process.env.BENCH_DATABASE_URL ?? "") !== ""
const DATABASE_SERVER_URL = process.env.BENCH_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres"
const REDIS_URL = process.env.BENCH_REDIS_URL || "redis://127.0.0.1:6379"

const ADMIN_EMAIL = "bench-admin@example.com"
const ADMIN_PASSWORD = "bench-password-0123456789"
const RESULTS = new URL(POSTGRES ? "./results/chat-postgres.json" : "./results/chat.json", import.meta.url)

/** Token i's text; distinct lengths do not matter, deltas are matched by accumulated length. */
const tokenText = (i: number) => `t${i} `
const TOKEN_ENDS = Array.from({ length: TOKENS }, (_, i) => i).reduce<Array<number>>(
  (ends, i) => [...ends, (ends.at(-1) ?? 0) + tokenText(i).length],
  []
)

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// --- the fake provider -------------------------------------------------------------------------

const MARKER = /\bmark-\d+-\d+\b/

interface Fake {
  readonly baseUrl: string
  /** per marker: when each token was written (performance.now) */
  readonly sent: Map<string, Array<number>>
  /** per marker: how many upstream requests carried it (a retry would make it 2) */
  readonly requests: Map<string, number>
  /** thread.title requests (the job each new thread queues), answered at once and not measured */
  titles: number
  /** other requests without a marker (none expected) */
  unmatched: number
  readonly close: () => Promise<void>
}

const chunk = (delta: Record<string, string>, finish: string | null = null) =>
  `data: ${
    JSON.stringify({
      id: "chatcmpl-bench",
      object: "chat.completion.chunk",
      created: 0,
      model: "bench",
      choices: [{ index: 0, delta, finish_reason: finish }]
    })
  }\n\n`

/** A thread.title job's request: the default `thread_title_prompt` as its system message. */
const isTitleRequest = (body: string) => {
  try {
    const first = (JSON.parse(body) as { messages?: Array<{ role?: unknown; content?: unknown }> }).messages?.[0]
    return first?.role === "system" && typeof first.content === "string" &&
      first.content.startsWith("Write a short title")
  } catch {
    return false
  }
}

const startFake = () =>
  new Promise<Fake>((resolve) => {
    const sent = new Map<string, Array<number>>()
    const requests = new Map<string, number>()
    const server = http.createServer((req, res) => {
      const parts: Array<Buffer> = []
      req.on("data", (part: Buffer) => parts.push(part))
      req.on("end", () => {
        if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
          res.writeHead(404).end()
          return
        }
        const body = Buffer.concat(parts).toString("utf8")
        if (isTitleRequest(body)) {
          fake.titles++
          res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
          res.end(chunk({ content: "Bench" }) + chunk({ content: " title" }) + chunk({}, "stop") + "data: [DONE]\n\n")
          return
        }
        const marker = MARKER.exec(body)?.[0]
        if (marker === undefined) fake.unmatched++
        else requests.set(marker, (requests.get(marker) ?? 0) + 1)
        const times: Array<number> = []
        if (marker !== undefined) sent.set(marker, times)
        let closed = false
        res.on("close", () => (closed = true))
        req.socket.setNoDelay(true)
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
        res.write(chunk({ role: "assistant" }))
        // token i at start + (i + 1) * interval: a fixed schedule, so timer lateness does not accumulate
        const start = performance.now()
        const next = (i: number) => {
          if (closed) return
          if (i === TOKENS) {
            res.write(chunk({}, "stop"))
            const usage = { prompt_tokens: 7, completion_tokens: TOKENS, total_tokens: 7 + TOKENS }
            res.write(`data: ${JSON.stringify({ id: "chatcmpl-bench", choices: [], usage })}\n\n`)
            res.end("data: [DONE]\n\n")
            return
          }
          times.push(performance.now())
          res.write(chunk({ content: tokenText(i) }))
          setTimeout(() => next(i + 1), Math.max(0, start + (i + 2) * TOKEN_INTERVAL_MS - performance.now()))
        }
        setTimeout(() => next(0), TOKEN_INTERVAL_MS)
      })
    })
    const fake: Fake = {
      baseUrl: "",
      sent,
      requests,
      titles: 0,
      unmatched: 0,
      close: () =>
        new Promise<void>((done) => {
          server.closeAllConnections()
          server.close(() => done())
        })
    }
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve(Object.assign(fake, { baseUrl: `http://127.0.0.1:${port}/v1` }))
    })
  })

// --- the backend ---------------------------------------------------------------------------------

/** The compiled server (dist/, built first) as `npm start` runs it, with node flags (for --cpu-prof, which NODE_OPTIONS refuses). */
interface Backend {
  readonly child: ChildProcess
  readonly url: string
}

const startBackend = async (env: Record<string, string>, nodeArgs: ReadonlyArray<string>) => {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, "--enable-source-maps", "dist/main.js"], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "inherit"]
  })
  await new Promise<void>((resolve, reject) => {
    let output = ""
    child.stdout?.on("data", (part) => {
      output += String(part)
      if (output.includes("listening")) resolve()
    })
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)))
    setTimeout(() => reject(new Error("server did not log that it listens within 60 s")), 60_000).unref()
  }).catch((error) => {
    child.kill("SIGTERM")
    throw error
  })
  if (STDOUT_FILE === undefined) child.stdout?.resume()
  else child.stdout?.pipe(createWriteStream(STDOUT_FILE))
  return { child, url: `http://127.0.0.1:${port}` } satisfies Backend
}

const login = async (url: string) => {
  const response = await fetch(`${url}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD })
  })
  if (response.status !== 200) throw new Error(`login answered ${response.status}: ${await response.text()}`)
  return ((await response.json()) as { access_token: string }).access_token
}

// --- the clients ---------------------------------------------------------------------------------

/**
 * POSTs `body` and calls `onData` with each SSE `data:` payload and the time its bytes arrived,
 * reading the raw socket as it comes (no buffering beyond one incomplete event).
 */
const readSse = (
  url: string,
  headers: Record<string, string>,
  body: string,
  onData: (data: string, at: number) => void
) =>
  new Promise<void>((resolve, reject) => {
    const request = http.request(url, {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers }
    }, (response) => {
      response.setEncoding("utf8")
      let pending = ""
      if (response.statusCode !== 200) {
        response.on("data", (part: string) => (pending += part))
        response.on("end", () => reject(new Error(`${url} answered ${response.statusCode}: ${pending.slice(0, 300)}`)))
        return
      }
      response.on("data", (part: string) => {
        const at = performance.now()
        pending += part
        let end = pending.indexOf("\n\n")
        while (end !== -1) {
          for (const line of pending.slice(0, end).split("\n")) {
            if (line.startsWith("data: ")) onData(line.slice(6), at)
          }
          pending = pending.slice(end + 2)
          end = pending.indexOf("\n\n")
        }
      })
      response.on("end", () => resolve())
      response.on("error", reject)
    })
    request.on("error", reject)
    request.end(body)
  })

interface Stream {
  readonly marker: string
  /** per token: when the client received it */
  readonly received: Array<number>
  /** when the client sent its request */
  readonly sentAt: number
  error?: string
}

/** Marks the tokens that `length` characters of answer text now cover as received at `at`. */
const receive = (stream: Stream, length: number, at: number) => {
  while (stream.received.length < TOKENS && TOKEN_ENDS[stream.received.length]! <= length) stream.received.push(at)
}

type Target = "direct" | "backend"

const runStream = async (target: Target, marker: string, fake: Fake, backend: string, token: string) => {
  const stream: Stream = { marker, received: [], sentAt: performance.now() }
  let length = 0
  try {
    if (target === "direct") {
      const body = JSON.stringify({
        model: "bench",
        stream: true,
        messages: [{ role: "user", content: `${marker} hello` }]
      })
      await readSse(`${fake.baseUrl}/chat/completions`, {}, body, (data, at) => {
        if (data === "[DONE]") return
        const content = (JSON.parse(data) as { choices: Array<{ delta?: { content?: string } }> }).choices[0]?.delta
          ?.content
        if (typeof content === "string") receive(stream, length += content.length, at)
      })
    } else {
      const body = JSON.stringify({
        type: "threads.create",
        params: { input: { content: [{ type: "input_text", text: `${marker} hello` }] } }
      })
      await readSse(`${backend}/api/v1/chatkit`, { authorization: `Bearer ${token}` }, body, (data, at) => {
        const event = JSON.parse(data) as { type: string; update?: { type: string; delta: string }; code?: string }
        if (
          event.type === "thread.item.updated" && event.update?.type === "assistant_message.content_part.text_delta"
        ) {
          receive(stream, length += event.update.delta.length, at)
        } else if (event.type === "error") {
          stream.error = `error event ${event.code ?? ""}`
        }
      })
    }
  } catch (error) {
    stream.error = String(error)
  }
  return stream
}

// --- statistics --------------------------------------------------------------------------------

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN

interface Stats {
  readonly streams: number
  readonly tokens: number
  readonly first: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number }
  readonly perToken: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number }
  /** from the client's request to its first delta: what a user waits for (set-up, the provider's first token, the relay) */
  readonly toFirstDelta: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number }
  readonly errors: number
  /** from the first request sent to the last stream's end */
  readonly wallMs: number
  /** CPU time (user + system) of the backend process over the round, from /proc (10 ms ticks); NaN elsewhere */
  readonly backendCpuMs: number
  /** SQL statements the backend ran over the round (db_queries_total on /metrics), per stream */
  readonly sqlPerStream: number
  /** the backend's garbage collection pauses over the round (nodejs_gc_duration_seconds on /metrics): how many */
  readonly gcPauses: number
  /** ... and how long in all, in ms: every request and token waits out a pause that falls on it */
  readonly gcMs: number
}

/** What a round measures besides the streams. */
type Measured = Pick<Stats, "wallMs" | "backendCpuMs" | "sqlPerStream" | "gcPauses" | "gcMs">

/** The sum of a metric's samples over its labels on the backend's /metrics, NaN when it does not show it. */
const metricSum = (text: string, name: string) => {
  const values = [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.e+-]+)$`, "gm"))].map((m) =>
    Number(m[1])
  )
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0)
}

/** The backend's counters a round reads before and after: SQL statements, GC pauses and their seconds. */
const backendCounters = async (url: string) => {
  try {
    const text = await (await fetch(`${url}/metrics`)).text()
    return {
      queries: metricSum(text, "db_queries_total"),
      gcPauses: metricSum(text, "nodejs_gc_duration_seconds_count"),
      gcSeconds: metricSum(text, "nodejs_gc_duration_seconds_sum")
    }
  } catch {
    return { queries: Number.NaN, gcPauses: Number.NaN, gcSeconds: Number.NaN }
  }
}

/** utime + stime of a process in ms (Linux /proc), NaN when unreadable. */
const cpuMsOf = async (pid: number | undefined) => {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return Number.NaN
  }
}

const summary = (values: Array<number>) => {
  const sorted = values.sort((a, b) => a - b)
  return {
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN
  }
}

const statsOf = (
  streams: ReadonlyArray<Stream>,
  fake: Fake,
  measured: Measured
): Stats => {
  const first: Array<number> = []
  const perToken: Array<number> = []
  const toFirstDelta: Array<number> = []
  let errors = 0
  for (const stream of streams) {
    const sent = fake.sent.get(stream.marker)
    if (
      stream.error !== undefined || sent === undefined || sent.length !== TOKENS ||
      stream.received.length !== TOKENS || fake.requests.get(stream.marker) !== 1
    ) {
      errors++
      continue
    }
    first.push(stream.received[0]! - sent[0]!)
    toFirstDelta.push(stream.received[0]! - stream.sentAt)
    stream.received.forEach((at, i) => perToken.push(at - sent[i]!))
  }
  if (BY_TOKEN && measured.sqlPerStream > 0) {
    const byIndex = Array.from({ length: TOKENS }, (_, i) =>
      median(streams.flatMap((s) => {
        const sent = fake.sent.get(s.marker)
        return sent?.[i] === undefined || s.received[i] === undefined ? [] : [s.received[i] - sent[i]]
      })))
    console.log(`  backend latency by token (median ms): ${byIndex.map((v) => v.toFixed(1)).join(" ")}`)
  }
  return {
    streams: streams.length,
    tokens: TOKENS,
    first: summary(first),
    perToken: summary(perToken),
    toFirstDelta: summary(toFirstDelta),
    errors,
    ...measured
  }
}

let round = 0
const runRound = async (target: Target, count: number, fake: Fake, backend: Backend, token: string) => {
  round++
  const before = target === "backend" ? await backendCounters(backend.url) : undefined
  const cpuBefore = await cpuMsOf(backend.child.pid)
  const started = performance.now()
  const streams = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      // with a ramp, stream i starts i/count of the way through it; without, all start at once
      if (RAMP_MS > 0) await sleep((RAMP_MS * i) / count)
      return runStream(target, `mark-${round}-${i}`, fake, backend.url, token)
    })
  )
  const wallMs = performance.now() - started
  const backendCpuMs = (await cpuMsOf(backend.child.pid)) - cpuBefore
  // the jobs a turn leaves behind (titles) run after it: let them finish before counting
  if (target === "backend") await sleep(300)
  const after = before === undefined ? undefined : await backendCounters(backend.url)
  const measured: Measured = before === undefined || after === undefined
    ? { wallMs, backendCpuMs, sqlPerStream: 0, gcPauses: 0, gcMs: 0 }
    : {
      wallMs,
      backendCpuMs,
      sqlPerStream: (after.queries - before.queries) / count,
      gcPauses: after.gcPauses - before.gcPauses,
      gcMs: 1000 * (after.gcSeconds - before.gcSeconds)
    }
  const failed = streams.find((s) => s.error !== undefined)
  if (failed !== undefined) console.error(`${target}: ${failed.marker}: ${failed.error}`)
  return { streams, stats: statsOf(streams, fake, measured) }
}

const differenceOf = (a: Stats, b: Stats): Stats => {
  const minus = (x: Stats["first"], y: Stats["first"]) => ({
    p50: x.p50 - y.p50,
    p95: x.p95 - y.p95,
    p99: x.p99 - y.p99,
    max: x.max - y.max
  })
  return {
    ...a,
    first: minus(a.first, b.first),
    perToken: minus(a.perToken, b.perToken),
    toFirstDelta: minus(a.toFirstDelta, b.toFirstDelta),
    errors: a.errors + b.errors,
    wallMs: a.wallMs - b.wallMs,
    backendCpuMs: a.backendCpuMs - b.backendCpuMs,
    sqlPerStream: a.sqlPerStream - b.sqlPerStream,
    gcPauses: a.gcPauses - b.gcPauses,
    gcMs: a.gcMs - b.gcMs
  }
}

const medianOf = (all: ReadonlyArray<Stats>): Stats => {
  const pick = (f: (s: Stats) => number) => median(all.map(f))
  const part = (g: (s: Stats) => Stats["first"]) => ({
    p50: pick((s) => g(s).p50),
    p95: pick((s) => g(s).p95),
    p99: pick((s) => g(s).p99),
    max: pick((s) => g(s).max)
  })
  return {
    streams: all[0]!.streams,
    tokens: all[0]!.tokens,
    first: part((s) => s.first),
    perToken: part((s) => s.perToken),
    toFirstDelta: part((s) => s.toFirstDelta),
    errors: all.reduce((n, s) => n + s.errors, 0),
    wallMs: pick((s) => s.wallMs),
    backendCpuMs: pick((s) => s.backendCpuMs),
    sqlPerStream: pick((s) => s.sqlPerStream),
    gcPauses: pick((s) => s.gcPauses),
    gcMs: pick((s) => s.gcMs)
  }
}

const ms = (n: number) => n.toFixed(2).padStart(7)
const HEADER = `${"round".padEnd(7)} ${"path".padEnd(9)} ${"streams".padStart(7)} ${"tokens".padStart(6)}   ` +
  `first delta (ms): ${"p50".padStart(7)} ${"p95".padStart(7)} ${"p99".padStart(7)} ${"max".padStart(7)}   ` +
  `per token (ms): ${"p50".padStart(7)} ${"p95".padStart(7)} ${"p99".padStart(7)}   ` +
  `request to first delta (ms): ${"p50".padStart(7)} ${"p95".padStart(7)}   errors  ${"wall ms".padStart(7)}  ${
    "backend CPU ms".padStart(14)
  }  SQL/stream  CPU µs/token   GC pauses   GC ms`
const row = (name: string, path: string, s: Stats) =>
  `${name.padEnd(7)} ${path.padEnd(9)} ${String(s.streams).padStart(7)} ${String(s.tokens).padStart(6)}   ` +
  `${"".padEnd(18)} ${ms(s.first.p50)} ${ms(s.first.p95)} ${ms(s.first.p99)} ${ms(s.first.max)}   ` +
  `${"".padEnd(15)} ${ms(s.perToken.p50)} ${ms(s.perToken.p95)} ${ms(s.perToken.p99)}   ` +
  `${"".padEnd(29)} ${ms(s.toFirstDelta.p50)} ${ms(s.toFirstDelta.p95)}   ${String(s.errors).padStart(6)}  ${
    s.wallMs.toFixed(0).padStart(7)
  }  ${s.backendCpuMs.toFixed(0).padStart(14)}  ${s.sqlPerStream.toFixed(1).padStart(10)}  ${
    (1000 * s.backendCpuMs / (s.streams * s.tokens)).toFixed(0).padStart(12)
  }  ${s.gcPauses.toFixed(0).padStart(10)}  ${s.gcMs.toFixed(0).padStart(6)}`

// --- the store: embedded, or PostgreSQL + Redis ----------------------------------------------

interface Store {
  readonly name: string
  readonly env: Record<string, string>
  readonly drop: () => Promise<void>
}

const onServer = async (statement: string) => {
  const client = new pg.Client({ connectionString: DATABASE_SERVER_URL })
  await client.connect()
  try {
    await client.query(statement)
  } finally {
    await client.end()
  }
}

/** A PostgreSQL database and a Redis namespace of the run's own, or the embedded database in memory. */
const prepareStore = async (): Promise<Store> => {
  if (!POSTGRES) {
    return {
      name: "embedded PGlite (in memory), in-memory limits",
      env: { NODE_ENV: "development", CHATKIT_DATA_DIR: "memory://" },
      drop: async () => {}
    }
  }
  const suffix = randomBytes(4).toString("hex")
  const database = `bench_chat_${suffix}`
  const namespace = `bench-chat-${suffix}`
  await onServer(`CREATE DATABASE ${database}`)
  const url = new URL(DATABASE_SERVER_URL)
  url.pathname = `/${database}`
  return {
    name: `PostgreSQL ${url.host}/${database} + Redis ${new URL(REDIS_URL).host} (namespace ${namespace})`,
    env: {
      NODE_ENV: "production",
      DATABASE_URL: url.toString(),
      REDIS_URL,
      REDIS_NAMESPACE: namespace,
      AUTH_SECRET_KEY: "bench-secret-key-0123456789-abcdefghijklmnop",
      ALLOWED_ORIGINS: "http://localhost:5173",
      MIGRATE_ON_START: "true"
    },
    drop: async () => {
      await onServer(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
      const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
      try {
        await redis.connect()
        let cursor = "0"
        do {
          const [next, keys] = await redis.scan(cursor, "MATCH", `chatkit:${namespace}:*`, "COUNT", 1000)
          if (keys.length > 0) await redis.del(...keys)
          cursor = next
        } while (cursor !== "0")
      } finally {
        redis.disconnect()
      }
    }
  }
}

// --- main --------------------------------------------------------------------------------------

const main = async () => {
  const started = performance.now()
  console.log("building dist/ (npm run build) ...")
  execFileSync("npm", ["run", "build", "--silent"], { stdio: "inherit" })
  const fake = await startFake()
  const nodeArgs = [
    ...(CPU_PROF_DIR === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF_DIR}`]),
    ...NODE_FLAGS
  ]
  const store = await prepareStore()
  const app = await startBackend({
    ...store.env,
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    LLM_PROVIDER: "openai",
    OPENAI_API_KEY: "sk-bench-0123456789abcdef",
    OPENAI_BASE_URL: fake.baseUrl,
    // the benchmark measures streaming, not the per-user API limit
    RATE_LIMIT_API_PER_MINUTE: "100000"
  }, nodeArgs).catch(async (error: unknown) => {
    await store.drop()
    throw error
  })
  try {
    // one user for every client: login is limited to 5 per minute per IP and per email
    const token = await login(app.url)
    console.log(
      `chatkit-backend chat streaming benchmark: ${STREAMS} concurrent threads.create streams, ${TOKENS} tokens each, ` +
        `one token every ${TOKEN_INTERVAL_MS} ms from a fake OpenAI-compatible provider; ${ROUNDS} measured rounds ` +
        `after a warm-up of ${WARMUP_STREAMS} streams; ${
          RAMP_MS > 0 ? `starts spread over ${RAMP_MS} ms` : "all starting at once"
        }; store: ${store.name}${CPU_PROF_DIR === undefined ? "" : `; CPU profile in ${CPU_PROF_DIR}`}\n` +
        "latency = client receive time − provider send time of the same token (one clock, this process); " +
        "added = backend − direct, percentile by percentile\n"
    )
    await runRound("direct", WARMUP_STREAMS, fake, app, token)
    const warm = (await runRound("backend", WARMUP_STREAMS, fake, app, token)).stats
    if (warm.errors > 0) throw new Error(`warm-up: ${warm.errors} of ${WARMUP_STREAMS} streams failed`)

    const rounds: Array<{ direct: Stats; backend: Stats; added: Stats }> = []
    const measured = { direct: new Array<Stream>(), backend: new Array<Stream>() }
    console.log(HEADER)
    for (let r = 1; r <= ROUNDS; r++) {
      const direct = await runRound("direct", STREAMS, fake, app, token)
      await sleep(100)
      const backend = await runRound("backend", STREAMS, fake, app, token)
      await sleep(100)
      measured.direct.push(...direct.streams)
      measured.backend.push(...backend.streams)
      const added = differenceOf(backend.stats, direct.stats)
      rounds.push({ direct: direct.stats, backend: backend.stats, added })
      console.log(row(String(r), "direct", direct.stats))
      console.log(row(String(r), "backend", backend.stats))
      console.log(row(String(r), "added", added))
    }
    const medians = {
      direct: medianOf(rounds.map((r) => r.direct)),
      backend: medianOf(rounds.map((r) => r.backend)),
      added: medianOf(rounds.map((r) => r.added))
    }
    // percentiles of every measured stream and token at once: 50 streams a round make a round's
    // p95 its 3rd-worst stream; over the rounds it rests on ROUNDS times as many
    const pooled = (
      streams: ReadonlyArray<Stream>,
      { backendCpuMs, gcMs, gcPauses, sqlPerStream, wallMs }: Stats
    ): Stats => ({
      ...statsOf(streams, fake, { wallMs, backendCpuMs, sqlPerStream, gcPauses, gcMs }),
      streams: STREAMS // a round's, as the figures of wall time and CPU are
    })
    const direct = pooled(measured.direct, medians.direct)
    const backend = pooled(measured.backend, medians.backend)
    const added = differenceOf(backend, direct)
    console.log()
    console.log(row("median", "direct", medians.direct))
    console.log(row("median", "backend", medians.backend))
    console.log(row("median", "added", medians.added))
    console.log(row("all", "direct", direct))
    console.log(row("all", "backend", backend))
    console.log(row("all", "added", added))
    const ratio = backend.first.p95 / direct.first.p95
    console.log(
      `\nover all ${ROUNDS * STREAMS} measured streams: first delta p95: backend ${
        backend.first.p95.toFixed(2)
      } ms, direct ${direct.first.p95.toFixed(2)} ms ` +
        `(ratio ${ratio.toFixed(1)}×, added ${added.first.p95.toFixed(2)} ms); ` +
        `per token p95: backend ${backend.perToken.p95.toFixed(2)} ms, added ${added.perToken.p95.toFixed(2)} ms`
    )
    const errors = rounds.reduce((n, r) => n + r.direct.errors + r.backend.errors, 0)
    const met = backend.first.p95 < TARGET_P95_MS && errors === 0
    console.log(
      met
        ? `target met: p95 first-delta latency through the backend ${
          backend.first.p95.toFixed(2)
        } ms < ${TARGET_P95_MS} ms, no errors`
        : `TARGET MISSED: p95 first-delta latency through the backend ${
          backend.first.p95.toFixed(2)
        } ms (target < ${TARGET_P95_MS} ms), ${errors} errors`
    )
    console.log(`(${fake.titles} thread.title requests answered apart, not measured)`)
    if (fake.unmatched > 0) console.log(`(${fake.unmatched} provider requests without a marker, not measured)`)
    await mkdir(new URL("./", RESULTS), { recursive: true })
    await writeFile(
      RESULTS,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          node: process.version,
          streams: STREAMS,
          tokens: TOKENS,
          tokenIntervalMs: TOKEN_INTERVAL_MS,
          warmupStreams: WARMUP_STREAMS,
          targetP95Ms: TARGET_P95_MS,
          cpuProfile: CPU_PROF_DIR ?? null,
          store: store.name,
          titleRequests: fake.titles,
          rounds,
          median: medians,
          all: { direct, backend, added },
          targetMet: met,
          unmatchedProviderRequests: fake.unmatched,
          elapsedSeconds: (performance.now() - started) / 1000
        },
        null,
        2
      ) + "\n"
    )
    console.log(
      `\nwritten: bench/results/${POSTGRES ? "chat-postgres" : "chat"}.json (${
        ((performance.now() - started) / 1000).toFixed(1)
      } s in all)`
    )
  } finally {
    await stop(app.child)
    await fake.close()
    await store.drop()
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
