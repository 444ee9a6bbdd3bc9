/**
 * Model catalog benchmark: GET /api/v1/models?page=3&page_size=20 with an access token, against
 * a server whose cache is warm and against one started with CACHE_DISABLED=true (every request
 * reads the caller and the page from the database). Prints requests/s, p50, p95 (computed from
 * every response time autocannon reports) and p99, and the SQL statements per request read from
 * `db_queries_total` on /metrics around a fixed number of sequential requests.
 *
 *   npx tsx bench/models.ts     (BENCH_SECONDS, BENCH_CONNECTIONS as for bench/platform.ts)
 */
import autocannon from "autocannon"

import { CONNECTIONS, SECONDS, startApp, stop } from "./support.js"

const ADMIN_EMAIL = "bench-admin@example.com"
const ADMIN_PASSWORD = "bench-password-0123456789"
const MODELS = 100
const PATH = "/api/v1/models?page=3&page_size=20"
const COUNTED_REQUESTS = 200

const json = async (url: string, init: RequestInit & { readonly expect: number }) => {
  const response = await fetch(url, init)
  if (response.status !== init.expect) {
    throw new Error(`${init.method ?? "GET"} ${url} answered ${response.status}: ${await response.text()}`)
  }
  return response.status === 204 ? undefined : await response.json() as unknown
}

const login = async (url: string) => {
  const body = await json(`${url}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD }),
    expect: 200
  }) as { access_token: string }
  return body.access_token
}

const seed = async (url: string, token: string) => {
  for (let i = 0; i < MODELS; i++) {
    await json(`${url}/api/v1/admin/models`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({
        name: `bench-model-${i}`,
        display_name: `Bench model ${String(i).padStart(3, "0")}`,
        description: "x"
      }),
      expect: 201
    })
  }
}

const dbQueries = async (url: string) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  const match = /^db_queries_total(?:\{[^}]*\})?\s+([0-9.e+]+)/m.exec(text)
  if (match?.[1] === undefined) throw new Error("db_queries_total not found on /metrics")
  return Number(match[1])
}

/** SQL statements per request, over COUNTED_REQUESTS sequential requests. */
const statementsPerRequest = async (url: string, token: string) => {
  const before = await dbQueries(url)
  for (let i = 0; i < COUNTED_REQUESTS; i++) {
    await json(`${url}${PATH}`, { headers: { authorization: `Bearer ${token}` }, expect: 200 })
  }
  return (await dbQueries(url) - before) / COUNTED_REQUESTS
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN

interface Measured {
  readonly requestsPerSecond: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly errors: number
  readonly statements: number
}

const measure = (url: string, token: string, path = PATH) =>
  new Promise<Omit<Measured, "statements">>((resolve, reject) => {
    const times: Array<number> = []
    const instance = autocannon(
      {
        url: `${url}${path}`,
        headers: { authorization: `Bearer ${token}` },
        connections: CONNECTIONS,
        duration: SECONDS
      },
      (error, result) => {
        if (error) return reject(error)
        const sorted = times.sort((a, b) => a - b)
        resolve({
          requestsPerSecond: result.requests.average,
          p50: percentile(sorted, 50),
          p95: percentile(sorted, 95),
          p99: percentile(sorted, 99),
          errors: result.errors + result.non2xx
        })
      }
    )
    instance.on("response", (_client, _status, _bytes, responseTime) => {
      times.push(responseTime)
    })
  })

/** The authenticated request with the least work behind it, as the ceiling of the catalog's cached read. */
let reference: Omit<Measured, "statements"> | undefined

const scenario = async (cacheDisabled: boolean): Promise<Measured> => {
  const app = await startApp({
    CHATKIT_DATA_DIR: "memory://",
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    // the benchmark measures throughput, not the per-user API limit
    RATE_LIMIT_API_PER_MINUTE: "100000",
    CACHE_DISABLED: String(cacheDisabled)
  })
  try {
    const token = await login(app.url)
    await seed(app.url, token)
    // warm: the caller's user record and the page (no-ops with the cache disabled)
    await json(`${app.url}${PATH}`, { headers: { authorization: `Bearer ${token}` }, expect: 200 })
    const statements = await statementsPerRequest(app.url, token)
    const load = await measure(app.url, token)
    if (!cacheDisabled) reference = await measure(app.url, token, "/api/v1/auth/me")
    return { ...load, statements }
  } finally {
    await stop(app.child)
  }
}

const format = (name: string, r: Measured) =>
  `${name.padEnd(16)} ${r.requestsPerSecond.toFixed(0).padStart(7)} req/s   p50 ${r.p50.toFixed(1).padStart(5)} ms   ` +
  `p95 ${r.p95.toFixed(1).padStart(5)} ms   p99 ${r.p99.toFixed(1).padStart(5)} ms   ` +
  `SQL/request ${r.statements.toFixed(2)}   non-2xx/errors ${r.errors}`

const main = async () => {
  console.log(
    `chatkit-backend model catalog benchmark: GET ${PATH}, ${MODELS} models, ${SECONDS} s per run, ${CONNECTIONS} connections\n` +
      `(p95 computed from every response time; SQL/request over ${COUNTED_REQUESTS} sequential requests via db_queries_total)\n`
  )
  const cached = await scenario(false)
  console.log(format("cache warm", cached))
  const uncached = await scenario(true)
  console.log(format("CACHE_DISABLED", uncached))
  if (reference !== undefined) {
    console.log(
      `${"GET /auth/me".padEnd(16)} ${reference.requestsPerSecond.toFixed(0).padStart(7)} req/s   p95 ${
        reference.p95.toFixed(1)
      } ms ` +
        "(reference: the same authentication, no catalog; the ceiling of the cached read)"
    )
  }
  const ratio = cached.requestsPerSecond / uncached.requestsPerSecond
  console.log(`\nthroughput ratio cached / uncached: ${ratio.toFixed(2)}`)
  const ok = cached.statements === 0 && ratio >= 2 && cached.errors === 0 && uncached.errors === 0
  console.log(ok ? "target met: 0 SQL per cached request and ≥ 2× throughput" : "TARGET MISSED")
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
