import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { answerOf, chatkit, eventsOf, say, titledThread } from "./support/chatkit.js"
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
