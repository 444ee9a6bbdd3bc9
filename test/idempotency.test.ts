import { HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Ref, Schema } from "effect"

import { Conflict } from "../src/domain/errors.js"
import { canonicalJson, requestHash, withIdempotency } from "../src/platform/Idempotency.js"
import { migrateUp } from "../src/platform/Migrations.js"
import { testDatabaseLayer } from "./support/database.js"

const Created = Schema.Struct({ id: Schema.Int, name: Schema.String, created_at: Schema.Date })
type Created = typeof Created.Type

const Migrated = Layer.effectDiscard(migrateUp()).pipe(Layer.provideMerge(testDatabaseLayer("idempotency")))

let keys = 0
/** A key no other test uses (they share one database). */
const freshKey = () => `key-${++keys}-${Math.random().toString(36).slice(2)}`

/** Wall-clock wait (the tests run under TestClock, which would never advance by itself). */
const realSleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

const at = new Date("2026-01-02T03:04:05.000Z")

/** An effect counting its runs and answering a new `Created` each time. */
const counter = Effect.map(Ref.make(0), (runs) => ({
  runs,
  create: (name: string) =>
    Effect.map(Ref.updateAndGet(runs, (n) => n + 1), (n): Created => ({ id: n, name, created_at: at }))
}))

const run = <E>(
  key: string | undefined,
  request: unknown,
  effect: Effect.Effect<Created, E>,
  scope = "user:1:POST /things"
) => withIdempotency({ key, scope, request, success: Created, status: 201 }, effect)

const bodyOf = (response: HttpServerResponse.HttpServerResponse): unknown => {
  const body = response.body
  return body._tag === "Uint8Array" ? JSON.parse(new TextDecoder().decode(body.body)) : undefined
}

const asResponse = (value: unknown): HttpServerResponse.HttpServerResponse => {
  if (!HttpServerResponse.isServerResponse(value)) {
    throw new Error(`expected a replayed response, got ${JSON.stringify(value)}`)
  }
  return value
}

const rowOf = (key: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<
        {
          scope: string
          request_hash: string
          response_status: number | null
          response_body: unknown
          ttl_hours: number
        }
      >`
      SELECT scope, request_hash, response_status, response_body,
             round(extract(epoch FROM expires_at - now()) / 3600)::int AS ttl_hours
      FROM idempotency_keys WHERE key = ${key} ORDER BY scope`
  )

describe("canonicalJson", () => {
  it("sorts keys at every depth and keeps array order", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe(
      "{\"a\":{\"c\":null,\"d\":[3,{\"y\":2,\"z\":1}]},\"b\":1}"
    )
    expect(requestHash({ b: 1, a: 2 })).toBe(requestHash({ a: 2, b: 1 }))
    expect(requestHash({ a: [1, 2] })).not.toBe(requestHash({ a: [2, 1] }))
    expect(canonicalJson({ at, skipped: undefined })).toBe("{\"at\":\"2026-01-02T03:04:05.000Z\"}")
    expect(requestHash({})).toMatch(/^[0-9a-f]{64}$/)
  })
})

layer(Migrated)("withIdempotency", (it) => {
  it.effect("without a key runs the effect every time and stores nothing", () =>
    Effect.gen(function*() {
      const { create, runs } = yield* counter
      expect(yield* run(undefined, { name: "a" }, create("a"))).toEqual({ id: 1, name: "a", created_at: at })
      expect(yield* run(undefined, { name: "a" }, create("a"))).toEqual({ id: 2, name: "a", created_at: at })
      expect(yield* Ref.get(runs)).toBe(2)
    }))

  it.effect("replays the same key and request with the stored status and encoded body, running the effect once", () =>
    Effect.gen(function*() {
      const { create, runs } = yield* counter
      const key = freshKey()
      const first = yield* run(key, { name: "a", tags: ["x"], nested: { b: 1, a: 2 } }, create("a"))
      expect(first).toEqual({ id: 1, name: "a", created_at: at })

      // same request, keys in another order
      const again = asResponse(yield* run(key, { nested: { a: 2, b: 1 }, tags: ["x"], name: "a" }, create("a")))
      expect(again.status).toBe(201)
      expect(again.headers["idempotent-replayed"]).toBe("true")
      expect(bodyOf(again)).toEqual({ id: 1, name: "a", created_at: "2026-01-02T03:04:05.000Z" })
      expect(yield* Ref.get(runs)).toBe(1)

      const [row] = yield* rowOf(key)
      expect(row).toMatchObject({
        response_status: 201,
        request_hash: requestHash({ name: "a", tags: ["x"], nested: { a: 2, b: 1 } })
      })
      expect(row?.ttl_hours).toBe(24)
    }))

  it.effect("answers 409 when the key is reused with a different request, without running the effect", () =>
    Effect.gen(function*() {
      const { create, runs } = yield* counter
      const key = freshKey()
      yield* run(key, { name: "a" }, create("a"))
      const error = yield* Effect.flip(run(key, { name: "b" }, create("b")))
      expect(error).toBeInstanceOf(Conflict)
      expect(error).toMatchObject({ detail: "Idempotency-Key reused with a different request" })
      expect(yield* Ref.get(runs)).toBe(1)
    }))

  it.effect("releases the key when the effect fails or dies, so the client can retry", () =>
    Effect.gen(function*() {
      const { create, runs } = yield* counter
      const key = freshKey()
      const failed = yield* Effect.flip(run(key, { name: "a" }, Effect.fail("boom" as const)))
      expect(failed).toBe("boom")
      expect(yield* rowOf(key)).toEqual([])

      const died = yield* Effect.exit(run(key, { name: "a" }, Effect.die(new Error("bug"))))
      expect(Exit.isFailure(died) && Cause.isDie(died.cause)).toBe(true)
      expect(yield* rowOf(key)).toEqual([])

      // a failure inside the effect's own transaction rolls it back and releases the key too
      const sql = yield* SqlClient.SqlClient
      const inTransaction = sql.withTransaction(
        Effect.zipRight(
          sql`INSERT INTO audit_logs (action, resource_type, resource_id) VALUES ('thing.create', 'thing', ${key})`,
          Effect.fail("rolled back" as const)
        )
      )
      expect(yield* Effect.flip(run(key, { name: "a" }, inTransaction))).toBe("rolled back")
      expect(yield* sql`SELECT 1 FROM audit_logs WHERE resource_id = ${key}`).toEqual([])
      expect(yield* rowOf(key)).toEqual([])

      expect(yield* run(key, { name: "a" }, create("a"))).toEqual({ id: 1, name: "a", created_at: at })
      expect(yield* Ref.get(runs)).toBe(1)
    }))

  it.effect("answers 409 in progress to a repeat while the first request runs, then replays once it is done", () =>
    Effect.gen(function*() {
      const { create, runs } = yield* counter
      const key = freshKey()
      const started = yield* Deferred.make<void>()
      const proceed = yield* Deferred.make<void>()
      const slow = Deferred.succeed(started, undefined).pipe(
        Effect.zipRight(Deferred.await(proceed)),
        Effect.zipRight(create("a"))
      )
      const first = yield* Effect.fork(run(key, { name: "a" }, slow))
      yield* Deferred.await(started)

      const error = yield* Effect.flip(run(key, { name: "a" }, create("a")))
      expect(error).toMatchObject({
        _tag: "Conflict",
        detail: "a request with this Idempotency-Key is still in progress"
      })

      yield* Deferred.succeed(proceed, undefined)
      expect(yield* Fiber.join(first)).toEqual({ id: 1, name: "a", created_at: at })
      const replayed = asResponse(yield* run(key, { name: "a" }, create("a")))
      expect(bodyOf(replayed)).toMatchObject({ id: 1 })
      expect(yield* Ref.get(runs)).toBe(1)
    }))

  it.effect("two concurrent first requests: one runs, the other gets 409 in progress or the replay", () =>
    Effect.gen(function*() {
      const { create, runs } = yield* counter
      const key = freshKey()
      const attempt = run(key, { name: "a" }, Effect.zipRight(realSleep(50), create("a"))).pipe(Effect.either)
      const results = yield* Effect.all([attempt, attempt], { concurrency: "unbounded" })
      expect(yield* Ref.get(runs)).toBe(1)
      const ran = results.filter((r) => r._tag === "Right" && !HttpServerResponse.isServerResponse(r.right))
      expect(ran).toHaveLength(1)
      const other = results.find((r) => r !== ran[0])
      if (other?._tag === "Left") {
        expect(other.left).toMatchObject({
          _tag: "Conflict",
          detail: "a request with this Idempotency-Key is still in progress"
        })
      } else {
        expect(other?._tag === "Right" && asResponse(other.right).headers["idempotent-replayed"]).toBe("true")
      }
    }))

  it.effect("reclaims an expired key, finished or not, as if it were new", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { create, runs } = yield* counter
      const key = freshKey()
      yield* run(key, { name: "a" }, create("a"))
      yield* sql`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = ${key}`
      // even another request may use it once expired
      expect(yield* run(key, { name: "b" }, create("b"))).toMatchObject({ id: 2, name: "b" })
      const [row] = yield* rowOf(key)
      expect(row).toMatchObject({ request_hash: requestHash({ name: "b" }), response_status: 201, ttl_hours: 24 })

      // a claim left unfinished (a crashed instance) stops blocking once it expires
      const stuck = freshKey()
      yield* sql`INSERT INTO idempotency_keys (key, scope, request_hash, expires_at)
        VALUES (${stuck}, 'user:1:POST /things', ${requestHash({ name: "c" })}, now() - interval '1 second')`
      expect(yield* run(stuck, { name: "c" }, create("c"))).toMatchObject({ id: 3, name: "c" })
      expect(yield* Ref.get(runs)).toBe(3)
    }))

  it.effect("keeps scopes apart: two users may send the same key", () =>
    Effect.gen(function*() {
      const { create, runs } = yield* counter
      const key = freshKey()
      expect(yield* run(key, { name: "a" }, create("a"), "user:1:POST /things")).toMatchObject({ id: 1 })
      expect(yield* run(key, { name: "a" }, create("a"), "user:2:POST /things")).toMatchObject({ id: 2 })
      expect(yield* Ref.get(runs)).toBe(2)
      expect((yield* rowOf(key)).map((row) => row.scope)).toEqual(["user:1:POST /things", "user:2:POST /things"])
      expect(bodyOf(asResponse(yield* run(key, { name: "a" }, create("a"), "user:2:POST /things")))).toMatchObject({
        id: 2
      })
    }))

  it.effect("replays a bodiless success as an empty response with its status", () =>
    Effect.gen(function*() {
      const key = freshKey()
      const options = { key, scope: "user:1:POST /actions", request: {}, success: Schema.Void, status: 204 }
      yield* withIdempotency(options, Effect.void)
      const replayed = asResponse(yield* withIdempotency(options, Effect.void))
      expect(replayed.status).toBe(204)
      expect(replayed.body._tag).toBe("Empty")
      expect(replayed.headers["idempotent-replayed"]).toBe("true")
    }))

  it.effect("refuses to run inside a transaction, whose rollback would also undo the bookkeeping", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { create } = yield* counter
      const exit = yield* Effect.exit(sql.withTransaction(run(freshKey(), { name: "a" }, create("a"))))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    }))
})
