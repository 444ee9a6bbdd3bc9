/**
 * Auth benchmark: the argon2id cost (hash and verify at the production parameters, in process),
 * the latency of POST /api/v1/auth/login over HTTP, and the throughput of an authenticated
 * GET /api/v1/auth/me as a ratio against the unauthenticated GET /health of the same server.
 *
 *   npx tsx bench/auth.ts     (BENCH_SECONDS, BENCH_CONNECTIONS as for bench/platform.ts)
 */
import { Effect, Redacted } from "effect"

import { Passwords } from "../src/features/auth/Passwords.js"
import { CONNECTIONS, formatLoad, load, median, SECONDS, startApp, stop } from "./support.js"

const ADMIN_EMAIL = "bench-admin@example.com"
const ADMIN_PASSWORD = "bench-password-0123456789"

const argon2Cost = Effect.gen(function*() {
  const passwords = yield* Passwords
  const password = Redacted.make(ADMIN_PASSWORD)
  const hashMs: Array<number> = []
  const verifyMs: Array<number> = []
  let stored = ""
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now()
    stored = yield* passwords.hash(password)
    hashMs.push(performance.now() - t0)
    const t1 = performance.now()
    yield* passwords.verify(password, stored)
    verifyMs.push(performance.now() - t1)
  }
  return { hash: median(hashMs), verify: median(verifyMs) }
}).pipe(Effect.provide(Passwords.layer()))

const login = async (url: string) => {
  const started = performance.now()
  const response = await fetch(`${url}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: ADMIN_EMAIL, password: ADMIN_PASSWORD })
  })
  if (response.status !== 200) throw new Error(`login answered ${response.status}: ${await response.text()}`)
  const body = (await response.json()) as { access_token: string }
  return { ms: performance.now() - started, token: body.access_token }
}

const main = async () => {
  console.log(`chatkit-backend auth benchmark (${SECONDS} s per run, ${CONNECTIONS} connections)\n`)
  const cost = await Effect.runPromise(argon2Cost)
  console.log(
    `argon2id (m=19456 KiB, t=2, p=1), median of 15: hash ${cost.hash.toFixed(1)} ms, verify ${
      cost.verify.toFixed(1)
    } ms`
  )

  const app = await startApp({
    CHATKIT_DATA_DIR: "memory://",
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    // the benchmark measures throughput, not the per-user API limit
    RATE_LIMIT_API_PER_MINUTE: "100000"
  })
  // login is limited to 5 per minute per IP and per email: 5 samples
  const logins = []
  for (let i = 0; i < 5; i++) logins.push(await login(app.url))
  console.log(`POST /api/v1/auth/login over HTTP, median of 5: ${median(logins.map((l) => l.ms)).toFixed(1)} ms`)

  const token = logins[logins.length - 1]!.token
  const health = await load(`${app.url}/health`)
  const me = await load(`${app.url}/api/v1/auth/me`, { authorization: `Bearer ${token}` })
  console.log()
  console.log(formatLoad("GET /health", health))
  console.log(formatLoad("GET /api/v1/auth/me", me))
  console.log(`\nratio /auth/me / /health: ${(me.requestsPerSecond / health.requestsPerSecond).toFixed(2)}`)
  await stop(app.child)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
