import { describe, expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { it } from "vitest"

import { DateParam, MAX_DATE_PARAM, MIN_DATE_PARAM } from "../src/api/schemas.js"
import { TestApp } from "./support/app.js"
import { raw, session } from "./support/session.js"

/**
 * Issue 8 ("hostile input"), dates: JavaScript dates reach years -271821 to +275760, PostgreSQL
 * `timestamptz` does not. The audit list's `since` / `until` accept years 0001-9999 only; any
 * other date is a 400 validation_error naming the parameter, without echoing the value.
 */

const OUT_OF_RANGE = [
  "-271821-04-20T00:00:00Z",
  "+275760-09-13T00:00:00Z",
  "10000-01-01T00:00:00Z",
  "0000-12-31T23:59:59Z"
]

describe("DateParam (unit)", () => {
  const decode = Schema.decodeUnknownEither(DateParam("test"))
  it("accepts years 0001 to 9999, bounds included, and refuses the rest without echoing them", () => {
    const first = decode("0001-01-01T00:00:00Z")
    const last = decode("9999-12-31T23:59:59.999Z")
    expect(first._tag === "Right" ? first.right.getTime() : undefined).toBe(MIN_DATE_PARAM.getTime())
    expect(last._tag === "Right" ? last.right.getTime() : undefined).toBe(MAX_DATE_PARAM.getTime())
    expect(decode("2026-01-31T12:00:00Z")._tag).toBe("Right")
    for (const value of [...OUT_OF_RANGE, "yesterday", "", "2020-13-45"]) {
      const result = decode(value)
      expect(result._tag, value).toBe("Left")
      if (result._tag === "Left") {
        expect(result.left.message).toContain("must be an ISO 8601 date-time with a year from 0001 to 9999")
        if (value.length > 0) expect(result.left.message).not.toContain(value)
      }
    }
  })
})

layer(TestApp("audit-dates", { TRUST_PROXY: "1" }), { timeout: 120_000 })(
  "GET /api/v1/admin/audit-logs date filters",
  (it) => {
    const get = (query: string, token: string) => raw("GET", `/api/v1/admin/audit-logs${query}`, { token })

    it.effect("a date outside years 0001-9999 is a 400 validation_error on that parameter, never a 500", () =>
      Effect.gen(function*() {
        const { token } = yield* session("dates-admin", { isAdmin: true })
        for (const name of ["since", "until"]) {
          for (const value of OUT_OF_RANGE) {
            // the exact text, percent-encoded (a raw "+" in a query string would be a space)
            const query = `?${name}=${encodeURIComponent(value)}`
            const response = yield* get(query, token)
            expect(response.status, query).toBe(400)
            expect(response.body.error, query).toBe("validation_error")
            const errors = response.body.errors as ReadonlyArray<{ path: string; message: string }>
            expect(errors, query).toEqual([{
              path: name,
              message: "must be an ISO 8601 date-time with a year from 0001 to 9999"
            }])
            expect(JSON.stringify(response.body), query).not.toContain(value.replace(/^[+-]/, ""))
          }
        }
        // the first query of the brief exactly as written (its "-" needs no encoding)
        const first = yield* get("?since=-271821-04-20T00:00:00Z", token)
        expect(first.status).toBe(400)
        expect(first.body.error).toBe("validation_error")
      }))

    it.effect("dates within the range work, the bounds themselves included", () =>
      Effect.gen(function*() {
        const { token } = yield* session("dates-admin-2", { isAdmin: true })
        const normal = yield* get(`?since=${encodeURIComponent("2020-01-01T00:00:00Z")}`, token)
        expect(normal.status).toBe(200)
        // this run's logins are after 2020
        expect((normal.body.total as number) > 0).toBe(true)
        const future = yield* get(`?since=${encodeURIComponent("2999-01-01T00:00:00Z")}`, token)
        expect(future.status).toBe(200)
        expect(future.body).toMatchObject({ items: [], total: 0 })
        const bounds = yield* get(
          `?since=${encodeURIComponent("0001-01-01T00:00:00Z")}&until=${
            encodeURIComponent("9999-12-31T23:59:59.999Z")
          }`,
          token
        )
        expect(bounds.status, JSON.stringify(bounds.body)).toBe(200)
        expect(bounds.body.total as number).toBeGreaterThanOrEqual(normal.body.total as number)
      }))
  }
)
