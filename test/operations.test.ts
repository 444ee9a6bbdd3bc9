import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Option } from "effect"

import { Unauthorized } from "../src/domain/errors.js"
import { chatkitClient, TestApp, testRedisUrl } from "./support/app.js"

const get = (path: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(
    HttpClient.HttpClient,
    (client) => client.execute(HttpClientRequest.get(path).pipe(HttpClientRequest.setHeaders(headers)))
  )

layer(TestApp("operations", { METRICS_TOKEN: "metrics-token-for-tests" }))("operational endpoints", (it) => {
  it.effect("GET /health answers ok through the derived client", () =>
    Effect.gen(function*() {
      const client = yield* chatkitClient
      expect(yield* client.operations.health()).toEqual({ status: "ok" })
    }))

  it.effect("GET /health/ready checks the database (and Redis when configured) with their latency", () =>
    Effect.gen(function*() {
      const client = yield* chatkitClient
      const ready = yield* client.operations.ready()
      expect(ready.status).toBe("ok")
      expect(ready.checks.database?.status).toBe("ok")
      expect(ready.checks.database?.latency_ms).toBeGreaterThanOrEqual(0)
      if (Option.isSome(testRedisUrl)) expect(ready.checks.redis?.status).toBe("ok")
      else expect(ready.checks.redis).toBeUndefined()
    }))

  describe("GET /metrics", () => {
    it.effect("requires the METRICS_TOKEN when one is configured", () =>
      Effect.gen(function*() {
        const client = yield* chatkitClient
        const error = yield* Effect.flip(client.operations.metrics())
        expect(error).toBeInstanceOf(Unauthorized)
        const wrong = yield* get("/metrics", { authorization: "Bearer wrong" })
        expect(wrong.status).toBe(401)
        expect(wrong.headers["www-authenticate"]).toBe("Bearer")
      }))

    it.effect("serves Prometheus text with request counts by route template, latency histogram and db queries", () =>
      Effect.gen(function*() {
        yield* get("/health")
        yield* get("/health/ready")
        yield* get("/no/such/page/123")
        const response = yield* get("/metrics", { authorization: "Bearer metrics-token-for-tests" })
        expect(response.status).toBe(200)
        expect(response.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8")
        const text = yield* response.text
        expect(text).toMatch(/^http_requests_total\{method="GET",route="\/health",status="200"\} \d+$/m)
        expect(text).toMatch(
          /^http_request_duration_seconds_bucket\{method="GET",route="\/health\/ready",le="\+Inf"\} \d+$/m
        )
        expect(text).toMatch(/^http_requests_total\{method="GET",route="unmatched",status="404"\} \d+$/m)
        expect(text).not.toContain("/no/such/page/123")
        expect(text).toMatch(/^db_queries_total \d+$/m)
        expect(text).toMatch(/^process_resident_memory_bytes \d+/m)
      }))
  })

  it.effect("serves the OpenAPI 3.1 document, Swagger UI at /docs and a second reader at /redoc", () =>
    Effect.gen(function*() {
      const spec = (yield* (yield* get("/openapi.json")).json) as {
        openapi: string
        paths: Record<string, Record<string, { responses: Record<string, unknown> }>>
      }
      expect(spec.openapi).toBe("3.1.0")
      expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(["/health", "/health/ready", "/metrics"]))
      expect(Object.keys(spec.paths["/health/ready"]?.get?.responses ?? {})).toEqual(
        expect.arrayContaining(["200", "503"])
      )
      const undocumented = Object.entries(spec.paths).flatMap(([path, operations]) =>
        Object.entries(operations as Record<string, { summary?: string; description?: string }>)
          .filter(([, operation]) => !operation.summary || !operation.description)
          .map(([method]) => `${method} ${path}`)
      )
      expect(undocumented).toEqual([])
      for (const page of ["/docs", "/redoc"]) {
        const response = yield* get(page)
        expect(response.status).toBe(200)
        expect(response.headers["content-type"]).toContain("text/html")
      }
    }))
})

layer(TestApp("operations_redis_down", { REDIS_URL: "redis://127.0.0.1:1" }))("with Redis down while serving", (it) => {
  it.effect("/health stays 200 while /health/ready answers 503 degraded naming redis", () =>
    Effect.gen(function*() {
      expect((yield* get("/health")).status).toBe(200)
      const response = yield* get("/health/ready")
      expect(response.status).toBe(503)
      const body = (yield* response.json) as { status: string; checks: Record<string, { status: string }> }
      expect(body.status).toBe("degraded")
      expect(body.checks.database?.status).toBe("ok")
      expect(body.checks.redis?.status).toBe("error")
      const client = yield* chatkitClient
      expect(yield* Effect.flip(client.operations.ready())).toMatchObject({ status: "degraded" })
    }))
})
