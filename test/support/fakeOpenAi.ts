import type * as http from "node:http"
import type * as net from "node:net"

import { Context, Effect, Layer, type Scope } from "effect"

import { TestApp } from "./app.js"
import { localHttpServer } from "./network.js"

/**
 * An OpenAI-compatible chat-completions server on 127.0.0.1 (a real socket), scripted per request:
 * each request takes the next script (the last one repeats). It records every request and whether
 * the client closed the connection before the answer was complete. Thread-title requests (the
 * default `thread_title_prompt` as system message) run in the background of conversations, so
 * they take no script: they are answered `Fake title` and recorded apart.
 */

export type FakeScript =
  | {
    readonly type: "stream"
    readonly tokens: ReadonlyArray<string>
    /** wait between tokens (default 0) */
    readonly tokenDelayMs?: number
    /** headers go out at once, then this wait before the first token */
    readonly firstTokenDelayMs?: number
    /** the final usage chunk (default: counts from the request and tokens); null sends none */
    readonly usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null
    /** after this many tokens, destroy the socket (no [DONE]) */
    readonly dropAfterTokens?: number
    /** after this many tokens, send a data line that is not JSON */
    readonly malformedAfterTokens?: number
    /**
     * Write the whole SSE body at once but cut at these byte offsets (or every `splitEvery` bytes),
     * one write per piece with a pause between, so the pieces reach the client as separate reads.
     */
    readonly splitAt?: ReadonlyArray<number>
    readonly splitEvery?: number
    /** after `[DONE]`, keep the response open (never end it) */
    readonly holdAfterDone?: boolean
    /** line ending of the SSE body (default "\n") */
    readonly newline?: "\n" | "\r\n"
  }
  | {
    readonly type: "status"
    readonly status: number
    readonly retryAfter?: string
    /** default: an OpenAI-style error object */
    readonly body?: string
  }

export interface RecordedRequest {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: unknown
  /** the client closed the connection before the server finished its answer */
  closedEarly: boolean
  /** resolves when the connection of this request has closed (early or not) */
  readonly closed: Promise<void>
  /** which TCP connection it came on: 1 for the server's first, and so on */
  readonly connection: number
}

export interface FakeOpenAi {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseUrl: string
  readonly requests: Array<RecordedRequest>
  readonly titleRequests: Array<RecordedRequest>
  /** replaces the scripts for the next requests */
  readonly script: (...scripts: ReadonlyArray<FakeScript>) => void
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const chunk = (content: string) =>
  JSON.stringify({
    id: "chatcmpl-fake",
    object: "chat.completion.chunk",
    created: 0,
    model: "fake",
    choices: [{ index: 0, delta: { content }, finish_reason: null }]
  })

const events = (script: Extract<FakeScript, { type: "stream" }>, nl: string): Array<string> => {
  const out = [
    `data: ${
      JSON.stringify({
        id: "chatcmpl-fake",
        choices: [{ index: 0, delta: { role: "assistant" }, finish_reason: null }]
      })
    }${nl}${nl}`
  ]
  script.tokens.forEach((token) => out.push(`data: ${chunk(token)}${nl}${nl}`))
  out.push(
    `data: ${
      JSON.stringify({ id: "chatcmpl-fake", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })
    }${nl}${nl}`
  )
  const usage = script.usage === undefined
    ? { prompt_tokens: 7, completion_tokens: script.tokens.length, total_tokens: 7 + script.tokens.length }
    : script.usage
  if (usage !== null) out.push(`data: ${JSON.stringify({ id: "chatcmpl-fake", choices: [], usage })}${nl}${nl}`)
  out.push(`data: [DONE]${nl}${nl}`)
  return out
}

const cuts = (length: number, script: Extract<FakeScript, { type: "stream" }>): Array<number> => {
  if (script.splitEvery !== undefined) {
    const out: Array<number> = []
    for (let at = script.splitEvery; at < length; at += script.splitEvery) out.push(at)
    return out
  }
  return [...new Set(script.splitAt ?? [])].filter((at) => at > 0 && at < length).sort((a, b) => a - b)
}

const answer = async (
  script: FakeScript,
  res: http.ServerResponse,
  socket: net.Socket,
  isClosed: () => boolean
) => {
  if (script.type === "status") {
    res.writeHead(script.status, {
      "content-type": "application/json",
      ...(script.retryAfter === undefined ? {} : { "retry-after": script.retryAfter })
    })
    res.end(
      script.body ?? JSON.stringify({ error: { message: "fake failure", type: "server_error", code: script.status } })
    )
    return
  }
  socket.setNoDelay(true)
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  res.flushHeaders()
  const nl = script.newline ?? "\n"
  const all = events(script, nl)
  if (script.splitAt !== undefined || script.splitEvery !== undefined) {
    const bytes = Buffer.from(all.join(""), "utf8")
    let from = 0
    for (const at of [...cuts(bytes.length, script), bytes.length]) {
      if (isClosed()) return
      res.write(bytes.subarray(from, at))
      from = at
      await sleep(1)
    }
    res.end()
    return
  }
  if (script.firstTokenDelayMs !== undefined) await sleep(script.firstTokenDelayMs)
  for (let index = 0; index < all.length; index++) {
    if (isClosed()) return
    const tokenIndex = index - 1 // all[0] is the role chunk
    if (script.dropAfterTokens !== undefined && tokenIndex === script.dropAfterTokens) {
      await sleep(20) // what was written reaches the client before the reset
      socket.destroy()
      return
    }
    if (script.malformedAfterTokens !== undefined && tokenIndex === script.malformedAfterTokens) {
      res.write(`data: {"choices": [{"delta": {"content": "unterminated${nl}${nl}`)
      await sleep(5)
      res.end()
      return
    }
    res.write(all[index])
    if (script.tokenDelayMs !== undefined && tokenIndex >= 0 && tokenIndex < script.tokens.length) {
      await sleep(script.tokenDelayMs)
    }
  }
  if (script.holdAfterDone !== true) res.end()
}

const TITLE_SCRIPT: FakeScript = { type: "stream", tokens: ["Fake", " title"] }

const isTitleRequest = (body: unknown) => {
  const first = (body as { messages?: Array<{ role?: unknown; content?: unknown }> } | undefined)?.messages?.[0]
  return first?.role === "system" && typeof first.content === "string" &&
    first.content.startsWith("Write a short title")
}

/** The server for a scope (closed, with every connection, when the scope closes). */
export const fakeOpenAi = (...initial: ReadonlyArray<FakeScript>): Effect.Effect<FakeOpenAi, never, Scope.Scope> =>
  Effect.gen(function*() {
    let scripts: ReadonlyArray<FakeScript> = initial.length === 0 ? [{ type: "stream", tokens: ["ok"] }] : initial
    let served = 0
    const connections = new WeakMap<net.Socket, number>()
    let connectionCount = 0
    const requests: Array<RecordedRequest> = []
    const titleRequests: Array<RecordedRequest> = []
    const port = yield* localHttpServer((req, res) => {
      const parts: Array<Buffer> = []
      req.on("data", (part: Buffer) => parts.push(part))
      req.on("end", () => {
        let body: unknown
        try {
          body = JSON.parse(Buffer.concat(parts).toString("utf8"))
        } catch {
          body = Buffer.concat(parts).toString("utf8")
        }
        let markClosed: () => void = () => undefined
        if (!connections.has(req.socket)) connections.set(req.socket, ++connectionCount)
        const record: RecordedRequest = {
          method: req.method ?? "",
          url: req.url ?? "",
          headers: req.headers,
          body,
          closedEarly: false,
          closed: new Promise<void>((resolve) => (markClosed = resolve)),
          connection: connections.get(req.socket)!
        }
        const title = isTitleRequest(body)
        ;(title ? titleRequests : requests).push(record)
        let closed = false
        res.on("close", () => {
          closed = true
          if (!res.writableFinished) record.closedEarly = true
          markClosed()
        })
        const script = title ? TITLE_SCRIPT : scripts[Math.min(served, scripts.length - 1)]!
        if (!title) served++
        if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
          res.writeHead(404).end()
          return
        }
        answer(script, res, req.socket, () => closed).catch(() => res.destroy())
      })
    })
    const fake: FakeOpenAi = {
      baseUrl: `http://127.0.0.1:${port}/v1`,
      requests,
      titleRequests,
      script: (...next) => {
        scripts = next
        served = 0
      }
    }
    return fake
  })

/** The environment key TestAppOnFakeOpenAi gives the provider. */
export const FAKE_OPENAI_KEY = "sk-test-0123456789abcdef"

/** The fake server of `TestAppOnFakeOpenAi`, for its tests to script. */
export class Fake extends Context.Tag("test/FakeOpenAi")<Fake, FakeOpenAi>() {}

/** TestApp with LLM_PROVIDER=openai pointed at a fake server of its own (`Fake`), plus `env`. */
export const TestAppOnFakeOpenAi = (name: string, env: Record<string, string> = {}) =>
  Layer.unwrapScoped(
    Effect.map(fakeOpenAi(), (fake) =>
      Layer.merge(
        TestApp(name, {
          TRUST_PROXY: "1",
          LLM_PROVIDER: "openai",
          OPENAI_API_KEY: FAKE_OPENAI_KEY,
          OPENAI_BASE_URL: fake.baseUrl,
          ...env
        }),
        Layer.succeed(Fake, fake)
      ))
  )
