/**
 * The spike's server on Effect 3: the root project's packages (effect 3.22, @effect/platform 0.97,
 * @effect/platform-node 0.108), imported by path from the root's node_modules, since a bare
 * `effect` here would resolve to this folder's Effect 4. The same shape as effect4.mjs: an
 * HttpApi with GET /health and GET /api/v1/models (bearer HttpApiMiddleware, a cached JSON
 * string), served behind the request pipeline of src/platform/Http.ts (request id, standard
 * headers, log annotations, one JSON log line, a counter and a histogram per request, inside the
 * http.server span).
 *
 *   PORT=9100 node bench/spike-effect4/effect3.mjs
 */
import { createServer } from "node:http"

import { NodeHttpServer, NodeRuntime } from "../../node_modules/@effect/platform-node/dist/esm/index.js"
import {
  HttpApi,
  HttpApiBuilder,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  HttpApp,
  HttpServerRequest,
  HttpServerResponse
} from "../../node_modules/@effect/platform/dist/esm/index.js"
import {
  Clock,
  Context,
  Effect,
  FiberRef,
  HashSet,
  Layer,
  Logger,
  Metric,
  MetricBoundaries,
  MetricLabel,
  Option,
  Redacted,
  Schema
} from "../../node_modules/effect/dist/esm/index.js"

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

/** What the pipeline knows about the request; `userId` is filled in by the authentication. */
class RequestInfo extends Context.Tag("spike/RequestInfo")() {}

class CurrentUser extends Context.Tag("spike/CurrentUser")() {}

class Unauthorized extends Schema.TaggedError()(
  "Unauthorized",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

class Authentication extends HttpApiMiddleware.Tag()("spike/Authentication", {
  provides: CurrentUser,
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

const OperationsApi = HttpApiGroup.make("operations").add(
  HttpApiEndpoint.get("health", "/health").addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
)

const ModelsApi = HttpApiGroup.make("models").add(
  HttpApiEndpoint.get("list", "/api/v1/models").addSuccess(Schema.Unknown)
).middleware(Authentication)

const SpikeApi = HttpApi.make("spike").add(OperationsApi).add(ModelsApi)

// ---------------------------------------------------------------------------------------------
// Services and handlers
// ---------------------------------------------------------------------------------------------

/** The read-through cache, reduced to an in-memory Map of rendered JSON strings. */
class RenderedCache extends Context.Tag("spike/RenderedCache")() {}

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
  }).pipe(Effect.withSpan("Authentication.bearer", { captureStackTrace: false }))

const AuthenticationLive = Layer.succeed(Authentication, { bearer: verify })

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
  })).pipe(Layer.provide(RenderedCacheLive))

// ---------------------------------------------------------------------------------------------
// The request pipeline (src/platform/Http.ts's requestPipeline, same steps)
// ---------------------------------------------------------------------------------------------

const httpRequestsTotal = Metric.counter("http_requests_total", {
  description: "HTTP requests served, by method, route template and status",
  incremental: true
})
const httpRequestDurationSeconds = Metric.histogram(
  "http_request_duration_seconds",
  MetricBoundaries.fromIterable(DURATION_BOUNDARIES),
  "HTTP request duration in seconds, by method and route template"
)

const taggedRequestMetrics = new Map()

/** The metrics of one method, route and status, tagged once and kept (as src/platform/Http.ts does). */
const requestMetrics = (method, route, status) => {
  const key = `${method} ${route} ${status}`
  let metrics = taggedRequestMetrics.get(key)
  if (metrics === undefined) {
    const labels = [MetricLabel.make("method", method), MetricLabel.make("route", route)]
    metrics = {
      count: Metric.taggedWithLabels(httpRequestsTotal, [...labels, MetricLabel.make("status", String(status))]),
      duration: Metric.taggedWithLabels(httpRequestDurationSeconds, labels)
    }
    taggedRequestMetrics.set(key, metrics)
  }
  return metrics
}

const requestPipeline = (app) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const requestId = requestIdFrom(request.headers["x-request-id"])
    const info = { requestId, userId: undefined }
    const span = yield* Effect.option(Effect.currentSpan)
    const traceId = Option.match(span, { onNone: () => undefined, onSome: (s) => s.traceId })
    Option.map(span, (s) => s.attribute("request_id", requestId))
    const startedAt = yield* Clock.currentTimeNanos

    const headers = standardHeaders(requestId)
    yield* HttpApp.appendPreResponseHandler((_, response) =>
      Effect.succeed(HttpServerResponse.setHeaders(response, headers))
    )

    const response = yield* app.pipe(
      Effect.provideService(RequestInfo, info),
      Effect.annotateLogs({ request_id: requestId, ...(traceId === undefined ? {} : { trace_id: traceId }) })
    )

    const route = Option.match(span, {
      onNone: () => "unmatched",
      onSome: (s) => String(s.attributes.get("http.route") ?? "unmatched")
    })
    const durationSeconds = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
    const metrics = requestMetrics(request.method, route, response.status)
    yield* Metric.increment(metrics.count)
    yield* Metric.update(metrics.duration, durationSeconds)
    yield* Effect.logInfo("http request").pipe(
      Effect.annotateLogs({
        method: request.method,
        route,
        status: response.status,
        duration_ms: Math.round(durationSeconds * 1e6) / 1e3,
        request_id: requestId,
        ...(traceId === undefined ? {} : { trace_id: traceId }),
        ...(info.userId === undefined ? {} : { user_id: info.userId })
      })
    )
    return response
  })

// ---------------------------------------------------------------------------------------------
// Logging, serving
// ---------------------------------------------------------------------------------------------

const jsonLogger = Logger.make(({ annotations, date, logLevel, message, spans }) =>
  writeStdout(
    jsonLine(annotations, date, logLevel.label, message, Array.from(spans, (span) => [span.label, span.startTime]))
  )
)

/** Exactly this logger (src/platform/Telemetry.ts's makeLoggerLayer sets the whole set too). */
const LoggerLive = Layer.locallyScoped(FiberRef.currentLoggers, HashSet.make(jsonLogger))

/** At shutdown, the requests the counter saw (run.mjs checks them against wrk's count). */
const MetricsAtExit = Layer.scopedDiscard(Effect.addFinalizer(() =>
  Effect.flatMap(Metric.snapshot, (pairs) => {
    let total = 0
    for (const pair of pairs) if (pair.metricKey.name === "http_requests_total") total += Number(pair.metricState.count)
    return Effect.logInfo("metrics at exit").pipe(Effect.annotateLogs({ http_requests_total: total }))
  })
))

const ApiLive = HttpApiBuilder.api(SpikeApi).pipe(
  Layer.provide(OperationsHandlers),
  Layer.provide(ModelsHandlers),
  Layer.provide(AuthenticationLive)
)

const ServerLive = HttpApiBuilder.serve(requestPipeline).pipe(
  Layer.provide(ApiLive),
  Layer.provide(NodeHttpServer.layer(createServer, { port: PORT, host: HOST }))
)

const program = Layer.launch(Layer.mergeAll(ServerLive, MetricsAtExit)).pipe(Effect.provide(LoggerLive))

NodeRuntime.runMain(program, { disablePrettyLogger: true })
