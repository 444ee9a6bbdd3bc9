/**
 * The spike's floor: bare node:http answering the same bodies as effect3.mjs and effect4.mjs (the
 * models page only with the same bearer), as fast as plain Node does it. No request id, headers,
 * logs, metrics or spans (bench/baseline.mjs's idea without a database).
 *
 *   PORT=9100 node bench/spike-effect4/bare.mjs
 */
import { createServer } from "node:http"

import { HEALTH_BODY, HOST, MODELS_BODY, PORT, TOKEN } from "./shared.mjs"

const BEARER = `Bearer ${TOKEN}`

const server = createServer((request, response) => {
  const path = (request.url ?? "/").split("?")[0]
  if (path === "/health") {
    response.writeHead(200, { "content-type": "application/json" }).end(HEALTH_BODY)
  } else if (path === "/api/v1/models") {
    if (request.headers.authorization === BEARER) {
      response.writeHead(200, { "content-type": "application/json" }).end(MODELS_BODY)
    } else {
      response.writeHead(401, { "content-type": "application/json" }).end("{\"_tag\":\"Unauthorized\"}")
    }
  } else {
    response.writeHead(404).end()
  }
})

server.listen(PORT, HOST, () => process.stdout.write("listening\n"))
process.on("SIGTERM", () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
})
