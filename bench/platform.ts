/**
 * Platform benchmark: start-up time of the server (embedded database, and PostgreSQL when
 * BENCH_DATABASE_URL or TEST_DATABASE_URL is set) and the throughput of GET /health against a bare
 * node:http server answering the same body, in the same run. Loopback only; bounded in time.
 *
 *   npm run bench            (BENCH_SECONDS=10 BENCH_CONNECTIONS=10 by default)
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:http"
import autocannon from "autocannon"
import { freePort } from "../test/support/ports.js"

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10)
const postgresUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL

/** Starts `src/main.ts` and resolves once it logs that it listens, with the elapsed time. */
const startApp = async (env: Record<string, string>) => {
  const port = await freePort()
  const started = performance.now()
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), NODE_ENV: "development", ...env },
    stdio: ["ignore", "pipe", "inherit"]
  })
  await new Promise<void>((resolve, reject) => {
    let output = ""
    child.stdout?.on("data", (chunk) => {
      output += String(chunk)
      if (output.includes("listening")) resolve()
    })
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)))
  })
  child.stdout?.resume()
  return { child, port, startupMs: performance.now() - started }
}

const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    child.on("exit", () => resolve())
    child.kill("SIGTERM")
  })

const load = (url: string) =>
  autocannon({ url, connections: CONNECTIONS, duration: SECONDS, pipelining: 1 }).then((result) => ({
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx
  }))

const format = (name: string, r: Awaited<ReturnType<typeof load>>) =>
  `${name.padEnd(22)} ${r.requestsPerSecond.toFixed(0).padStart(8)} req/s   p50 ${String(r.p50).padStart(3)} ms   p99 ${String(r.p99).padStart(3)} ms   errors ${r.errors}`

const main = async () => {
  console.log(`chatkit-backend platform benchmark (${SECONDS} s per run, ${CONNECTIONS} connections)\n`)

  const embedded = await startApp({ CHATKIT_DATA_DIR: "memory://" })
  console.log(`start-up, embedded PGlite (in memory): ${embedded.startupMs.toFixed(0)} ms`)
  if (postgresUrl !== undefined && postgresUrl !== "") {
    const pg = await startApp({ DATABASE_URL: postgresUrl })
    console.log(`start-up, PostgreSQL:                  ${pg.startupMs.toFixed(0)} ms`)
    await stop(pg.child)
  } else {
    console.log("start-up, PostgreSQL: skipped (set BENCH_DATABASE_URL)")
  }

  const body = JSON.stringify({ status: "ok" })
  const bare = createServer((_, response) => {
    response.writeHead(200, { "content-type": "application/json" }).end(body)
  })
  const barePort = await freePort()
  await new Promise<void>((resolve) => bare.listen(barePort, "127.0.0.1", resolve))

  const baseline = await load(`http://127.0.0.1:${barePort}/health`)
  const app = await load(`http://127.0.0.1:${embedded.port}/health`)
  console.log()
  console.log(format("bare node:http", baseline))
  console.log(format("GET /health (app)", app))
  console.log(`\nratio app / bare node:http: ${(app.requestsPerSecond / baseline.requestsPerSecond).toFixed(2)}`)

  bare.close()
  await stop(embedded.child)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
