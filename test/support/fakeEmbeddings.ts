import type * as http from "node:http"

import { Effect, type Scope } from "effect"

import { localHttpServer } from "./network.js"

/**
 * An OpenAI-compatible embeddings server on 127.0.0.1 (a real socket), scripted per request: each
 * `POST /v1/embeddings` takes the next script (the last one repeats) and is recorded. Vectors are
 * `fakeVector(input, dimension)`: distinct per text, not unit length (the client must normalise),
 * and `data` is sent in reverse order (the client must place them by `index`).
 */

export type FakeEmbeddingsScript =
  | {
    readonly type: "ok"
    /** the length of every vector (default 1536) */
    readonly dimension?: number
    /** wait before answering */
    readonly delayMs?: number
  }
  | {
    readonly type: "status"
    readonly status: number
    readonly retryAfter?: string
    /** default: an OpenAI-style error object */
    readonly body?: string
  }
  /** a 200 with this body as it is */
  | { readonly type: "raw"; readonly body: string }

export interface RecordedEmbeddingsRequest {
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: { readonly model?: unknown; readonly input?: ReadonlyArray<string> }
}

export interface FakeEmbeddings {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseUrl: string
  readonly requests: Array<RecordedEmbeddingsRequest>
  /** replaces the scripts for the next requests */
  readonly script: (...scripts: ReadonlyArray<FakeEmbeddingsScript>) => void
}

/** The vector the fake answers for `text`: components in [-1, 1) from a PRNG seeded by the text, times 3. */
export const fakeVector = (text: string, dimension: number): Array<number> => {
  let seed = 2166136261
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 16777619) >>> 0
  const out: Array<number> = []
  for (let i = 0; i < dimension; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    out.push(3 * (seed / 2 ** 31 - 1))
  }
  return out
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const answer = async (
  script: FakeEmbeddingsScript,
  body: RecordedEmbeddingsRequest["body"],
  res: http.ServerResponse
) => {
  if (script.type === "status") {
    res.writeHead(script.status, {
      "content-type": "application/json",
      ...(script.retryAfter === undefined ? {} : { "retry-after": script.retryAfter })
    })
    res.end(script.body ?? JSON.stringify({ error: { message: "fake failure", type: "server_error" } }))
    return
  }
  if (script.type === "raw") {
    res.writeHead(200, { "content-type": "application/json" }).end(script.body)
    return
  }
  if (script.delayMs !== undefined) await sleep(script.delayMs)
  const input = body.input ?? []
  const dimension = script.dimension ?? 1536
  const data = input.map((text, index) => ({ object: "embedding", index, embedding: fakeVector(text, dimension) }))
  res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({
    object: "list",
    data: data.reverse(),
    model: body.model,
    usage: { prompt_tokens: input.length, total_tokens: input.length }
  }))
}

/** The server for a scope (closed, with every connection, when the scope closes). */
export const fakeEmbeddings = (
  ...initial: ReadonlyArray<FakeEmbeddingsScript>
): Effect.Effect<FakeEmbeddings, never, Scope.Scope> =>
  Effect.gen(function*() {
    let scripts: ReadonlyArray<FakeEmbeddingsScript> = initial.length === 0 ? [{ type: "ok" }] : initial
    let served = 0
    const requests: Array<RecordedEmbeddingsRequest> = []
    const port = yield* localHttpServer((req, res) => {
      const parts: Array<Buffer> = []
      req.on("data", (part: Buffer) => parts.push(part))
      req.on("end", () => {
        let body: RecordedEmbeddingsRequest["body"]
        try {
          body = JSON.parse(Buffer.concat(parts).toString("utf8"))
        } catch {
          body = {}
        }
        requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body })
        const script = scripts[Math.min(served, scripts.length - 1)]!
        served++
        if (req.method !== "POST" || req.url !== "/v1/embeddings") {
          res.writeHead(404).end()
          return
        }
        answer(script, body, res).catch(() => res.destroy())
      })
    })
    const fake: FakeEmbeddings = {
      baseUrl: `http://127.0.0.1:${port}/v1`,
      requests,
      script: (...next) => {
        scripts = next
        served = 0
      }
    }
    return fake
  })
