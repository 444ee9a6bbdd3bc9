import { createServer, type Server } from "node:http"

import { NodeHttpServer } from "@effect/platform-node"
import * as HttpServer from "@effect/platform/HttpServer"
import { Clock, Effect, Layer } from "effect"

import { problemBody, ServiceUnavailable } from "../domain/errors.js"
import { AppConfig, type AppConfigShape } from "./Config.js"
import { requestIdFrom, standardHeaders } from "./Http.js"

/**
 * Requests being served, counted from the node server's own events. While no app handler is
 * attached (the instant between listening and serving, or after shutdown removed it) a request
 * would never be answered: it gets a 503 problem with `Retry-After: 1` instead.
 */
const trackInFlight = (server: Server, config: AppConfigShape) => {
  let inFlight = 0
  server.on("request", (request, response) => {
    inFlight++
    response.once("close", () => inFlight--)
    if (server.listenerCount("request") > 1) return
    const header = request.headers["x-request-id"]
    const requestId = requestIdFrom(typeof header === "string" ? header : undefined)
    const problem = new ServiceUnavailable({ detail: "The server is starting or stopping; retry in a second" })
    const headers = {
      ...standardHeaders(config, requestId, request.headers.origin),
      "cache-control": "no-store",
      "retry-after": "1"
    }
    response.writeHead(503, { ...headers, "content-type": "application/problem+json", connection: "close" })
      .end(JSON.stringify(problemBody(ServiceUnavailable.problem, problem, requestId, new Date().toISOString())))
  })
  return () => inFlight
}

/**
 * Stop accepting, let in-flight requests finish for up to `graceMs`, then cut what is left.
 * Runs before the platform removes its request handler, so in-flight requests complete normally.
 */
const drain = (server: Server, inFlight: () => number, graceMs: number) =>
  Effect.gen(function*() {
    yield* Effect.logInfo("shutting down: no longer accepting connections").pipe(
      Effect.annotateLogs({ in_flight: inFlight(), grace_ms: graceMs })
    )
    server.close()
    server.closeIdleConnections()
    // Finalizers are uninterruptible, so the wait is bounded by a deadline rather than a timeout.
    const deadline = (yield* Clock.currentTimeMillis) + graceMs
    while (inFlight() > 0 && (yield* Clock.currentTimeMillis) < deadline) yield* Effect.sleep("20 millis")
    if (inFlight() > 0) {
      yield* Effect.logWarning("shutdown grace period over; closing remaining connections").pipe(
        Effect.annotateLogs({ in_flight: inFlight() })
      )
    }
    server.closeAllConnections()
  })

/**
 * The node HTTP server on HOST:PORT, plus `GracefulShutdown`, which must be built after the Api is
 * served (so that its finalizer runs first).
 */
export const makeServer = Effect.map(AppConfig, (config) => {
  const server = createServer({ keepAliveTimeout: 5_000, requestTimeout: 120_000 })
  const inFlight = trackInFlight(server, config)
  return {
    ServerLive: NodeHttpServer.layer(() => server, { port: config.port, host: config.host }),
    GracefulShutdown: Layer.scopedDiscard(Effect.addFinalizer(() => drain(server, inFlight, config.shutdownGraceMs))),
    LogAddress: Layer.effectDiscard(
      HttpServer.addressFormattedWith((address) =>
        Effect.logInfo(`chatkit-backend listening on ${address} — API docs at ${address}/docs`)
      )
    )
  }
})
