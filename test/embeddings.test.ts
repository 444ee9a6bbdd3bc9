import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Duration, Effect, Either, Exit, Layer, Logger, LogLevel, Metric, MetricLabel, Redacted } from "effect"
import fc from "fast-check"

import { makeCircuitBreaker } from "../src/platform/CircuitBreaker.js"
import { testConfig } from "../src/platform/Config.js"
import {
  cosine,
  type Embedding,
  Embeddings,
  type EmbeddingsOutcome,
  type EmbeddingsService,
  fnv1a32,
  instrumentedEmbeddings,
  LOCAL_EMBEDDINGS_DIMENSION,
  localEmbedding,
  makeLocalEmbeddings,
  makeOpenAiEmbeddings,
  type OpenAiEmbeddingsOptions
} from "../src/platform/Embeddings.js"
import { EmbeddingsLive, OPENAI_EMBEDDINGS_BREAKER } from "../src/platform/EmbeddingsLive.js"
import { circuitBreakerState, embeddingsInputsTotal, embeddingsRequestsTotal } from "../src/platform/Metrics.js"
import { type FakeEmbeddings, fakeEmbeddings, fakeVector } from "./support/fakeEmbeddings.js"
import { captureLogs } from "./support/logs.js"
import { freePort } from "./support/network.js"

// Metrics are process-wide: every test that reads them uses its own provider name.

const KEY = "sk-test-embed-0123456789abcdef"

const norm = (vector: ArrayLike<number>) => Math.sqrt(cosine(vector, vector))

const local = makeLocalEmbeddings()
const embedLocal = (...texts: ReadonlyArray<string>) => Effect.runSync(local.embed(texts))
const similarity = (a: string, b: string) => cosine(localEmbedding(a), localEmbedding(b))

/** The buckets a vector uses, with their values rounded to 4 decimals. */
const nonZero = (vector: Embedding) =>
  Object.fromEntries(
    Array.from(vector).flatMap((value, index) => (value === 0 ? [] : [[index, Math.round(value * 1e4) / 1e4]]))
  )

describe("local embeddings", () => {
  it("FNV-1a is the standard 32-bit one, over UTF-8 bytes", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5)
    expect(fnv1a32("a")).toBe(0xe40c292c)
    expect(fnv1a32("foobar")).toBe(0xbf9cf968)
    expect(fnv1a32("hello")).toBe(0x4f9f2cab)
    const overBytes = (text: string) =>
      [...Buffer.from(text, "utf8")].reduce((h, byte) => Math.imul(h ^ byte, 0x01000193) >>> 0, 0x811c9dc5)
    for (const text of ["é", "münchen", "日本語", "🌍 earth", "ﬁ", "x\u0301"]) {
      expect(fnv1a32(text)).toBe(overBytes(text))
    }
  })

  it("is deterministic, and pinned: stored vectors must keep meaning the same words", () => {
    const text = "The quick brown fox jumps over the lazy dog"
    const [a, b] = embedLocal(text, text)
    expect(Array.from(a!)).toEqual(Array.from(b!))
    expect(Array.from(makeLocalEmbeddings().embed([text]).pipe(Effect.runSync)[0]!)).toEqual(Array.from(a!))
    expect(local).toMatchObject({ name: "local", model: "local-hashed-tokens-v1", dimension: 384 })
    // One word is one bucket; two words are two buckets and their bigram's (at half weight).
    expect(nonZero(localEmbedding("hello"))).toEqual(PINNED_HELLO)
    expect(nonZero(localEmbedding("hello world"))).toEqual(PINNED_HELLO_WORLD)
  })

  it("gives unit vectors of the provider's dimension, whatever the text", () => {
    const texts = [
      "a",
      "Hello, World!",
      "Ünïcödé wörds, 日本語のテキスト, emoji 🌍🚀 and numbers 12345",
      "word ".repeat(5000),
      Array.from({ length: 3000 }, (_, i) => `token${i}`).join(" ")
    ]
    for (const vector of embedLocal(...texts)) {
      expect(vector).toBeInstanceOf(Float32Array)
      expect(vector.length).toBe(LOCAL_EMBEDDINGS_DIMENSION)
      expect(norm(vector)).toBeCloseTo(1, 5)
    }
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 200 }), (text) => {
        const vector = localEmbedding(text)
        return vector.length === LOCAL_EMBEDDINGS_DIMENSION && vector.every(Number.isFinite) &&
          Math.abs(norm(vector) - 1) < 1e-5
      }),
      { numRuns: 300 }
    )
    const small = makeLocalEmbeddings({ dimension: 16 })
    expect(Effect.runSync(small.embed(["some words here"]))[0]!.length).toBe(16)
    expect(() => makeLocalEmbeddings({ dimension: 1 })).toThrow(RangeError)
  })

  it("a text without a word is the unit vector of bucket 0: like every other such text, orthogonal to any text with words", () => {
    const [empty, spaces, punctuation, words] = embedLocal("", "   \n\t", "!!! --- ...", "hello world")
    expect(nonZero(empty!)).toEqual({ 0: 1 })
    expect(Array.from(spaces!)).toEqual(Array.from(empty!))
    expect(Array.from(punctuation!)).toEqual(Array.from(empty!))
    expect(words![0]).toBe(0)
    expect(cosine(empty!, words!)).toBe(0)
  })

  it("ignores case, accents' encoding and punctuation; words, not characters, make the vector", () => {
    expect(similarity("Hello, World!", "hello world")).toBeCloseTo(1, 6)
    expect(similarity("Café MÜNCHEN", "cafe\u0301 münchen")).toBeCloseTo(1, 6)
    expect(similarity("user_name: Alice", "user name alice")).toBeCloseTo(1, 6)
    expect(similarity("listen", "silent")).toBeLessThan(0.3)
  })

  it("texts that share words score higher than unrelated ones", () => {
    const query = "how do I reset my password"
    const documents = [
      "Password reset: open the account settings and choose reset password",
      "The weather in Paris is sunny with a light breeze today",
      "Invoices are totalled at the end of every month and sent by email",
      "Our office dog likes long walks in the park"
    ]
    const scores = documents.map((document) => similarity(query, document))
    expect(scores.indexOf(Math.max(...scores))).toBe(0)
    for (const score of scores.slice(1)) expect(scores[0]! - score).toBeGreaterThan(0.2)

    expect(similarity("the cat sat on the mat", "a cat sat on a mat")).toBeGreaterThan(
      similarity("the cat sat on the mat", "stock markets fell sharply on monday")
    )
    expect(similarity("kubernetes pod crash loop", "pod in a crash loop on kubernetes")).toBeGreaterThan(0.5)
    expect(Math.abs(similarity("apples and oranges", "quantum chromodynamics lecture"))).toBeLessThan(0.2)
    // Word order counts a little (bigrams), words far more.
    const reordered = similarity("dog bites man", "man bites dog")
    expect(reordered).toBeLessThan(0.99)
    expect(reordered).toBeGreaterThan(0.6)
  })

  it("embeds a list in its order; an empty list gives none", () => {
    const texts = ["alpha", "beta gamma", "", "delta"]
    const vectors = embedLocal(...texts)
    expect(vectors.map((v) => Array.from(v))).toEqual(texts.map((t) => Array.from(localEmbedding(t))))
    expect(embedLocal()).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------

const openai = (fake: { baseUrl: string }, options: Partial<OpenAiEmbeddingsOptions> = {}) =>
  makeOpenAiEmbeddings({
    name: "fake",
    baseUrl: fake.baseUrl,
    apiKey: Redacted.make(KEY),
    retryBaseDelay: "1 millis",
    ...options
  }).pipe(Effect.map(instrumentedEmbeddings), Effect.provide(NodeHttpClient.layer))

const errorOf = <A>(effect: Effect.Effect<A, unknown>) =>
  Effect.map(Effect.either(effect), (result) => (Either.isLeft(result) ? result.left : undefined))

const OUTCOMES: ReadonlyArray<EmbeddingsOutcome> = [
  "ok",
  "http",
  "connection",
  "timeout",
  "malformed",
  "dimension",
  "circuit_open",
  "cancelled",
  "defect"
]

/** `embeddings_requests_total` of a provider by outcome (zeros left out), and its `embeddings_inputs_total`. */
const metricsOf = (provider: string) =>
  Effect.gen(function*() {
    const label = MetricLabel.make("provider", provider)
    const requests: Record<string, number> = {}
    for (const outcome of OUTCOMES) {
      const state = yield* Metric.value(
        Metric.taggedWithLabels(embeddingsRequestsTotal, [label, MetricLabel.make("outcome", outcome)])
      )
      if (state.count !== 0) requests[outcome] = state.count
    }
    const inputs = (yield* Metric.value(Metric.taggedWithLabels(embeddingsInputsTotal, [label]))).count
    return { requests, inputs }
  })

const texts = (n: number, prefix = "text") => Array.from({ length: n }, (_, i) => `${prefix} number ${i}`)

const expectFakeVectors = (vectors: ReadonlyArray<Embedding>, inputs: ReadonlyArray<string>, dimension = 1536) => {
  expect(vectors).toHaveLength(inputs.length)
  vectors.forEach((vector, i) => {
    expect(vector.length).toBe(dimension)
    expect(norm(vector)).toBeCloseTo(1, 5)
    const expected = fakeVector(inputs[i]!, dimension)
    expect(cosine(vector, expected) / norm(expected)).toBeCloseTo(1, 5)
  })
}

const inputsOf = (fake: FakeEmbeddings) => fake.requests.map((request) => request.body.input ?? [])

describe("OpenAI embeddings", () => {
  it.scopedLive("250 texts go as batches of 100, 100 and 50, in order, with the model and the key; vectors come back in order, normalised", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "ok" })
      const embeddings = yield* openai(fake, { name: "fake-batches" })
      expect(embeddings).toMatchObject({ name: "fake-batches", model: "text-embedding-3-small", dimension: 1536 })
      const input = texts(250)
      const vectors = yield* embeddings.embed(input)
      expect(inputsOf(fake).map((batch) => batch.length)).toEqual([100, 100, 50])
      expect(inputsOf(fake).flat()).toEqual(input)
      for (const request of fake.requests) {
        expect(request.method).toBe("POST")
        expect(request.url).toBe("/v1/embeddings")
        expect(request.headers.authorization).toBe(`Bearer ${KEY}`)
        expect(request.headers["content-type"]).toContain("application/json")
        expect(request.body.model).toBe("text-embedding-3-small")
      }
      expectFakeVectors(vectors, input)
      expect(yield* metricsOf("fake-batches")).toEqual({ requests: { ok: 1 }, inputs: 250 })
    }))

  it.scopedLive("an empty list makes no request", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "ok" })
      expect(yield* (yield* openai(fake)).embed([])).toEqual([])
      expect(fake.requests).toHaveLength(0)
    }))

  it.scopedLive("a 500 is retried, then the answer is used; only the failed batch is sent again", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "ok" }, { type: "status", status: 500 }, { type: "ok" })
      const embeddings = yield* openai(fake, { name: "fake-retry", batchSize: 2 })
      const input = texts(4)
      expectFakeVectors(yield* embeddings.embed(input), input)
      expect(inputsOf(fake)).toEqual([input.slice(0, 2), input.slice(2), input.slice(2)])
      expect(yield* metricsOf("fake-retry")).toEqual({ requests: { ok: 1 }, inputs: 4 })
    }))

  it.scopedLive("a 429 with Retry-After is retried after it; 500s beyond the attempts fail with the status", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "status", status: 429, retryAfter: "0.2" }, { type: "ok" })
      const embeddings = yield* openai(fake, { name: "fake-429", attempts: 3 })
      const started = Date.now()
      expectFakeVectors(yield* embeddings.embed(["one"]), ["one"])
      expect(Date.now() - started).toBeGreaterThanOrEqual(190)
      expect(fake.requests).toHaveLength(2)

      fake.script({ type: "status", status: 503 })
      const error = yield* errorOf(embeddings.embed(["two"]))
      expect(error).toMatchObject({ _tag: "EmbeddingsError", provider: "fake-429", reason: "http", status: 503 })
      expect(fake.requests).toHaveLength(2 + 3)
      expect(yield* metricsOf("fake-429")).toEqual({ requests: { ok: 1, http: 1 }, inputs: 1 })
    }))

  it.scopedLive("a 400 is not retried", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "status", status: 400 }, { type: "ok" })
      const embeddings = yield* openai(fake, { name: "fake-400", attempts: 3 })
      const error = yield* errorOf(embeddings.embed(["a", "b"]))
      expect(error).toMatchObject({ reason: "http", status: 400 })
      expect(fake.requests).toHaveLength(1)
      expect(yield* metricsOf("fake-400")).toEqual({ requests: { http: 1 }, inputs: 0 })
    }))

  it.scopedLive("vectors of another length are refused (reason dimension), without a retry", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "ok", dimension: 1535 }, { type: "ok" })
      const embeddings = yield* openai(fake, { name: "fake-dimension" })
      const error = yield* errorOf(embeddings.embed(["a"]))
      expect(error).toMatchObject({ _tag: "EmbeddingsError", reason: "dimension" })
      expect(fake.requests).toHaveLength(1)
      // A server that is configured for another dimension works when the provider says so.
      fake.script({ type: "ok", dimension: 256 })
      const small = yield* openai(fake, { name: "fake-dimension-256", dimension: 256 })
      expectFakeVectors(yield* small.embed(["x", "y"]), ["x", "y"], 256)
      expect(yield* metricsOf("fake-dimension")).toEqual({ requests: { dimension: 1 }, inputs: 0 })
    }))

  it.scopedLive("an answer that is not JSON, or without one vector per input, is malformed", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "raw", body: "<html>oops</html>" })
      const embeddings = yield* openai(fake)
      expect(yield* errorOf(embeddings.embed(["a"]))).toMatchObject({ reason: "malformed" })
      const vector = Array.from({ length: 1536 }, () => 0.5)
      const bodies = [
        { data: [] },
        { data: [{ index: 0, embedding: vector }, { index: 0, embedding: vector }] },
        { data: [{ index: 0, embedding: vector }, { index: 2, embedding: vector }] },
        { data: [{ index: 0, embedding: vector }, { index: 1, embedding: vector.map(() => "x") }] },
        { data: [{ index: 0, embedding: vector }, { index: 1, embedding: vector.map(() => 0) }] }
      ]
      for (const body of bodies) {
        fake.script({ type: "raw", body: JSON.stringify(body) })
        expect(yield* errorOf(embeddings.embed(["a", "b"]))).toMatchObject({ reason: "malformed" })
      }
      expect(fake.requests).toHaveLength(1 + bodies.length)
    }))

  it.scopedLive("an attempt over the timeout is abandoned and retried, then fails with reason timeout", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "ok", delayMs: 1000 })
      const embeddings = yield* openai(fake, { name: "fake-timeout", timeout: "100 millis", attempts: 2 })
      const started = Date.now()
      const error = yield* errorOf(embeddings.embed(["slow"]))
      expect(error).toMatchObject({ reason: "timeout" })
      expect(fake.requests).toHaveLength(2)
      expect(Date.now() - started).toBeLessThan(900)
      expect(yield* metricsOf("fake-timeout")).toEqual({ requests: { timeout: 1 }, inputs: 0 })
    }))

  it.scopedLive("a refused connection is a connection error", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const embeddings = yield* openai({ baseUrl: `http://127.0.0.1:${port}/v1` }, { attempts: 2 })
      expect(yield* errorOf(embeddings.embed(["a"]))).toMatchObject({ reason: "connection" })
    }))

  it.scopedLive("an error body carrying the key reaches neither the error nor the logs unmasked", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({
        type: "status",
        status: 401,
        body: JSON.stringify({ error: { message: `Incorrect API key provided: ${KEY}` } })
      })
      const logs = captureLogs()
      const embeddings = yield* openai(fake)
      const error = yield* errorOf(embeddings.embed(["a"])).pipe(
        Effect.provide(logs.layer),
        Logger.withMinimumLogLevel(LogLevel.Debug)
      )
      expect(error).toMatchObject({ _tag: "EmbeddingsError", reason: "http", status: 401 })
      expect((error as Error).message).toBe("embeddings fake: http 401")
      for (const shown of [JSON.stringify(error), String(error), (error as Error).message]) {
        expect(shown).not.toContain(KEY)
        expect(shown).not.toContain("Incorrect API key")
      }
      const logged = logs.lines.join("\n")
      expect(logs.lines.some((line) => line.includes("HTTP 401") && line.includes("Incorrect API key"))).toBe(true)
      expect(logged).not.toContain(KEY)
      expect(logged).not.toContain("0123456789abcdef")
    }))

  it.scopedLive("only transient failures count against the breaker: 400s leave it closed", () =>
    Effect.gen(function*() {
      const breaker = yield* makeCircuitBreaker({ name: "embeddings-400s", failureThreshold: 2, cooldown: "1 minute" })
      const fake = yield* fakeEmbeddings({ type: "status", status: 400 })
      const embeddings = yield* openai(fake, { breaker, attempts: 1 })
      for (let i = 0; i < 4; i++) expect(yield* errorOf(embeddings.embed(["a"]))).toMatchObject({ status: 400 })
      expect(fake.requests).toHaveLength(4)
      expect(yield* breaker.state).toBe("closed")
    }))
})

// ---------------------------------------------------------------------------------------------

const circuitGauge = Metric.value(Metric.tagged(circuitBreakerState, "provider", OPENAI_EMBEDDINGS_BREAKER)).pipe(
  Effect.map((state) => state.value)
)

describe("EmbeddingsLive", () => {
  it.effect("is the local provider by default", () =>
    Effect.gen(function*() {
      const embeddings = yield* Embeddings
      expect(embeddings).toMatchObject({ name: "local", dimension: 384 })
      const [vector] = yield* embeddings.embed(["hello"])
      expect(Array.from(vector!)).toEqual(Array.from(localEmbedding("hello")))
    }).pipe(Effect.provide(EmbeddingsLive.pipe(Layer.provide(testConfig())))))

  it.effect("refuses EMBEDDINGS_PROVIDER=openai without OPENAI_API_KEY", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.provide(Embeddings, EmbeddingsLive.pipe(Layer.provide(testConfig({ EMBEDDINGS_PROVIDER: "openai" }))))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(JSON.stringify(exit)).toContain("OPENAI_API_KEY: is required when EMBEDDINGS_PROVIDER=openai")
    }))

  it.scopedLive("openai: its own breaker (openai-embeddings) opens after LLM_CIRCUIT_FAILURES failures and closes after the cool-down", () =>
    Effect.gen(function*() {
      const fake = yield* fakeEmbeddings({ type: "status", status: 500 })
      const layer = EmbeddingsLive.pipe(Layer.provide(testConfig({
        EMBEDDINGS_PROVIDER: "openai",
        OPENAI_API_KEY: KEY,
        OPENAI_BASE_URL: fake.baseUrl,
        LLM_RETRY_ATTEMPTS: "1",
        LLM_CIRCUIT_FAILURES: "2",
        LLM_CIRCUIT_COOLDOWN_SECONDS: "1"
      })))
      const embeddings = yield* Effect.provide(Embeddings, yield* Layer.build(layer))
      expect(embeddings).toMatchObject({ name: "openai", model: "text-embedding-3-small", dimension: 1536 })
      const before = yield* metricsOf("openai")

      expect(yield* errorOf(embeddings.embed(["a"]))).toMatchObject({ reason: "http", status: 500 })
      expect(yield* circuitGauge).toBe(0)
      expect(yield* errorOf(embeddings.embed(["a"]))).toMatchObject({ reason: "http", status: 500 })
      expect(yield* circuitGauge).toBe(2)
      const open = yield* errorOf(embeddings.embed(["a"]))
      expect(open).toMatchObject({ _tag: "EmbeddingsError", provider: "openai", reason: "circuit_open" })
      expect((open as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0)
      expect(fake.requests).toHaveLength(2)
      expect(fake.requests[0]!.headers.authorization).toBe(`Bearer ${KEY}`)

      yield* Effect.sleep(Duration.millis(1100))
      fake.script({ type: "ok" })
      expectFakeVectors(yield* embeddings.embed(["b", "c"]), ["b", "c"])
      expect(fake.requests).toHaveLength(3)
      expect(yield* circuitGauge).toBe(0)

      const after = yield* metricsOf("openai")
      const delta = (outcome: EmbeddingsOutcome) => (after.requests[outcome] ?? 0) - (before.requests[outcome] ?? 0)
      expect({ ok: delta("ok"), http: delta("http"), circuit_open: delta("circuit_open") })
        .toEqual({ ok: 1, http: 2, circuit_open: 1 })
      expect(after.inputs - before.inputs).toBe(2)
    }))
})

describe("the embeddings.embed span", () => {
  it.scopedLive("names the provider, model and input count, under the caller's span, and no text", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const embeddings: EmbeddingsService = instrumentedEmbeddings(makeLocalEmbeddings())
      const secret = ["the launch code is swordfish", "meet at the old mill"]
      yield* embeddings.embed(secret).pipe(Effect.withSpan("request"))
      const spans = exporter.getFinishedSpans()
      const parent = spans.find((span) => span.name === "request")
      const calls = spans.filter((span) => span.name === "embeddings.embed")
      expect(calls).toHaveLength(1)
      expect(calls[0]!.parentSpanContext?.spanId).toBe(parent!.spanContext().spanId)
      expect(calls[0]!.attributes).toEqual({
        "embeddings.provider": "local",
        "embeddings.model": "local-hashed-tokens-v1",
        "embeddings.inputs": 2
      })
      const exported = JSON.stringify(spans.map((span) => ({ attributes: span.attributes, events: span.events })))
      for (const text of [...secret, "swordfish", "mill"]) expect(exported).not.toContain(text)
    }).pipe(
      Effect.provide(NodeSdk.layer(() => ({
        resource: { serviceName: "embeddings-test" },
        spanProcessor: new SimpleSpanProcessor(exporter)
      })))
    )
  })
})

// The algorithm's output, kept so that a change to it is seen: "hello" is FNV-1a 0x4f9f2cab, bucket
// 1 + 0x4f9f2cab % 383 = 111; "hello world" weighs 1, 1 and 0.5 (the bigram) before normalising (/1.5).
const PINNED_HELLO: Record<string, number> = { 111: -1 }
const PINNED_HELLO_WORLD: Record<string, number> = { 37: -0.3333, 111: -0.6667, 207: 0.6667 }
