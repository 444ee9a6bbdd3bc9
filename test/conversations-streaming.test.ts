import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import {
  answerOf,
  chatkit,
  type Event,
  eventsOf,
  type Item,
  json,
  openStream,
  say,
  serverPort,
  titledThread
} from "./support/chatkit.js"
import { Fake, type FakeScript, TestAppOnFakeOpenAi } from "./support/fakeOpenAi.js"
import { session } from "./support/session.js"

/*
 * Answers stored while they stream (issue 10): in progress at once, saved about once a second,
 * settled complete, `incomplete` when the client goes away (the upstream call is aborted) or
 * `failed` when the provider does. Against an OpenAI-compatible server on 127.0.0.1 (LLM_PROVIDER=openai),
 * with clients on raw sockets where the socket matters.
 */

const App = TestAppOnFakeOpenAi("conversations_streaming")

const tokens = (n: number) => Array.from({ length: n }, (_, i) => `w${i} `)

/** `n` tokens, `delayMs` apart. */
const slow = (n: number, delayMs: number): FakeScript => ({ type: "stream", tokens: tokens(n), tokenDelayMs: delayMs })

const wait = <A>(promise: () => Promise<A>) => Effect.promise(promise)

const deltaCount = (events: ReadonlyArray<Event>) => events.filter((e) => e.type === "thread.item.updated").length

const textOf = (item: Item | undefined) => item?.content[0]?.text

/** The assistant item of a thread through `threads.get_by_id` (another request than the stream's). */
const storedAnswer = (token: string, threadId: string, itemId?: string) =>
  Effect.map(
    chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }),
    (answer) =>
      json(answer).items.data.find((item) =>
        item.type === "assistant_message" && (itemId === undefined || item.id === itemId)
      )
  )

/** Polls until the answer is no longer in progress (its stream settled it), at most 10 s. */
const settledAnswer = (token: string, threadId: string, itemId: string) =>
  storedAnswer(token, threadId, itemId).pipe(
    Effect.delay("50 millis"),
    Effect.repeat({ until: (item) => item?.status !== "in_progress" }),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the answer stayed in progress") })
  )

/**
 * Every UPDATE of an item, logged by a trigger with the database's clock: counts and spaces the
 * saves exactly, whatever the polling client happens to see on a busy machine.
 */
const logItemWrites = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.unsafe(`
    CREATE TABLE IF NOT EXISTS test_item_writes (
      at timestamptz NOT NULL DEFAULT clock_timestamp(), item_id text NOT NULL, status text, text text
    );
    CREATE OR REPLACE FUNCTION test_log_item_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO test_item_writes (item_id, status, text)
      VALUES (NEW.id, NEW.payload->>'status', NEW.payload->'content'->0->>'text');
      RETURN NEW;
    END $$;
    DROP TRIGGER IF EXISTS test_item_writes ON chat_thread_items;
    CREATE TRIGGER test_item_writes AFTER UPDATE ON chat_thread_items
      FOR EACH ROW EXECUTE FUNCTION test_log_item_write();
  `))

const itemWrites = (itemId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ at: Date; status: string | null; text: string | null }>`
      SELECT at, status, text FROM test_item_writes WHERE item_id = ${itemId} ORDER BY at`)

// the real clock throughout: the test polls and waits while the server streams
layer(App, { excludeTestServices: true })("answers stored while they stream", (it) => {
  it.effect("a slow answer is in progress for other requests, its text saved about once a second, then complete", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      yield* logItemWrites
      fake.script(slow(30, 100))
      const full = tokens(30).join("")
      const { token } = yield* session("slow-reader")
      const live = openStream(yield* serverPort, token, { type: "threads.create", params: { input: say("Slowly") } })
      let ended = false
      void live.ended.then(() => (ended = true))
      yield* wait(() => live.until((events) => events.some((e) => e.type === "thread.item.added")))
      const threadId = live.events.find((e) => e.type === "thread.created")?.thread.id as string
      const added = live.events.find((e) => e.type === "thread.item.added")?.item
      expect(added).toMatchObject({ type: "assistant_message", status: "in_progress", content: [{ text: "" }] })
      const itemId = added?.id as string

      // another client reads the thread while the answer streams
      const seen: Array<{ readonly text: string | undefined; readonly status: string | undefined }> = []
      while (!ended) {
        const item = yield* storedAnswer(token, threadId, itemId)
        if (item !== undefined) seen.push({ text: textOf(item), status: item.status })
        yield* Effect.sleep("100 millis")
      }
      expect(seen[0]?.status).toBe("in_progress")
      const partial = seen.filter((s) => s.status === "in_progress" && s.text !== "")
      expect(partial.length).toBeGreaterThan(0)
      for (const s of partial) expect(full.startsWith(s.text ?? "!")).toBe(true)
      expect(partial.some((s) => s.text!.length < full.length)).toBe(true)

      // the stream: the same id throughout, done with the full text and no status, as stored
      expect(answerOf(live.events)).toBe(full)
      const done = live.events.find((e) => e.type === "thread.item.done" && e.item.type === "assistant_message")?.item
      expect(done?.id).toBe(itemId)
      expect(done).not.toHaveProperty("status")
      const stored = yield* storedAnswer(token, threadId, itemId)
      expect(stored).toEqual(done)

      // the saves: at least two while it streamed, each a longer prefix, a second or more apart
      const writes = yield* itemWrites(itemId)
      const progress = writes.filter((w) => w.status === "in_progress")
      expect(progress.length).toBeGreaterThanOrEqual(2)
      expect(progress.length).toBeLessThan(10) // one per delta would be 30
      progress.forEach((w, i) => {
        expect(full.startsWith(w.text ?? "!")).toBe(true)
        const before = progress[i - 1]
        if (before !== undefined) {
          expect(w.text!.length).toBeGreaterThan(before.text!.length)
          expect(w.at.getTime() - before.at.getTime()).toBeGreaterThanOrEqual(900)
        }
      })
      expect(writes.at(-1)).toMatchObject({ status: null, text: full })
    }))

  it.effect("a client that leaves mid-answer aborts the upstream call; the partial answer is incomplete; the thread goes on", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      fake.script(slow(40, 100), { type: "stream", tokens: ["Back", " again"] })
      const full = tokens(40).join("")
      const { token } = yield* session("leaver")
      const before = fake.requests.length
      const live = openStream(yield* serverPort, token, { type: "threads.create", params: { input: say("Go on") } })
      yield* wait(() => live.until((events) => deltaCount(events) >= 5))
      const seen = live.deltas()
      live.destroy()
      const threadId = live.events.find((e) => e.type === "thread.created")?.thread.id as string
      const itemId = live.events.find((e) => e.type === "thread.item.added")?.item.id as string

      // the provider's connection is closed before its answer is complete
      const upstream = fake.requests[before]!
      yield* Effect.promise(() => upstream.closed).pipe(Effect.timeout("5 seconds"))
      expect(upstream.closedEarly).toBe(true)

      // the stored answer: a prefix of the full one, at least what the client saw, incomplete
      const item = yield* settledAnswer(token, threadId, itemId)
      expect(item?.status).toBe("incomplete")
      const text = textOf(item) ?? ""
      expect(seen).not.toBe("")
      expect(text.startsWith(seen)).toBe(true)
      expect(full.startsWith(text)).toBe(true)
      expect(text.length).toBeLessThan(full.length)

      // the thread is titled all the same: its title job is queued when the turn's events end, however they end
      const titled = yield* titledThread(token, threadId)
      expect(titled.title).toBe("Fake title")

      // the cut turn stored no runtime state: the thread is where it was before the turn
      const sql = yield* SqlClient.SqlClient
      const runtime = sql<{ runtime_state: unknown }>`SELECT runtime_state FROM chat_threads WHERE id = ${threadId}`
      expect((yield* runtime)[0]?.runtime_state).toEqual({ state: {} })

      // the next message gets a normal answer, with the cut one in the conversation
      const next = eventsOf(
        yield* chatkit(token, {
          type: "threads.add_user_message",
          params: { thread_id: threadId, input: say("Hello?") }
        })
      )
      expect(answerOf(next)).toBe("Back again")
      expect(next.find((e) => e.type === "thread.item.done" && e.item.type === "assistant_message")?.item).not
        .toHaveProperty("status")
      expect((fake.requests.at(-1)?.body as { messages: unknown }).messages).toEqual([
        { role: "system", content: "You are a helpful assistant." },
        { role: "user", content: "Go on" },
        { role: "assistant", content: text },
        { role: "user", content: "Hello?" }
      ])
      const thread = json(yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }))
      expect(thread.items.data.map((i) => [i.type, i.status])).toEqual([
        ["user_message", undefined],
        ["assistant_message", "incomplete"],
        ["user_message", undefined],
        ["assistant_message", undefined]
      ])
      expect((yield* runtime)[0]?.runtime_state).toEqual({ state: {}, resume_at: null })
    }))

  it.effect("a provider that drops the connection mid-answer: the partial answer is stored failed, then an error event", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      fake.script({
        type: "stream",
        tokens: ["One", " two", " three", " four", " five"],
        tokenDelayMs: 20,
        dropAfterTokens: 3
      })
      const { token } = yield* session("dropped")
      const events = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("Count") } }))
      const deltas = events.filter((e) => e.type === "thread.item.updated").map((e) => e.update.delta).join("")
      expect(deltas).toBe("One two three")
      expect(events.slice(-2).map((e) => e.type)).toEqual(["thread.item.done", "error"])
      const done = events.at(-2)?.item
      expect(done).toMatchObject({ type: "assistant_message", status: "failed", content: [{ text: deltas }] })
      expect(events.at(-1)).toMatchObject({ code: "stream.error", allow_retry: true })
      const stored = yield* storedAnswer(token, events[1]?.thread.id as string)
      expect(stored).toEqual(done)
    }))

  it.effect("a turn that fails before the first word removes its empty answer", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      fake.script({ type: "status", status: 400 })
      const { token } = yield* session("refused")
      const events = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("Anyone?") } }))
      const added = events.find((e) => e.type === "thread.item.added")?.item.id
      expect(events.slice(-3).map((e) => e.type)).toEqual(["thread.item.added", "thread.item.removed", "error"])
      expect(events.at(-2)?.item_id).toBe(added)
      const thread = json(
        yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: events[1]?.thread.id } })
      )
      expect(thread.items.data.map((i) => i.type)).toEqual(["user_message"])
    }))

  it.effect("one turn at a time: a message or a retry sent while an answer streams is a 409, and is not stored", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      // 6 s of answer: longer than the two refused requests' waits for the turn (2 s each)
      fake.script(slow(60, 100), { type: "stream", tokens: ["Second"] })
      const { token } = yield* session("impatient")
      const live = openStream(yield* serverPort, token, { type: "threads.create", params: { input: say("First") } })
      yield* wait(() => live.until((events) => events.some((e) => e.type === "thread.item.added")))
      const threadId = live.events.find((e) => e.type === "thread.created")?.thread.id as string
      const firstId = live.events.find((e) => e.type === "thread.item.done")?.item.id as string

      for (
        const body of [
          { type: "threads.add_user_message", params: { thread_id: threadId, input: say("Are you there?") } },
          { type: "threads.retry_after_item", params: { thread_id: threadId, item_id: firstId } }
        ]
      ) {
        const refused = yield* chatkit(token, body)
        expect(refused.status).toBe(409)
        expect(refused.headers["content-type"]).toBe("application/problem+json")
        expect(JSON.parse(refused.text)).toMatchObject({
          error: "conflict",
          detail: expect.stringMatching(/still being written/)
        })
      }

      yield* wait(() => live.ended)
      expect(answerOf(live.events)).toBe(tokens(60).join(""))
      // the turn gave its lease back with its last event: the next message is answered at once
      const next = eventsOf(
        yield* chatkit(token, { type: "threads.add_user_message", params: { thread_id: threadId, input: say("Now?") } })
      )
      expect(answerOf(next)).toBe("Second")
      const thread = json(yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }))
      expect(thread.items.data.map((i) => i.type === "user_message" ? i.content[0]?.text : i.type)).toEqual([
        "First",
        "assistant_message",
        "Now?",
        "assistant_message"
      ])
    }))

  it.effect("a turn whose instance died holds its thread until its lease lapses, then the thread takes messages again", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      fake.script({ type: "stream", tokens: ["Hello"] })
      const sql = yield* SqlClient.SqlClient
      const { token } = yield* session("after-crash")
      const created = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("Hi") } }))
      const threadId = created.find((e) => e.type === "thread.created")?.thread.id as string
      const send = chatkit(token, {
        type: "threads.add_user_message",
        params: { thread_id: threadId, input: say("Again") }
      })

      yield* sql`UPDATE chat_threads SET turn_id = 'dead-instance', turn_until = now() + interval '1 hour' WHERE id = ${threadId}`
      expect((yield* send).status).toBe(409)
      yield* sql`UPDATE chat_threads SET turn_until = now() - interval '1 second' WHERE id = ${threadId}`
      expect(answerOf(eventsOf(yield* send))).toBe("Hello")
      const [row] = yield* sql<{ turn_id: string | null }>`SELECT turn_id FROM chat_threads WHERE id = ${threadId}`
      expect(row?.turn_id).toBeNull()
    }))
})
