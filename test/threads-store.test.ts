import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"

import { NotFound } from "../src/domain/errors.js"
import {
  type CursorPage,
  InvalidCursor,
  Thread,
  type ThreadId,
  ThreadItem,
  ThreadItemId,
  ThreadMetadata,
  ThreadNotWritable,
  type ThreadStatus
} from "../src/domain/Thread.js"
import { CurrentUser, type User, type UserId } from "../src/domain/User.js"
import { type Access, ThreadsPolicy } from "../src/features/threads/Policy.js"
import {
  type LockOptions,
  type NewItem,
  type ThreadRow,
  ThreadsRepo,
  toThreadItem,
  toThreadMetadata
} from "../src/features/threads/Repo.js"
import { migrateUp } from "../src/platform/Migrations.js"
import { testDatabaseLayer } from "./support/database.js"
import { fakeUser, makeTestLayer } from "./support/fakes.js"
import { countQueries } from "./support/queries.js"

/** The chat store (migration 0006, ThreadsRepo) on the real database layer, and ThreadsPolicy on a fake repo. */

const Migrated = Layer.effectDiscard(migrateUp()).pipe(Layer.provideMerge(testDatabaseLayer("threads_store")))
const StoreLayer = ThreadsRepo.Default.pipe(Layer.provideMerge(Migrated))

interface Fixture {
  readonly alice: UserId
  readonly bob: UserId
  readonly workflow: number
  readonly otherWorkflow: number
  readonly version: number
}

/** Two users, two workflows, a version of the first (not its active one, so it can be deleted). */
const seed = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const suffix = Math.random().toString(16).slice(2, 10)
  const [alice] = yield* sql<{ id: number }>`INSERT INTO users (email, password_hash)
    VALUES (${`alice-${suffix}@example.com`}, 'x') RETURNING id`
  const [bob] = yield* sql<{ id: number }>`INSERT INTO users (email, password_hash)
    VALUES (${`bob-${suffix}@example.com`}, 'x') RETURNING id`
  const [workflow] = yield* sql<{ id: number }>`INSERT INTO workflows (slug, display_name)
    VALUES (${`w-${suffix}`}, 'W') RETURNING id`
  const [otherWorkflow] = yield* sql<{ id: number }>`INSERT INTO workflows (slug, display_name)
    VALUES (${`o-${suffix}`}, 'O') RETURNING id`
  const [version] = yield* sql<{ id: number }>`INSERT INTO workflow_definitions (workflow_id, version)
    VALUES (${workflow!.id}, 1) RETURNING id`
  return {
    alice: alice!.id as UserId,
    bob: bob!.id as UserId,
    workflow: workflow!.id,
    otherWorkflow: otherWorkflow!.id,
    version: version!.id
  } satisfies Fixture
})

const newThread = (owner: UserId, f: Fixture, workflowId = f.workflow) =>
  Effect.flatMap(ThreadsRepo, (repo) => repo.create({ ownerId: owner, workflowId, workflowVersionId: null }))

const answer = (text: string, status: string): NewItem => ({
  type: "assistant_message",
  payload: { content: [{ type: "output_text", text, annotations: [] }], status }
})

const message = (text: string): NewItem => ({
  type: "user_message",
  payload: { content: [{ type: "input_text", text }], attachments: [], inference_options: {} }
})

/** Every page of `fetch`, following `after`, with the number of statements each page took. */
const walk = <A extends { readonly id: string }, E, R>(
  fetch: (after: string | null) => Effect.Effect<CursorPage<A>, E, R>
) =>
  Effect.gen(function*() {
    const ids: Array<string> = []
    const statements: Array<number> = []
    let after: string | null = null
    for (let guard = 0; guard < 100; guard++) {
      const counted: { result: CursorPage<A>; queries: number } = yield* countQueries(fetch(after))
      const { queries, result: page } = counted
      statements.push(queries)
      ids.push(...page.data.map((row) => row.id))
      if (!page.has_more) {
        expect(page.after).toBeNull()
        break
      }
      expect(page.after).toBe(page.data[page.data.length - 1]?.id)
      after = page.after
    }
    return { ids, statements }
  })

layer(StoreLayer, { timeout: 120_000 })("ThreadsRepo", (it) => {
  it.effect("creates a thr_ thread, active, and finds it live for its owner only", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* repo.create({
        ownerId: f.alice,
        workflowId: f.workflow,
        workflowVersionId: f.version,
        metadata: { workflow_id: f.workflow }
      })
      expect(thread.id).toMatch(/^thr_[0-9a-f]{16}$/)
      expect(thread.status).toEqual({ type: "active" })
      expect(thread.title).toBeNull()
      expect(thread.runtime_state).toEqual({})
      expect(Option.map(yield* repo.find(thread.id), (row) => row.id)).toEqual(Option.some(thread.id))
      expect(Option.isSome(yield* repo.findOfOwner(thread.id, f.alice, { lock: true }))).toBe(true)
      expect(Option.isNone(yield* repo.findOfOwner(thread.id, f.bob))).toBe(true)

      // as the protocol serialises it: snake_case, ISO dates with Z, metadata passed through
      const wire = Schema.encodeSync(ThreadMetadata)(toThreadMetadata(thread))
      expect(wire).toEqual({
        id: thread.id,
        title: null,
        created_at: thread.created_at.toISOString(),
        status: { type: "active" },
        metadata: { workflow_id: f.workflow }
      })
      expect(wire.created_at).toMatch(/Z$/)
    }))

  it.effect("a thread created for a turn holds its lease; endTurn stores the runtime state and gives it back in one statement", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* repo.create({
        ownerId: f.alice,
        workflowId: f.workflow,
        workflowVersionId: f.version,
        turn: { id: "turn-1", leaseSeconds: 30 }
      })
      expect(yield* repo.acquireTurn(thread.id, "turn-2", 30)).toBe(false)
      const { queries, result: ended } = yield* countQueries(
        repo.endTurn(thread.id, "turn-1", { resume_at: "ask", state: { step: 2 } })
      )
      expect(ended).toBe(true)
      expect(queries).toBe(1)
      const stored = yield* repo.find(thread.id)
      expect(Option.map(stored, (row) => row.runtime_state)).toEqual(
        Option.some({ resume_at: "ask", state: { step: 2 } })
      )
      expect(yield* repo.acquireTurn(thread.id, "turn-2", 30)).toBe(true)

      // a turn that lost its lease still ends with its state, and leaves the new holder's lease alone
      expect(yield* repo.endTurn(thread.id, "turn-1", { state: {} })).toBe(true)
      expect(yield* repo.acquireTurn(thread.id, "turn-3", 30)).toBe(false)
      // a thread deleted meanwhile is not written, and says so (the turn's finalizer gives the lease back)
      yield* repo.softDelete(thread.id)
      expect(yield* repo.endTurn(thread.id, "turn-2", { state: { late: true } })).toBe(false)
    }))

  it.effect("the database refuses forged ids, unknown statuses and items of another thread's feedback", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const f = yield* seed
      const bad = (statement: Effect.Effect<unknown, unknown>) =>
        Effect.map(Effect.either(statement), (result) => result._tag)
      expect(
        yield* bad(
          sql`INSERT INTO chat_threads (id, owner_id, workflow_id) VALUES ('thr_XYZ', ${f.alice}, ${f.workflow})`
        )
      ).toBe("Left")
      expect(
        yield* bad(sql`INSERT INTO chat_threads (id, owner_id, workflow_id, status)
          VALUES ('thr_00000000000000aa', ${f.alice}, ${f.workflow}, '{"type": "paused"}')`)
      ).toBe("Left")
      const thread = yield* newThread(f.alice, f)
      expect(
        yield* bad(sql`INSERT INTO chat_thread_items (id, thread_id, seq, type, payload)
          VALUES ('item_1', ${thread.id}, 1, 'user_message', '{}')`)
      ).toBe("Left")
    }))

  it.effect("a generated title lands only on a live thread without one: a rename or a delete wins", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const [untitled, renamed, deleted] = yield* Effect.all([
        newThread(f.alice, f),
        newThread(f.alice, f),
        newThread(f.alice, f)
      ])
      yield* repo.updateTitle(renamed.id, "Chosen by its owner")
      yield* repo.softDelete(deleted.id)
      expect(yield* repo.setTitleIfUntitled(untitled.id, "Generated")).toBe(true)
      expect(yield* repo.setTitleIfUntitled(untitled.id, "Generated again")).toBe(false)
      expect(yield* repo.setTitleIfUntitled(renamed.id, "Generated")).toBe(false)
      expect(yield* repo.setTitleIfUntitled(deleted.id, "Generated")).toBe(false)
      expect(Option.map(yield* repo.find(untitled.id), (t) => t.title)).toEqual(Option.some("Generated"))
      expect(Option.map(yield* repo.find(renamed.id), (t) => t.title)).toEqual(Option.some("Chosen by its owner"))
    }))

  it.effect("thread pages: equal timestamps never decide the order, each page is one statement", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const sql = yield* SqlClient.SqlClient
      const f = yield* seed
      const mine = yield* Effect.forEach(Array.from({ length: 7 }), () => newThread(f.alice, f))
      yield* newThread(f.bob, f)
      const gone = yield* newThread(f.alice, f)
      yield* repo.softDelete(gone.id)
      // five threads share one instant, two are later and share another
      const ids = mine.map((t) => t.id)
      yield* sql`UPDATE chat_threads SET updated_at = '2026-01-01T00:00:00Z' WHERE id IN ${sql.in(ids.slice(0, 5))}`
      yield* sql`UPDATE chat_threads SET updated_at = '2026-01-02T00:00:00Z' WHERE id IN ${sql.in(ids.slice(5))}`
      const older = [...ids.slice(0, 5)].sort().reverse()
      const newer = [...ids.slice(5)].sort().reverse()
      const desc = [...newer, ...older]

      for (const limit of [1, 2, 3, 7, 20]) {
        const down = yield* walk((after) => repo.listThreads(f.alice, { limit, after }))
        expect(down.ids).toEqual(desc)
        expect(down.statements.every((n) => n === 1)).toBe(true)
        const up = yield* walk((after) => repo.listThreads(f.alice, { limit, order: "asc", after }))
        expect(up.ids).toEqual([...desc].reverse())
      }
      const first = yield* repo.listThreads(f.alice)
      expect(first.data).toHaveLength(7)
      expect(first.has_more).toBe(false)
      expect((yield* repo.listThreads(f.alice, { limit: 500 })).data).toHaveLength(7)
      expect((yield* repo.listThreads(f.alice, { limit: 0 })).data).toHaveLength(1)
      // the last thread's successor is an empty page, not an error
      expect(yield* repo.listThreads(f.alice, { after: desc[6]! })).toEqual({ data: [], has_more: false, after: null })
    }))

  it.effect("a foreign, deleted or forged after is InvalidCursor, never another user's page", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const own = yield* newThread(f.alice, f)
      const bobs = yield* newThread(f.bob, f)
      const deleted = yield* newThread(f.alice, f)
      yield* repo.softDelete(deleted.id)
      for (const after of [bobs.id, deleted.id, "thr_0000000000000000", "'; DROP TABLE chat_threads; --", ""]) {
        const error = yield* Effect.flip(repo.listThreads(f.alice, { after }))
        expect(error).toBeInstanceOf(InvalidCursor)
        expect(error instanceof InvalidCursor && error.after).toBe(after)
      }
      expect((yield* repo.listThreads(f.alice, { after: own.id })).data).toEqual([])

      const other = yield* newThread(f.alice, f)
      const [foreignItem] = yield* repo.appendItems(other.id, [message("elsewhere")])
      yield* repo.appendItems(own.id, [message("hi")])
      for (const after of [foreignItem!.id, "msg_ffffffffffffffff", "nope"]) {
        expect((yield* Effect.flip(repo.listItems(own.id, { after })))._tag).toBe("InvalidCursor")
      }
    }))

  it.effect("20 concurrent appends get distinct, gap-free positions, each batch in order", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* newThread(f.alice, f)
      const batches = yield* Effect.all(
        Array.from({ length: 20 }, (_, n) => repo.appendItems(thread.id, [message(`q${n}`), message(`a${n}`)])),
        { concurrency: 20 }
      )
      const seqs = batches.flatMap((batch) => batch.map((row) => row.seq)).sort((a, b) => a - b)
      expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
      for (const batch of batches) {
        expect(batch).toHaveLength(2)
        expect(batch[1]!.seq).toBe(batch[0]!.seq + 1)
      }
      const all = yield* walk((after) => repo.listItems(thread.id, { order: "asc", limit: 100, after }))
      const bySeq = batches.flat().sort((a, b) => a.seq - b.seq).map((row) => row.id)
      expect(all.ids).toEqual(bySeq)
      const after = yield* repo.find(thread.id)
      expect(Option.getOrThrow(after).updated_at.getTime()).toBeGreaterThanOrEqual(thread.updated_at.getTime())
    }))

  it.effect("item pages by position, the newest window for get_by_id, and unknown kinds round-trip", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* newThread(f.alice, f)
      const rows = yield* repo.appendItems(
        thread.id,
        Array.from({ length: 60 }, (_, n) => message(`m${n}`))
      )
      const ids = rows.map((row) => row.id)
      expect(ids.every((id) => Schema.is(ThreadItemId)(id) && id.startsWith("msg_"))).toBe(true)

      const down = yield* walk((after) => repo.listItems(thread.id, { limit: 7, after }))
      expect(down.ids).toEqual([...ids].reverse())
      expect(down.statements.every((n) => n === 1)).toBe(true)
      const up = yield* walk((after) => repo.listItems(thread.id, { order: "asc", limit: 25, after }))
      expect(up.ids).toEqual(ids)

      // get_by_id: the newest 50 in chronological order; older ones follow through items.list desc
      const window = yield* repo.latestItems(thread.id)
      expect(window.data.map((row) => row.id)).toEqual(ids.slice(10))
      expect(window.has_more).toBe(true)
      expect(window.after).toBe(ids[10])
      const older = yield* repo.listItems(thread.id, { order: "desc", limit: 50, after: window.after })
      expect(older.data.map((row) => row.id)).toEqual(ids.slice(0, 10).reverse())
      expect(older.has_more).toBe(false)
      const small = yield* newThread(f.alice, f)
      yield* repo.appendItems(small.id, [message("one")])
      expect(yield* Effect.map(repo.latestItems(small.id), (page) => [page.data.length, page.has_more, page.after]))
        .toEqual([1, false, null])

      // an item kind this backend does not know is stored and served as sent
      const [odd] = yield* repo.appendItems(thread.id, [{
        type: "hologram",
        payload: { id: "ignored", type: "ignored", beam: { colour: "teal", layers: [1, 2] }, note: null }
      }])
      const served = Schema.encodeSync(ThreadItem)(toThreadItem(odd!))
      expect(served).toEqual({
        id: odd!.id,
        thread_id: thread.id,
        created_at: odd!.created_at.toISOString(),
        type: "hologram",
        beam: { colour: "teal", layers: [1, 2] },
        note: null
      })
      const [tool] = yield* repo.appendItems(thread.id, [{ type: "client_tool_call", payload: { call_id: "c" } }])
      expect(tool!.id).toMatch(/^tc_[0-9a-f]{16}$/)

      // streaming saves replace the payload, in this thread only
      const updated = yield* repo.updateItemPayload(thread.id, odd!.id, { beam: { colour: "red" } })
      expect(Option.map(updated, (row) => row.payload)).toEqual(Option.some({ beam: { colour: "red" } }))
      expect(Option.isNone(yield* repo.updateItemPayload(small.id, odd!.id, {}))).toBe(true)

      const wire = Schema.encodeSync(Thread)({
        ...toThreadMetadata(thread),
        items: { ...window, data: window.data.map(toThreadItem) }
      })
      expect(wire.items.data).toHaveLength(50)
      expect(wire.items.after).toBe(ids[10])
    }))

  it.effect("retry deletes every item after the given one, only in its thread", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* newThread(f.alice, f)
      const other = yield* newThread(f.alice, f)
      const rows = yield* repo.appendItems(thread.id, Array.from({ length: 6 }, (_, n) => message(`m${n}`)))
      const [otherItem] = yield* repo.appendItems(other.id, [message("keep")])
      const ids = rows.map((row) => row.id)

      expect(yield* repo.deleteItemsAfter(thread.id, ids[2]!)).toEqual(Option.some(ids.slice(3)))
      expect((yield* repo.listItems(thread.id, { order: "asc" })).data.map((row) => row.id)).toEqual(ids.slice(0, 3))
      expect(yield* repo.deleteItemsAfter(thread.id, ids[2]!)).toEqual(Option.some([]))
      expect(yield* repo.deleteItemsAfter(thread.id, otherItem!.id)).toEqual(Option.none())
      expect(yield* repo.deleteItemsAfter(thread.id, "msg_nothere")).toEqual(Option.none())
      expect((yield* repo.listItems(other.id)).data).toHaveLength(1)

      // the next turn's items come after the kept ones
      const [next] = yield* repo.appendItems(thread.id, [message("again")])
      expect(next!.seq).toBeGreaterThan(rows[2]!.seq)
      expect((yield* repo.listItems(thread.id, { order: "asc" })).data.map((row) => row.id)).toEqual([
        ...ids.slice(0, 3),
        next!.id
      ])
      expect(Option.isSome(yield* repo.findItem(thread.id, next!.id))).toBe(true)
      expect(Option.isNone(yield* repo.findItem(other.id, next!.id))).toBe(true)
    }))

  it.effect("feedback: one per item and user, replaced on repeat, only for the thread's own items", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* newThread(f.alice, f)
      const other = yield* newThread(f.bob, f)
      const [q, a] = yield* repo.appendItems(thread.id, [message("q"), { type: "assistant_message", payload: {} }])
      const [foreign] = yield* repo.appendItems(other.id, [message("x")])

      const recorded = yield* repo.upsertFeedback(
        thread.id,
        f.alice,
        [a!.id, foreign!.id, "msg_forged", a!.id],
        "positive"
      )
      expect(recorded).toEqual([a!.id])
      expect(yield* repo.upsertFeedback(thread.id, f.alice, [q!.id, a!.id], "negative")).toEqual([q!.id, a!.id])
      expect(yield* repo.listFeedback(thread.id, f.alice)).toEqual(
        [{ item_id: q!.id, kind: "negative" }, { item_id: a!.id, kind: "negative" }].sort((x, y) =>
          x.item_id < y.item_id ? -1 : 1
        )
      )
      expect(yield* repo.listFeedback(other.id, f.bob)).toEqual([])
      expect(yield* repo.upsertFeedback(thread.id, f.alice, [], "positive")).toEqual([])
      // feedback goes with its item (retry)
      yield* repo.deleteItemsAfter(thread.id, q!.id)
      expect(yield* repo.listFeedback(thread.id, f.alice)).toEqual([{ item_id: q!.id, kind: "negative" }])
    }))

  it.effect("title, status and soft delete; a deleted thread vanishes from every read and takes no items", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* newThread(f.alice, f)
      const titled = yield* repo.updateTitle(thread.id, "Trip to Lyon")
      expect(Option.map(titled, (row) => row.title)).toEqual(Option.some("Trip to Lyon"))
      const locked: ThreadStatus = { type: "locked", reason: "archived" }
      const changed = yield* repo.update(thread.id, {
        status: locked,
        runtime_state: { node: "agent", state: { n: 1 } }
      })
      expect(Option.map(changed, (row) => [row.status, row.runtime_state])).toEqual(
        Option.some([locked, { node: "agent", state: { n: 1 } }])
      )
      expect(Option.isSome(yield* repo.softDelete(thread.id))).toBe(true)
      expect(Option.isNone(yield* repo.softDelete(thread.id))).toBe(true)
      expect(Option.isNone(yield* repo.find(thread.id))).toBe(true)
      expect(Option.isNone(yield* repo.updateTitle(thread.id, "x"))).toBe(true)
      expect(yield* repo.appendItems(thread.id, [message("late")])).toEqual([])
      expect((yield* repo.listThreads(f.alice)).data.map((row) => row.id)).not.toContain(thread.id)
    }))

  it.effect("deleting the pinned version clears only the version; the thread and its workflow stay", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const sql = yield* SqlClient.SqlClient
      const f = yield* seed
      const thread = yield* repo.create({ ownerId: f.alice, workflowId: f.workflow, workflowVersionId: f.version })
      // a version of another workflow is refused
      const wrong = yield* Effect.either(
        repo.create({ ownerId: f.alice, workflowId: f.otherWorkflow, workflowVersionId: f.version })
      )
      expect(wrong._tag).toBe("Left")
      yield* sql`DELETE FROM workflow_definitions WHERE id = ${f.version}`
      const row = Option.getOrThrow(yield* repo.find(thread.id))
      expect([row.workflow_id, row.workflow_version_id]).toEqual([f.workflow, null])
    }))

  it.effect("admin pages by workflow and user, with the total, newest first; items in order", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const a1 = yield* newThread(f.alice, f)
      const a2 = yield* newThread(f.alice, f, f.otherWorkflow)
      const b1 = yield* newThread(f.bob, f)
      yield* repo.appendItems(a1.id, [message("latest activity")])
      const byWorkflow = yield* repo.adminList({ workflowId: f.workflow }, 10, 0)
      expect(byWorkflow.total).toBe(2)
      expect(byWorkflow.items.map((row) => row.id)).toEqual([a1.id, b1.id])
      const byUser = yield* repo.adminList({ userId: f.alice }, 1, 1)
      expect(byUser.total).toBe(2)
      expect(byUser.items.map((row) => row.id)).toEqual([a2.id])
      const both = yield* repo.adminList({ userId: f.bob, workflowId: f.workflow }, 10, 5)
      expect(both).toEqual({ total: 1, items: [] })
      const items = yield* repo.adminItems(a1.id, 10, 0)
      expect(items.total).toBe(1)
      expect(items.items[0]?.payload).toMatchObject({ content: [{ type: "input_text", text: "latest activity" }] })
    }))

  it.effect("answers a stopped instance left in progress settle once its turn's lease lapsed (incomplete, or gone if empty); a live turn's stay", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const sql = yield* SqlClient.SqlClient
      const f = yield* seed
      const stopped = yield* newThread(f.alice, f)
      const live = yield* newThread(f.alice, f)
      const [, cut] = yield* repo.appendItems(stopped.id, [
        message("question"),
        answer("half an ans", "in_progress"),
        answer("", "in_progress")
      ])
      const [streaming] = yield* repo.appendItems(live.id, [answer("still coming", "in_progress")])
      yield* sql`UPDATE chat_threads SET turn_id = 'dead', turn_until = now() - interval '1 second'
        WHERE id = ${stopped.id}`
      expect(yield* repo.acquireTurn(live.id, "live", 30)).toBe(true)

      expect(yield* repo.settleAbandonedAnswers()).toEqual({ marked: 1, removed: 1 })
      const items = (yield* repo.listItems(stopped.id, { limit: 10, order: "asc", after: null })).data
      expect(items.map((item) => [item.id, item.payload.status])).toEqual([
        [items[0]!.id, undefined],
        [cut!.id, "incomplete"]
      ])
      expect(items[1]!.payload.content).toEqual([{ type: "output_text", text: "half an ans", annotations: [] }])
      const liveItems = (yield* repo.listItems(live.id, { limit: 10, order: "asc", after: null })).data
      expect(liveItems.map((item) => [item.id, item.payload.status])).toEqual([[streaming!.id, "in_progress"]])
      // settled once: a second sweep finds nothing
      expect(yield* repo.settleAbandonedAnswers()).toEqual({ marked: 0, removed: 0 })
    }))

  it.effect("an answer is never swept while its turn holds the thread, however long the model says nothing", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const sql = yield* SqlClient.SqlClient
      const f = yield* seed
      const thread = yield* newThread(f.alice, f)
      expect(yield* repo.acquireTurn(thread.id, "thinking", 30)).toBe(true)
      const [quiet] = yield* repo.appendItems(thread.id, [answer("", "in_progress")])
      yield* sql`UPDATE chat_thread_items SET updated_at = now() - interval '1 hour' WHERE id = ${quiet!.id}`
      expect(yield* repo.settleAbandonedAnswers()).toEqual({ marked: 0, removed: 0 })
      // the turn's instance stopped renewing: 30 s later the lease has lapsed
      yield* sql`UPDATE chat_threads SET turn_until = now() - interval '1 second' WHERE id = ${thread.id}`
      expect(yield* repo.settleAbandonedAnswers()).toEqual({ marked: 0, removed: 1 })
    }))

  it.effect("the policy on the real store: a deleted thread is the same 404 as a missing one", () =>
    Effect.gen(function*() {
      const repo = yield* ThreadsRepo
      const f = yield* seed
      const thread = yield* newThread(f.alice, f)
      const policy = yield* Effect.provide(
        ThreadsPolicy,
        ThreadsPolicy.DefaultWithoutDependencies.pipe(
          Layer.provide(Layer.succeed(ThreadsRepo, repo))
        )
      )
      const asAlice = Effect.provideService(CurrentUser, fakeUser(f.alice))
      expect((yield* asAlice(policy.require(thread.id, "write", { lock: true }))).id).toBe(thread.id)
      yield* repo.softDelete(thread.id)
      const deleted = yield* Effect.flip(asAlice(policy.require(thread.id, "read")))
      const missing = yield* Effect.flip(asAlice(policy.require("thr_0000000000000000", "read")))
      expect(deleted).toBeInstanceOf(NotFound)
      expect(deleted instanceof NotFound && deleted.detail).toBe(`Thread ${thread.id} does not exist`)
      expect(missing).toBeInstanceOf(NotFound)
    }))
})

// -- ThreadsPolicy on a fake repo ----------------------------------------------------------------

const OWNER = 1
const OTHER = 2
const ADMIN = 3
const ID = "thr_00000000000000a7" as ThreadId

const threadRow = (fields: Partial<ThreadRow> = {}): ThreadRow => ({
  id: ID,
  owner_id: OWNER as UserId,
  title: null,
  status: { type: "active" },
  workflow_id: 1,
  workflow_version_id: null,
  runtime_state: {},
  metadata: {},
  created_at: new Date(0),
  updated_at: new Date(0),
  deleted_at: null,
  ...fields
})

const setup = (found: Option.Option<ThreadRow>) => {
  const calls: Array<{ readonly id: string; readonly options: LockOptions | undefined }> = []
  const repo = makeTestLayer(ThreadsRepo)({
    find: (id, options) =>
      Effect.sync(() => {
        calls.push({ id, options })
        return found
      })
  })
  return { calls, layer: ThreadsPolicy.DefaultWithoutDependencies.pipe(Layer.provide(repo)) }
}

const decide = (found: Option.Option<ThreadRow>, user: User, need: Access, id: string = ID) =>
  Effect.flatMap(ThreadsPolicy, (policy) => policy.require(id, need)).pipe(
    Effect.provide(setup(found).layer),
    Effect.provideService(CurrentUser, user),
    Effect.either
  )

const grants = (found: Option.Option<ThreadRow>, user: User) =>
  Effect.forEach(
    ["read", "write"] as const,
    (need) => Effect.map(decide(found, user, need), (result) => result._tag === "Right" ? "ok" : result.left._tag)
  )

describe("ThreadsPolicy", () => {
  it.effect("the owner reads and writes; anyone else, administrators included, gets a 404", () =>
    Effect.gen(function*() {
      const active = Option.some(threadRow())
      expect(yield* grants(active, fakeUser(OWNER))).toEqual(["ok", "ok"])
      expect(yield* grants(active, fakeUser(OTHER))).toEqual(["NotFound", "NotFound"])
      expect(yield* grants(active, fakeUser(ADMIN, true))).toEqual(["NotFound", "NotFound"])
      // the repo answers None for a missing or deleted thread
      expect(yield* grants(Option.none(), fakeUser(OWNER))).toEqual(["NotFound", "NotFound"])
      expect(yield* grants(Option.none(), fakeUser(ADMIN, true))).toEqual(["NotFound", "NotFound"])
    }))

  it.effect("a locked or closed thread is readable by its owner; writing is ThreadNotWritable", () =>
    Effect.gen(function*() {
      for (const status of [{ type: "locked", reason: "moderation" }, { type: "closed" }] as const) {
        const row = Option.some(threadRow({ status }))
        expect(yield* grants(row, fakeUser(OWNER))).toEqual(["ok", "ThreadNotWritable"])
        expect(yield* grants(row, fakeUser(OTHER))).toEqual(["NotFound", "NotFound"])
        expect(yield* grants(row, fakeUser(ADMIN, true))).toEqual(["NotFound", "NotFound"])
        const refused = yield* decide(row, fakeUser(OWNER), "write")
        expect(refused._tag === "Left" && refused.left).toBeInstanceOf(ThreadNotWritable)
        if (refused._tag === "Left" && refused.left instanceof ThreadNotWritable) {
          expect(refused.left.status).toEqual(status)
          expect(refused.left.detail).toBe(`Thread ${ID} is ${status.type} and takes no new messages`)
        }
      }
    }))

  it.effect("a 404 does not reveal the thread: another user's, a missing and a malformed id look alike", () =>
    Effect.gen(function*() {
      const foreign = yield* decide(Option.some(threadRow()), fakeUser(OTHER), "read")
      const missing = yield* decide(Option.none(), fakeUser(OTHER), "read")
      expect(foreign).toEqual(missing)
      expect(foreign._tag === "Left" && foreign.left).toBeInstanceOf(NotFound)
      const { calls, layer } = setup(Option.some(threadRow()))
      const malformed = yield* Effect.flatMap(ThreadsPolicy, (policy) => policy.require("thr_NOPE", "read")).pipe(
        Effect.provide(layer),
        Effect.provideService(CurrentUser, fakeUser(OWNER)),
        Effect.flip
      )
      expect(malformed).toBeInstanceOf(NotFound)
      expect(calls).toEqual([])
    }))

  it.effect("asks the repo for the thread, and locks the row only when told to", () =>
    Effect.gen(function*() {
      const { calls, layer } = setup(Option.some(threadRow()))
      const policy = yield* Effect.provide(ThreadsPolicy, layer)
      const asOwner = Effect.provideService(CurrentUser, fakeUser(OWNER))
      expect(yield* asOwner(policy.require(ID, "read"))).toEqual(threadRow())
      yield* asOwner(policy.require(ID, "write", { lock: true }))
      expect(calls).toEqual([{ id: ID, options: undefined }, { id: ID, options: { lock: true } }])
    }))
})
