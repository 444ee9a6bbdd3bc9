import { expect, layer } from "@effect/vitest"
import { Effect, Schedule } from "effect"

import { TURN_SETUPS_AT_ONCE } from "../src/features/threads/TurnSetups.js"
import { answerOf, chatkit, eventsOf, openStream, say, serverPort, titledThread } from "./support/chatkit.js"
import { Fake, FAKE_OPENAI_KEY, TestAppOnFakeOpenAi } from "./support/fakeOpenAi.js"
import { session } from "./support/session.js"

/* A conversation against an OpenAI-compatible server (a real one on 127.0.0.1, scripted), as LLM_PROVIDER=openai configures it. */

const App = TestAppOnFakeOpenAi("conversations_openai")

layer(App)("conversations on an OpenAI-compatible server", (it) => {
  it.effect("streams the server's tokens into the stored answer, sending the key, the instructions and the message", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      fake.script({ type: "stream", tokens: ["Bonjour", " le", " monde"], tokenDelayMs: 5 })
      const { token } = yield* session("openai-talker")
      const events = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("Salut") } }))
      expect(answerOf(events)).toBe("Bonjour le monde")
      const request = fake.requests.at(-1)
      expect(request?.headers.authorization).toBe(`Bearer ${FAKE_OPENAI_KEY}`)
      expect(request?.body).toMatchObject({
        stream: true,
        messages: [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "Salut" }]
      })
    }))

  it.scoped("a turn's set-up permit is given back before its model answers: more turns than TURN_SETUPS_AT_ONCE wait on it at once", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      // a model that takes 4 s to its first token: a permit held until the answer would stop the third turn
      fake.script({ type: "stream", tokens: ["late"], firstTokenDelayMs: 4_000 })
      const { token } = yield* session("openai-setups")
      const port = yield* serverPort
      const before = fake.requests.length
      const turns = TURN_SETUPS_AT_ONCE + 3
      const streams = Array.from(
        { length: turns },
        (_, i) => openStream(port, token, { type: "threads.create", params: { input: say(`turn ${i}`) } })
      )
      yield* Effect.addFinalizer(() => Effect.sync(() => streams.forEach((stream) => stream.destroy())))
      const asked = () => fake.requests.length - before
      yield* Effect.suspend(() => asked() >= turns ? Effect.void : Effect.fail("not yet")).pipe(
        Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("3 seconds"))),
        Effect.ignore
      )
      expect(asked()).toBe(turns)
    }))

  it.effect("titles a new thread in the background with thread_title_model, thread_title_prompt and the first message", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      fake.script({ type: "stream", tokens: ["Sure"] })
      const { token } = yield* session("openai-titled")
      const threadId = eventsOf(
        yield* chatkit(token, { type: "threads.create", params: { input: say("Plan my trip to Lyon") } })
      )[1]?.thread.id
      const titled = yield* titledThread(token, threadId)
      expect(titled.title).toBe("Fake title")
      const asked = fake.titleRequests.find((request) => JSON.stringify(request.body).includes("Plan my trip to Lyon"))
      expect(asked?.headers.authorization).toBe(`Bearer ${FAKE_OPENAI_KEY}`)
      expect(asked?.body).toMatchObject({
        model: "gpt-4o-mini",
        messages: [
          { role: "system", content: expect.stringContaining("Write a short title") },
          { role: "user", content: "Plan my trip to Lyon" }
        ]
      })
    }))

  it.effect("keeps its connection to the server open between calls: turns and the title job reuse one", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      fake.script({ type: "stream", tokens: ["Sure"] })
      const { token } = yield* session("openai-keepalive")
      const before = fake.requests.length
      const titlesBefore = fake.titleRequests.length
      const threadId = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("one") } }))[1]
        ?.thread.id
      // the title job runs after the first turn: waited for, so no two calls overlap
      yield* titledThread(token, threadId)
      for (const text of ["two", "three"]) {
        expect(answerOf(eventsOf(
          yield* chatkit(token, {
            type: "threads.add_user_message",
            params: { thread_id: threadId, input: say(text) }
          })
        ))).toBe("Sure")
      }
      const calls = [...fake.requests.slice(before), ...fake.titleRequests.slice(titlesBefore)]
      expect(calls).toHaveLength(4)
      expect(new Set(calls.map((call) => call.connection)).size).toBe(1)
    }))

  it.effect("retries a 500 before the first token; when retries run out the stream ends with an error event, no provider text", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      const { token } = yield* session("openai-retry")
      fake.script({ type: "status", status: 500 }, { type: "stream", tokens: ["after", " retry"] })
      const before = fake.requests.length
      expect(answerOf(eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("one") } })))).toBe(
        "after retry"
      )
      expect(fake.requests.length - before).toBe(2)

      fake.script({ type: "status", status: 503, body: `{"error":{"message":"bad key ${FAKE_OPENAI_KEY}"}}` })
      const failed = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("two") } }))
      const error = failed.at(-1)
      expect(error).toMatchObject({ type: "error", code: "stream.error", allow_retry: true })
      expect(typeof error?.message).toBe("string")
      expect(JSON.stringify(failed)).not.toContain(FAKE_OPENAI_KEY)
    }))
})
