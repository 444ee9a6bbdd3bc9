import { HttpClient, HttpClientRequest } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { answerOf, chatkit, type Event, eventsOf, say, titledThread } from "./support/chatkit.js"
import { Fake, TestAppOnFakeOpenAi } from "./support/fakeOpenAi.js"
import { session } from "./support/session.js"

/*
 * The provider's timeouts and circuit breaker as a conversation sees them, over HTTP, with short
 * settings: one attempt per call, a 1 s first-token timeout, the breaker opening after 5 failed
 * calls and trying again after a 1 s cool-down.
 */

const METRICS_TOKEN = "metrics-token-for-resilience"

const App = TestAppOnFakeOpenAi("conversations_resilience", {
  LLM_RETRY_ATTEMPTS: "1",
  LLM_FIRST_TOKEN_TIMEOUT_SECONDS: "1",
  LLM_CIRCUIT_FAILURES: "5",
  LLM_CIRCUIT_COOLDOWN_SECONDS: "1",
  METRICS_TOKEN
})

const metrics = Effect.gen(function*() {
  const client = yield* HttpClient.HttpClient
  const response = yield* client.execute(
    HttpClientRequest.get("/metrics").pipe(HttpClientRequest.bearerToken(METRICS_TOKEN))
  )
  return yield* response.text
})

/** The value of the series that starts with `series` (name and labels, as exported). */
const metric = (series: string) =>
  Effect.map(metrics, (text) => Number(text.split("\n").find((l) => l.startsWith(`${series} `))?.split(" ").at(-1)))

const breakerGauge = metric(`circuit_breaker_state{provider="openai"}`)

const calls = (outcome: string) =>
  metric(`llm_requests_total{model="gpt-4o-mini",outcome="${outcome}",provider="openai"}`)

const lastError = (events: ReadonlyArray<Event>) => {
  const last = events.at(-1)
  expect(last).toMatchObject({ type: "error", code: "stream.error", allow_retry: true })
  expect(typeof last?.message).toBe("string")
  return last
}

layer(App)("a conversation when the provider is slow or failing", (it) => {
  it.effect("a provider that sends no first token within LLM_FIRST_TOKEN_TIMEOUT_SECONDS ends the stream with an error event", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      const { token } = yield* session("stalled-first-token")
      fake.script({ type: "stream", tokens: ["late"], firstTokenDelayMs: 5_000 })
      const started = Date.now()
      const events = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("hello?") } }))
      const elapsed = Date.now() - started
      lastError(events)
      expect(events.filter((e) => e.type === "thread.item.updated")).toEqual([])
      expect(elapsed).toBeGreaterThanOrEqual(900)
      expect(elapsed).toBeLessThan(4_000)
      // the stalled upstream request was given up, not left open
      yield* Effect.promise(() => fake.requests.at(-1)!.closed)
      expect(fake.requests.at(-1)?.closedEarly).toBe(true)

      fake.script({ type: "stream", tokens: ["on", " time"] })
      expect(answerOf(eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("now?") } }))))
        .toBe("on time")
    }))

  it.effect("five failed calls open the breaker: calls fail at once without reaching the provider until the cool-down, then one success closes it", () =>
    Effect.gen(function*() {
      const fake = yield* Fake
      const { token } = yield* session("breaker-watcher")
      // one thread, so no title job (a call that would succeed and reset the count) runs between the failures
      fake.script({ type: "stream", tokens: ["first"] })
      const threadId = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("start") } }))[1]
        ?.thread.id
      // its title job runs once the turn has ended: stored, its model call is over and counted
      yield* titledThread(token, threadId)
      const ask = (text: string) =>
        Effect.map(
          chatkit(token, { type: "threads.add_user_message", params: { thread_id: threadId, input: say(text) } }),
          eventsOf
        )
      expect(yield* breakerGauge).toBe(0)

      const [okBefore, httpBefore, openBefore] = [
        yield* calls("ok"),
        yield* calls("http"),
        yield* calls("circuit_open")
      ]
      fake.script({ type: "status", status: 500 })
      for (let i = 0; i < 5; i++) lastError(yield* ask(`failing ${i}`))
      expect(yield* breakerGauge).toBe(2)
      expect((yield* calls("http")) - (httpBefore || 0)).toBe(5)

      const before = fake.requests.length
      const started = Date.now()
      lastError(yield* ask("while open"))
      expect(Date.now() - started).toBeLessThan(1_000)
      expect(fake.requests.length).toBe(before)
      expect((yield* calls("circuit_open")) - (openBefore || 0)).toBe(1)

      yield* Effect.sleep("1200 millis")
      fake.script({ type: "stream", tokens: ["back", " again"] })
      expect(answerOf(yield* ask("after the cool-down"))).toBe("back again")
      expect(fake.requests.length).toBe(before + 1)
      expect(yield* breakerGauge).toBe(0)
      expect((yield* calls("ok")) - okBefore).toBe(1)
      expect(yield* metrics).toMatch(
        /^llm_tokens_total\{kind="completion",model="gpt-4o-mini",provider="openai"\} \d+$/m
      )
      expect(yield* metrics).toMatch(
        /^llm_time_to_first_token_seconds_count\{model="gpt-4o-mini",provider="openai"\} \d+$/m
      )
    }))
})
