/**
 * Hostile-input benchmark: how much one hostile body costs the server, and what it does to
 * everyone else. Measures GET /health alone, then again while 4 connections keep sending a login
 * body with 100,000 unknown keys (each from its own X-Forwarded-For address, so the login limit
 * does not short-cut them), and prints latency ratios, answer sizes and statuses.
 *
 *   npx tsx bench/hostile.ts            (BENCH_SECONDS=10 by default)
 */
import autocannon from "autocannon"

import { randomIp } from "../test/support/session.js"
import { SECONDS, startApp, stop } from "./support.js"

const hostileBody = (() => {
  const body: Record<string, unknown> = { email: "a@example.com", password: "x" }
  for (let i = 0; i < 100_000; i++) body[i.toString(36)] = 0
  return JSON.stringify(body)
})()

const health = (url: string) => autocannon({ url: `${url}/health`, connections: 1, duration: SECONDS, pipelining: 1 })

const hostile = (url: string) =>
  autocannon({
    url: `${url}/api/v1/auth/login`,
    connections: 4,
    duration: SECONDS,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: hostileBody,
    setupClient: (client) => {
      client.setHeaders({ "content-type": "application/json", "x-forwarded-for": randomIp() })
      client.on("response", () =>
        client.setHeaders({ "content-type": "application/json", "x-forwarded-for": randomIp() }))
    }
  })

const main = async () => {
  const app = await startApp({ CHATKIT_DATA_DIR: "memory://", TRUST_PROXY: "1" })
  const probe = await fetch(`${app.url}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": randomIp() },
    body: hostileBody
  })
  const answer = await probe.text()
  console.log(
    `hostile body: ${(hostileBody.length / 1024).toFixed(0)} KiB -> ${probe.status}, answer ${answer.length} bytes`
  )

  const idle = await health(app.url)
  const [loaded, attack] = await Promise.all([health(app.url), hostile(app.url)])
  const row = (name: string, r: autocannon.Result) =>
    `${name.padEnd(32)} ${r.requests.average.toFixed(0).padStart(7)} req/s   p50 ${
      String(r.latency.p50).padStart(4)
    } ms   p99 ${String(r.latency.p99).padStart(4)} ms   max ${String(r.latency.max).padStart(5)} ms`
  console.log(row("GET /health alone", idle))
  console.log(row("GET /health under attack", loaded))
  console.log(row("hostile logins (4 connections)", attack))
  console.log(
    `hostile statuses: ${JSON.stringify(attack.statusCodeStats)}; non-2xx ${attack.non2xx}, errors ${attack.errors}`
  )
  console.log(
    `/health p99 ratio under attack / alone: ${(loaded.latency.p99 / Math.max(1, idle.latency.p99)).toFixed(1)}`
  )
  await stop(app.child)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
