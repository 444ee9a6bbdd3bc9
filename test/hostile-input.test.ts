import { HttpClient, HttpClientRequest } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { MAX_LISTED_ISSUES } from "../src/domain/errors.js"
import { MAX_JSON_DEPTH, MAX_OBJECT_KEYS } from "../src/platform/RequestInput.js"
import { TestApp } from "./support/app.js"
import { PASSWORD, randomIp, session } from "./support/session.js"

/*
 * Input an attacker sends on purpose (issue 8): each gets a bounded 4xx with the problem body,
 * never a 500, never a stall, never an echo of what was sent. Every request goes over a real socket.
 */

interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly text: string
  readonly body: Record<string, unknown>
}

/** Sends `text` as is (JSON.stringify could not even build some of these bodies). */
const sendText = (
  method: "GET" | "POST" | "PATCH",
  path: string,
  options: { readonly text?: string; readonly token?: string; readonly ip?: string } = {}
) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    let request = HttpClientRequest.make(method)(path).pipe(
      HttpClientRequest.setHeader("x-forwarded-for", options.ip ?? randomIp())
    )
    if (options.token !== undefined) request = HttpClientRequest.bearerToken(request, options.token)
    if (options.text !== undefined) request = HttpClientRequest.bodyText(request, options.text, "application/json")
    const response = yield* client.execute(request)
    const text = yield* response.text
    return {
      status: response.status,
      headers: response.headers,
      text,
      body: text === "" ? {} : JSON.parse(text)
    } satisfies Answer
  })

const expectValidationProblem = (answer: Answer) => {
  expect(answer.status).toBe(400)
  expect(answer.headers["content-type"]).toContain("application/problem+json")
  expect(answer.body).toMatchObject({ error: "validation_error", status: 400 })
  expect(String(answer.body.request_id)).not.toBe("")
}

const unknownKeys = (count: number, base: Record<string, unknown>) => {
  const body: Record<string, unknown> = { ...base }
  for (let i = 0; i < count; i++) body[i.toString(36)] = 0
  return JSON.stringify(body)
}

const nested = (depth: number, leaf = "1") => "[".repeat(depth) + leaf + "]".repeat(depth)

const SECRET = "TopSecret-123456"

const adminSession = (name: string) => session(name, { isAdmin: true })

layer(TestApp("hostile", { TRUST_PROXY: "1" }))("hostile input", (it) => {
  describe("validation errors are bounded and counted", () => {
    it.effect("a login body with 100,000 unknown keys gets a small 400", () =>
      Effect.gen(function*() {
        const text = unknownKeys(100_000, { email: "a@example.com", password: "x" })
        expect(text.length).toBeGreaterThan(800_000)
        const answer = yield* sendText("POST", "/api/v1/auth/login", { text })
        expectValidationProblem(answer)
        expect(answer.text.length).toBeLessThan(4_096)
        expect(String(answer.body.detail)).toContain(`more than ${MAX_OBJECT_KEYS} keys`)
      }))

    it.effect("lists the first 20 problems and gives the count of the rest", () =>
      Effect.gen(function*() {
        const answer = yield* sendText("POST", "/api/v1/auth/login", {
          text: unknownKeys(500, { email: "a@example.com", password: "x" })
        })
        expectValidationProblem(answer)
        expect(answer.body.errors).toHaveLength(MAX_LISTED_ISSUES)
        expect(String(answer.body.detail)).toContain(`500 problems; the first ${MAX_LISTED_ISSUES} are listed`)
      }))

    it.effect("malformed login bodies from one address count against its login limit (5 per minute)", () =>
      Effect.gen(function*() {
        const ip = randomIp()
        const text = unknownKeys(100_000, { email: "a@example.com", password: "x" })
        const statuses: Array<number> = []
        for (let i = 0; i < 7; i++) statuses.push((yield* sendText("POST", "/api/v1/auth/login", { text, ip })).status)
        expect(statuses).toEqual([400, 400, 400, 400, 400, 429, 429])
      }))
  })

  describe("no submitted value comes back", () => {
    it.effect("a malformed password, token or key is never echoed", () =>
      Effect.gen(function*() {
        const { token } = yield* adminSession("echo-admin")
        const probes: Array<[method: "POST" | "PATCH" | "GET", path: string, body: unknown]> = [
          ["POST", "/api/v1/auth/login", { email: "a@example.com", password: [SECRET] }],
          ["POST", "/api/v1/auth/login", { email: SECRET, password: "x" }],
          ["POST", "/api/v1/auth/login", { email: "a@example.com", password: { value: SECRET } }],
          ["POST", "/api/v1/auth/refresh", { refresh_token: [SECRET] }],
          ["POST", "/api/v1/auth/logout", { refresh_token: 12345678 }],
          ["POST", "/api/v1/auth/password", { current_password: [SECRET], new_password: SECRET.slice(0, 5) }],
          ["PATCH", "/api/v1/admin/app-settings", { model_providers: [{ provider: "openai", api_key: [SECRET] }] }],
          ["GET", `/api/v1/admin/users?page=${SECRET}&page_size=${SECRET}`, undefined]
        ]
        for (const [method, path, body] of probes) {
          const answer = yield* sendText(method, path, {
            token,
            ...(body === undefined ? {} : { text: JSON.stringify(body) })
          })
          expect(answer.status, `${method} ${path}`).toBeGreaterThanOrEqual(400)
          expect(answer.status, `${method} ${path}`).toBeLessThan(500)
          expect(answer.text, `${method} ${path}`).not.toContain(SECRET)
          expect(answer.text, `${method} ${path}`).not.toContain(SECRET.slice(0, 5))
          expect(answer.text, `${method} ${path}`).not.toContain("12345678")
        }
      }))
  })

  describe("text PostgreSQL cannot store", () => {
    it.effect("a NUL byte in the login email is a 400, anonymous too", () =>
      Effect.gen(function*() {
        expectValidationProblem(
          yield* sendText("POST", "/api/v1/auth/login", { text: "{\"email\":\"a\\u0000@x.com\",\"password\":\"x\"}" })
        )
      }))

    it.effect("an unpaired surrogate in any text field is a 400", () =>
      Effect.gen(function*() {
        const { token } = yield* adminSession("surrogate-admin")
        expectValidationProblem(
          yield* sendText("POST", "/api/v1/auth/login", { text: "{\"email\":\"a\\ud800b@x.com\",\"password\":\"x\"}" })
        )
        expectValidationProblem(
          yield* sendText("POST", "/api/v1/workflows", {
            token,
            text: "{\"slug\":\"lone\",\"display_name\":\"a\\ud800b\"}"
          })
        )
        expectValidationProblem(
          yield* sendText("POST", "/api/v1/workflows", {
            token,
            text: "{\"slug\":\"lone-low\",\"display_name\":\"a\\udc00b\"}"
          })
        )
        // a key holding one is refused as well, and a well-formed pair is fine
        expectValidationProblem(yield* sendText("POST", "/api/v1/auth/login", { text: "{\"\\ud800\":1}" }))
        const paired = yield* sendText("POST", "/api/v1/workflows", {
          token,
          text: "{\"slug\":\"paired\",\"display_name\":\"a\\ud83d\\ude00b\"}"
        })
        expect(paired.status).toBe(201)
        expect(paired.body.display_name).toBe("a\u{1F600}b")
      }))

    it.effect("a NUL in a query parameter is a 400: ?q=%00 on users, ?action=%00 on the audit log", () =>
      Effect.gen(function*() {
        const { token } = yield* adminSession("nul-admin")
        expectValidationProblem(yield* sendText("GET", "/api/v1/admin/users?q=%00", { token }))
        expectValidationProblem(yield* sendText("GET", "/api/v1/admin/audit-logs?action=%00", { token }))
        expectValidationProblem(yield* sendText("GET", "/api/v1/admin/audit-logs?%00=x", { token }))
        expectValidationProblem(yield* sendText("GET", "/api/v1/admin/users/%00", { token }))
        // nothing was stored on the way: the audit log holds no NUL anywhere
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<
          { n: number }
        >`SELECT count(*)::int AS n FROM audit_logs WHERE changes::text LIKE '%\\u0000%'`
        expect(rows[0]?.n).toBe(0)
      }))
  })

  describe("deep nesting", () => {
    it.effect("a login body nested 10,000 levels is a 400", () =>
      Effect.gen(function*() {
        const answer = yield* sendText("POST", "/api/v1/auth/login", { text: nested(10_000) })
        expectValidationProblem(answer)
        expect(String(answer.body.detail)).toContain(`deeper than ${MAX_JSON_DEPTH} levels`)
        expect(answer.text.length).toBeLessThan(4_096)
      }))

    it.effect("node metadata nested 10,000 levels is a 400, and a body within the depth limit is decoded", () =>
      Effect.gen(function*() {
        const { token } = yield* adminSession("deep-admin")
        const graph = (metadata: string) =>
          `{"slug":"deep","display_name":"Deep","graph":{"nodes":[{"slug":"start","kind":"start","metadata":{"m":${metadata}}}]}}`
        expectValidationProblem(yield* sendText("POST", "/api/v1/workflows", { token, text: graph(nested(10_000)) }))
        // 64 levels is the platform's bound; whatever the graph's own bounds say, the answer is a 4xx
        const within = yield* sendText("POST", "/api/v1/workflows", { token, text: graph(nested(MAX_JSON_DEPTH - 8)) })
        expect(within.status).toBeLessThan(500)
      }))
  })

  describe("the current-password check", () => {
    it.effect("counts against the account's login limit: of 40 wrong guesses then the right one, only the first 4 are checked (the login used 1 of 5), each failure audited", () =>
      Effect.gen(function*() {
        const { token, user } = yield* session("oracle")
        const statuses: Array<number> = []
        const guess = (current: string) =>
          sendText("POST", "/api/v1/auth/password", {
            token,
            text: JSON.stringify({ current_password: current, new_password: "a brand new passphrase" })
          }).pipe(Effect.map((a) => a.status))
        for (let i = 0; i < 40; i++) statuses.push(yield* guess(`wrong guess ${i}`))
        statuses.push(yield* guess(PASSWORD))
        expect(statuses.slice(0, 4)).toEqual([401, 401, 401, 401])
        expect(new Set(statuses.slice(4))).toEqual(new Set([429]))
        const sql = yield* SqlClient.SqlClient
        const failures = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_logs
          WHERE action = 'auth.password.failed' AND user_id = ${user.id}`
        expect(failures[0]?.n).toBe(4)
      }))
  })

  describe("caches", () => {
    it.effect("token responses and authenticated answers say Cache-Control: no-store", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session("cache")
        const loginAnswer = yield* sendText("POST", "/api/v1/auth/login", {
          text: JSON.stringify({ email: user.email, password: PASSWORD })
        })
        expect(loginAnswer.status).toBe(200)
        expect(loginAnswer.headers["cache-control"]).toBe("no-store")
        const refreshed = yield* sendText("POST", "/api/v1/auth/refresh", {
          text: JSON.stringify({ refresh_token: tokens.refresh_token })
        })
        expect(refreshed.status).toBe(200)
        expect(refreshed.headers["cache-control"]).toBe("no-store")
        const me = yield* sendText("GET", "/api/v1/auth/me", { token: tokens.access_token })
        expect(me.status).toBe(200)
        expect(me.headers["cache-control"]).toBe("no-store")
      }))
  })
})
