import { HttpClient, type HttpClientError, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, identity, Layer, Option, Redacted, Stream } from "effect"

import { type CompletionRequest, LlmError, LlmProvider, type LlmProviderService, type LlmUsage } from "./LlmProvider.js"

// LlmUsage lives in LlmProvider.ts (the local provider reports usage too); test/llm-openai.test.ts
// still imports it from here.

/**
 * An OpenAI-compatible chat-completions client (OpenAI, vLLM, Ollama, LiteLLM, ...): one streamed
 * `POST {baseUrl}/chat/completions` per call, its server-sent events turned into text deltas.
 * It neither retries nor times out (`resilient` in ResilientLlm.ts does); interrupting the stream
 * aborts the HTTP request.
 */

export interface OpenAiLlmOptions {
  /** the provider's name in errors, metrics and logs (default `openai`) */
  readonly name?: string
  /** up to and including the version segment, e.g. `https://api.openai.com/v1` */
  readonly baseUrl: string
  /** sent as a bearer token; a server that needs none (a local Ollama, say) gets no Authorization header */
  readonly apiKey?: Redacted.Redacted | undefined
  /** called once per call that ends with `[DONE]` and reported usage (the last chunk's `usage`, `stream_options.include_usage`) */
  readonly onUsage?: (usage: LlmUsage, request: CompletionRequest) => Effect.Effect<void>
}

/** How far an error body may reach into a debug log line. */
const MAX_LOGGED_BODY = 500

/** `Retry-After` as milliseconds: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export const retryAfterMs = (value: string | undefined, now: number = Date.now()): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

type SseItem = { readonly _tag: "data"; readonly data: string } | { readonly _tag: "none" }
const none: SseItem = { _tag: "none" }

/**
 * The `data` of each server-sent event in a byte stream, whatever the chunking: bytes are decoded
 * as UTF-8 across chunk boundaries, lines split on LF, CRLF or CR (also across chunks), several
 * `data:` lines of one event joined with LF, comments and other fields skipped. The last event
 * is dispatched even if the stream ends without its blank line.
 */
export const parseSseData = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<string, E, R> =>
  bytes.pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.concat(Stream.make("")),
    Stream.mapAccum(Option.none<string>(), (pending, line): readonly [Option.Option<string>, SseItem] => {
      if (line === "") {
        return [
          Option.none(),
          Option.match(pending, { onNone: () => none, onSome: (data) => ({ _tag: "data", data }) })
        ]
      }
      if (line.startsWith(":")) return [pending, none]
      const colon = line.indexOf(":")
      const field = colon === -1 ? line : line.slice(0, colon)
      if (field !== "data") return [pending, none]
      const raw = colon === -1 ? "" : line.slice(colon + 1)
      const value = raw.startsWith(" ") ? raw.slice(1) : raw
      return [Option.some(Option.match(pending, { onNone: () => value, onSome: (data) => `${data}\n${value}` })), none]
    }),
    Stream.filterMap((item) => item._tag === "data" ? Option.some(item.data) : Option.none())
  )

type Chunked =
  | { readonly _tag: "delta"; readonly content: string }
  | { readonly _tag: "usage"; readonly usage: LlmUsage }
  | { readonly _tag: "skip" }
  | { readonly _tag: "done" }
  | { readonly _tag: "error" }

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)
const count = (u: unknown) => (typeof u === "number" && Number.isFinite(u) ? u : 0)

/** One event's data: a delta, the usage, `[DONE]`, an in-stream error object, or undefined when unreadable. */
const readChunk = (data: string): ReadonlyArray<Chunked> | undefined => {
  if (data.trim() === "[DONE]") return [{ _tag: "done" }]
  let json: unknown
  try {
    json = JSON.parse(data)
  } catch {
    return undefined
  }
  if (!isRecord(json)) return undefined
  if (json["error"] !== undefined && json["error"] !== null) return [{ _tag: "error" }]
  const out: Array<Chunked> = []
  const choices = json["choices"]
  if (choices !== undefined && !Array.isArray(choices)) return undefined
  const first: unknown = choices?.[0]
  if (first !== undefined) {
    if (!isRecord(first)) return undefined
    const delta = first["delta"]
    if (delta !== undefined && delta !== null && !isRecord(delta)) return undefined
    const content = delta?.["content"]
    if (content !== undefined && content !== null && typeof content !== "string") return undefined
    if (typeof content === "string" && content !== "") out.push({ _tag: "delta", content })
  }
  const usage = json["usage"]
  if (isRecord(usage)) {
    out.push({
      _tag: "usage",
      usage: {
        promptTokens: count(usage["prompt_tokens"]),
        completionTokens: count(usage["completion_tokens"]),
        totalTokens: count(usage["total_tokens"])
      }
    })
  }
  return out.length === 0 ? [{ _tag: "skip" }] : out
}

/** The body of an error answer for a debug line: truncated, the key masked, bearer-looking tokens masked. */
const maskBody = (body: string, apiKey: Redacted.Redacted | undefined) => {
  const key = apiKey === undefined ? "" : Redacted.value(apiKey)
  const masked = (key === "" ? body : body.split(key).join("***"))
    .replace(/(bearer\s+)\S+/gi, "$1***")
    .replace(/\bsk-[A-Za-z0-9_-]{4,}/g, "sk-***")
  return masked.length > MAX_LOGGED_BODY ? `${masked.slice(0, MAX_LOGGED_BODY)}…` : masked
}

/** The provider over an `HttpClient` (provide NodeHttpClient or FetchHttpClient; `OpenAiLlmLive` does). */
export const makeOpenAiLlm = (
  options: OpenAiLlmOptions
): Effect.Effect<LlmProviderService, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const name = options.name ?? "openai"
    const client = yield* HttpClient.HttpClient
    const url = `${options.baseUrl.replace(/\/+$/, "")}/chat/completions`
    const fail = (reason: LlmError["reason"], extra: { status?: number; retryAfterMs?: number } = {}) =>
      new LlmError({ provider: name, reason, ...extra })
    const log = Effect.annotateLogs({ llm_provider: name })

    const onTransport = (error: HttpClientError.HttpClientError) =>
      Effect.logDebug(`llm ${name}: ${error._tag} ${error.reason}`).pipe(
        log,
        Effect.zipRight(Effect.fail(fail("connection")))
      )

    const failedAnswer = (response: HttpClientResponse.HttpClientResponse) =>
      response.text.pipe(
        Effect.timeout("2 seconds"),
        Effect.option,
        Effect.flatMap((body) =>
          Effect.logDebug(`llm ${name}: HTTP ${response.status}`).pipe(
            Effect.annotateLogs({
              body: Option.match(body, { onNone: () => "", onSome: (b) => maskBody(b, options.apiKey) })
            }),
            log
          )
        ),
        Effect.zipRight(Effect.fail(fail("http", {
          status: response.status,
          ...optional("retryAfterMs", retryAfterMs(response.headers["retry-after"]))
        })))
      )

    const deltas = (response: HttpClientResponse.HttpClientResponse, request: CompletionRequest) =>
      Stream.suspend(() => {
        let done = false
        let usage: LlmUsage | undefined
        return parseSseData(response.stream).pipe(
          Stream.catchAll((error) => Stream.fromEffect(onTransport(error))),
          Stream.mapConcatEffect((data) => {
            const chunks = readChunk(data)
            if (chunks === undefined) {
              return Effect.logDebug(`llm ${name}: unreadable event (${data.length} chars)`).pipe(
                log,
                Effect.zipRight(Effect.fail(fail("malformed")))
              )
            }
            if (chunks.some((chunk) => chunk._tag === "error")) {
              return Effect.logDebug(`llm ${name}: error event`).pipe(
                Effect.annotateLogs({ body: maskBody(data, options.apiKey) }),
                log,
                Effect.zipRight(Effect.fail(fail("http")))
              )
            }
            return Effect.succeed(chunks)
          }),
          Stream.takeWhile((chunk) => {
            if (chunk._tag === "done") done = true
            return !done
          }),
          Stream.filterMap((chunk) => {
            if (chunk._tag === "usage") usage = chunk.usage
            return chunk._tag === "delta" ? Option.some(chunk.content) : Option.none()
          }),
          Stream.concat(Stream.suspend(() => {
            if (!done) {
              return Stream.fromEffect(
                Effect.logDebug(`llm ${name}: the answer ended before [DONE]`).pipe(
                  log,
                  Effect.zipRight(Effect.fail(fail("connection")))
                )
              )
            }
            return usage === undefined || options.onUsage === undefined
              ? Stream.empty
              : Stream.execute(options.onUsage(usage, request))
          }))
        )
      })

    const stream = (request: CompletionRequest): Stream.Stream<string, LlmError> =>
      HttpClientRequest.post(url).pipe(
        options.apiKey === undefined ? identity : HttpClientRequest.bearerToken(Redacted.value(options.apiKey)),
        HttpClientRequest.setHeader("accept", "text/event-stream"),
        HttpClientRequest.bodyUnsafeJson({
          model: request.model,
          messages: request.messages,
          stream: true,
          stream_options: { include_usage: true }
        }),
        client.execute,
        Effect.catchAll(onTransport),
        Effect.flatMap((response) =>
          response.status >= 200 && response.status < 300 ? Effect.succeed(response) : failedAnswer(response)
        ),
        Effect.map((response) => deltas(response, request)),
        Stream.unwrap
      )

    return { name, stream } satisfies LlmProviderService
  })

const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/** The provider as the `LlmProvider`, over Node's HTTP client. */
export const OpenAiLlmLive = (options: OpenAiLlmOptions): Layer.Layer<LlmProvider> =>
  Layer.effect(LlmProvider, makeOpenAiLlm(options)).pipe(Layer.provide(NodeHttpClient.layer))
