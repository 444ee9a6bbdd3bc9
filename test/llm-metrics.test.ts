import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Cause, Chunk, Effect, Either, Exit, Fiber, Metric, MetricLabel, Redacted, Stream, TestClock } from "effect"

import { instrumented, type LlmOutcome, recordUsage } from "../src/platform/InstrumentedLlm.js"
import {
  type CompletionRequest,
  LlmError,
  type LlmProviderService,
  localAnswer,
  makeLocalLlm,
  wordDeltas
} from "../src/platform/LlmProvider.js"
import { llmRequestsTotal, llmTimeToFirstTokenSeconds, llmTokensTotal } from "../src/platform/Metrics.js"
import { makeOpenAiLlm } from "../src/platform/OpenAiLlm.js"
import { prometheusText } from "../src/platform/Prometheus.js"
import { resilient } from "../src/platform/ResilientLlm.js"
import { fakeOpenAi } from "./support/fakeOpenAi.js"
import { deltaStream, streamingProvider } from "./support/llm.js"

// Metrics are process-wide: every test uses its own model name, so its series start at zero.

const SYSTEM = "Answer like a pirate."
const SAID = "Tell me about the treasure map"

const requestFor = (model: string): CompletionRequest => ({
  model,
  messages: [{ role: "system", content: SYSTEM }, { role: "user", content: SAID }]
})

const label = (key: string, value: string) => MetricLabel.make(key, value)

const OUTCOMES: ReadonlyArray<LlmOutcome> = [
  "ok",
  "http",
  "connection",
  "timeout",
  "malformed",
  "circuit_open",
  "cancelled",
  "defect"
]

/** `llm_requests_total` of a provider and model, by outcome (every outcome, zeros included). */
const requests = (provider: string, model: string) =>
  Effect.map(
    Effect.forEach(OUTCOMES, (outcome) =>
      Metric.value(Metric.taggedWithLabels(llmRequestsTotal, [
        label("provider", provider),
        label("model", model),
        label("outcome", outcome)
      ])).pipe(Effect.map((state) => [outcome, state.count] as const))),
    (pairs) => Object.fromEntries(pairs.filter(([, count]) => count !== 0))
  )

const timeToFirstToken = (provider: string, model: string) =>
  Metric.value(
    Metric.taggedWithLabels(llmTimeToFirstTokenSeconds, [label("provider", provider), label("model", model)])
  )

const tokens = (provider: string, model: string, kind: "prompt" | "completion") =>
  Effect.map(
    Metric.value(Metric.taggedWithLabels(llmTokensTotal, [
      label("provider", provider),
      label("model", model),
      label("kind", kind)
    ])),
    (state) => state.count
  )

const scripted = (name: string, stream: Stream.Stream<string, LlmError>): LlmProviderService =>
  streamingProvider(name, () => stream)

/** Runs the stream under the TestClock, moving the clock until it ends. */
const runToEnd = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Stream.runCollect(stream).pipe(Effect.either))
    yield* TestClock.adjust("1 hour")
    return yield* Fiber.join(fiber)
  })

describe("instrumented: llm_requests_total, llm_time_to_first_token_seconds, llm_tokens_total", () => {
  it.effect("a call read to its end counts outcome ok, times its first delta and counts the reported tokens", () =>
    Effect.gen(function*() {
      const request = requestFor("metrics-ok")
      const llm = instrumented(makeLocalLlm({ delay: "300 millis", onUsage: recordUsage("local") }))
      const result = yield* runToEnd(deltaStream(llm, request))
      const answer = localAnswer(request)
      expect(Either.map(result, (deltas) => Chunk.join(deltas, ""))).toEqual(Either.right(answer))

      expect(yield* requests("local", "metrics-ok")).toEqual({ ok: 1 })
      const ttft = yield* timeToFirstToken("local", "metrics-ok")
      expect(ttft.count).toBe(1)
      // the first word comes after one delay of the local model (the TestClock makes it exact)
      expect(ttft.sum).toBe(0.3)
      // local usage: the words of the messages, and one token per word delta
      expect(yield* tokens("local", "metrics-ok", "prompt")).toBe(4 + 6)
      expect(yield* tokens("local", "metrics-ok", "completion")).toBe(wordDeltas(answer).length)

      // a second call adds to the same series
      yield* runToEnd(deltaStream(llm, request))
      expect(yield* requests("local", "metrics-ok")).toEqual({ ok: 2 })
      expect((yield* timeToFirstToken("local", "metrics-ok")).count).toBe(2)
      expect(yield* tokens("local", "metrics-ok", "prompt")).toBe(20)
    }))

  it.effect("the three families are on /metrics in Prometheus text, with their help and labels", () =>
    Effect.gen(function*() {
      const request = requestFor("metrics-prometheus")
      yield* runToEnd(
        deltaStream(instrumented(makeLocalLlm({ delay: "2 seconds", onUsage: recordUsage("local") })), request)
      )
      const lines = (yield* prometheusText).split("\n")
      expect(lines).toContain("# TYPE llm_requests_total counter")
      expect(lines.some((line) => line.startsWith("# HELP llm_requests_total LLM calls"))).toBe(true)
      expect(lines).toContain("llm_requests_total{model=\"metrics-prometheus\",outcome=\"ok\",provider=\"local\"} 1")
      expect(lines).toContain("# TYPE llm_time_to_first_token_seconds histogram")
      expect(lines.some((line) => line.startsWith("# HELP llm_time_to_first_token_seconds Seconds"))).toBe(true)
      const series = (le: string) =>
        `llm_time_to_first_token_seconds_bucket{model="metrics-prometheus",provider="local",le="${le}"}`
      expect(lines).toContain(`${series("0.05")} 0`)
      expect(lines).toContain(`${series("1")} 0`)
      expect(lines).toContain(`${series("2.5")} 1`)
      expect(lines).toContain(`${series("30")} 1`)
      expect(lines).toContain(`${series("+Inf")} 1`)
      expect(lines).toContain("llm_time_to_first_token_seconds_sum{model=\"metrics-prometheus\",provider=\"local\"} 2")
      expect(lines).toContain("# TYPE llm_tokens_total counter")
      expect(lines).toContain("llm_tokens_total{kind=\"prompt\",model=\"metrics-prometheus\",provider=\"local\"} 10")
      expect(lines.some((line) => line.startsWith("llm_tokens_total{kind=\"completion\",model=\"metrics-prometheus\"")))
        .toBe(true)
    }))

  it.effect("a failed call counts its LlmError reason, once, and fails with that error", () =>
    Effect.gen(function*() {
      const reasons = ["http", "connection", "timeout", "malformed", "circuit_open"] as const
      for (const reason of reasons) {
        const error = new LlmError({ provider: "fake", reason })
        const model = `metrics-${reason}`
        const result = yield* runToEnd(
          deltaStream(instrumented(scripted("fake", Stream.fail(error))), requestFor(model))
        )
        expect(result).toEqual(Either.left(error))
        expect(yield* requests("fake", model)).toEqual({ [reason]: 1 })
        // no delta, no time to first token
        expect((yield* timeToFirstToken("fake", model)).count).toBe(0)
      }

      // a failure after the first delta: the first token is timed, the outcome is still the error
      const broken = scripted(
        "fake",
        Stream.concat(
          Stream.make("Ahoy", " there"),
          Stream.fail(new LlmError({ provider: "fake", reason: "connection" }))
        )
      )
      const result = yield* runToEnd(deltaStream(instrumented(broken), requestFor("metrics-broken")))
      expect(Either.isLeft(result)).toBe(true)
      expect(yield* requests("fake", "metrics-broken")).toEqual({ connection: 1 })
      expect((yield* timeToFirstToken("fake", "metrics-broken")).count).toBe(1)
    }))

  it.effect("circuit_open from resilient is counted when instrumented wraps it", () =>
    Effect.gen(function*() {
      const open = resilient(makeLocalLlm(), {
        breaker: { run: () => Effect.fail({ _tag: "CircuitOpen", retryAfterMs: 5_000 } as const) }
      })
      const result = yield* runToEnd(deltaStream(instrumented(open), requestFor("metrics-breaker")))
      expect(result).toMatchObject(Either.left({ _tag: "LlmError", reason: "circuit_open" }))
      expect(yield* requests("local", "metrics-breaker")).toEqual({ circuit_open: 1 })
    }))

  it.effect("an interrupted call counts cancelled, stays an interruption and cancels the provider's stream", () =>
    Effect.gen(function*() {
      let providerFinalized = false
      const local = makeLocalLlm({ delay: "300 millis", onUsage: recordUsage("local") })
      const watched: LlmProviderService = {
        name: "local",
        answer: (request, onDelta) =>
          local.answer(request, onDelta).pipe(Effect.ensuring(Effect.sync(() => (providerFinalized = true))))
      }
      const delivered: Array<string> = []
      const fiber = yield* Effect.fork(
        Stream.runForEach(
          deltaStream(instrumented(watched), requestFor("metrics-cancelled")),
          (delta) => Effect.sync(() => delivered.push(delta))
        )
      )
      yield* TestClock.adjust("700 millis")
      expect(delivered).toHaveLength(2)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)).toBe(true)
      expect(providerFinalized).toBe(true)
      expect(yield* requests("local", "metrics-cancelled")).toEqual({ cancelled: 1 })
      expect((yield* timeToFirstToken("local", "metrics-cancelled")).count).toBe(1)
      // the answer was not read to its end: no usage
      expect(yield* tokens("local", "metrics-cancelled", "completion")).toBe(0)
    }))

  it.effect("a reader that stops early (Stream.take) counts cancelled too", () =>
    Effect.gen(function*() {
      const llm = instrumented(makeLocalLlm({ delay: "100 millis" }))
      const result = yield* runToEnd(Stream.take(deltaStream(llm, requestFor("metrics-take")), 3))
      expect(Either.map(result, Chunk.size)).toEqual(Either.right(3))
      expect(yield* requests("local", "metrics-take")).toEqual({ cancelled: 1 })
    }))

  it.effect("a defect in the provider counts defect and stays a defect", () =>
    Effect.gen(function*() {
      const llm = instrumented(scripted("fake", Stream.die(new Error("bug"))))
      const exit = yield* Effect.exit(Stream.runDrain(deltaStream(llm, requestFor("metrics-defect"))))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect(yield* requests("fake", "metrics-defect")).toEqual({ defect: 1 })
    }))
})

interface CapturedSpan {
  readonly name: string
  readonly parentSpanId: string | undefined
  readonly spanId: string
  readonly attributes: Record<string, unknown>
  readonly events: ReadonlyArray<unknown>
  readonly status: unknown
}

/** Runs `f` with an OpenTelemetry tracer whose finished spans `f` can read (as plain data). */
const withSpans = <A, E, R>(f: (spans: () => ReadonlyArray<CapturedSpan>) => Effect.Effect<A, E, R>) => {
  const exporter = new InMemorySpanExporter()
  const spans = () =>
    exporter.getFinishedSpans().map((span) => ({
      name: span.name,
      parentSpanId: span.parentSpanContext?.spanId,
      spanId: span.spanContext().spanId,
      attributes: { ...span.attributes },
      events: span.events.map((event) => ({ name: event.name, attributes: event.attributes })),
      status: span.status
    }))
  return f(spans).pipe(
    Effect.provide(NodeSdk.layer(() => ({
      resource: { serviceName: "llm-metrics-test" },
      spanProcessor: new SimpleSpanProcessor(exporter)
    })))
  )
}

const KEY = "sk-test-0123456789abcdef"

describe("instrumented: the llm.stream span", () => {
  it.scopedLive("carries provider, model and the local provider's token counts, under the caller's span, and no text", () =>
    withSpans((spans) =>
      Effect.gen(function*() {
        const request = requestFor("span-local")
        const llm = instrumented(resilient(makeLocalLlm({ onUsage: recordUsage("local") })))
        const answer = yield* Stream.runCollect(deltaStream(llm, request)).pipe(
          Effect.map((deltas) => Chunk.join(deltas, "")),
          Effect.withSpan("request")
        )
        const parent = spans().find((span) => span.name === "request")
        const calls = spans().filter((span) => span.name === "llm.stream")
        expect(calls).toHaveLength(1)
        const [call] = calls
        expect(call!.parentSpanId).toBe(parent!.spanId)
        expect(call!.attributes).toMatchObject({
          "llm.provider": "local",
          "llm.model": "span-local",
          "llm.tokens.prompt": 10,
          "llm.tokens.completion": wordDeltas(answer).length
        })
        const exported = JSON.stringify(spans())
        for (const text of [SYSTEM, SAID, "pirate", "treasure", answer, "You wrote", "local model"]) {
          expect(exported).not.toContain(text)
        }
      })
    ))

  it.scopedLive("carries the OpenAI-compatible provider's usage through resilient, and no text", () =>
    withSpans((spans) =>
      Effect.gen(function*() {
        const fake = yield* fakeOpenAi({
          type: "stream",
          tokens: ["Arr", ", the map", " is buried"],
          usage: { prompt_tokens: 17, completion_tokens: 3, total_tokens: 20 }
        })
        const openai = yield* makeOpenAiLlm({
          name: "fake",
          baseUrl: fake.baseUrl,
          apiKey: Redacted.make(KEY),
          onUsage: recordUsage("fake")
        }).pipe(Effect.provide(NodeHttpClient.layer))
        const llm = instrumented(resilient(openai))
        const deltas = yield* Stream.runCollect(deltaStream(llm, requestFor("span-openai")))
        expect(Chunk.join(deltas, "")).toBe("Arr, the map is buried")

        const [call, ...others] = spans().filter((span) => span.name === "llm.stream")
        expect(others).toEqual([])
        expect(call!.attributes).toMatchObject({
          "llm.provider": "fake",
          "llm.model": "span-openai",
          "llm.tokens.prompt": 17,
          "llm.tokens.completion": 3
        })
        expect(yield* tokens("fake", "span-openai", "prompt")).toBe(17)
        expect(yield* tokens("fake", "span-openai", "completion")).toBe(3)
        expect(yield* requests("fake", "span-openai")).toEqual({ ok: 1 })
        const exported = JSON.stringify(spans())
        for (const text of [SYSTEM, SAID, "Arr", "buried", KEY]) {
          expect(exported).not.toContain(text)
        }
      })
    ))

  it.scopedLive("a failed call's span has provider and model, an error status, and no text", () =>
    withSpans((spans) =>
      Effect.gen(function*() {
        const fake = yield* fakeOpenAi({ type: "status", status: 400, body: `{"error":{"message":"${SAID}"}}` })
        const openai = yield* makeOpenAiLlm({ name: "fake", baseUrl: fake.baseUrl, apiKey: Redacted.make(KEY) }).pipe(
          Effect.provide(NodeHttpClient.layer)
        )
        const result = yield* Stream.runCollect(deltaStream(instrumented(openai), requestFor("span-failed"))).pipe(
          Effect.either
        )
        expect(result).toMatchObject(Either.left({ reason: "http", status: 400 }))
        const [call] = spans().filter((span) => span.name === "llm.stream")
        expect(call!.attributes).toMatchObject({ "llm.provider": "fake", "llm.model": "span-failed" })
        expect(call!.attributes).not.toHaveProperty("llm.tokens.prompt")
        expect(call!.status).toMatchObject({ code: 2 })
        expect(yield* requests("fake", "span-failed")).toEqual({ http: 1 })
        const exported = JSON.stringify(spans())
        for (const text of [SYSTEM, SAID, KEY]) {
          expect(exported).not.toContain(text)
        }
      })
    ))
})
