import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import {
  Cause,
  Context,
  Data,
  Duration,
  Effect,
  Exit,
  identity,
  Layer,
  Metric,
  MetricLabel,
  Option,
  Redacted,
  Schedule
} from "effect"

import type { CircuitBreaker } from "./CircuitBreaker.js"
import { LlmError } from "./LlmProvider.js"
import { embeddingsInputsTotal, embeddingsRequestsTotal } from "./Metrics.js"
import { retryAfterMs } from "./OpenAiLlm.js"
import { maskProviderBody } from "./Redaction.js"
import { isTransient, resilienceDefaults, retrySchedule } from "./ResilientLlm.js"

/**
 * Text embeddings for the vector stores (API.md section 8): `local` (offline, deterministic hashed
 * tokens, the default) or OpenAI's `POST {base}/embeddings`. Every vector is L2-normalised, so a
 * dot product is the cosine similarity. A provider's dimension is fixed when it is built: a store
 * records it (and the model) at creation and checks it on every write.
 */

/** One text's vector: `dimension` floats of unit length. */
export type Embedding = Float32Array

/**
 * Why a call failed; as `LlmError`, plus `dimension`: the provider answered vectors of another
 * length than its dimension. `retryAfterMs` is the provider's `Retry-After` (for `circuit_open`,
 * the breaker's remaining cool-down: the call was not made). Never the provider's error body.
 */
export class EmbeddingsError extends Data.TaggedError("EmbeddingsError")<{
  readonly provider: string
  readonly reason: "http" | "connection" | "timeout" | "malformed" | "dimension" | "circuit_open"
  readonly status?: number
  readonly retryAfterMs?: number
}> {
  override get message() {
    return `embeddings ${this.provider}: ${this.reason}${this.status === undefined ? "" : ` ${this.status}`}`
  }
}

export interface EmbeddingsService {
  /** the provider's name in metrics and logs (`local`, `openai`) */
  readonly name: string
  /** what produced the vectors (`local-hashed-tokens-v1`, `text-embedding-3-small`): vectors of two models do not compare */
  readonly model: string
  /** the length of every vector, fixed for the provider */
  readonly dimension: number
  /** one vector per text, in the order of `texts`; an empty list makes no call */
  readonly embed: (texts: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Embedding>, EmbeddingsError>
}

export class Embeddings extends Context.Tag("chatkit/Embeddings")<Embeddings, EmbeddingsService>() {}

/** The dot product; of two `embed` vectors, their cosine similarity (in [-1, 1]). */
export const cosine = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  const length = Math.min(a.length, b.length)
  let sum = 0
  for (let i = 0; i < length; i++) sum += a[i]! * b[i]!
  return sum
}

/** `values` scaled to unit length, as float32; undefined for a zero (or non-finite) vector. */
const normalised = (values: ArrayLike<number>): Embedding | undefined => {
  let squares = 0
  for (let i = 0; i < values.length; i++) squares += values[i]! * values[i]!
  const norm = Math.sqrt(squares)
  if (!(norm > 0) || !Number.isFinite(norm)) return undefined
  const out = new Float32Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = values[i]! / norm
  return out
}

// ---------------------------------------------------------------------------------------------
// local

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

/** FNV-1a (32 bits) continued from `state` over the UTF-8 bytes of `text` (no closure: the hot loop of ingestion). */
const fnv1aUpdate = (state: number, text: string): number => {
  let h = state
  const length = text.length
  for (let i = 0; i < length; i++) {
    let code = text.charCodeAt(i)
    if (code < 0x80) {
      h = Math.imul(h ^ code, FNV_PRIME)
      continue
    }
    if (code >= 0xd800 && code < 0xdc00 && i + 1 < length) {
      const low = text.charCodeAt(i + 1)
      if (low >= 0xdc00 && low < 0xe000) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
        i++
      }
    }
    if (code < 0x800) {
      h = Math.imul(h ^ (0xc0 | (code >> 6)), FNV_PRIME)
    } else if (code < 0x10000) {
      h = Math.imul(h ^ (0xe0 | (code >> 12)), FNV_PRIME)
      h = Math.imul(h ^ (0x80 | ((code >> 6) & 0x3f)), FNV_PRIME)
    } else {
      h = Math.imul(h ^ (0xf0 | (code >> 18)), FNV_PRIME)
      h = Math.imul(h ^ (0x80 | ((code >> 12) & 0x3f)), FNV_PRIME)
      h = Math.imul(h ^ (0x80 | ((code >> 6) & 0x3f)), FNV_PRIME)
    }
    h = Math.imul(h ^ (0x80 | (code & 0x3f)), FNV_PRIME)
  }
  return h >>> 0
}

/** FNV-1a, 32 bits, of the UTF-8 bytes of `text` (a lone surrogate is encoded as its code unit). */
export const fnv1a32 = (text: string): number => fnv1aUpdate(FNV_OFFSET, text)

/** murmur3's finaliser: the sign bit comes from here, not from the bits that chose the bucket. */
const mix32 = (value: number): number => {
  let h = value
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/** Word tokens: lower-cased (after NFKC) runs of Unicode letters and digits (with their combining marks). */
export const localTokens = (text: string): Array<string> =>
  text.normalize("NFKC").toLowerCase().match(/[\p{L}\p{N}][\p{L}\p{N}\p{M}]*/gu) ?? []

export const LOCAL_EMBEDDINGS_MODEL = "local-hashed-tokens-v1"
export const LOCAL_EMBEDDINGS_DIMENSION = 384
/** A bigram (two adjacent words) weighs this much of a word: word order counts, a little. */
const BIGRAM_WEIGHT = 0.5

/**
 * The local vector of one text (the feature hashing trick). Each word and each pair of adjacent
 * words is a feature, hashed (FNV-1a of its UTF-8, a pair as "first second") to a bucket in
 * 1..dimension-1 and a sign (from a remix of the hash, so colliding features tend to cancel
 * rather than add); a feature seen n times weighs 1 + ln n (a word repeated in a long chunk does
 * not drown the others), a bigram half of that. The sum is L2-normalised: texts sharing words
 * point the same way.
 *
 * A text without a word (empty, only punctuation or spaces) has no direction: it gets the unit
 * vector of bucket 0, which no feature uses. So such texts are identical to each other
 * (cosine 1) and orthogonal to every text with a word (cosine 0): they never look similar to
 * content, and every vector stays unit length.
 */
export const localEmbedding = (text: string, dimension: number = LOCAL_EMBEDDINGS_DIMENSION): Embedding => {
  const buckets = dimension - 1
  const words = localTokens(text)
  const out = new Float32Array(dimension)
  if (words.length === 0) {
    out[0] = 1
    return out
  }
  const counts = new Map<number, number>()
  const bigramCounts = new Map<number, number>()
  let previous: number | undefined
  for (const word of words) {
    const hash = fnv1a32(word)
    counts.set(hash, (counts.get(hash) ?? 0) + 1)
    if (previous !== undefined) {
      // fnv1a("first second") continues the hash of "first" over " second"
      const pair = fnv1aUpdate(fnv1aUpdate(previous, " "), word)
      bigramCounts.set(pair, (bigramCounts.get(pair) ?? 0) + 1)
    }
    previous = hash
  }
  const values = new Float64Array(dimension)
  const add = (hash: number, weight: number) => {
    values[1 + (hash % buckets)]! += (mix32(hash) & 0x80000000) === 0 ? weight : -weight
  }
  counts.forEach((count, hash) => add(hash, 1 + Math.log(count)))
  bigramCounts.forEach((count, hash) => add(hash, BIGRAM_WEIGHT * (1 + Math.log(count))))
  // All features cancelled out (possible only by collisions): fall back to the no-word vector.
  const unit = normalised(values)
  if (unit === undefined) {
    out[0] = 1
    return out
  }
  return unit
}

/** The offline provider: `localEmbedding` of each text; never fails. */
export const makeLocalEmbeddings = (
  options: { readonly dimension?: number } = {}
): EmbeddingsService => {
  const dimension = options.dimension ?? LOCAL_EMBEDDINGS_DIMENSION
  if (!Number.isInteger(dimension) || dimension < 2) {
    throw new RangeError(`local embeddings: dimension must be an integer >= 2, got ${dimension}`)
  }
  return {
    name: "local",
    model: LOCAL_EMBEDDINGS_MODEL,
    dimension,
    embed: (texts) => Effect.sync(() => texts.map((text) => localEmbedding(text, dimension)))
  }
}

// ---------------------------------------------------------------------------------------------
// openai

export const OPENAI_EMBEDDINGS_MODEL = "text-embedding-3-small"
export const OPENAI_EMBEDDINGS_DIMENSION = 1536
/** OpenAI takes up to 2048 inputs per request; 100 keeps each request (and each retry) small. */
export const OPENAI_EMBEDDINGS_BATCH = 100

export interface OpenAiEmbeddingsOptions {
  /** the provider's name in errors, metrics and logs (default `openai`) */
  readonly name?: string
  /** up to and including the version segment, e.g. `https://api.openai.com/v1` */
  readonly baseUrl: string
  /** sent as a bearer token; none sends no Authorization header */
  readonly apiKey?: Redacted.Redacted | undefined
  /** default `text-embedding-3-small` */
  readonly model?: string
  /** what every vector's length must be (default 1536, `text-embedding-3-small`'s) */
  readonly dimension?: number
  /** inputs per request, 1..100 (default 100) */
  readonly batchSize?: number
  /** one attempt of one request, answer read included (default 120 s): then reason `timeout`, retried */
  readonly timeout?: Duration.DurationInput
  /** attempts per request in all, the first included (default 3) */
  readonly attempts?: number
  /** the first retry's delay before jitter, doubling after (default 200 ms) */
  readonly retryBaseDelay?: Duration.DurationInput
  /** a Retry-After above this is not waited for: the error goes to the caller (default 10 s) */
  readonly maxRetryAfter?: Duration.DurationInput
  /** every attempt runs through it; only transient failures count against the provider */
  readonly breaker?: Pick<CircuitBreaker, "run">
}

/**
 * The error as `ResilientLlm`'s `isTransient` and `retrySchedule` read it (they take an
 * `LlmError`): the same reasons, `dimension` as `malformed` (the provider answered, wrongly: not
 * worth another attempt).
 */
const asLlmError = (error: EmbeddingsError): LlmError =>
  new LlmError({
    provider: error.provider,
    reason: error.reason === "dimension" ? "malformed" : error.reason,
    ...(error.status === undefined ? {} : { status: error.status }),
    ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs })
  })

/** Worth another attempt, as for the LLM: 408, 429 and 5xx answers, connection failures, timeouts. */
export const isTransientEmbeddingsError = (error: EmbeddingsError): boolean => isTransient(asLlmError(error))

type Reader = { readonly vectors: ReadonlyArray<Embedding> } | { readonly reason: "malformed" | "dimension" }

/** `data[i].embedding` placed by `data[i].index`, each checked and normalised. */
const readVectors = (body: unknown, inputs: number, dimension: number): Reader => {
  const data = (body as { data?: unknown } | null)?.data
  if (!Array.isArray(data) || data.length !== inputs) return { reason: "malformed" }
  const vectors = new Array<Embedding | undefined>(inputs).fill(undefined)
  for (const item of data as Array<{ index?: unknown; embedding?: unknown } | null>) {
    const index = item?.index
    const embedding = item?.embedding
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= inputs) {
      return { reason: "malformed" }
    }
    if (vectors[index] !== undefined || !Array.isArray(embedding)) return { reason: "malformed" }
    if (embedding.length !== dimension) return { reason: "dimension" }
    if (!embedding.every((x) => typeof x === "number")) return { reason: "malformed" }
    const unit = normalised(embedding as Array<number>)
    if (unit === undefined) return { reason: "malformed" }
    vectors[index] = unit
  }
  return { vectors: vectors as Array<Embedding> }
}

/**
 * OpenAI's embeddings endpoint (or a compatible server): one `POST {baseUrl}/embeddings`
 * `{model, input}` per batch of up to `batchSize` texts, batches one after the other, each
 * request with its own timeout, retries (`retrySchedule`, as the LLM's: transient failures only,
 * Retry-After honoured) and attempt through the breaker. Vectors come back in input order
 * whatever the order of `data`, renormalised; a length other than `dimension` fails the call
 * (reason `dimension`). An error body is logged at debug level, masked, and never put in the error.
 */
export const makeOpenAiEmbeddings = (
  options: OpenAiEmbeddingsOptions
): Effect.Effect<EmbeddingsService, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const name = options.name ?? "openai"
    const model = options.model ?? OPENAI_EMBEDDINGS_MODEL
    const dimension = options.dimension ?? OPENAI_EMBEDDINGS_DIMENSION
    const batchSize = Math.min(OPENAI_EMBEDDINGS_BATCH, Math.max(1, options.batchSize ?? OPENAI_EMBEDDINGS_BATCH))
    const timeoutMs = Duration.toMillis(options.timeout ?? resilienceDefaults.totalTimeout)
    const attempts = Math.max(1, options.attempts ?? resilienceDefaults.attempts)
    const schedule = retrySchedule({
      attempts,
      retryBaseDelay: options.retryBaseDelay ?? resilienceDefaults.retryBaseDelay,
      maxRetryAfter: options.maxRetryAfter ?? resilienceDefaults.maxRetryAfter
    }).pipe(Schedule.mapInput(asLlmError))
    const client = yield* HttpClient.HttpClient
    const url = `${options.baseUrl.replace(/\/+$/, "")}/embeddings`
    const fail = (reason: EmbeddingsError["reason"], extra: { status?: number; retryAfterMs?: number } = {}) =>
      new EmbeddingsError({ provider: name, reason, ...extra })
    const log = Effect.annotateLogs({ embeddings_provider: name })

    const onTransport = (error: HttpClientError.HttpClientError) =>
      Effect.logDebug(`embeddings ${name}: ${error._tag} ${error.reason}`).pipe(
        log,
        Effect.zipRight(Effect.fail(fail("connection")))
      )

    const failedAnswer = (response: HttpClientResponse.HttpClientResponse) => {
      const after = retryAfterMs(response.headers["retry-after"])
      const status = response.status
      return response.text.pipe(
        Effect.timeout("2 seconds"),
        Effect.option,
        Effect.flatMap((body) =>
          Effect.logDebug(`embeddings ${name}: HTTP ${response.status}`).pipe(
            Effect.annotateLogs({
              body: Option.match(body, { onNone: () => "", onSome: (b) => maskProviderBody(b, options.apiKey) })
            }),
            log
          )
        ),
        Effect.zipRight(Effect.fail(fail("http", after === undefined ? { status } : { status, retryAfterMs: after })))
      )
    }

    const answered = (response: HttpClientResponse.HttpClientResponse, inputs: number) =>
      Effect.flatMap(Effect.catchAll(response.text, onTransport), (text) => {
        let body: unknown
        try {
          body = JSON.parse(text)
        } catch {
          return Effect.logDebug(`embeddings ${name}: an answer that is not JSON (${text.length} chars)`).pipe(
            log,
            Effect.zipRight(Effect.fail(fail("malformed")))
          )
        }
        const read = readVectors(body, inputs, dimension)
        if ("vectors" in read) return Effect.succeed(read.vectors)
        return Effect.logDebug(
          read.reason === "dimension"
            ? `embeddings ${name}: vectors of another length than ${dimension}`
            : `embeddings ${name}: an answer without one vector per input`
        ).pipe(log, Effect.zipRight(Effect.fail(fail(read.reason))))
      })

    const attempt = (input: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Embedding>, EmbeddingsError> =>
      HttpClientRequest.post(url).pipe(
        options.apiKey === undefined ? identity : HttpClientRequest.bearerToken(Redacted.value(options.apiKey)),
        HttpClientRequest.bodyUnsafeJson({ model, input }),
        client.execute,
        Effect.catchAll(onTransport),
        Effect.flatMap((response) =>
          response.status >= 200 && response.status < 300 ? answered(response, input.length) : failedAnswer(response)
        ),
        Effect.timeoutFail({ duration: timeoutMs, onTimeout: () => fail("timeout") })
      )

    const throughBreaker = (effect: Effect.Effect<ReadonlyArray<Embedding>, EmbeddingsError>) =>
      options.breaker === undefined ? effect : options.breaker.run(effect, {
        // Only the provider's own trouble counts against it, not a request it refused (400, 401, ...).
        isFailure: (cause) =>
          Option.match(Cause.failureOption(cause), { onNone: () => true, onSome: isTransientEmbeddingsError })
      }).pipe(Effect.mapError((error) =>
        error._tag === "CircuitOpen" ? fail("circuit_open", { retryAfterMs: error.retryAfterMs }) : error
      ))

    const batch = (input: ReadonlyArray<string>, index: number, batches: number) => {
      let tried = 0
      return Effect.suspend(() => {
        tried++
        return throughBreaker(attempt(input))
      }).pipe(
        Effect.tapError((error) =>
          Effect.logInfo(
            `embeddings ${name}: batch ${
              index + 1
            } of ${batches}, attempt ${tried} of ${attempts} failed (${error.message})`
          ).pipe(log)
        ),
        Effect.retry(schedule)
      )
    }

    const embed = (texts: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Embedding>, EmbeddingsError> => {
      if (texts.length === 0) {
        return Effect.succeed([])
      }
      const batches: Array<ReadonlyArray<string>> = []
      for (let from = 0; from < texts.length; from += batchSize) {
        batches.push(texts.slice(from, from + batchSize))
      }
      return Effect.map(
        Effect.forEach(batches, (input, index) =>
          batch(input, index, batches.length)),
        (vectors) => vectors.flat()
      )
    }

    return { name, model, dimension, embed } satisfies EmbeddingsService
  })

// ---------------------------------------------------------------------------------------------
// metrics and spans

/** How a call ended: `cancelled` when it was interrupted. */
export type EmbeddingsOutcome = "ok" | EmbeddingsError["reason"] | "cancelled" | "defect"

const outcomeOf = (exit: Exit.Exit<unknown, EmbeddingsError>): EmbeddingsOutcome => {
  if (Exit.isSuccess(exit)) return "ok"
  return Option.match(Cause.failureOption(exit.cause), {
    onSome: (error) => error.reason,
    onNone: () => (Option.isSome(Cause.dieOption(exit.cause)) ? "defect" : "cancelled")
  })
}

/**
 * Metrics and a span around a provider: each `embed` call (whatever its batches and retries) is
 * one `embeddings.embed` span (provider and input count; never a text) and one
 * `embeddings_requests_total` by outcome; a successful one adds its texts to
 * `embeddings_inputs_total`.
 */
export const instrumentedEmbeddings = (service: EmbeddingsService): EmbeddingsService => {
  const provider = MetricLabel.make("provider", service.name)
  const inputs = Metric.taggedWithLabels(embeddingsInputsTotal, [provider])
  const requests = new Map<EmbeddingsOutcome, Metric.Metric.Counter<number>>()
  const requestsOf = (outcome: EmbeddingsOutcome) => {
    let counter = requests.get(outcome)
    if (counter === undefined) {
      counter = Metric.taggedWithLabels(embeddingsRequestsTotal, [provider, MetricLabel.make("outcome", outcome)])
      requests.set(outcome, counter)
    }
    return counter
  }
  return {
    ...service,
    embed: (texts) =>
      service.embed(texts).pipe(
        Effect.onExit((exit) =>
          Exit.isSuccess(exit)
            ? Effect.zipRight(Metric.increment(requestsOf("ok")), Metric.incrementBy(inputs, texts.length))
            : Metric.increment(requestsOf(outcomeOf(exit)))
        ),
        Effect.withSpan("embeddings.embed", {
          kind: "client",
          attributes: {
            "embeddings.provider": service.name,
            "embeddings.model": service.model,
            "embeddings.inputs": texts.length
          }
        })
      )
  }
}

/** The local provider, instrumented, as the `Embeddings` service. */
export const LocalEmbeddingsLive = (options: { readonly dimension?: number } = {}) =>
  Layer.sync(Embeddings, () => instrumentedEmbeddings(makeLocalEmbeddings(options)))
