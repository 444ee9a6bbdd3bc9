import { createServer, type Server } from "node:http"
import { Server as NetServer, type Socket } from "node:net"
import type { Duplex } from "node:stream"

import { NodeHttpServer } from "@effect/platform-node"
import * as HttpServer from "@effect/platform/HttpServer"
import { Clock, Context, Deferred, Effect, Layer } from "effect"

import { problemBody, type ProblemKind, ServiceUnavailable, ValidationError } from "../domain/errors.js"
import { AppConfig, type AppConfigShape } from "./Config.js"
import { requestIdFrom, standardHeaders } from "./Http.js"

/**
 * The instance's shutdown as the rest of the app sees it: `draining` completes at SIGTERM (readiness
 * answers 503 from then on), `ending` when the grace period is nearly over (open SSE streams send
 * their final event and end, before the remaining connections are cut).
 */
export class Shutdown extends Context.Tag("chatkit/Shutdown")<Shutdown, {
  readonly draining: Deferred.Deferred<void>
  readonly ending: Deferred.Deferred<void>
}>() {}

/**
 * A problem answered outside the Api (no handler attached, or a request node's parser refused):
 * its body and the headers of every answer, the connection closed after it.
 */
const closingProblem = (
  config: AppConfigShape,
  kind: ProblemKind,
  detail: string,
  requestId: string,
  origin: string | undefined
) => {
  const body = JSON.stringify(problemBody(kind, new ValidationError({ detail }), requestId, new Date().toISOString()))
  const headers: Record<string, string> = {
    ...standardHeaders(config, requestId, origin),
    "cache-control": "no-store",
    "content-type": "application/problem+json",
    "content-length": String(Buffer.byteLength(body)),
    connection: "close"
  }
  return { body, headers }
}

/** The part of the grace period kept for streams to write their final event: 1 s, or a fifth of a shorter grace. */
const endingMarginMs = (graceMs: number) => Math.min(1_000, Math.floor(graceMs / 5))

/**
 * Requests being served, and connections accepted that have sent no request yet, counted from the
 * node server's own events. While no app handler is attached (the instant between listening and
 * serving, or after shutdown removed it) a request would never be answered: it gets a 503 problem
 * with `Retry-After: 1` instead. Once draining, every answer closes its connection, so clients
 * reconnect (to another instance) for the next one.
 */
const trackConnections = (server: Server, config: AppConfigShape, draining: () => boolean) => {
  let inFlight = 0
  let accepted = 0
  const waiting = new Set<Socket>()
  const idle = new Set<Socket>()
  server.on("connection", (socket: Socket) => {
    accepted++
    waiting.add(socket)
    socket.once("close", () => {
      waiting.delete(socket)
      idle.delete(socket)
    })
  })
  server.on("request", (request, response) => {
    inFlight++
    waiting.delete(request.socket)
    idle.delete(request.socket)
    response.once("close", () => {
      inFlight--
      if (!request.socket.destroyed) idle.add(request.socket)
    })
    if (draining()) response.setHeader("connection", "close")
    if (server.listenerCount("request") > 1) return
    const header = request.headers["x-request-id"]
    const requestId = requestIdFrom(typeof header === "string" ? header : undefined)
    const { body, headers } = closingProblem(
      config,
      ServiceUnavailable.problem,
      "The server is starting or stopping; retry in a second",
      requestId,
      request.headers.origin
    )
    response.writeHead(503, { ...headers, "retry-after": "1" }).end(body)
  })
  return {
    /** requests not answered yet, plus connections whose first request is still to come */
    pending: () => inFlight + waiting.size,
    inFlight: () => inFlight,
    accepted: () => accepted,
    /** kept-alive connections between two requests; a new connection is not idle until it was answered */
    closeIdle: () => {
      for (const socket of idle) socket.destroy()
    }
  }
}

type Connections = ReturnType<typeof trackConnections>

/** What node's HTTP parser refuses, as a problem: its status, code, title and detail. */
const parserProblem = (code: string | undefined) => {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return {
        kind: { code: "headers_too_large", status: 431, title: "Request Header Fields Too Large" },
        detail: "The request line and headers exceed 16 KiB"
      }
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return {
        kind: { code: "request_timeout", status: 408, title: "Request Timeout" },
        detail: "The request did not arrive in time"
      }
    default:
      return { kind: ValidationError.problem, detail: "The request is not valid HTTP/1.1" }
  }
}

/**
 * Requests node's parser refuses before the app sees them (malformed HTTP, a request line and
 * headers over 16 KiB, one that does not arrive within requestTimeout) get the problem body and
 * request id of every other error, where node would write a bare status line; then the connection
 * closes, since the rest of its bytes cannot be framed.
 */
const answerParserErrors = (server: Server, config: AppConfigShape) =>
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === "ECONNRESET" || !socket.writable) return socket.destroy()
    const { detail, kind } = parserProblem(error.code)
    const { body, headers } = closingProblem(config, kind, detail, requestIdFrom(undefined), undefined)
    const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("")
    socket.end(`HTTP/1.1 ${kind.status} ${kind.title}\r\n${head}\r\n${body}`)
  })

/** Waits (20 ms steps) until nothing is pending or the clock reaches `until`. */
const settleBy = (connections: Connections, until: number) =>
  Effect.gen(function*() {
    // Finalizers are uninterruptible, so the wait is bounded by a deadline rather than a timeout.
    while (connections.pending() > 0 && (yield* Clock.currentTimeMillis) < until) yield* Effect.sleep("20 millis")
  })

/** Resumes after the event loop's next poll phase. */
const afterNextPoll = Effect.async<void>((resume) => {
  // the first callback may run in the check phase of the current iteration, before any poll
  setImmediate(() => setImmediate(() => resume(Effect.void)))
})

/** How long a flood of new connections can hold the listener open; a loaded loop takes ~20 ms a poll, and the kernel queue holds hundreds. */
const ACCEPT_BACKLOG_MAX_MS = 2_000

/**
 * Lets the server accept the connections the kernel has completed (libuv takes one or two per
 * poll phase): until a poll phase accepts none, for at most `maxMs`. Closing the listener before
 * would reset them.
 */
const acceptBacklog = (connections: Connections, maxMs: number) =>
  Effect.gen(function*() {
    const until = (yield* Clock.currentTimeMillis) + maxMs
    let before: number
    do {
      before = connections.accepted()
      yield* afterNextPoll
    } while (connections.accepted() !== before && (yield* Clock.currentTimeMillis) < until)
  })

/**
 * Readiness turns 503 and, for `delayMs`, the server still accepts (a load balancer takes the
 * instance out of rotation meanwhile); then it stops accepting, lets in-flight requests finish for
 * up to `graceMs`, asks open streams to end shortly before that, and cuts what is left.
 * Runs before the platform removes its request handler, so in-flight requests complete normally.
 *
 * The listener is closed with net.Server's own close: node's http close also destroys the
 * connections it calls idle, which include accepted ones whose request has not been read yet
 * (their clients would see ECONNRESET); those are waited for like requests in flight.
 */
const drain = (
  server: Server,
  connections: Connections,
  startDraining: Effect.Effect<unknown>,
  ending: Deferred.Deferred<void>,
  options: { readonly delayMs: number; readonly graceMs: number }
) =>
  Effect.gen(function*() {
    yield* startDraining
    yield* Effect.logInfo("shutting down: readiness answers 503; still accepting connections").pipe(
      Effect.annotateLogs({ in_flight: connections.inFlight(), delay_ms: options.delayMs, grace_ms: options.graceMs })
    )
    yield* Effect.sleep(options.delayMs)
    yield* acceptBacklog(connections, ACCEPT_BACKLOG_MAX_MS)
    yield* Effect.logInfo("shutting down: no longer accepting connections").pipe(
      Effect.annotateLogs({ in_flight: connections.inFlight() })
    )
    NetServer.prototype.close.call(server)
    connections.closeIdle()
    const deadline = (yield* Clock.currentTimeMillis) + options.graceMs
    yield* settleBy(connections, deadline - endingMarginMs(options.graceMs))
    yield* Deferred.succeed(ending, undefined)
    yield* settleBy(connections, deadline)
    if (connections.pending() > 0) {
      yield* Effect.logWarning("shutdown grace period over; closing remaining connections").pipe(
        Effect.annotateLogs({ in_flight: connections.inFlight() })
      )
    }
    server.closeAllConnections()
    server.close()
  })

/**
 * The node HTTP server on HOST:PORT; `GracefulShutdown`, which must be built after the Api is
 * served (so that its finalizer runs first); and `ShutdownLive`, its state for the Api to read.
 */
export const makeServer = Effect.gen(function*() {
  const config = yield* AppConfig
  const shutdown = { draining: yield* Deferred.make<void>(), ending: yield* Deferred.make<void>() }
  const server = createServer({ keepAliveTimeout: 5_000, requestTimeout: 120_000 })
  let draining = false
  const connections = trackConnections(server, config, () => draining)
  answerParserErrors(server, config)
  const startDraining = Effect.suspend(() => {
    draining = true
    return Deferred.succeed(shutdown.draining, undefined)
  })
  const options = { delayMs: config.shutdownDelayMs, graceMs: config.shutdownGraceMs }
  return {
    ServerLive: NodeHttpServer.layer(() => server, { port: config.port, host: config.host }),
    ShutdownLive: Layer.succeed(Shutdown, shutdown),
    GracefulShutdown: Layer.scopedDiscard(
      Effect.addFinalizer(() => drain(server, connections, startDraining, shutdown.ending, options))
    ),
    LogAddress: Layer.effectDiscard(
      HttpServer.addressFormattedWith((address) =>
        Effect.logInfo(`chatkit-backend listening on ${address} — API docs at ${address}/docs`)
      )
    )
  }
})
