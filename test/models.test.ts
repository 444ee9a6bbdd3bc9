import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { Conflict, Forbidden, NotFound, Unauthorized } from "../src/domain/errors.js"
import type { ModelId } from "../src/domain/Model.js"
import { TestApp } from "./support/app.js"
import { countQueries } from "./support/queries.js"
import { type Client, clientAs, raw, runId, session } from "./support/session.js"

const createModel = (client: Client, name: string, displayName = name) =>
  client.models.create({ payload: { name, display_name: displayName } })

layer(TestApp("models", { TRUST_PROXY: "1" }), { timeout: 120_000 })("model catalog", (it) => {
  it.effect("admin endpoints answer 403 to non-admins; the list needs a token but no admin", () =>
    Effect.gen(function*() {
      const { client } = yield* session("plain")
      const forbidden = [
        yield* Effect.flip(client.models.adminList({ urlParams: {} })),
        yield* Effect.flip(client.models.create({ payload: { name: "x", display_name: "x" } })),
        yield* Effect.flip(client.models.update({ path: { id: 1 as ModelId }, payload: { display_name: "y" } })),
        yield* Effect.flip(client.models.delete({ path: { id: 1 as ModelId } }))
      ]
      for (const error of forbidden) expect(error).toBeInstanceOf(Forbidden)
      expect((yield* client.models.list({ urlParams: {} })).page).toBe(1)
      const anonymous = yield* clientAs()
      expect(yield* Effect.flip(anonymous.models.list({ urlParams: {} }))).toBeInstanceOf(Unauthorized)
    }))

  it.effect("creates, updates and deletes models, each write audited and visible at once in the cached list", () =>
    Effect.gen(function*() {
      const { client, user } = yield* session("crud-admin", { isAdmin: true })
      const { client: reader } = yield* session("crud-reader")
      const before = yield* reader.models.list({ urlParams: { page_size: 100 } })

      const [created, response] = yield* client.models.create({
        payload: {
          name: `gpt-crud-${runId}`,
          display_name: "CRUD model",
          description: "for tests",
          provider_id: "prov-1",
          provider_slug: "openai",
          supports_reasoning: true
        },
        withResponse: true
      })
      expect(response.status).toBe(201)
      expect(created).toMatchObject({
        name: `gpt-crud-${runId}`,
        display_name: "CRUD model",
        description: "for tests",
        provider_id: "prov-1",
        provider_slug: "openai",
        supports_reasoning: true,
        supports_streaming: true
      })
      // create → the cached page shows it
      const afterCreate = yield* reader.models.list({ urlParams: { page_size: 100 } })
      expect(afterCreate.total).toBe(before.total + 1)
      expect(afterCreate.items).toContainEqual(created)

      const updated = yield* client.models.update({
        path: { id: created.id },
        payload: { display_name: "CRUD model renamed", description: null, supports_streaming: false }
      })
      expect(updated).toMatchObject({
        id: created.id,
        display_name: "CRUD model renamed",
        description: null,
        supports_streaming: false
      })
      expect(updated.updated_at.getTime()).toBeGreaterThanOrEqual(created.updated_at.getTime())
      // update → the cached page shows the new value
      expect((yield* reader.models.list({ urlParams: { page_size: 100 } })).items).toContainEqual(updated)
      expect((yield* client.models.adminList({ urlParams: { page_size: 100 } })).items).toContainEqual(updated)
      // a PATCH that changes nothing writes nothing
      expect(yield* client.models.update({ path: { id: created.id }, payload: { display_name: "CRUD model renamed" } }))
        .toEqual(updated)

      yield* client.models.delete({ path: { id: created.id } })
      // delete → gone from the cached page
      const afterDelete = yield* reader.models.list({ urlParams: { page_size: 100 } })
      expect(afterDelete.total).toBe(before.total)
      expect(afterDelete.items.map((m) => m.id)).not.toContain(created.id)
      expect(yield* Effect.flip(client.models.delete({ path: { id: created.id } }))).toBeInstanceOf(NotFound)
      expect(yield* Effect.flip(client.models.update({ path: { id: created.id }, payload: { display_name: "z" } })))
        .toBeInstanceOf(NotFound)

      const rows = yield* Effect.flatMap(
        SqlClient.SqlClient,
        (sql) =>
          sql<{ action: string; user_id: number; changes: Record<string, unknown> }>`
          SELECT action, user_id, changes FROM audit_logs WHERE resource_type = 'model' AND resource_id = ${
            String(created.id)
          }
          ORDER BY id`
      )
      expect(rows.map((r) => r.action)).toEqual(["model.create", "model.update", "model.delete"])
      for (const row of rows) expect(row.user_id).toBe(user.id)
      expect(rows[0]?.changes).toMatchObject({ name: { from: null, to: `gpt-crud-${runId}` } })
      expect(rows[1]?.changes).toEqual({
        display_name: { from: "CRUD model", to: "CRUD model renamed" },
        description: { from: "for tests", to: null },
        supports_streaming: { from: true, to: false }
      })
    }))

  it.effect("answers 409 for a taken name (ignoring case), on create and on rename, never a 500", () =>
    Effect.gen(function*() {
      const { client } = yield* session("dup-admin", { isAdmin: true })
      const first = yield* createModel(client, `dup-${runId}`)
      const other = yield* createModel(client, `other-${runId}`)
      expect(yield* Effect.flip(createModel(client, `dup-${runId}`))).toBeInstanceOf(Conflict)
      expect(yield* Effect.flip(createModel(client, `DUP-${runId}`))).toBeInstanceOf(Conflict)
      expect(yield* Effect.flip(client.models.update({ path: { id: other.id }, payload: { name: `Dup-${runId}` } })))
        .toBeInstanceOf(Conflict)
      // renaming to its own name in another case is fine
      expect((yield* client.models.update({ path: { id: first.id }, payload: { name: `DUP-${runId}` } })).name).toBe(
        `DUP-${runId}`
      )
    }))

  it.effect("refuses unknown fields, bad names and bad pagination with 400", () =>
    Effect.gen(function*() {
      const { token } = yield* session("bad-admin", { isAdmin: true })
      const bad: Array<[string, "POST" | "PATCH", unknown]> = [
        ["/api/v1/admin/models", "POST", { name: "a", display_name: "a", context_window: 4 }],
        ["/api/v1/admin/models", "POST", { name: "has space", display_name: "a" }],
        ["/api/v1/admin/models", "POST", { name: "", display_name: "a" }],
        ["/api/v1/admin/models", "POST", { name: "a" }],
        ["/api/v1/admin/models/1", "PATCH", { price: 3 }],
        ["/api/v1/admin/models/1", "PATCH", { display_name: "x".repeat(201) }]
      ]
      for (const [path, method, body] of bad) {
        const response = yield* raw(method, path, { token, body })
        expect(response.status, JSON.stringify(body)).toBe(400)
        expect(response.body.error).toBe("validation_error")
      }
      for (const query of ["page=0", "page_size=0", "page_size=101", "page=abc", "page=1.5"]) {
        for (const path of ["/api/v1/models", "/api/v1/admin/models"]) {
          const response = yield* raw("GET", `${path}?${query}`, { token })
          expect(response.status, `${path}?${query}`).toBe(400)
        }
      }
      expect((yield* raw("PATCH", "/api/v1/admin/models/abc", { token, body: { display_name: "x" } })).status).toBe(400)
      expect((yield* raw("PATCH", "/api/v1/admin/models/0", { token, body: { display_name: "x" } })).status).toBe(400)
    }))
})

layer(TestApp("models_pages", { TRUST_PROXY: "1" }), { timeout: 120_000 })("model catalog pages", (it) => {
  it.effect("orders by display_name then id, paginates with the true total, and a page past the end is empty", () =>
    Effect.gen(function*() {
      const { client } = yield* session("order-admin", { isAdmin: true })
      const c = yield* createModel(client, "m-c", "Charlie")
      const a2 = yield* createModel(client, "m-a2", "Alpha")
      const b = yield* createModel(client, "m-b", "Bravo")
      const a1 = yield* createModel(client, "m-a1", "Alpha")
      const all = yield* client.models.list({ urlParams: {} })
      expect(all).toMatchObject({ total: 4, page: 1, page_size: 20, total_pages: 1 })
      // ties on display_name by id: a2 was created before a1
      expect(all.items.map((m) => m.id)).toEqual([a2.id, a1.id, b.id, c.id])
      const second = yield* client.models.list({ urlParams: { page: 2, page_size: 3 } })
      expect(second).toMatchObject({ total: 4, page: 2, page_size: 3, total_pages: 2 })
      expect(second.items.map((m) => m.id)).toEqual([c.id])
      expect(yield* client.models.list({ urlParams: { page: 9, page_size: 3 } })).toEqual({
        items: [],
        total: 4,
        page: 9,
        page_size: 3,
        total_pages: 2
      })
      expect((yield* client.models.list({ urlParams: { page_size: 100 } })).items).toHaveLength(4)
    }))

  it.effect("lists in a constant number of statements (3 or 60 models), and a warm page in none", () =>
    Effect.gen(function*() {
      const { client } = yield* session("nplus1-admin", { isAdmin: true })
      const { client: reader } = yield* session("nplus1-reader")
      yield* reader.auth.me() // warms the reader's cached user record
      yield* client.auth.me()
      const existing = (yield* client.models.list({ urlParams: { page_size: 100 } })).total
      for (let i = existing; i < 3; i++) yield* createModel(client, `q-${i}`)

      // a page size not read before: a cache miss
      const small = yield* countQueries(reader.models.list({ urlParams: { page_size: 97 } }))
      expect(small.result.total).toBe(Math.max(3, existing))
      const smallAdmin = yield* countQueries(client.models.adminList({ urlParams: { page: 1, page_size: 50 } }))

      for (let i = Math.max(3, existing); i < 60; i++) yield* createModel(client, `q-${i}`)
      // the creates invalidated every cached page: a miss again
      const large = yield* countQueries(reader.models.list({ urlParams: { page_size: 100 } }))
      expect(large.result.items).toHaveLength(60)
      expect(large.queries).toBe(small.queries)
      expect(large.queries).toBe(1)
      const largeAdmin = yield* countQueries(client.models.adminList({ urlParams: { page: 1, page_size: 50 } }))
      expect(largeAdmin.queries).toBe(smallAdmin.queries)

      const warm = yield* countQueries(reader.models.list({ urlParams: { page_size: 100 } }))
      expect(warm.queries).toBe(0)
      expect(warm.result).toEqual(large.result)
      expect((yield* countQueries(client.models.adminList({ urlParams: { page: 1, page_size: 50 } }))).queries).toBe(0)
    }))
})

layer(TestApp("models_cache_disabled", { TRUST_PROXY: "1", CACHE_DISABLED: "true" }), { timeout: 120_000 })(
  "CACHE_DISABLED=true",
  (it) => {
    it.effect("every list reads the database (the cache is a pass-through) and still sees every write", () =>
      Effect.gen(function*() {
        const { client } = yield* session("nocache-admin", { isAdmin: true })
        const model = yield* createModel(client, `nocache-${runId}`)
        const first = yield* countQueries(client.models.list({ urlParams: {} }))
        const second = yield* countQueries(client.models.list({ urlParams: {} }))
        // the caller's user record is not cached either: one SELECT for it, one for the page
        expect(first.queries).toBe(2)
        expect(second.queries).toBe(2)
        expect(second.result.items).toContainEqual(model)
      }))
  }
)
