import type { IncomingMessage } from "node:http"

import { NodeHttpServerRequest } from "@effect/platform-node"
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiError from "@effect/platform/HttpApiError"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { SqlError } from "@effect/sql/SqlError"
import { Cause, Clock, Context, Effect, type Exit, Metric, Option } from "effect"
import { v7 as uuidv7 } from "uuid"

import {
  InternalError,
  NotFound,
  PayloadTooLarge,
  problemBody,
  type ProblemError,
  problemKindOf,
  ServiceUnavailable,
  ValidationError,
  withoutActualValue
} from "../domain/errors.js"
import { pathKey } from "../domain/Text.js"
import type { AppConfigShape } from "./Config.js"
import { httpRequestDurationSecondsKey, httpRequestsTotalKey, labelled } from "./Metrics.js"
import { type BodyLimits, checkBodyHeaders, checkUrlText, DEFAULT_BODY_LIMITS, parseJsonBody } from "./RequestInput.js"

export { MAX_JSON_BODY_BYTES } from "./RequestInput.js"

/**
 * What the platform knows about the request being served. `userId` is filled in by the
 * authentication middleware once it knows the caller, so the request log line can name them.
 */
export class RequestInfo extends Context.Tag("chatkit/RequestInfo")<RequestInfo, {
  readonly requestId: string
  /** the client address: the socket's, or with TRUST_PROXY the right-most untrusted X-Forwarded-For hop */
  readonly ip: string
  readonly userAgent: string | undefined
  userId: string | undefined
  /** set by handlers and middleware (e.g. RateLimit-*); added to the response, error or not */
  readonly responseHeaders: Record<string, string>
  /** the body this route accepts */
  readonly bodyLimits: BodyLimits
}>() {}

/** A route that takes a larger body than every other: its endpoint's method and path template. */
export interface LargeBodyRoute {
  readonly method: string
  /** as the Api declares it, `/api/v1/vector-stores/:slug/documents` */
  readonly path: string
  readonly limits: BodyLimits
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** The limits of the route a request is for, from its method and path, before any routing. */
const bodyLimitsFor = (routes: ReadonlyArray<LargeBodyRoute>) => {
  const compiled = routes.map((route) => ({
    method: route.method,
    limits: route.limits,
    pattern: new RegExp(
      `^${route.path.split("/").map((part) => part.startsWith(":") ? "[^/]+" : escapeRegExp(part)).join("/")}/?$`
    )
  }))
  return (method: string, url: string): BodyLimits => {
    if (compiled.length === 0) return DEFAULT_BODY_LIMITS
    const path = url.split("?", 1)[0] ?? ""
    return compiled.find((route) => route.method === method && route.pattern.test(path))?.limits ??
      DEFAULT_BODY_LIMITS
  }
}

/**
 * The client IP. Each trusted proxy appends the address it saw to X-Forwarded-For, so with N
 * trusted hops the client is the N-th entry from the right; anything left of it is caller-supplied.
 */
export const clientIp = (request: HttpServerRequest.HttpServerRequest, trustedHops: number): string => {
  const socket = Option.getOrElse(request.remoteAddress, () => "unknown")
  if (trustedHops === 0) return socket
  const forwarded = (request.headers["x-forwarded-for"] ?? "").split(",").map((hop) => hop.trim()).filter((hop) =>
    hop !== ""
  )
  if (forwarded.length === 0) return socket
  return forwarded[Math.max(0, forwarded.length - trustedHops)] ?? socket
}

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The caller's X-Request-ID when it is safe to echo and log, else a new UUIDv7. */
export const requestIdFrom = (header: string | undefined): string =>
  header !== undefined && SAFE_REQUEST_ID.test(header) ? header : uuidv7()

/** A JSON body that is already rendered (e.g. from the cache), sent as is. */
export const renderedJsonResponse = (body: string) => HttpServerResponse.text(body, { contentType: "application/json" })

/** The problem+json response of an error, with the headers its status calls for. */
export const problemResponse = (error: ProblemError, requestId: string) =>
  Effect.map(Clock.currentTimeMillis, (now) => {
    const kind = problemKindOf(error) ?? InternalError.problem
    let response = HttpServerResponse.unsafeJson(problemBody(kind, error, requestId, new Date(now).toISOString()), {
      status: kind.status,
      contentType: "application/problem+json"
    })
    if (kind.status === 401) response = HttpServerResponse.setHeader(response, "www-authenticate", "Bearer")
    if (error.retry_after !== undefined) {
      response = HttpServerResponse.setHeader(
        response,
        "retry-after",
        String(Math.max(1, Math.ceil(error.retry_after)))
      )
    }
    return response
  })

const EXPOSED_HEADERS = "X-Request-ID, API-Version, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"
/** What a front end sends: its JSON and bearer, our own headers, and those of the ChatKit web component. */
const ALLOWED_HEADERS =
  "Authorization, Content-Type, Accept, Accept-Language, X-Request-ID, Idempotency-Key, ChatKit-Frame-Instance-Id"

const corsHeaders = (config: AppConfigShape, origin: string | undefined): Record<string, string> =>
  origin !== undefined && config.allowedOrigins.includes(origin)
    ? {
      "access-control-allow-origin": origin,
      "access-control-allow-credentials": "true",
      "access-control-expose-headers": EXPOSED_HEADERS
    }
    : {}

const preflightHeaders = {
  "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
  "access-control-allow-headers": ALLOWED_HEADERS,
  "access-control-max-age": "600"
}

const isPreflight = (request: HttpServerRequest.HttpServerRequest) =>
  request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined

/** A preflight from an allowed origin gets what it asks about; any other gets no CORS header, so the browser refuses. */
const preflightResponse = (config: AppConfigShape, origin: string | undefined) =>
  HttpServerResponse.empty({
    status: 204,
    headers: origin !== undefined && config.allowedOrigins.includes(origin) ? preflightHeaders : {}
  })

/**
 * Headers every response carries, whatever produced it (a handler, an error, a preflight, a 413).
 * API answers are per caller and often carry tokens: no cache may keep them unless a handler says so.
 */
export const standardHeaders = (
  config: AppConfigShape,
  requestId: string,
  origin: string | undefined
): Record<string, string> => ({
  "x-request-id": requestId,
  "api-version": "1",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  ...(config.nodeEnv === "production" ? { "strict-transport-security": "max-age=31536000; includeSubDomains" } : {}),
  ...corsHeaders(config, origin),
  vary: "Origin"
})

const withStandardHeaders = (response: HttpServerResponse.HttpServerResponse, headers: Record<string, string>) =>
  HttpServerResponse.setHeaders(response, {
    ...(response.headers["cache-control"] === undefined ? { "cache-control": "no-store" } : {}),
    ...headers,
    // a response that varies on more than the origin (a compressed bundle) keeps its own reasons
    ...(response.headers["vary"] === undefined ? {} : { vary: `${response.headers["vary"]}, ${headers["vary"]}` })
  })

/**
 * The request as routes see it: its `json` refuses, as a 400, a body no schema should be handed
 * (nested too deep, too many keys, text PostgreSQL cannot store). Routes read it after their
 * middleware (authentication, rate limits), so a refused body still counts as an attempt.
 */
const withCheckedJson = (
  request: HttpServerRequest.HttpServerRequest,
  limits: BodyLimits
): HttpServerRequest.HttpServerRequest => {
  let read: Exit.Exit<unknown, HttpServerError.RequestError> | undefined
  // routes turn a failed body read into a defect anyway; the problem is classified as the 4xx it is
  const json = Effect.suspend(() =>
    read ??
      Effect.flatMap(readBoundedText(NodeHttpServerRequest.toIncomingMessage(request), limits.maxBytes), (text) => {
        const parsed = parseJsonBody(text, limits)
        return "problem" in parsed ? Effect.die(parsed.problem) : Effect.succeed(parsed.body)
      }).pipe(Effect.onExit((exit) => Effect.sync(() => read = exit)))
  )
  return new Proxy(request, { get: (target, key) => key === "json" ? json : Reflect.get(target, key, target) })
}

/**
 * The body as text, refused past `maxBytes` with a 413 while what is left keeps being read and
 * discarded: the platform's own reader destroys the socket there, and the client, still sending,
 * would see a reset instead of the answer.
 */
const readBoundedText = (message: IncomingMessage, maxBytes: number) =>
  Effect.async<string>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBytes) return void chunks.push(chunk)
      message.off("data", onData).on("data", () => {})
      chunks.length = 0
      resume(Effect.die(new PayloadTooLarge({ detail: `The body is over the limit of ${maxBytes} bytes` })))
    }
    const onEnd = () => resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    const onError = () => resume(Effect.die(new ValidationError({ detail: "The body could not be read", errors: [] })))
    message.on("data", onData).once("end", onEnd).once("error", onError)
    return Effect.sync(() => {
      message.off("end", onEnd).off("error", onError)
      message.resume()
    })
  })

// label values are bounded: Node's parser knows some 30 methods, routes are the Api's templates, statuses are few
const requestCount = labelled(httpRequestsTotalKey)
const requestDuration = labelled(httpRequestDurationSecondsKey)

/**
 * The outermost middleware: request id, standard and CORS headers, input checks (headers, URL
 * text; the JSON body's shape when a route reads it), the request's log annotations, one JSON log line and the HTTP metrics per request.
 * Bodies are bounded by DEFAULT_BODY_LIMITS but on the `largeBodies` routes.
 */
export const requestPipeline = (config: AppConfigShape, largeBodies: ReadonlyArray<LargeBodyRoute> = []) => {
  const limitsOf = bodyLimitsFor(largeBodies)
  return (app: HttpApp.Default): HttpApp.Default => serveOne(config, limitsOf, app)
}

const serveOne = (
  config: AppConfigShape,
  limitsOf: (method: string, url: string) => BodyLimits,
  app: HttpApp.Default
): HttpApp.Default =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const requestId = requestIdFrom(request.headers["x-request-id"])
    const origin = request.headers["origin"]
    const bodyLimits = limitsOf(request.method, request.url)
    const info: Context.Tag.Service<RequestInfo> = {
      requestId,
      ip: clientIp(request, config.trustProxyHops),
      userAgent: request.headers["user-agent"]?.slice(0, 512),
      userId: undefined,
      responseHeaders: {},
      bodyLimits
    }
    const span = yield* Effect.option(Effect.currentSpan)
    const traceId = Option.match(span, { onNone: () => undefined, onSome: (s) => s.traceId })
    Option.map(span, (s) => s.attribute("request_id", requestId))
    const startedAt = yield* Clock.currentTimeNanos

    // the app's responses are sent before this middleware sees them, so they get the headers from a
    // pre-response handler; the answers this middleware gives itself get them directly
    const finish = (response: HttpServerResponse.HttpServerResponse) =>
      withStandardHeaders(response, { ...info.responseHeaders, ...standardHeaders(config, requestId, origin) })
    yield* HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(finish(response)))

    const serve = Effect.gen(function*() {
      if (isPreflight(request)) return finish(preflightResponse(config, origin))
      const problem = checkBodyHeaders(request, bodyLimits) ?? checkUrlText(request.url)
      if (problem !== undefined) return finish(yield* problemResponse(problem, requestId))
      return yield* app.pipe(
        Effect.provideService(RequestInfo, info),
        Effect.provideService(HttpServerRequest.HttpServerRequest, withCheckedJson(request, bodyLimits))
      )
    }).pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, Option.some(FileSystem.Size(bodyLimits.maxBytes))),
      Effect.annotateLogs({ request_id: requestId, ...(traceId === undefined ? {} : { trace_id: traceId }) })
    )
    const response = yield* serve

    // Read and discard an unread body so the client receives the answer instead of a reset.
    if (response.status === 413) NodeHttpServerRequest.toIncomingMessage(request).resume()

    const route = Option.match(span, {
      onNone: () => "unmatched",
      onSome: (s) => String(s.attributes.get("http.route") ?? "unmatched")
    })
    const durationSeconds = Number((yield* Clock.currentTimeNanos) - startedAt) / 1e9
    yield* Metric.increment(requestCount({ method: request.method, route, status: String(response.status) }))
    yield* Metric.update(requestDuration({ method: request.method, route }), durationSeconds)
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

const issuePath = (path: ReadonlyArray<PropertyKey>) =>
  path.map((key) => typeof key === "number" ? String(key) : pathKey(String(key))).join(".") || "body"

/** PostgreSQL class 22 (data exception): a value it cannot store or compare, i.e. bad input that got past the schemas. */
const isDataException = (error: SqlError) => {
  const code = (error.cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" && code.startsWith("22")
}

/** pg's errors for a connection that broke under a statement (a terminated backend): they carry no code. */
const BROKEN_CONNECTION = /^Connection terminated|is not queryable/

/** Connection-level failures mean the database is unavailable (503); anything else is a bug (500). */
const isUnavailableDatabase = (error: SqlError) => {
  // @effect/sql-pg's wording for a connection lost mid-statement or not obtained from the pool
  if (error.message === "Connection error" || error.message === "Failed to acquire connection") return true
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined
  if (typeof cause?.message === "string" && BROKEN_CONNECTION.test(cause.message)) return true
  const code = cause?.code
  return typeof code === "string" &&
    (/^(08|57P0)/.test(code) || ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE"].includes(code))
}

const BODY_LIMIT_HINT = /max|limit|too large|exceed/i

/** Every failure of a request, mapped to the problem it is for the caller. */
const classify = (
  error: unknown,
  request: HttpServerRequest.HttpServerRequest,
  maxBodyBytes: number
): ProblemError | undefined => {
  if (problemKindOf(error) !== undefined) return error as ProblemError
  if (error instanceof HttpApiError.HttpApiDecodeError) {
    return new ValidationError({
      detail: "The request does not match the expected schema",
      errors: error.issues.map((issue) => ({ path: issuePath(issue.path), message: withoutActualValue(issue.message) }))
    })
  }
  if (HttpServerError.isServerError(error)) {
    if (error._tag === "RouteNotFound") {
      return new NotFound({ detail: `No route matches ${request.method} ${request.url.split("?")[0]?.slice(0, 200)}` })
    }
    if (error._tag === "RequestError" && error.reason === "Decode") {
      const text = `${error.description ?? ""} ${String((error.cause as Error | undefined)?.message ?? "")}`
      return BODY_LIMIT_HINT.test(text)
        ? new PayloadTooLarge({ detail: `The body is over the limit of ${maxBodyBytes} bytes` })
        : new ValidationError({
          detail: "The body is not valid JSON",
          errors: [{ path: "body", message: "malformed JSON" }]
        })
    }
  }
  if (error instanceof SqlError && isUnavailableDatabase(error)) {
    return new ServiceUnavailable({ detail: "The database is unavailable; retry shortly" })
  }
  if (error instanceof SqlError && isDataException(error)) {
    return new ValidationError({
      detail: "A value in the request cannot be stored or compared (out of range or not valid text)"
    })
  }
  return undefined
}

/**
 * Api-level middleware: every failure and defect becomes a problem+json response (but the errors
 * an endpoint declares with their own schema, like NotReady, which HttpApiBuilder encodes). Unexpected
 * ones are logged once, with their cause, and answered with a body that leaks nothing.
 */
export const ProblemResponsesLive = HttpApiBuilder.middleware((app) =>
  Effect.catchAllCause(app, (cause) =>
    Effect.gen(function*() {
      if (Cause.isInterruptedOnly(cause)) return yield* Effect.failCause(cause)
      const request = yield* HttpServerRequest.HttpServerRequest
      const info = yield* Effect.serviceOption(RequestInfo)
      const requestId = Option.match(info, {
        onNone: () => requestIdFrom(request.headers["x-request-id"]),
        onSome: (info) => info.requestId
      })
      const error = Cause.squash(cause)
      const maxBodyBytes = Option.match(info, {
        onNone: () => DEFAULT_BODY_LIMITS.maxBytes,
        onSome: (info) => info.bodyLimits.maxBytes
      })
      const problem = classify(error, request, maxBodyBytes)
      if (problem !== undefined) return yield* problemResponse(problem, requestId)
      // any other typed failure is an error the endpoint declares (NotReady): its own schema encodes it
      if (Cause.isFailType(cause)) return yield* Effect.failCause(cause)
      yield* Effect.logError("unhandled error while serving a request", cause)
      return yield* problemResponse(
        new InternalError({ detail: `An unexpected error occurred; quote request id ${requestId} when reporting it` }),
        requestId
      )
    }))
)
