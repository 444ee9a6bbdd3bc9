// @ts-check
// The embedded database's thread (see layerEmbedded in Database.ts): PGlite runs each statement
// synchronously in WebAssembly, 1-12 ms at a time, which on the server's thread would hold up
// every socket. Here it serves one loopback connection, the pg driver's, with the settings of
// `setup` applied first; it tells its parent `{type: "ready", host, port}` or `{type: "failed",
// message}` (EmbeddedStarted in Database.ts), and stops (socket server, then the database, which
// writes a data directory out) when told "stop".
// Plain JavaScript: Node loads a worker from a file, and this one runs as is from src/ under the
// tests and from dist/ in production.
import { parentPort, workerData } from "node:worker_threads"

import { PGlite } from "@electric-sql/pglite"
import { vector } from "@electric-sql/pglite-pgvector"
import { PGLiteSocketServer } from "@electric-sql/pglite-socket"

/** @type {{ path: string; setup: string }} */
const { path, setup } = workerData
const port = parentPort
if (port === null) throw new Error("EmbeddedDatabaseWorker runs as a worker thread")

/** @type {PGlite | undefined} */
let db
/** @type {PGLiteSocketServer | undefined} */
let server

const stop = async () => {
  await server?.stop()
  await db?.close()
}

// a failure to stop is left unhandled: it ends the thread with an error, which the server logs
port.on("message", (message) => {
  if (message === "stop") stop().then(() => port.close())
})

try {
  db = await PGlite.create(path, { extensions: { vector } })
  await db.exec(setup)
  server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 })
  await server.start()
  const [host, listening] = server.getServerConn().split(":")
  port.postMessage({ type: "ready", host, port: Number(listening) })
} catch (error) {
  await stop().catch(() => undefined)
  port.postMessage({ type: "failed", message: error instanceof Error ? error.message : String(error) })
  port.close()
}
