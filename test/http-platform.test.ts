import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Logger, Schema, Stream } from "effect"

import { Payload } from "../src/api/schemas.js"
import { ValidationErrorProblem } from "../src/domain/errors.js"
import { AppConfig, testConfig } from "../src/platform/Config.js"
import { MAX_JSON_BODY_BYTES, ProblemResponsesLive, requestIdFrom, requestPipeline } from "../src/platform/Http.js"

/** A tiny Api used only to exercise the platform middleware (body decoding, defects, routing). */
class EchoGroup extends HttpApiGroup.make("echo")
  .add(
    HttpApiEndpoint.post("echo", "/echo/:id")
      .setPath(Schema.Struct({ id: Schema.NumberFromString }))
      .setPayload(Payload({ name: Schema.String, count: Schema.Int.pipe(Schema.between(1, 10)) }))
      .addSuccess(Schema.Struct({ id: Schema.Number, name: Schema.String, count: Schema.Int }))
  )
  .add(HttpApiEndpoint.get("boom", "/boom").addSuccess(Schema.String))
  .add(HttpApiEndpoint.get("unstorable", "/unstorable").addSuccess(Schema.String))
{}
class EchoApi extends HttpApi.make("echo-test").add(EchoGroup).addError(ValidationErrorProblem) {}

let echoCalls = 0
const EchoLive = HttpApiBuilder.group(EchoApi, "echo", (handlers) =>
  handlers
    .handle("echo", ({ path, payload }) => Effect.sync(() => (echoCalls++, { id: path.id, ...payload })))
    .handle("boom", () => Effect.die(new Error("secret internal detail at /srv/app.ts:42")))
    // what PostgreSQL answers to a value it cannot store (22021: character_not_in_repertoire)
    .handle(
      "unstorable",
      () => Effect.die(new SqlError({ cause: { code: "22021" }, message: "invalid byte sequence" }))
    ))

const logLines: Array<{ message: unknown; annotations: Record<string, unknown>; cause: string }> = []
const CapturingLogger = Logger.replace(
  Logger.defaultLogger,
  Logger.make(({ annotations, cause, message }) => {
    logLines.push({ message, annotations: Object.fromEntries(annotations), cause: String(cause) })
  })
)

const serveEcho = (config: Record<string, string> = {}) =>
  Layer.unwrapEffect(Effect.map(AppConfig, (c) => HttpApiBuilder.serve(requestPipeline(c)))).pipe(
    Layer.provide(ProblemResponsesLive),
    Layer.provide(HttpApiBuilder.api(EchoApi).pipe(Layer.provide(EchoLive))),
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provide(testConfig({ ALLOWED_ORIGINS: "https://app.example.com", ...config })),
    Layer.provide(CapturingLogger)
  )

const send = (request: HttpClientRequest.HttpClientRequest) =>
  Effect.flatMap(HttpClient.HttpClient, (client) => client.execute(request))

const postJson = (path: string, body: string, contentType = "application/json") =>
  send(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyText(body, contentType)))

const expectProblem = (body: unknown, status: number, error: string) => {
  expect(body).toMatchObject({ type: `urn:chatkit:error:${error}`, status, error })
  const problem = body as Record<string, unknown>
  expect(typeof problem.title).toBe("string")
  expect(typeof problem.detail).toBe("string")
  expect(String(problem.request_id)).not.toBe("")
  expect(new Date(String(problem.timestamp)).toISOString()).toBe(problem.timestamp)
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe("requestIdFrom", () => {
  it("accepts 1-128 characters of [A-Za-z0-9._:-] and replaces anything else", () => {
    expect(requestIdFrom("a".repeat(128))).toBe("a".repeat(128))
    for (const bad of ["a".repeat(129), "evil\u0001id", "line\nbreak", "tab\tid", "ünïcode", ""]) {
      expect(requestIdFrom(bad)).toMatch(UUID_V7)
    }
    expect(requestIdFrom(undefined)).toMatch(UUID_V7)
  })
})

layer(serveEcho())("HTTP platform middleware", (it) => {
  describe("X-Request-ID", () => {
    it.effect("echoes a safe caller value on the response and in the error body", () =>
      Effect.gen(function*() {
        const response = yield* send(
          HttpClientRequest.get("/nowhere").pipe(HttpClientRequest.setHeader("x-request-id", "abc.DEF_1:2-3"))
        )
        expect(response.headers["x-request-id"]).toBe("abc.DEF_1:2-3")
        expect((yield* response.json as Effect.Effect<{ request_id: string }>).request_id).toBe("abc.DEF_1:2-3")
      }))

    it.effect("replaces a value that is too long or has unsafe characters with a UUIDv7", () =>
      Effect.gen(function*() {
        for (const bad of ["x".repeat(129), "bad id", "a/b", "<script>", ""]) {
          const response = yield* send(
            HttpClientRequest.get("/boom").pipe(HttpClientRequest.setHeader("x-request-id", bad))
          )
          expect(response.headers["x-request-id"]).toMatch(UUID_V7)
        }
      }))

    it.effect("generates one when absent, on successes too", () =>
      Effect.gen(function*() {
        const response = yield* postJson("/echo/1", JSON.stringify({ name: "a", count: 2 }))
        expect(response.status).toBe(200)
        expect(response.headers["x-request-id"]).toMatch(UUID_V7)
      }))
  })

  it.effect("sets API-Version and the security headers on successes and errors, without HSTS outside production", () =>
    Effect.gen(function*() {
      for (
        const response of [
          yield* postJson("/echo/1", JSON.stringify({ name: "a", count: 2 })),
          yield* send(HttpClientRequest.get("/x"))
        ]
      ) {
        expect(response.headers["api-version"]).toBe("1")
        expect(response.headers["x-content-type-options"]).toBe("nosniff")
        expect(response.headers["x-frame-options"]).toBe("DENY")
        expect(response.headers["referrer-policy"]).toBe("no-referrer")
        expect(response.headers["strict-transport-security"]).toBeUndefined()
      }
    }))

  describe("bodies", () => {
    it.effect("accepts application/json with a charset", () =>
      Effect.gen(function*() {
        const response = yield* postJson(
          "/echo/7",
          JSON.stringify({ name: "b", count: 3 }),
          "application/json; charset=utf-8"
        )
        expect(yield* response.json).toEqual({ id: 7, name: "b", count: 3 })
      }))

    it.effect("answers 415 to a body that is not JSON", () =>
      Effect.gen(function*() {
        for (const contentType of ["text/plain", "application/x-www-form-urlencoded", "application/jsonp"]) {
          const response = yield* postJson("/echo/1", "name=a", contentType)
          expect(response.status).toBe(415)
          expect(response.headers["content-type"]).toContain("application/problem+json")
          expectProblem(yield* response.json, 415, "unsupported_media_type")
        }
      }))

    it.effect(
      "answers 415 to an empty body declared as anything but JSON (found by the OpenAPI fuzz: empty multipart hung, or was a 500)",
      () =>
        Effect.gen(function*() {
          for (const contentType of ["multipart/form-data; boundary=zz", "multipart/form-data", "text/plain"]) {
            const response = yield* postJson("/echo/1", "", contentType)
            expect(response.status, contentType).toBe(415)
            expectProblem(yield* response.json, 415, "unsupported_media_type")
          }
        }),
      10_000
    )

    it.effect("answers 413 to a declared body over 1 MiB without reading it", () =>
      Effect.gen(function*() {
        const response = yield* postJson("/echo/1", JSON.stringify({ name: "x".repeat(MAX_JSON_BODY_BYTES), count: 1 }))
        expect(response.status).toBe(413)
        expectProblem(yield* response.json, 413, "payload_too_large")
      }))

    it.effect("answers 413 to a chunked body once it passes 1 MiB, and the handler never runs", () =>
      Effect.gen(function*() {
        const before = echoCalls
        // a stream has no Content-Length, so the limit is enforced while reading
        const result = yield* Effect.either(
          send(
            HttpClientRequest.post("/echo/1").pipe(
              HttpClientRequest.bodyStream(
                streamOf(JSON.stringify({ name: "x".repeat(2 * MAX_JSON_BODY_BYTES), count: 1 })),
                {
                  contentType: "application/json"
                }
              )
            )
          )
        )
        // answered, not reset: the rest of the body is read and discarded
        expect(result._tag === "Right" && result.right.status).toBe(413)
        expect(echoCalls).toBe(before)
      }))

    it.effect("answers 400 validation_error to malformed JSON", () =>
      Effect.gen(function*() {
        const response = yield* postJson("/echo/1", "{\"name\": \"a\",")
        expect(response.status).toBe(400)
        expectProblem(yield* response.json, 400, "validation_error")
      }))

    it.effect("lists every field that fails its schema", () =>
      Effect.gen(function*() {
        const response = yield* postJson("/echo/1", JSON.stringify({ name: 3, count: 99 }))
        expect(response.status).toBe(400)
        const body = (yield* response.json) as { errors: Array<{ path: string; message: string }> }
        expectProblem(body, 400, "validation_error")
        expect(body.errors.map((e) => e.path).sort()).toEqual(["count", "name"])
      }))

    it.effect("rejects unknown fields", () =>
      Effect.gen(function*() {
        const response = yield* postJson("/echo/1", JSON.stringify({ name: "a", count: 1, is_admin: true }))
        expect(response.status).toBe(400)
        const body = (yield* response.json) as { errors: Array<{ path: string }> }
        expect(body.errors.map((e) => e.path)).toEqual(["is_admin"])
      }))

    it.effect("rejects a bad path parameter with 400", () =>
      Effect.gen(function*() {
        const response = yield* postJson("/echo/abc", JSON.stringify({ name: "a", count: 1 }))
        expect(response.status).toBe(400)
        expectProblem(yield* response.json, 400, "validation_error")
      }))
  })

  it.effect("answers an unknown route with a 404 problem body", () =>
    Effect.gen(function*() {
      const response = yield* send(HttpClientRequest.get("/no/such/route"))
      expect(response.status).toBe(404)
      expect(response.headers["x-request-id"]).toMatch(UUID_V7)
      expectProblem(yield* response.json, 404, "not_found")
    }))

  it.effect("turns a defect into a 500 that leaks nothing, logged once with its cause and request id", () =>
    Effect.gen(function*() {
      logLines.length = 0
      const response = yield* send(
        HttpClientRequest.get("/boom").pipe(HttpClientRequest.setHeader("x-request-id", "req-boom-1"))
      )
      expect(response.status).toBe(500)
      const body = yield* response.json
      expectProblem(body, 500, "internal_error")
      expect(JSON.stringify(body)).not.toContain("secret internal detail")
      expect(JSON.stringify(body)).not.toContain("app.ts")
      const withCause = logLines.filter((line) => line.cause.includes("secret internal detail"))
      expect(withCause).toHaveLength(1)
      expect(withCause[0]?.annotations.request_id).toBe("req-boom-1")
    }))

  it.effect("logs one line per request with method, route template, status, duration and request id", () =>
    Effect.gen(function*() {
      logLines.length = 0
      yield* postJson("/echo/5", JSON.stringify({ name: "a", count: 2 })).pipe(
        Effect.map((r) => r.status)
      )
      const requestLines = logLines.filter((line) => String(line.message).includes("http request"))
      expect(requestLines).toHaveLength(1)
      expect(requestLines[0]?.annotations).toMatchObject({ method: "POST", route: "/echo/:id", status: 200 })
      expect(typeof requestLines[0]?.annotations.duration_ms).toBe("number")
      expect(String(requestLines[0]?.annotations.request_id)).toMatch(UUID_V7)
    }))

  it.effect("answers a data exception from the database (a value it cannot store) with a 400, not a 500", () =>
    Effect.gen(function*() {
      const response = yield* send(HttpClientRequest.get("/unstorable"))
      expect(response.status).toBe(400)
      expectProblem(yield* response.json, 400, "validation_error")
    }))

  it.effect("puts the standard headers on the answers the platform gives itself: 413, 415 and preflights", () =>
    Effect.gen(function*() {
      const tooLarge = yield* postJson("/echo/1", JSON.stringify({ name: "x".repeat(MAX_JSON_BODY_BYTES), count: 1 }))
      const notJson = yield* postJson("/echo/1", "name=a", "text/plain")
      const preflight = yield* send(
        HttpClientRequest.make("OPTIONS")("/echo/1").pipe(
          HttpClientRequest.setHeaders({
            origin: "https://app.example.com",
            "access-control-request-method": "POST",
            "x-request-id": "pre-1"
          })
        )
      )
      expect([tooLarge.status, notJson.status, preflight.status]).toEqual([413, 415, 204])
      for (const response of [tooLarge, notJson, preflight]) {
        expect(response.headers["x-request-id"]).toBeDefined()
        expect(response.headers["api-version"]).toBe("1")
        expect(response.headers["x-content-type-options"]).toBe("nosniff")
        expect(response.headers["x-frame-options"]).toBe("DENY")
        expect(response.headers["referrer-policy"]).toBe("no-referrer")
        expect(response.headers["cache-control"]).toBe("no-store")
      }
      expect(preflight.headers["x-request-id"]).toBe("pre-1")
    }))

  describe("CORS", () => {
    it.effect("allows a listed origin with credentials and exposes the request id", () =>
      Effect.gen(function*() {
        const response = yield* send(
          HttpClientRequest.get("/x").pipe(HttpClientRequest.setHeader("origin", "https://app.example.com"))
        )
        expect(response.headers["access-control-allow-origin"]).toBe("https://app.example.com")
        expect(response.headers["access-control-allow-credentials"]).toBe("true")
        expect(response.headers["access-control-expose-headers"]).toContain("X-Request-ID")
        expect(response.headers["access-control-expose-headers"]).toContain("Retry-After")
      }))

    it.effect("gives an unlisted origin no CORS headers at all", () =>
      Effect.gen(function*() {
        const response = yield* send(
          HttpClientRequest.get("/x").pipe(HttpClientRequest.setHeader("origin", "https://evil.example.com"))
        )
        expect(response.headers["access-control-allow-origin"]).toBeUndefined()
        expect(response.headers["access-control-allow-credentials"]).toBeUndefined()
      }))

    it.effect("answers a preflight from a listed origin with the allowed methods and headers", () =>
      Effect.gen(function*() {
        const preflight = (origin: string) =>
          send(
            HttpClientRequest.make("OPTIONS")("/echo/1").pipe(
              HttpClientRequest.setHeaders({ origin, "access-control-request-method": "POST" })
            )
          )
        const allowed = yield* preflight("https://app.example.com")
        expect(allowed.status).toBe(204)
        expect(allowed.headers["access-control-allow-origin"]).toBe("https://app.example.com")
        expect(allowed.headers["access-control-allow-credentials"]).toBe("true")
        expect(allowed.headers["access-control-allow-methods"]).toContain("PATCH")
        for (
          const header of [
            "authorization",
            "content-type",
            "accept-language",
            "chatkit-frame-instance-id",
            "idempotency-key"
          ]
        ) {
          expect(allowed.headers["access-control-allow-headers"]?.toLowerCase()).toContain(header)
        }
        const refused = yield* preflight("https://evil.example.com")
        expect(refused.headers["access-control-allow-origin"]).toBeUndefined()
        expect(refused.headers["access-control-allow-methods"]).toBeUndefined()
      }))
  })
})

layer(
  serveEcho({
    NODE_ENV: "production",
    DATABASE_URL: "postgres://u:p@db.internal/x",
    REDIS_URL: "redis://cache.internal:6379",
    AUTH_SECRET_KEY: "0123456789abcdef0123456789abcdef0123"
  })
)("HTTP platform middleware in production", (it) => {
  it.effect("adds Strict-Transport-Security", () =>
    Effect.gen(function*() {
      const response = yield* send(HttpClientRequest.get("/x"))
      expect(response.headers["strict-transport-security"]).toContain("max-age=")
    }))
})

function streamOf(text: string) {
  const bytes = new TextEncoder().encode(text)
  const chunk = 64 * 1024
  return Stream.fromIterable(
    Array.from({ length: Math.ceil(bytes.length / chunk) }, (_, i) => bytes.subarray(i * chunk, (i + 1) * chunk))
  )
}
