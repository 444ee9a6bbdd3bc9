import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Chunk, Duration, Effect, identity, Layer, Option, Redacted, Stream } from "effect"

import {
  type CompletionRequest,
  LlmError,
  LlmProvider,
  type LlmProviderService,
  type LlmUsage,
  type OnDelta
} from "./LlmProvider.js"
import { maskProviderBody } from "./Redaction.js"
import { inForeground } from "./Scheduling.js"
import { UpstreamHttpClient } from "./UpstreamHttpClient.js"

// LlmUsage lives in LlmProvider.ts (the local provider reports usage too); test/llm-openai.test.ts
// still imports it from here.

/**
 * An OpenAI-compatible chat-completions client (OpenAI, vLLM, Ollama, LiteLLM, ...): one streamed
 * `POST {baseUrl}/chat/completions` per call, its server-sent events turned into text deltas.
 * It neither retries nor times out (`resilient` in ResilientLlm.ts does); interrupting the call
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

/** `Retry-After` as milliseconds: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export const retryAfterMs = (value: string | undefined, now: number = Date.now()): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const LF = 10
const CR = 13
const COLON = 58
const SPACE = 32

/**
 * The `data` of server-sent events, fed bytes as they come: decoded as UTF-8 across cuts
 * (TextDecoder in stream mode), lines split on LF, CRLF or CR (a CRLF cut between two pieces is
 * one break), several `data:` lines of one event joined with LF, comments and other fields
 * skipped; `end` dispatches the last event even without its blank line. One object per stream,
 * no Effect per line or per event: the stream runs it once per chunk of bytes.
 */
export class SseDataParser {
  private readonly decoder = new TextDecoder()
  /** the start of a line whose end has not arrived */
  private partial = ""
  /** the last piece ended with CR: an LF starting the next piece belongs to it */
  private afterCr = false
  /** the data of the event being read, undefined before its first `data` line */
  private data: string | undefined = undefined

  /** The events that `bytes` completes, pushed onto `out`. */
  push(bytes: Uint8Array, out: Array<string>): void {
    this.text(this.decoder.decode(bytes, { stream: true }), out)
  }

  /** At the end of the bytes: what remains, the last line and the last event. */
  end(out: Array<string>): void {
    this.text(this.decoder.decode(), out)
    if (this.partial !== "") this.line(this.partial, out)
    this.partial = ""
    this.line("", out)
  }

  private text(text: string, out: Array<string>): void {
    const length = text.length
    let from = 0
    if (this.afterCr && length > 0) {
      this.afterCr = false
      if (text.charCodeAt(0) === LF) from = 1
    }
    for (let i = from; i < length; i++) {
      const code = text.charCodeAt(i)
      if (code !== LF && code !== CR) continue
      const piece = text.slice(from, i)
      this.line(this.partial === "" ? piece : this.partial + piece, out)
      this.partial = ""
      if (code === CR) {
        if (i + 1 === length) this.afterCr = true
        else if (text.charCodeAt(i + 1) === LF) i++
      }
      from = i + 1
    }
    if (from < length) this.partial += text.slice(from)
  }

  private line(line: string, out: Array<string>): void {
    if (line === "") {
      if (this.data !== undefined) out.push(this.data)
      this.data = undefined
      return
    }
    if (line.charCodeAt(0) === COLON) return
    const colon = line.indexOf(":")
    if ((colon === -1 ? line : line.slice(0, colon)) !== "data") return
    const raw = colon === -1 ? "" : line.slice(colon + 1)
    const value = raw.charCodeAt(0) === SPACE ? raw.slice(1) : raw
    this.data = this.data === undefined ? value : `${this.data}\n${value}`
  }
}

/**
 * The `data` of each server-sent event in a byte stream, whatever the chunking (`SseDataParser`).
 */
export const parseSseData = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<string, E, R> =>
  Stream.suspend(() => {
    const parser = new SseDataParser()
    return bytes.pipe(
      Stream.mapChunks((chunk) => {
        const out: Array<string> = []
        for (const piece of chunk) parser.push(piece, out)
        return Chunk.unsafeFromArray(out)
      }),
      Stream.concat(Stream.suspend(() => {
        const out: Array<string> = []
        parser.end(out)
        return Stream.fromIterable(out)
      }))
    )
  })

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

/**
 * After `[DONE]`, how long the rest of the body (its last chunk, in practice at once) is waited
 * for: read to its end, the connection goes back to the agent for the next call; a server that
 * keeps it open past this is cut, and the connection with it.
 */
const DRAIN_AFTER_DONE = Duration.millis(500)

/** What ended the deltas of one call: `[DONE]`, an unreadable event, an error event, or the body's end before `[DONE]`. */
type Ending = { readonly _tag: "done" | "malformed" | "error" | "cut"; readonly data: string }

const CUT: Ending = { _tag: "cut", data: "" }

/** The provider over an `HttpClient` (provide one; `OpenAiLlmLive` gives `UpstreamHttpClient`). */
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
              body: Option.match(body, { onNone: () => "", onSome: (b) => maskProviderBody(b, options.apiKey) })
            }),
            log
          )
        ),
        Effect.zipRight(Effect.fail(fail("http", {
          status: response.status,
          ...optional("retryAfterMs", retryAfterMs(response.headers["retry-after"]))
        })))
      )

    /** The error (or, for `done`, the usage report) that closes the deltas. */
    const finish = (ending: Ending, usage: LlmUsage | undefined, request: CompletionRequest): Effect.Effect<
      void,
      LlmError
    > => {
      switch (ending._tag) {
        case "done":
          return usage === undefined || options.onUsage === undefined ? Effect.void : options.onUsage(usage, request)
        case "malformed":
          return Effect.logDebug(`llm ${name}: unreadable event (${ending.data.length} chars)`).pipe(
            log,
            Effect.zipRight(Effect.fail(fail("malformed")))
          )
        case "error":
          return Effect.logDebug(`llm ${name}: error event`).pipe(
            Effect.annotateLogs({ body: maskProviderBody(ending.data, options.apiKey) }),
            log,
            Effect.zipRight(Effect.fail(fail("http")))
          )
        case "cut":
          return Effect.logDebug(`llm ${name}: the answer ended before [DONE]`).pipe(
            log,
            Effect.zipRight(Effect.fail(fail("connection")))
          )
      }
    }

    /**
     * Reads the answer's body: each pull of its bytes is parsed (`SseDataParser`, then `readChunk`)
     * and its deltas go to `onDelta` at once, with no Effect per event; `[DONE]`, an unreadable
     * event or an error event ends the reading there, and what ended it is told after the deltas
     * before it. After `[DONE]` the rest of the body is read unparsed (DRAIN_AFTER_DONE at most), so
     * that the connection can serve the next call; the body is pulled in a scope closed at the end.
     */
    const read = (response: HttpClientResponse.HttpClientResponse, request: CompletionRequest, onDelta: OnDelta) =>
      Effect.scoped(Effect.gen(function*() {
        const pull = yield* Stream.toPull(response.stream)
        const parser = new SseDataParser()
        const events: Array<string> = []
        let ending: Ending | undefined
        let usage: LlmUsage | undefined
        const dispatch = () => {
          for (const data of events) {
            const chunks = readChunk(data)
            if (chunks === undefined) ending = { _tag: "malformed", data }
            else if (chunks.some((chunk) => chunk._tag === "error")) ending = { _tag: "error", data }
            for (const chunk of chunks ?? []) {
              if (ending !== undefined) break
              if (chunk._tag === "done") ending = { _tag: "done", data }
              else if (chunk._tag === "usage") usage = chunk.usage
              else if (chunk._tag === "delta") onDelta(chunk.content)
            }
            if (ending !== undefined) break
          }
          events.length = 0
        }
        const untilEnding: Effect.Effect<void, LlmError> = Effect.suspend(() =>
          Effect.matchEffect(pull, {
            onFailure: Option.match({
              onNone: () =>
                Effect.sync(() => {
                  parser.end(events)
                  dispatch()
                  ending ??= CUT
                }),
              onSome: onTransport
            }),
            onSuccess: (bytes) => {
              for (const piece of bytes) parser.push(piece, events)
              dispatch()
              return ending === undefined ? untilEnding : Effect.void
            }
          })
        )
        yield* untilEnding
        const ended = ending ?? CUT
        if (ended._tag === "done") {
          yield* pull.pipe(Effect.forever, Effect.ignore, Effect.timeout(DRAIN_AFTER_DONE), Effect.ignore)
        }
        return yield* finish(ended, usage, request)
      }))

    /**
     * The call in the foreground (Scheduling.ts), from its request to its answer's end: each step
     * goes on right after the socket callback that resumes it, ahead of background work. A read of
     * the body alone was not enough: from the answer's headers to its first read the call went on
     * in background slices, and behind 50 turns' set-ups a first token that came meanwhile waited
     * in the socket's buffer (chat bench, from the token's arrival to its event's write: p95
     * 0.9-4.1 ms and p99 9-93 ms before, 0.4-0.6 ms and 2-3 ms after).
     */
    const answer = (request: CompletionRequest, onDelta: OnDelta): Effect.Effect<void, LlmError> =>
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
          response.status >= 200 && response.status < 300 ? read(response, request, onDelta) : failedAnswer(response)
        ),
        inForeground
      )

    return { name, answer } satisfies LlmProviderService
  })

const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/** The provider as the `LlmProvider`, over `UpstreamHttpClient` (Node's, connections kept between calls). */
export const OpenAiLlmLive = (options: OpenAiLlmOptions): Layer.Layer<LlmProvider> =>
  Layer.effect(LlmProvider, makeOpenAiLlm(options)).pipe(Layer.provide(UpstreamHttpClient))
