/**
 * The spike's server on Effect 4 (this folder's node_modules: effect 4.x, @effect/platform-node 4.x).
 * Line for line the same shape as effect3.mjs: an HttpApi with GET /health and GET /api/v1/models
 * (bearer HttpApiMiddleware, a cached JSON string), served behind the request pipeline of
 * src/platform/Http.ts (request id, standard headers, log annotations, one JSON log line, a
 * counter and a histogram per request, inside the http.server span).
 *
 *   PORT=9100 node bench/spike-effect4/effect4.mjs
 */
import { createServer } from "node:http"

import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Clock, Context, Effect, Layer, Logger, Metric, Option, Redacted, References, Schema } from "effect"
import { HttpEffect, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import {
  HttpApi,
  HttpApiBuilder,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSecurity
} from "effect/http-api"

import {
  DURATION_BOUNDARIES,
  HOST,
  jsonLine,
  MODELS_BODY,
  MODELS_KEY,
  PORT,
  requestIdFrom,
  standardHeaders,
  TOKEN,
  writeStdout
} from "./shared.mjs"

// ---------------------------------------------------------------------------------------------
// The Api
// ---------------------------------------------------------------------------------------------

/** What the pipeline knows about the request; `userId` and `route` are filled in further in. */
class RequestInfo extends Context.Service()("spike/RequestInfo") {}

class CurrentUser extends Context.Service()("spike/CurrentUser") {}

// v4: the status is an annotation of the error class itself (v3: HttpApiSchema.annotations({ status }))
class Unauthorized extends Schema.TaggedError()("Unauthorized", { detail: Schema.String }, {
  httpApiStatus: 401
}) {}

// v4: HttpApiMiddleware.Service (v3: HttpApiMiddleware.Tag); `error` (v3: `failure`); what it
// provides is only a type parameter (v3: a `provides` tag at run time too)
class Authentication extends HttpApiMiddleware.Service()("spike/Authentication", {
  security: { bearer: HttpApiSecurity.bearer },
  error: Unauthorized
}) {}

// v4: endpoints take their schemas as options (v3: .addSuccess / .addError / .setPath ...)
const OperationsApi = HttpApiGroup.make("operations").add(
  HttpApiEndpoint.get("health", "/health", { success: Schema.Struct({ status: Schema.Literal("ok") }) })
)

const ModelsApi = HttpApiGroup.make("models").add(
  HttpApiEndpoint.get("list", "/api/v1/models", { success: Schema.Unknown })
).middleware(Authentication)

const SpikeApi = HttpApi.make("spike").add(OperationsApi).add(ModelsApi)

// ---------------------------------------------------------------------------------------------
// Services and handlers
// ---------------------------------------------------------------------------------------------

/** The read-through cache, reduced to an in-memory Map of rendered JSON strings. */
class RenderedCache extends Context.Service()("spike/RenderedCache") {}

const RenderedCacheLive = Layer.sync(RenderedCache, () => {
  const entries = new Map([[MODELS_KEY, MODELS_BODY]])
  return {
    get: (key) =>
      Effect.sync(() => {
        const value = entries.get(key)
        return value === undefined ? Option.none() : Option.some(value)
      })
  }
})

const USER = { id: 1, email: "bench@example.com", is_admin: false }

const verify = (token) =>
  Effect.suspend(() => {
    if (Redacted.value(token) !== TOKEN) return Effect.fail(new Unauthorized({ detail: "Invalid access token" }))
    return Effect.map(Effect.serviceOption(RequestInfo), (info) => {
      if (Option.isSome(info)) info.value.userId = String(USER.id)
      return USER
    })
  }).pipe(
    // v4: captureStackTrace moved to a third argument (TraceOptions); in the options, as v3 takes
    // it, it is ignored and every call captures a stack trace (src/platform/Spans.ts's withHotSpan)
    Effect.withSpan("Authentication.bearer", undefined, { captureStackTrace: false })
  )

// v4: a security handler wraps the rest of the request (`httpEffect`) and provides what it
// provides itself (v3: it returns the CurrentUser and the builder provides it)
const AuthenticationLive = Layer.succeed(Authentication, {
  bearer: (httpEffect, { credential }) =>
    Effect.flatMap(verify(credential), (user) => Effect.provideService(httpEffect, CurrentUser, user))
})

const OperationsHandlers = HttpApiBuilder.group(
  SpikeApi,
  "operations",
  (handlers) => handlers.handle("health", () => Effect.succeed({ status: "ok" }))
)

const renderedJsonResponse = (body) => HttpServerResponse.text(body, { contentType: "application/json" })

const ModelsHandlers = HttpApiBuilder.group(SpikeApi, "models", (handlers) =>
  Effect.gen(function*() {
    const cache = yield* RenderedCache
    return handlers.handle("list", () =>
      cache.get(MODELS_KEY).pipe(
        Effect.map(Option.match({
          onNone: () => renderedJsonResponse("{\"items\":[],\"total\":0}"),
          onSome: renderedJsonResponse
        }))
      ))
  })).pipe(Layer.provide([RenderedCacheLive, AuthenticationLive]))

// ---------------------------------------------------------------------------------------------
// The request pipeline (src/platform/Http.ts's requestPipeline, same steps)
// ---------------------------------------------------------------------------------------------

// v4: metrics have attributes (a record) instead of labels; no Metric.increment, update by 1
const httpRequestsTotal = Metric.counter("http_requests_total", {
  description: "HTTP requests served, by method, route template and status",
  incremental: true
})
const httpRequestDurationSeconds = Metric.histogram("http_request_duration_seconds", {
  description: "HTTP request duration in seconds, by method and route template",
  boundaries: DURATION_BOUNDARIES
})

const taggedRequestMetrics = new Map()

/** The metrics of one method, route and status, tagged once and kept (as src/platform/Http.ts does). */
const requestMetrics = (method, route, status) => {
  const key = `${method} ${route} ${status}`
  let metrics = taggedRequestMetrics.get(key)
  if (metrics === undefined) {
    metrics = {
      count: Metric.withAttributes(httpRequestsTotal, { method, route, status: String(status) }),
      duration: Metric.withAttributes(httpRequestDurationSeconds, { method, route })
    }
    taggedRequestMetrics.set(key, metrics)
  }
  return metrics
}

const requestPipeline = (app) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const requestId = requestIdFrom(request.headers["x-request-id"])
    const info = { requestId, userId: undefined, route: "unmatched" }
    const span = yield* Effect.option(Effect.currentSpan)
    const traceId = Option.match(span, { onNone: () => undefined, onSome: (s) => s.traceId })
    Option.map(span, (s) => s.attribute("request_id", requestId))
    const startedAt = yield* Clock.currentTimeNanos

    const headers = standardHeaders(requestId)
    // v4: HttpEffect.appendPreResponseHandler (v3: HttpApp.appendPreResponseHandler)
    yield* HttpEffect.appendPreResponseHandler((_, response) =>
      Effect.succeed(HttpServerResponse.setHeaders(response, headers))
    )

    const response = yield* app.pipe(
      Effect.provideService(RequestInfo, info),
      Effect.annotateLogs({ request_id: requestId, ...(traceId === undefined ? {} : { trace_id: traceId }) })
    )

    const durationSeconds = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
    const metrics = requestMetrics(request.method, info.route, response.status)
    yield* Metric.update(metrics.count, 1)
    yield* Metric.update(metrics.duration, durationSeconds)
    yield* Effect.logInfo("http request").pipe(
      Effect.annotateLogs({
        method: request.method,
        route: info.route,
        status: response.status,
        duration_ms: Math.round(durationSeconds * 1e6) / 1e3,
        request_id: requestId,
        ...(traceId === undefined ? {} : { trace_id: traceId }),
        ...(info.userId === undefined ? {} : { user_id: info.userId })
      })
    )
    return response
  })

// v4: the router sets `http.route` on the span only under a real (non-native) tracer, and the
// matched route is not visible outside the router, so a route middleware (provided to the Api's
// routes) reads it from HttpRouter.RouteContext into RequestInfo. A global one ({ global: true })
// runs before the route is matched and finds no RouteContext. (v3: the serve middleware reads the
// span's `http.route` attribute, which the router sets whatever the tracer.)
const RouteLabel = HttpRouter.middleware((httpEffect) =>
  Effect.gen(function*() {
    const info = yield* Effect.serviceOption(RequestInfo)
    const { route } = yield* HttpRouter.RouteContext
    if (Option.isSome(info)) info.value.route = route.path
    return yield* httpEffect
  })
).layer

// ---------------------------------------------------------------------------------------------
// Logging, serving
// ---------------------------------------------------------------------------------------------

// v4: a logger reads the annotations and log spans from the fiber (v3: they are arguments)
const jsonLogger = Logger.make(({ date, fiber, logLevel, message }) =>
  writeStdout(
    jsonLine(
      Object.entries(fiber.getRef(References.CurrentLogAnnotations)),
      date,
      logLevel.toUpperCase(),
      message,
      fiber.getRef(References.CurrentLogSpans)
    )
  )
)

/** At shutdown, the requests the counter saw (run.mjs checks them against wrk's count). */
const MetricsAtExit = Layer.effectDiscard(Effect.addFinalizer(() =>
  Effect.flatMap(Metric.snapshot, (snapshots) => {
    let total = 0
    for (const s of snapshots) if (s.id === "http_requests_total") total += Number(s.state.count)
    return Effect.logInfo("metrics at exit").pipe(Effect.annotateLogs({ http_requests_total: total }))
  })
))

const ApiLive = HttpApiBuilder.layer(SpikeApi).pipe(Layer.provide([OperationsHandlers, ModelsHandlers, RouteLabel]))

// v4: HttpRouter.serve(appLayer, { middleware }) (v3: HttpApiBuilder.serve(middleware) with the Api
// provided); its default request logger is switched off here, as v3 has none
const ServerLive = HttpRouter.serve(ApiLive, {
  middleware: requestPipeline,
  disableLogger: true,
  disableListenLog: true
}).pipe(Layer.provide(NodeHttpServer.layer(createServer, { port: PORT, host: HOST })))

const program = Layer.launch(Layer.mergeAll(ServerLive, MetricsAtExit)).pipe(
  Effect.provide(Logger.layer([jsonLogger]))
)

NodeRuntime.runMain(program)
