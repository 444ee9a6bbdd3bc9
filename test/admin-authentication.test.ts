import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { TestApp } from "./support/app.js"
import { raw, session } from "./support/session.js"

/*
 * AdminAuthentication is a security middleware: HttpApiBuilder runs it before the path, query,
 * headers and body are decoded, so a non-admin is refused with 403 whatever they send, and only an
 * administrator learns whether the request was valid (400).
 */

const API_LIMIT = 1_000

type Method = "GET" | "POST" | "PATCH" | "DELETE"

/** Admin requests that are invalid in their body, path or query. */
const invalidAdminRequests: ReadonlyArray<readonly [Method, string, unknown]> = [
  ["POST", "/api/v1/admin/users", {}],
  ["POST", "/api/v1/admin/users", { email: "not-an-email", password: "correct horse battery staple" }],
  ["PATCH", "/api/v1/admin/users/not-a-number", { display_name: "x" }],
  ["POST", "/api/v1/admin/models", { name: 42 }],
  ["PATCH", "/api/v1/admin/models/1", { unknown_field: true }],
  ["PATCH", "/api/v1/admin/app-settings", { default_model: 5 }],
  ["PATCH", "/api/v1/admin/appearance-settings", { accent_color: "red" }],
  ["GET", "/api/v1/admin/audit-logs?since=yesterday", undefined],
  ["POST", "/api/v1/workflows/default", { workflow_id: "one" }],
  ["POST", "/api/v1/workflows/import", {}]
]

interface Operation {
  readonly responses: Record<string, unknown>
  readonly security?: ReadonlyArray<Record<string, ReadonlyArray<string>>>
}
interface Spec {
  readonly paths: Record<string, Record<string, Operation>>
  readonly components: { readonly securitySchemes: Record<string, { scheme?: string; description?: string }> }
}

const openApi = Effect.flatMap(
  HttpClient.HttpClient,
  (client) => Effect.flatMap(client.execute(HttpClientRequest.get("/openapi.json")), (r) => r.json)
) as Effect.Effect<Spec, unknown, HttpClient.HttpClient>

/** The status of GET /metrics (its body is text, not the JSON `raw` expects). */
const metricsStatus = (token?: string) =>
  Effect.flatMap(HttpClient.HttpClient, (client) => {
    const request = HttpClientRequest.get("/metrics")
    return client.execute(token === undefined ? request : HttpClientRequest.bearerToken(request, token))
  }).pipe(Effect.map((response) => response.status))

layer(
  TestApp("admin-auth", {
    TRUST_PROXY: "1",
    METRICS_TOKEN: "metrics-token-for-tests",
    RATE_LIMIT_API_PER_MINUTE: String(API_LIMIT)
  }),
  { timeout: 120_000 }
)(
  "AdminAuthentication",
  (it) => {
    describe("runs before the request is decoded", () => {
      it.effect("a non-admin gets 403 for an invalid body, path or query, an admin 400, no token 401", () =>
        Effect.gen(function*() {
          const { token: userToken } = yield* session("plain")
          const { token: adminToken } = yield* session("admin", { isAdmin: true })
          for (const [method, path, body] of invalidAdminRequests) {
            const what = `${method} ${path} ${JSON.stringify(body)}`
            const asUser = yield* raw(method, path, { token: userToken, body })
            expect(asUser.status, what).toBe(403)
            expect(asUser.body, what).toMatchObject({
              error: "forbidden",
              status: 403,
              detail: "This endpoint is for administrators"
            })
            expect(asUser.body.errors, what).toBeUndefined()
            const asAdmin = yield* raw(method, path, { token: adminToken, body })
            expect(asAdmin.status, what).toBe(400)
            expect(asAdmin.body, what).toMatchObject({ error: "validation_error" })
            const anonymous = yield* raw(method, path, { body })
            expect(anonymous.status, what).toBe(401)
            expect(anonymous.headers["www-authenticate"], what).toBe("Bearer")
          }
        }))

      it.effect("a non-admin's refused request still counts against their API limit, once", () =>
        Effect.gen(function*() {
          const { token } = yield* session("counted")
          const first = yield* raw("POST", "/api/v1/admin/users", { token, body: {} })
          expect(first.status).toBe(403)
          expect(first.headers["ratelimit-remaining"]).toBe(String(API_LIMIT - 1))
          const second = yield* raw("GET", "/api/v1/models", { token })
          expect(second.status).toBe(200)
          expect(second.headers["ratelimit-remaining"]).toBe(String(API_LIMIT - 2))
        }))

      it.effect("an admin request is counted once, also on the admin endpoints of the workflows group", () =>
        Effect.gen(function*() {
          const { token } = yield* session("counted-admin", { isAdmin: true })
          const paths = ["/api/v1/workflows/import", "/api/v1/workflows/default", "/api/v1/admin/models"]
          for (const [i, path] of paths.entries()) {
            const response = yield* raw("POST", path, { token, body: {} })
            expect(response.status, path).toBe(400)
            expect(response.headers["ratelimit-remaining"], path).toBe(String(API_LIMIT - 1 - i))
          }
          const list = yield* raw("GET", "/api/v1/workflows", { token })
          expect(list.status).toBe(200)
          expect(list.headers["ratelimit-remaining"]).toBe(String(API_LIMIT - 1 - paths.length))
        }))
    })

    it.effect("the OpenAPI document shows 401, 403 and 429 and the bearer scheme on every admin operation", () =>
      Effect.gen(function*() {
        const spec = yield* openApi
        const admin = Object.entries(spec.paths).flatMap(([path, operations]) =>
          Object.entries(operations)
            .filter(([method]) =>
              path.startsWith("/api/v1/admin/") ||
              (method === "post" && ["/api/v1/workflows/default", "/api/v1/workflows/import"].includes(path))
            )
            .map(([method, operation]) => [`${method} ${path}`, operation] as const)
        )
        expect(admin.length).toBe(6 + 4 + 4 + 1 + 2 + 2) // users, models, settings, audit, workflows, threads
        for (const [name, operation] of admin) {
          expect(Object.keys(operation.responses), name).toEqual(expect.arrayContaining(["400", "401", "403", "429"]))
          expect(operation.security, name).toEqual([{ bearer: [] }])
        }

        // any signed-in user: no 403 from the middleware
        const models = spec.paths["/api/v1/models"]?.get
        expect(Object.keys(models?.responses ?? {})).toEqual(expect.arrayContaining(["401", "429"]))
        expect(Object.keys(models?.responses ?? {})).not.toContain("403")
        expect(models?.security).toEqual([{ bearer: [] }])
        // public
        const appearance = spec.paths["/api/v1/appearance-settings"]?.get
        expect(Object.keys(appearance?.responses ?? {})).not.toContain("401")
        expect(Object.keys(appearance?.responses ?? {})).not.toContain("403")
        expect(appearance?.security).toEqual([])

        // /metrics: its own token, not the access token
        const metrics = spec.paths["/metrics"]?.get
        expect(Object.keys(metrics?.responses ?? {})).toEqual(expect.arrayContaining(["200", "401"]))
        expect(metrics?.security).toEqual([{ metricsToken: [] }])
        expect(spec.components.securitySchemes.bearer).toMatchObject({
          scheme: "bearer",
          description: expect.stringContaining("POST /api/v1/auth/login")
        })
        expect(spec.components.securitySchemes.metricsToken).toMatchObject({
          scheme: "bearer",
          description: expect.stringContaining("METRICS_TOKEN")
        })
      }))

    it.effect("GET /metrics: 401 with an access token or a wrong token, 200 with METRICS_TOKEN", () =>
      Effect.gen(function*() {
        const { token } = yield* session("scraper", { isAdmin: true })
        expect(yield* metricsStatus()).toBe(401)
        expect(yield* metricsStatus(token)).toBe(401)
        expect(yield* metricsStatus("metrics-token-for-test")).toBe(401)
        expect(yield* metricsStatus("metrics-token-for-tests!")).toBe(401)
        expect(yield* metricsStatus("metrics-token-for-tests")).toBe(200)
      }))
  }
)

layer(TestApp("metrics-open"), { timeout: 120_000 })("MetricsAuthentication without METRICS_TOKEN", (it) => {
  it.effect("anyone may scrape, with or without a bearer", () =>
    Effect.gen(function*() {
      expect(yield* metricsStatus()).toBe(200)
      expect(yield* metricsStatus("anything")).toBe(200)
    }))
})
