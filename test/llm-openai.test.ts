import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, Logger, LogLevel, Redacted, Schedule, Stream } from "effect"
import fc from "fast-check"

import { type CompletionRequest, type LlmProviderService } from "../src/platform/LlmProvider.js"
import { type LlmUsage, makeOpenAiLlm, retryAfterMs, sseData } from "../src/platform/OpenAiLlm.js"
import { type FakeOpenAi, fakeOpenAi } from "./support/fakeOpenAi.js"
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

const deltasOf = (llm: LlmProviderService) => Effect.map(Stream.runCollect(llm.stream(request)), Chunk.toReadonlyArray)

/** The deltas delivered before the stream ended, and its error if it failed. */
const outcome = (llm: LlmProviderService) =>
  Effect.gen(function*() {
    const delivered: Array<string> = []
    const result = yield* Stream.runForEach(llm.stream(request), (delta) => Effect.sync(() => delivered.push(delta)))
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

  it.effect("sseData: events come out whole from bytes cut anywhere", () =>
    Effect.sync(() => {
      const body = "data: {\"a\":\"é🌍\"}\r\n\r\n: comment\n\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n"
      const bytes = new TextEncoder().encode(body)
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 30 }), (cutsRaw) => {
          const cuts = [...new Set([0, ...cutsRaw, bytes.length])].sort((a, b) => a - b)
          const pieces = cuts.slice(1).map((end, index) => bytes.subarray(cuts[index]!, end))
          const events = Effect.runSync(Stream.runCollect(sseData(Stream.fromIterable(pieces))))
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

  it.scopedLive("a reader that stops early closes the upstream request", () =>
    Effect.gen(function*() {
      const fake = yield* fakeOpenAi({
        type: "stream",
        tokens: Array.from({ length: 100 }, (_, i) => `t${i} `),
        tokenDelayMs: 20
      })
      const llm = yield* provider(fake)
      const taken = yield* Stream.runCollect(Stream.take(llm.stream(request), 2))
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
      const fiber = yield* Effect.fork(Stream.runForEach(llm.stream(request), (d) => Effect.sync(() => seen.push(d))))
      yield* waitFor(() => seen.length >= 3)
      yield* Fiber.interrupt(fiber)
      yield* Effect.promise(() => fake.requests[0]!.closed).pipe(Effect.timeout("2 seconds"))
      expect(fake.requests[0]!.closedEarly).toBe(true)
      expect(seen.length).toBeLessThan(100)
    }))
})
