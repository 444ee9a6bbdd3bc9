import type { HttpClient } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"

import type { AuditEntry } from "../src/domain/Audit.js"
import { Forbidden, Unauthorized } from "../src/domain/errors.js"
import { AuditLog } from "../src/features/audit/AuditLog.js"
import { type Passwords } from "../src/features/auth/Passwords.js"
import { UsersRepo } from "../src/features/users/Repo.js"
import { chatkitClient, TestApp } from "./support/app.js"
import { clientAs, raw, session } from "./support/session.js"

/**
 * The app trusts one proxy hop and each login comes from its own made-up address, so the per-IP
 * login limit (shared through Redis with other test files in CI) never counts these logins.
 */
const TestLayer = Layer.mergeAll(AuditLog.Default, UsersRepo.Default).pipe(
  Layer.provideMerge(TestApp("audit", { TRUST_PROXY: "1" }))
)

interface ListParams {
  readonly page?: number
  readonly page_size?: number
  readonly user_id?: number
  readonly action?: string
  readonly resource_type?: string
  readonly resource_id?: string
  readonly since?: Date
  readonly until?: Date
}

const day = (d: number) => new Date(Date.UTC(2020, 0, d))

interface Seeded {
  readonly ids: Record<"r1" | "r2" | "r3" | "r4" | "r5", number>
  readonly adminToken: string
  readonly userToken: string
}

/**
 * Five entries in 2020 (long before the login entries of the test run itself):
 * r1 (day 1), r2 and r3 (both day 2: the tie is broken by id), r4 (day 3), r5 (day 4, a gadget).
 */
const seed: Effect.Effect<
  Seeded,
  unknown,
  AuditLog | UsersRepo | Passwords | SqlClient.SqlClient | HttpClient.HttpClient
> = Effect.gen(function*() {
  const audit = yield* AuditLog
  const sql = yield* SqlClient.SqlClient
  const entries = [
    ["r1", { userId: 101, action: "widget.create", resourceType: "widget", resourceId: 9001 }, day(1)],
    ["r2", { userId: 101, action: "widget.update", resourceType: "widget", resourceId: "9001" }, day(2)],
    ["r3", { userId: 102, action: "widget.update", resourceType: "widget", resourceId: "9002" }, day(2)],
    ["r4", { userId: 102, action: "widget.delete", resourceType: "widget", resourceId: "9002" }, day(3)],
    ["r5", { userId: null, action: "gadget.create", resourceType: "gadget", resourceId: "9001" }, day(4)]
  ] as const
  const ids: Record<string, number> = {}
  for (const [name, event, at] of entries) {
    yield* audit.record({ ...event, changes: { name } })
    const [row] = yield* sql<{ id: number }>`UPDATE audit_logs SET created_at = ${at}
        WHERE id = (SELECT max(id) FROM audit_logs) RETURNING id`
    ids[name] = row!.id
  }
  return {
    ids: ids as Seeded["ids"],
    adminToken: (yield* session("audit-admin", { isAdmin: true })).token,
    userToken: (yield* session("audit-user")).token
  }
})

layer(TestLayer, { timeout: 120_000 })("GET /api/v1/admin/audit-logs", (it) => {
  // Seeded once; every test reads the same rows.
  let seeded: Seeded | undefined
  const setup = Effect.suspend(() => (seeded === undefined
    ? Effect.tap(seed, (s) => Effect.sync(() => (seeded = s)))
    : Effect.succeed(seeded))
  )

  const list = (urlParams: ListParams) =>
    Effect.gen(function*() {
      const { adminToken } = yield* setup
      const client = yield* clientAs(adminToken)
      return yield* client.audit.list({ urlParams })
    })

  const namesOf = (page: { readonly items: ReadonlyArray<AuditEntry> }, ids: Seeded["ids"]) =>
    page.items.map((item) => Object.entries(ids).find(([, id]) => id === item.id)?.[0] ?? `other:${item.action}`)

  const rawGet = (query: string, token: string | undefined) => raw("GET", `/api/v1/admin/audit-logs${query}`, { token })

  it.effect("lists every entry newest first, ties broken by id descending, with the true total", () =>
    Effect.gen(function*() {
      const { ids } = yield* setup
      const sql = yield* SqlClient.SqlClient
      const [count] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM audit_logs`
      const page = yield* list({ page_size: 100 })
      expect(page.total).toBe(count?.n)
      expect(page).toMatchObject({ page: 1, page_size: 100, total_pages: 1 })
      // the login entries of this run come first, then the 2020 seeds
      expect(namesOf(page, ids).slice(-5)).toEqual(["r5", "r4", "r3", "r2", "r1"])
      const order = page.items.map((item) => [item.created_at.getTime(), item.id] as const)
      const sorted = [...order].sort((a, b) => b[0] - a[0] || b[1] - a[1])
      expect(order).toEqual(sorted)
      const r2 = page.items.find((item) => item.id === ids.r2)
      expect(r2).toMatchObject({
        user_id: 101,
        action: "widget.update",
        resource_type: "widget",
        resource_id: "9001",
        changes: { name: "r2" }
      })
      expect(r2?.created_at).toEqual(day(2))
    }))

  it.effect("defaults to page 1 of 20", () =>
    Effect.gen(function*() {
      const page = yield* list({})
      expect(page).toMatchObject({ page: 1, page_size: 20 })
    }))

  describe("filters", () => {
    it.effect("user_id", () =>
      Effect.gen(function*() {
        const { ids } = yield* setup
        const page = yield* list({ user_id: 101 })
        expect(namesOf(page, ids)).toEqual(["r2", "r1"])
        expect(page.total).toBe(2)
      }))

    it.effect("action", () =>
      Effect.gen(function*() {
        const { ids } = yield* setup
        expect(namesOf(yield* list({ action: "widget.update" }), ids)).toEqual(["r3", "r2"])
        expect(namesOf(yield* list({ action: "widget" }), ids)).toEqual([]) // exact match, not a prefix
      }))

    it.effect("resource_type and resource_id, alone and together", () =>
      Effect.gen(function*() {
        const { ids } = yield* setup
        expect(namesOf(yield* list({ resource_type: "gadget" }), ids)).toEqual(["r5"])
        expect(namesOf(yield* list({ resource_id: "9002" }), ids)).toEqual(["r4", "r3"])
        expect(namesOf(yield* list({ resource_type: "widget", resource_id: "9001" }), ids)).toEqual(["r2", "r1"])
      }))

    it.effect("since is inclusive and until exclusive", () =>
      Effect.gen(function*() {
        const { ids } = yield* setup
        expect(namesOf(yield* list({ since: day(2), until: day(3) }), ids)).toEqual(["r3", "r2"])
        expect(namesOf(yield* list({ until: day(2) }), ids)).toEqual(["r1"])
        expect(namesOf(yield* list({ since: day(3), until: day(4) }), ids)).toEqual(["r4"])
        expect(namesOf(yield* list({ since: new Date(day(2).getTime() + 1), until: day(4) }), ids)).toEqual(["r4"])
        expect(namesOf(yield* list({ since: day(4), until: day(4) }), ids)).toEqual([])
        const recent = yield* list({ since: day(4), resource_type: "gadget" })
        expect(namesOf(recent, ids)).toEqual(["r5"])
      }))

    it.effect("combine with AND", () =>
      Effect.gen(function*() {
        const { ids } = yield* setup
        expect(namesOf(yield* list({ user_id: 102, action: "widget.update" }), ids)).toEqual(["r3"])
        expect(namesOf(yield* list({ user_id: 101, resource_id: "9002" }), ids)).toEqual([])
      }))

    it.effect("treat their values as data, not SQL", () =>
      Effect.gen(function*() {
        const page = yield* list({ action: "x' OR '1'='1", resource_id: "1; DROP TABLE audit_logs" })
        expect(page).toMatchObject({ items: [], total: 0 })
      }))
  })

  describe("pagination", () => {
    it.effect("pages through a filtered list in order, and past the end is empty with the true total", () =>
      Effect.gen(function*() {
        const { ids } = yield* setup
        const first = yield* list({ resource_type: "widget", page_size: 3 })
        expect(namesOf(first, ids)).toEqual(["r4", "r3", "r2"])
        expect(first).toMatchObject({ total: 4, page: 1, page_size: 3, total_pages: 2 })
        const second = yield* list({ resource_type: "widget", page: 2, page_size: 3 })
        expect(namesOf(second, ids)).toEqual(["r1"])
        const past = yield* list({ resource_type: "widget", page: 7, page_size: 3 })
        expect(past).toEqual({ items: [], total: 4, page: 7, page_size: 3, total_pages: 2 })
      }))

    it.effect("refuses out-of-range or malformed parameters with 400 listing the field", () =>
      Effect.gen(function*() {
        const { adminToken } = yield* setup
        for (
          const [query, field] of [
            ["?page_size=101", "page_size"],
            ["?page_size=0", "page_size"],
            ["?page=0", "page"],
            ["?page=1.5", "page"],
            ["?user_id=abc", "user_id"],
            ["?since=yesterday", "since"]
          ] as const
        ) {
          const response = yield* rawGet(query, adminToken)
          expect(response.status, query).toBe(400)
          expect(response.body).toMatchObject({ error: "validation_error" })
          expect(JSON.stringify(response.body.errors), query).toContain(field)
        }
        expect((yield* rawGet("?page_size=100", adminToken)).status).toBe(200)
      }))
  })

  describe("access", () => {
    it.effect("is refused to an authenticated non-admin with 403", () =>
      Effect.gen(function*() {
        const { userToken } = yield* setup
        const client = yield* clientAs(userToken)
        const error = yield* Effect.flip(client.audit.list({ urlParams: {} }))
        expect(error).toBeInstanceOf(Forbidden)
        const raw = yield* rawGet("", userToken)
        expect(raw.status).toBe(403)
        expect(raw.body).toMatchObject({ error: "forbidden", status: 403 })
      }))

    it.effect("is refused without or with a bad token with 401", () =>
      Effect.gen(function*() {
        yield* setup
        const client = yield* chatkitClient
        expect(yield* Effect.flip(client.audit.list({ urlParams: {} }))).toBeInstanceOf(Unauthorized)
        const missing = yield* rawGet("", undefined)
        expect(missing.status).toBe(401)
        expect(missing.headers["www-authenticate"]).toBe("Bearer")
        expect((yield* rawGet("", "not-a-jwt")).status).toBe(401)
      }))
  })

  describe("AuditLog.record", () => {
    it.effect("masks secret-looking keys in changes, nested ones included, before storing them", () =>
      Effect.gen(function*() {
        yield* setup
        const audit = yield* AuditLog
        const sql = yield* SqlClient.SqlClient
        yield* audit.record({
          userId: 101,
          action: "secret.test",
          resourceType: "secret",
          resourceId: "masked",
          changes: {
            password: "hunter2-hunter2",
            name: { from: "a", to: "b" },
            settings: { api_key: "sk-live-123", apiKey: "sk-live-456", refresh_token: "rt", theme: "dark" },
            providers: [{ id: 1, token: "tok-1" }],
            client_secret: "cs"
          }
        })
        const expected = {
          password: "***",
          name: { from: "a", to: "b" },
          settings: { api_key: "***", apiKey: "***", refresh_token: "***", theme: "dark" },
          providers: [{ id: 1, token: "***" }],
          client_secret: "***"
        }
        const [stored] = yield* sql<{ changes: unknown }>`SELECT changes FROM audit_logs WHERE resource_id = 'masked'`
        expect(stored?.changes).toEqual(expected)
        const page = yield* list({ resource_type: "secret" })
        expect(page.items[0]?.changes).toEqual(expected)
        expect(JSON.stringify(page)).not.toMatch(/hunter2|sk-live|tok-1|"rt"|"cs"/)
      }))

    it.effect("writes in the caller's transaction: a rollback leaves no entry, a commit keeps it", () =>
      Effect.gen(function*() {
        yield* setup
        const audit = yield* AuditLog
        const sql = yield* SqlClient.SqlClient
        const entry = (resourceId: string) =>
          audit.record({ userId: 101, action: "tx.test", resourceType: "tx", resourceId })
        const failed = yield* Effect.flip(
          sql.withTransaction(Effect.zipRight(entry("rolled-back"), Effect.fail("abort" as const)))
        )
        expect(failed).toBe("abort")
        yield* sql.withTransaction(entry("committed"))
        const rows = yield* sql<{ resource_id: string }>`SELECT resource_id FROM audit_logs WHERE resource_type = 'tx'`
        expect(rows.map((row) => row.resource_id)).toEqual(["committed"])
        expect((yield* list({ resource_type: "tx" })).items.map((item) => item.resource_id)).toEqual(["committed"])
      }))
  })
})
