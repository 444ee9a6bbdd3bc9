import { request } from "node:http"

import { HttpClient, HttpClientRequest, HttpServer } from "@effect/platform"
import { expect } from "@effect/vitest"
import { Effect, Schedule } from "effect"

import { randomIp } from "./session.js"

/* ChatKit requests over the app's HttpClient, and their answers parsed as a client reads them. */

export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly text: string
}

export const chatkit = (token: string, body: unknown) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(
      HttpClientRequest.post("/api/v1/chatkit").pipe(
        HttpClientRequest.setHeader("x-forwarded-for", randomIp()),
        HttpClientRequest.bearerToken(token),
        HttpClientRequest.bodyText(JSON.stringify(body), "application/json")
      )
    )
    return { status: response.status, headers: response.headers, text: yield* response.text } satisfies Answer
  })

/** The parts of protocol events and items these tests read. */
export interface Item {
  readonly id: string
  readonly type: string
  readonly thread_id?: string
  readonly content: ReadonlyArray<{ readonly text: string }>
  readonly status?: string
}
export interface Event {
  readonly type: string
  readonly thread: { readonly id: string }
  readonly item: Item
  readonly item_id?: string
  readonly update: { readonly delta: string }
  readonly code?: string
  readonly allow_retry?: boolean
  readonly message?: unknown
}
export interface Page<A> {
  readonly data: ReadonlyArray<A>
  readonly has_more: boolean
  readonly after?: string
}
export interface JsonAnswer extends Page<Item> {
  readonly items: Page<Item>
  readonly title?: string
}

/**
 * A client's reader of an SSE body arriving in pieces cut anywhere: bytes decoded across the cuts,
 * an event at each blank line (one `data:` line each), comments (pings) skipped.
 */
export const sseReader = () => {
  const decoder = new TextDecoder("utf-8", { fatal: true })
  let buffer = ""
  return (bytes: Uint8Array): Array<Event> => {
    buffer += decoder.decode(bytes, { stream: true })
    const blocks = buffer.split("\n\n")
    buffer = blocks.pop() ?? ""
    return blocks.filter((block) => block.startsWith("data: ")).map((block) => JSON.parse(block.slice(6)))
  }
}

/** The events of a whole SSE body. */
export const eventsOf = (answer: Answer): ReadonlyArray<Event> => {
  expect(answer.status).toBe(200)
  expect(answer.headers["content-type"]).toBe("text/event-stream")
  return sseReader()(Buffer.from(answer.text, "utf8"))
}

export const json = (answer: Answer) => {
  expect(answer.status).toBe(200)
  return JSON.parse(answer.text) as JsonAnswer
}

export const say = (text: string) => ({ content: [{ type: "input_text", text }] })

/** The thread once its background title job has stored a title (10 s at most): `threads.get_by_id` polled. */
export const titledThread = (token: string, threadId: string | undefined) =>
  chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }).pipe(
    Effect.map(json),
    Effect.filterOrFail((thread) => thread.title !== undefined),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds")))
  )

/** The assistant text of a turn's events, from its deltas, checked against the stored item. */
export const answerOf = (events: ReadonlyArray<Event>) => {
  const deltas = events.filter((e) => e.type === "thread.item.updated").map((e) => e.update.delta).join("")
  const done = events.filter((e) => e.type === "thread.item.done" && e.item.type === "assistant_message")
  expect(done).toHaveLength(1)
  expect(done[0]?.item.content[0]?.text).toBe(deltas)
  return deltas
}

/** The port TestApp's server listens on, for requests on a socket of the test's own. */
export const serverPort = Effect.map(
  HttpServer.HttpServer,
  (server) => server.address._tag === "TcpAddress" ? server.address.port : 0
)

/** A ChatKit stream read from a raw socket as it arrives, which the test may cut at any point. */
export interface LiveStream {
  /** the events parsed so far */
  readonly events: Array<Event>
  /** the text deltas received so far, joined */
  readonly deltas: () => string
  /** resolves once `predicate` holds for the events so far; rejects after `timeoutMs` */
  readonly until: (predicate: (events: ReadonlyArray<Event>) => boolean, timeoutMs?: number) => Promise<void>
  /** resolves when the response ended or the socket closed */
  readonly ended: Promise<void>
  /** destroys the socket, as a client that goes away mid-answer */
  readonly destroy: () => void
}

/** POSTs `body` to /api/v1/chatkit on a fresh connection to 127.0.0.1:`port` (node:http, no agent). */
export const openStream = (port: number, token: string, body: unknown): LiveStream => {
  const events: Array<Event> = []
  const waiters = new Set<() => void>()
  const read = sseReader()
  let markEnded: () => void = () => undefined
  const ended = new Promise<void>((resolve) => (markEnded = resolve))
  const req = request({
    host: "127.0.0.1",
    port,
    path: "/api/v1/chatkit",
    method: "POST",
    agent: false,
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      "x-forwarded-for": randomIp()
    }
  }, (response) => {
    response.on("data", (bytes: Buffer) => {
      events.push(...read(bytes))
      for (const wake of waiters) wake()
    })
    response.on("end", markEnded)
    response.on("close", markEnded)
  })
  req.on("error", markEnded)
  req.on("close", markEnded)
  req.end(JSON.stringify(body))
  const until = (predicate: (events: ReadonlyArray<Event>) => boolean, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!predicate(events)) return
        waiters.delete(check)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`the stream did not get there in ${timeoutMs} ms: ${JSON.stringify(events).slice(-300)}`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  return {
    events,
    deltas: () => events.filter((e) => e.type === "thread.item.updated").map((e) => e.update.delta).join(""),
    until,
    ended,
    destroy: () => req.destroy()
  }
}
