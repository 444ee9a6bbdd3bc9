import { HttpClient, HttpClientRequest } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"

import { TestApp } from "./support/app.js"
import { answerOf, chatkit, eventsOf, json, say, sseReader, titledThread } from "./support/chatkit.js"
import { session } from "./support/session.js"

/*
 * A ChatKit client's session through POST /api/v1/chatkit, over a real socket, on the default
 * workflow (start -> agent -> end) and the local model. Streams are parsed from the raw body.
 */

/** The parts of an admin page these tests read. */
interface AdminPage {
  readonly total: number
  readonly items: ReadonlyArray<{ readonly id: string; readonly type: string; readonly owner_id: number }>
}

layer(TestApp("conversations", { TRUST_PROXY: "1" }))("conversations over the ChatKit protocol", (it) => {
  it.effect("create, stream, read, list, continue, retry, rename, feedback, delete", () =>
    Effect.gen(function*() {
      const { token } = yield* session("talker")
      const created = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("Hello there") } }))
      expect(created[0]).toEqual({ type: "stream_options", stream_options: { allow_cancel: true } })
      expect(created[1]?.type).toBe("thread.created")
      const threadId = created[1]?.thread.id as string
      expect(threadId).toMatch(/^thr_[0-9a-f]{16}$/)
      expect(created[2]).toMatchObject({
        type: "thread.item.done",
        item: { type: "user_message", thread_id: threadId }
      })
      expect(created[3]).toMatchObject({ type: "thread.item.added", item: { type: "assistant_message" } })
      expect(answerOf(created)).toContain("Hello there")

      const thread = json(yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }))
      expect(thread.items.data.map((item) => item.type)).toEqual(["user_message", "assistant_message"])
      expect(thread.items.has_more).toBe(false)
      expect(thread.items).not.toHaveProperty("after")
      expect(created[1]?.thread).not.toHaveProperty("title")
      // a background job titles the thread; the local model takes the first message's first words
      const titled = yield* titledThread(token, threadId)
      expect(titled.title).toBe("Hello there")

      // test-chatkit's client resumes a thread it loads: nothing runs detached, so the stream only opens
      expect(
        eventsOf(yield* chatkit(token, { type: "threads.resume", params: { thread_id: threadId } })).map((e) => e.type)
      ).toEqual(["stream_options"])

      const listed = json(yield* chatkit(token, { type: "threads.list", params: {} }))
      expect(listed.data.map((t) => t.id)).toContain(threadId)

      const second = eventsOf(
        yield* chatkit(token, {
          type: "threads.add_user_message",
          params: { thread_id: threadId, input: say("And again") }
        })
      )
      expect(second[0]?.type).toBe("stream_options")
      expect(answerOf(second)).toContain("turn 2")
      const secondUser = second.find((e) => e.type === "thread.item.done" && e.item.type === "user_message")?.item
        .id as string

      const items = json(
        yield* chatkit(token, { type: "items.list", params: { thread_id: threadId, order: "asc", limit: 3 } })
      )
      expect(items.data).toHaveLength(3)
      expect(items.has_more).toBe(true)
      const rest = json(
        yield* chatkit(token, { type: "items.list", params: { thread_id: threadId, order: "asc", after: items.after } })
      )
      expect(rest.data).toHaveLength(1)

      const retried = eventsOf(
        yield* chatkit(token, {
          type: "threads.retry_after_item",
          params: { thread_id: threadId, item_id: secondUser }
        })
      )
      expect(answerOf(retried)).toContain("And again")
      const afterRetry = json(yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }))
      expect(afterRetry.items.data.map((item) => item.type)).toEqual([
        "user_message",
        "assistant_message",
        "user_message",
        "assistant_message"
      ])

      const renamed = json(
        yield* chatkit(token, { type: "threads.update", params: { thread_id: threadId, title: "  Greetings " } })
      )
      expect(renamed.title).toBe("Greetings")
      const assistantIds = afterRetry.items.data.filter((i) => i.type === "assistant_message").map((i) => i.id)
      expect(
        json(
          yield* chatkit(token, {
            type: "items.feedback",
            params: { thread_id: threadId, item_ids: assistantIds, kind: "positive" }
          })
        )
      ).toEqual({})
      const sql = yield* SqlClient.SqlClient
      const feedback = yield* sql<
        { n: number }
      >`SELECT count(*)::int AS n FROM chat_item_feedback WHERE thread_id = ${threadId}`
      expect(feedback[0]?.n).toBe(2)

      expect(json(yield* chatkit(token, { type: "threads.delete", params: { thread_id: threadId } }))).toEqual({})
      expect((yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } })).status).toBe(404)
    }))

  it.effect("a client reading the stream in pieces cut anywhere, even inside a character, gets the same events", () =>
    Effect.gen(function*() {
      const { token } = yield* session("piecewise")
      const answer = yield* chatkit(token, {
        type: "threads.create",
        params: { input: say("Grüße aus Köln 👋 — ça va ?") }
      })
      const whole = eventsOf(answer)
      expect(answerOf(whole)).toContain("Grüße aus Köln 👋")
      const bytes = Buffer.from(answer.text, "utf8")
      fc.assert(
        fc.property(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 40 }), (cuts) => {
          const read = sseReader()
          const bounds = [0, ...cuts.sort((a, b) => a - b), bytes.length]
          const events = bounds.slice(1).flatMap((end, i) => read(bytes.subarray(bounds[i], end)))
          expect(events).toEqual(whole)
        }),
        { seed: 10, numRuns: 200 }
      )
    }))

  it.effect("administrators review every user's threads and their items through standard pages", () =>
    Effect.gen(function*() {
      const admin = yield* session("reviewer", { isAdmin: true })
      const user = yield* session("reviewed")
      const threadId = eventsOf(
        yield* chatkit(user.token, { type: "threads.create", params: { input: say("review me") } })
      )[1]
        ?.thread.id
      const http = yield* HttpClient.HttpClient
      const get = (path: string, token: string) =>
        http.execute(HttpClientRequest.get(path).pipe(HttpClientRequest.bearerToken(token))).pipe(
          Effect.flatMap((r) => Effect.map(r.json, (body) => ({ status: r.status, body: body as AdminPage })))
        )
      const listed = yield* get(`/api/v1/admin/threads?user_id=${user.user.id}`, admin.token)
      expect(listed.status).toBe(200)
      expect(listed.body).toMatchObject({ total: 1, page: 1, page_size: 20 })
      expect(listed.body.items[0]).toMatchObject({ id: threadId, owner_id: user.user.id })
      const items = yield* get(`/api/v1/admin/threads/${threadId}/items?page_size=1`, admin.token)
      expect(items.body).toMatchObject({ total: 2, total_pages: 2 })
      expect(items.body.items[0]?.type).toBe("user_message")
      expect((yield* get(`/api/v1/admin/threads/thr_ffffffffffffffff/items`, admin.token)).status).toBe(404)
      expect((yield* get(`/api/v1/admin/threads`, user.token)).status).toBe(403)
    }))

  describe("bad input gets a clear answer before any stream", () => {
    it.effect("another user's thread is a 404 that leaks nothing and adds nothing", () =>
      Effect.gen(function*() {
        const owner = yield* session("owner")
        const other = yield* session("intruder")
        const threadId = eventsOf(
          yield* chatkit(owner.token, { type: "threads.create", params: { input: say("mine") } })
        )[1]?.thread.id
        for (
          const body of [
            { type: "threads.get_by_id", params: { thread_id: threadId } },
            { type: "threads.add_user_message", params: { thread_id: threadId, input: say("hi") } },
            { type: "items.list", params: { thread_id: threadId } },
            { type: "threads.resume", params: { thread_id: threadId } },
            { type: "threads.delete", params: { thread_id: threadId } }
          ]
        ) {
          const answer = yield* chatkit(other.token, body)
          expect(answer.status).toBe(404)
          expect(answer.headers["content-type"]).toContain("application/problem+json")
          expect(answer.text).not.toContain("mine")
        }
        const sql = yield* SqlClient.SqlClient
        const items = yield* sql<
          { n: number }
        >`SELECT count(*)::int AS n FROM chat_thread_items WHERE thread_id = ${threadId}`
        expect(items[0]?.n).toBe(2)
      }))

    it.effect("unknown and unsupported types, empty and over-long messages, forged cursors, bad retries and workflow ids no row can have are 400s", () =>
      Effect.gen(function*() {
        const { token } = yield* session("careless")
        const threadId = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("first") } }))[1]
          ?.thread.id
        const assistant = json(yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }))
          .items.data[1]?.id
        // an item of the same user's other thread, and another user's thread as a cursor
        const other = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("second") } }))
        const otherThreadUserItem = other.find((e) => e.type === "thread.item.done")?.item.id
        const stranger = yield* session("stranger")
        const strangersThread = eventsOf(
          yield* chatkit(stranger.token, { type: "threads.create", params: { input: say("not yours") } })
        )[1]?.thread.id
        for (
          const body of [
            { type: "threads.explode", params: {} },
            { type: "attachments.create", params: { name: "a", size: 1, mime_type: "text/plain" } },
            { type: "threads.create", params: { input: say("   ") } },
            { type: "threads.create", params: { input: say("x".repeat(32_001)) } },
            { type: "threads.create", params: {} },
            // found by the OpenAPI fuzz: these reached the workflow query and failed its id schema (a 500)
            { type: "threads.create", params: { input: say("which?") }, metadata: { workflow_id: 2 ** 63 } },
            { type: "threads.create", params: { input: say("which?") }, metadata: { workflow_id: 1.5 } },
            { type: "threads.list", params: { after: "thr_ffffffffffffffff" } },
            { type: "threads.retry_after_item", params: { thread_id: threadId, item_id: assistant } },
            { type: "threads.retry_after_item", params: { thread_id: threadId, item_id: otherThreadUserItem } },
            { type: "threads.list", params: { after: strangersThread } },
            { type: "items.list", params: { thread_id: threadId, after: otherThreadUserItem } }
          ]
        ) {
          const answer = yield* chatkit(token, body)
          expect(answer.status, JSON.stringify(body).slice(0, 80)).toBe(400)
          expect(JSON.parse(answer.text)).toMatchObject({ error: "validation_error" })
        }
      }))

    it.effect("a thread whose pinned workflow version was deleted moves to the workflow's active version, or ends with an error event when there is none", () =>
      Effect.gen(function*() {
        const { client, token } = yield* session("version-gone")
        const sql = yield* SqlClient.SqlClient
        const fixed = (text: string) => ({
          nodes: [
            { slug: "start", kind: "start", display_name: "Start" },
            { slug: "say", kind: "assistant_message", display_name: "Say", parameters: { text } },
            { slug: "end", kind: "end", display_name: "End" }
          ],
          edges: [{ source: "start", target: "say" }, { source: "say", target: "end" }]
        })
        const workflow = yield* client.workflows.create({
          payload: { slug: `version-gone-${Date.now()}`, display_name: "Gone", graph: fixed("from version one") },
          headers: {}
        })
        const opened = eventsOf(
          yield* chatkit(token, {
            type: "threads.create",
            params: { input: say("first") },
            metadata: { workflow_id: workflow.id }
          })
        )
        expect(answerOf(opened)).toBe("from version one")
        const threadId = opened[1]?.thread.id
        const next = (text: string) =>
          Effect.map(
            chatkit(token, { type: "threads.add_user_message", params: { thread_id: threadId, input: say(text) } }),
            eventsOf
          )

        const v2 = yield* client.workflows.createVersion({
          path: { id: workflow.id },
          payload: { graph: fixed("from version two"), mark_as_active: true },
          headers: {}
        })
        yield* sql`DELETE FROM workflow_definitions WHERE workflow_id = ${workflow.id} AND id <> ${v2.id}`
        expect(answerOf(yield* next("second"))).toBe("from version two")

        yield* sql`UPDATE workflows SET active_version_id = NULL WHERE id = ${workflow.id}`
        yield* sql`DELETE FROM workflow_definitions WHERE workflow_id = ${workflow.id}`
        const events = yield* next("third")
        expect(events.at(-1)).toMatchObject({ type: "error", code: "stream.error", allow_retry: false })
        expect(typeof events.at(-1)?.message).toBe("string")
        // the history is kept: the thread still reads, with the refused message stored
        const thread = json(yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }))
        expect(thread.items.data.map((item) => item.type)).toEqual([
          "user_message",
          "assistant_message",
          "user_message",
          "assistant_message",
          "user_message"
        ])
      }))

    it.effect("a locked thread refuses new messages with an error event", () =>
      Effect.gen(function*() {
        const { token } = yield* session("locked")
        const threadId = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("first") } }))[1]
          ?.thread.id
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE chat_threads SET status = '{"type":"locked","reason":"Archived by an administrator"}' WHERE id = ${threadId}`
        const events = eventsOf(
          yield* chatkit(token, { type: "threads.add_user_message", params: { thread_id: threadId, input: say("hi") } })
        )
        expect(events.map((e) => e.type)).toEqual(["stream_options", "error"])
        expect(events[1]).toMatchObject({ code: "stream.error", allow_retry: false })
        expect(typeof events[1]?.message).toBe("string")
      }))
  })
})
