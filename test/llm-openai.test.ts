import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, Logger, LogLevel, Redacted, Schedule, Stream, TestClock } from "effect"
import fc from "fast-check"

import { type CompletionRequest, LlmError, type LlmProviderService } from "../src/platform/LlmProvider.js"
import type { LlmUsage } from "../src/platform/LlmProvider.js"
import { makeOpenAiLlm, parseSseData, retryAfterMs } from "../src/platform/OpenAiLlm.js"
import { type LlmCircuitBreaker, resilient } from "../src/platform/ResilientLlm.js"
import { UPSTREAM_IDLE_MS, UpstreamHttpClient } from "../src/platform/UpstreamHttpClient.js"
import { type FakeOpenAi, fakeOpenAi } from "./support/fakeOpenAi.js"
import { deltaStream, streamingProvider } from "./support/llm.js"
import { captureLogs } from "./support/logs.js"
import { freePort } from "./support/network.js"

const KEY = "sk-test-0123456789abcdef"

const request: CompletionRequest = {
  model: "gpt-test",
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Say hello" }]
}

const provider = (fake: { baseUrl: string }, onUsage?: (usage: LlmUsage) => void) =>
  makeOpenAiLlm({
    name: "fake",
    baseUrl: fake.baseUrl,
    apiKey: Redacted.make(KEY),
    ...(onUsage === undefined ? {} : { onUsage: (usage: LlmUsage) => Effect.sync(() => onUsage(usage)) })
  }).pipe(Effect.provide(NodeHttpClient.layer))

const deltasOf = (llm: LlmProviderService) =>
  Effect.map(Stream.runCollect(deltaStream(llm, request)), Chunk.toReadonlyArray)

/** The deltas delivered before the stream ended, and its error if it failed. */
const outcome = (llm: LlmProviderService) =>
  Effect.gen(function*() {
    const delivered: Array<string> = []
    const result = yield* Stream.runForEach(deltaStream(llm, request), (delta) =>
      Effect.sync(() => delivered.push(delta)))
      .pipe(Effect.either)
    return { delivered, error: Either.isLeft(result) ? result.left : undefined }
  })

const TOKENS = ["Hél", "lo", ", wörld", " 🌍", " 日本語", " ✓", "\n", "done."]

const waitFor = (predicate: () => boolean) =>
  Effect.suspend(() => (predicate() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.intersect(Schedule.spaced("5 millis"), Schedule.recurs(400))),
    Effect.orDie
  )

describe("the OpenAI-compatible provider", () => {
  it.scopedLive("streams the deltas in order, sends the model, messages, stream options and bearer key", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS })
      const usages: Array<LlmUsage> = []
      const llm = yield* provider(fake, (usage) => usages.push(usage))
      const deltas = yield* deltasOf(llm)
      expect(deltas).toEqual(TOKENS)
      expect(fake.requests).toHaveLength(1)
      const [sent] = fake.requests
      expect(sent!.headers.authorization).toBe(`Bearer ${KEY}`)
      expect(sent!.headers["content-type"]).toContain("application/json")
      expect(sent!.body).toEqual({
        model: "gpt-test",
        messages: request.messages,
        stream: true,
        stream_options: { include_usage: true }
      })
      expect(usages).toEqual([{ promptTokens: 7, completionTokens: TOKENS.length, totalTokens: 7 + TOKENS.length }])
      expect(llm.name).toBe("fake")
    }))

  it.scopedLive("reassembles the answer whatever the TCP chunking (multi-byte characters split, CRLF lines)", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi()
      const llm = yield* provider(fake)
      for (const splitEvery of [2, 3, 7]) {
        fake.script({ type: "stream", tokens: TOKENS, splitEvery, newline: splitEvery === 3 ? "\r\n" : "\n" })
        expect((yield* deltasOf(llm)).join("")).toBe(TOKENS.join(""))
      }
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.array(fc.integer({ min: 1, max: 1200 }), { maxLength: 40 }),
            fc.boolean(),
            (splitAt, crlf) => {
              fake.script({ type: "stream", tokens: TOKENS, splitAt, newline: crlf ? "\r\n" : "\n" })
              return Effect.runPromise(deltasOf(llm)).then((deltas) => deltas.join("") === TOKENS.join(""))
            }
          ),
          { numRuns: 15 }
        )
      )
    }))

  it.effect("parseSseData: events come out whole from bytes cut anywhere", () =>
    Effect.sync(() => {
      const body = "data: {\"a\":\"é🌍\"}\r\n\r\n: comment\n\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n"
      const bytes = new TextEncoder().encode(body)
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 30 }), (cutsRaw) => {
          const cuts = [...new Set([0, ...cutsRaw, bytes.length])].sort((a, b) => a - b)
          const pieces = cuts.slice(1).map((end, index) => bytes.subarray(cuts[index]!, end))
          const events = Effect.runSync(Stream.runCollect(parseSseData(Stream.fromIterable(pieces))))
          return JSON.stringify(Chunk.toReadonlyArray(events)) ===
            JSON.stringify(["{\"a\":\"é🌍\"}", "one\ntwo", "[DONE]"])
        }),
        { numRuns: 500 }
      )
    }))

  it.scopedLive("a 429 is an http error with its status and Retry-After; the error body reaches neither the error nor the logs unmasked", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({
        type: "status",
        status: 429,
        retryAfter: "2",
        body: JSON.stringify({ error: { message: `Rate limited for key ${KEY}` } })
      })
      const logs = captureLogs()
      const llm = yield* provider(fake)
      const { delivered, error } = yield* outcome(llm).pipe(
        Effect.provide(logs.layer),
        Logger.withMinimumLogLevel(LogLevel.Debug)
      )
      expect(delivered).toEqual([])
      expect(error).toMatchObject({
        _tag: "LlmError",
        provider: "fake",
        reason: "http",
        status: 429,
        retryAfterMs: 2000
      })
      expect(error!.message).toBe("fake: http 429")
      expect(JSON.stringify(error)).not.toContain(KEY)
      expect(String(error)).not.toContain("Rate limited")
      expect(logs.lines.some((line) => line.includes("HTTP 429"))).toBe(true)
      expect(logs.lines.join("\n")).not.toContain(KEY)
      expect(logs.lines.join("\n")).not.toContain("0123456789abcdef")
    }))

  it.scopedLive("a 500 is an http error with its status and no retryAfterMs", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "status", status: 500 })
      const { error } = yield* outcome(yield* provider(fake))
      expect(error).toMatchObject({ reason: "http", status: 500 })
      expect(error!.retryAfterMs).toBeUndefined()
    }))

  it("reads Retry-After as seconds or as an HTTP date", () => {
    expect(retryAfterMs("1")).toBe(1000)
    expect(retryAfterMs(" 30 ")).toBe(30_000)
    expect(retryAfterMs(undefined)).toBeUndefined()
    expect(retryAfterMs("soon")).toBeUndefined()
    expect(retryAfterMs(new Date(10_000).toUTCString(), 5_000)).toBe(5_000)
  })

  it.scopedLive("an unparseable data line is malformed, after the deltas before it", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS, malformedAfterTokens: 3 })
      const { delivered, error } = yield* outcome(yield* provider(fake))
      expect(delivered).toEqual(TOKENS.slice(0, 3))
      expect(error).toMatchObject({ reason: "malformed" })
    }))

  it.scopedLive("a connection dropped mid-answer is a connection error, after the deltas before it", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS, dropAfterTokens: 4 })
      const { delivered, error } = yield* outcome(yield* provider(fake))
      expect(delivered).toEqual(TOKENS.slice(0, 4))
      expect(error).toMatchObject({ reason: "connection" })
    }))

  it.scopedLive("an answer that ends without [DONE] is a connection error", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: ["a", "b"], dropAfterTokens: 2 })
      const { delivered, error } = yield* outcome(yield* provider(fake))
      expect(delivered).toEqual(["a", "b"])
      expect(error).toMatchObject({ reason: "connection" })
    }))

  it.scopedLive("a refused connection is a connection error", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const { error } = yield* outcome(yield* provider({ baseUrl: `http://127.0.0.1:${port}/v1` }))
      expect(error).toMatchObject({ reason: "connection" })
    }))

  it.scopedLive("reads each answer's body to its end after [DONE], so the next call reuses the connection", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS })
      const llm = yield* makeOpenAiLlm({ baseUrl: fake.baseUrl }).pipe(Effect.provide(UpstreamHttpClient))
      for (let call = 0; call < 3; call++) expect(yield* deltasOf(llm)).toEqual(TOKENS)
      expect(fake.requests.map((sent) => sent.connection)).toEqual([1, 1, 1])
      expect(fake.requests.every((sent) => !sent.closedEarly)).toBe(true)
    }))

  it.scopedLive(
    "drops a connection left unused for UPSTREAM_IDLE_MS (before the provider would), and a slow first token outlasts it",
    () =>
      Effect.gen(function*() {
        const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS })
        const llm = yield* makeOpenAiLlm({ baseUrl: fake.baseUrl }).pipe(Effect.provide(UpstreamHttpClient))
        expect(yield* deltasOf(llm)).toEqual(TOKENS)
        yield* Effect.sleep(UPSTREAM_IDLE_MS + 500)
        fake.script({ type: "stream", tokens: TOKENS, firstTokenDelayMs: UPSTREAM_IDLE_MS + 500 })
        expect(yield* deltasOf(llm)).toEqual(TOKENS)
        expect(fake.requests.map((sent) => sent.connection)).toEqual([1, 2])
      }),
    { timeout: 20_000 }
  )

  it.scopedLive("a server that keeps the body open after [DONE] is cut half a second later, the answer whole", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS, holdAfterDone: true })
      const llm = yield* makeOpenAiLlm({ baseUrl: fake.baseUrl }).pipe(Effect.provide(UpstreamHttpClient))
      const started = Date.now()
      expect(yield* deltasOf(llm)).toEqual(TOKENS)
      expect(Date.now() - started).toBeGreaterThanOrEqual(450)
      expect(Date.now() - started).toBeLessThan(3_000)
      yield* Effect.promise(() => fake.requests[0]!.closed).pipe(Effect.timeout("2 seconds"))
      expect(fake.requests[0]!.closedEarly).toBe(true)
    }))

  it.scopedLive("a reader that stops early closes the upstream request", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({
        type: "stream",
        tokens: Array.from({ length: 100 }, (_, i) => `t${i} `),
        tokenDelayMs: 20
      })
      const llm = yield* provider(fake)
      const taken = yield* Stream.runCollect(Stream.take(deltaStream(llm, request), 2))
      expect(Chunk.toReadonlyArray(taken)).toEqual(["t0 ", "t1 "])
      yield* Effect.promise(() => fake.requests[0]!.closed)
      expect(fake.requests[0]!.closedEarly).toBe(true)
    }))

  it.scopedLive("interrupting the consuming fiber (a client disconnect) closes the upstream request", () =>
    Effect.gen(function*() {
      const fake: FakeOpenAi = yield* fakeOpenAi({
        type: "stream",
        tokens: Array.from({ length: 100 }, (_, i) => `t${i} `),
        tokenDelayMs: 20
      })
      const llm = yield* provider(fake)
      const seen: Array<string> = []
      const fiber = yield* Effect.fork(
        Stream.runForEach(deltaStream(llm, request), (d) => Effect.sync(() => seen.push(d)))
      )
      yield* waitFor(() => seen.length >= 3)
      yield* Fiber.interrupt(fiber)
      yield* Effect.promise(() => fake.requests[0]!.closed).pipe(Effect.timeout("2 seconds"))
      expect(fake.requests[0]!.closedEarly).toBe(true)
      expect(seen.length).toBeLessThan(100)
    }))
})

/** A provider whose n-th call (from 0) streams `script(n)`; it counts its calls. */
const scripted = (script: (call: number) => Stream.Stream<string, LlmError>) => {
  let calls = 0
  const llm = streamingProvider("scripted", () => Stream.suspend(() => script(calls++)))
  return { llm, calls: () => calls }
}

const failure = (reason: LlmError["reason"], extra: { status?: number; retryAfterMs?: number } = {}) =>
  new LlmError({ provider: "scripted", reason, ...extra })

const answer = Stream.fromIterable(["an ", "answer"])

describe("resilient (TestClock)", () => {
  it.effect("a 429 with Retry-After 1 waits at least that second before the next attempt", () =>
    Effect.gen(function*() {
      const { calls, llm } = scripted((n) =>
        n === 0 ? Stream.fail(failure("http", { status: 429, retryAfterMs: 1000 })) : answer
      )
      const fiber = yield* Effect.fork(deltasOf(resilient(llm)))
      yield* TestClock.adjust("999 millis")
      expect(calls()).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(fiber)).toEqual(["an ", "answer"])
      expect(calls()).toBe(2)
    }))

  it.effect("backs off exponentially from 200 ms (jittered) and gives up after 3 attempts in all", () =>
    Effect.gen(function*() {
      const { calls, llm } = scripted(() => Stream.fail(failure("connection")))
      const fiber = yield* Effect.fork(Effect.flip(deltasOf(resilient(llm))))
      yield* TestClock.adjust("159 millis")
      expect(calls()).toBe(1)
      yield* TestClock.adjust("81 millis") // 240 ms: the first retry (160-240 ms) has run
      expect(calls()).toBe(2)
      // The second delay is 320-480 ms after the first retry: not before 480 ms, by 720 ms at the latest.
      yield* TestClock.adjust("239 millis")
      expect(calls()).toBe(2)
      yield* TestClock.adjust("241 millis")
      expect(yield* Fiber.join(fiber)).toMatchObject({ reason: "connection" })
      expect(calls()).toBe(3)
    }))

  it.effect("no first delta within firstTokenTimeout is a timeout, retried", () =>
    Effect.gen(function*() {
      const { calls, llm } = scripted((n) => n === 0 ? Stream.never : answer)
      const fiber = yield* Effect.fork(deltasOf(resilient(llm)))
      yield* TestClock.adjust("29999 millis")
      expect(calls()).toBe(1)
      yield* TestClock.adjust("1 millis")
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toEqual(["an ", "answer"])
      expect(calls()).toBe(2)

      const once = scripted(() => Stream.never)
      const alone = yield* Effect.fork(Effect.flip(deltasOf(resilient(once.llm, { attempts: 1 }))))
      yield* TestClock.adjust("30 seconds")
      expect(yield* Fiber.join(alone)).toMatchObject({ _tag: "LlmError", provider: "scripted", reason: "timeout" })
    }))

  it.effect("the total timeout ends an attempt that stalls after its first delta, without retry", () =>
    Effect.gen(function*() {
      const { calls, llm } = scripted(() => Stream.concat(Stream.make("partial"), Stream.never))
      const fiber = yield* Effect.fork(outcome(resilient(llm, { totalTimeout: "120 seconds" })))
      yield* TestClock.adjust("119 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const { delivered, error } = yield* Fiber.join(fiber)
      expect(delivered).toEqual(["partial"])
      expect(error).toMatchObject({ reason: "timeout" })
      expect(calls()).toBe(1)
    }))

  it.effect("does not retry after a delta, a Retry-After above 10 s, or a non-transient answer", () =>
    Effect.gen(function*() {
      const afterDelta = scripted(() => Stream.concat(Stream.make("shown"), Stream.fail(failure("connection"))))
      const first = yield* outcome(resilient(afterDelta.llm))
      expect(first.delivered).toEqual(["shown"])
      expect(first.error).toMatchObject({ reason: "connection" })
      expect(afterDelta.calls()).toBe(1)

      const longWait = scripted(() => Stream.fail(failure("http", { status: 429, retryAfterMs: 30_000 })))
      expect((yield* outcome(resilient(longWait.llm))).error).toMatchObject({ status: 429, retryAfterMs: 30_000 })
      expect(longWait.calls()).toBe(1)

      for (const error of [failure("http", { status: 400 }), failure("http", { status: 401 }), failure("malformed")]) {
        const refused = scripted(() => Stream.fail(error))
        expect((yield* outcome(resilient(refused.llm))).error).toBe(error)
        expect(refused.calls()).toBe(1)
      }
    }))

  it.effect("each attempt runs through the breaker; an open breaker is circuit_open, not retried, no call made", () =>
    Effect.gen(function*() {
      let runs = 0
      const counting: LlmCircuitBreaker = { run: (effect) => Effect.suspend(() => (runs++, effect)) }
      const { calls, llm } = scripted((n) => n === 0 ? Stream.fail(failure("http", { status: 503 })) : answer)
      const fiber = yield* Effect.fork(deltasOf(resilient(llm, { breaker: counting })))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toEqual(["an ", "answer"])
      expect([runs, calls()]).toEqual([2, 2])

      const open: LlmCircuitBreaker = {
        run: () => Effect.fail({ _tag: "CircuitOpen" as const, retryAfterMs: 12_000 })
      }
      let asked = 0
      const idle = scripted(() => answer)
      const counted: LlmProviderService = { ...idle.llm, answer: (...args) => (asked++, idle.llm.answer(...args)) }
      const error = yield* Effect.flip(deltasOf(resilient(counted, { breaker: open })))
      expect(asked).toBe(0)
      expect(error).toMatchObject({
        _tag: "LlmError",
        provider: "scripted",
        reason: "circuit_open",
        retryAfterMs: 12_000
      })
      expect(error.message).toBe("scripted: circuit_open")
    }))
})

describe("resilient over HTTP (the fake server)", () => {
  const over = (fake: FakeOpenAi, options: Parameters<typeof resilient>[1] = {}) =>
    Effect.map(provider(fake), (llm) => resilient(llm, options))

  it.scopedLive("500 then OK: the full answer, in exactly 2 requests", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "status", status: 500 }, { type: "stream", tokens: TOKENS })
      expect(yield* deltasOf(yield* over(fake))).toEqual(TOKENS)
      expect(fake.requests).toHaveLength(2)
    }))

  it.scopedLive("retries exhausted: the last error after 3 requests", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "status", status: 502 })
      const { delivered, error } = yield* outcome(yield* over(fake))
      expect(delivered).toEqual([])
      expect(error).toMatchObject({ reason: "http", status: 502 })
      expect(fake.requests).toHaveLength(3)
    }))

  it.scopedLive("429 with Retry-After 1 is honoured", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "status", status: 429, retryAfter: "1" }, {
        type: "stream",
        tokens: TOKENS
      })
      const started = Date.now()
      expect(yield* deltasOf(yield* over(fake))).toEqual(TOKENS)
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000)
      expect(fake.requests).toHaveLength(2)
    }))

  it.scopedLive("429 with Retry-After 30 is not retried", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "status", status: 429, retryAfter: "30" }, {
        type: "stream",
        tokens: TOKENS
      })
      const { error } = yield* outcome(yield* over(fake))
      expect(error).toMatchObject({ reason: "http", status: 429, retryAfterMs: 30_000 })
      expect(fake.requests).toHaveLength(1)
    }))

  it.scopedLive("a stall before the first token times out, closes that request and retries", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS, firstTokenDelayMs: 5_000 }, {
        type: "stream",
        tokens: TOKENS
      })
      expect(yield* deltasOf(yield* over(fake, { firstTokenTimeout: "300 millis" }))).toEqual(TOKENS)
      expect(fake.requests).toHaveLength(2)
      yield* Effect.promise(() => fake.requests[0]!.closed).pipe(Effect.timeout("2 seconds"))
      expect(fake.requests[0]!.closedEarly).toBe(true)
    }))

  it.scopedLive("a drop after a delta reached the reader ends the stream with the error, no retry", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({ type: "stream", tokens: TOKENS, dropAfterTokens: 2 }, {
        type: "stream",
        tokens: TOKENS
      })
      const { delivered, error } = yield* outcome(yield* over(fake))
      expect(delivered).toEqual(TOKENS.slice(0, 2))
      expect(error).toMatchObject({ reason: "connection" })
      expect(fake.requests).toHaveLength(1)
    }))

  it.scopedLive("a reader that stops early closes the upstream request through the wrapper", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({
        type: "stream",
        tokens: Array.from({ length: 100 }, (_, i) => `t${i} `),
        tokenDelayMs: 20
      })
      const llm = yield* over(fake)
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(deltaStream(llm, request), 2)))).toEqual([
        "t0 ",
        "t1 "
      ])
      yield* Effect.promise(() => fake.requests[0]!.closed).pipe(Effect.timeout("2 seconds"))
      expect(fake.requests[0]!.closedEarly).toBe(true)
    }))
})
