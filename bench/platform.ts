/**
 * Platform benchmark: start-up time of the server (embedded database, and PostgreSQL when
 * BENCH_DATABASE_URL or TEST_DATABASE_URL is set) and the throughput of GET /health against a bare
 * node:http server answering the same body, in the same run. Loopback only; bounded in time.
 *
 *   npm run bench            (BENCH_SECONDS=10 BENCH_CONNECTIONS=10 by default)
 */
import { createServer } from "node:http"

import { freePort } from "../test/support/network.js"
import { CONNECTIONS, formatLoad, load, SECONDS, startApp, stop } from "./support.js"

const postgresUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL

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
  const app = await load(`${embedded.url}/health`)
  console.log()
  console.log(formatLoad("bare node:http", baseline))
  console.log(formatLoad("GET /health (app)", app))
  console.log(`\nratio app / bare node:http: ${(app.requestsPerSecond / baseline.requestsPerSecond).toFixed(2)}`)

  bare.close()
  await stop(embedded.child)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
