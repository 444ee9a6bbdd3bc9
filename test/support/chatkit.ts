import { HttpClient, HttpClientRequest } from "@effect/platform"
import { expect } from "@effect/vitest"
import { Effect } from "effect"

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
}
export interface Event {
  readonly type: string
  readonly thread: { readonly id: string }
  readonly item: Item
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

/** The events of an SSE body: one `data:` line each, comments (pings) skipped. */
export const eventsOf = (answer: Answer): ReadonlyArray<Event> => {
  expect(answer.status).toBe(200)
  expect(answer.headers["content-type"]).toBe("text/event-stream")
  return answer.text.split("\n\n").filter((block) => block.startsWith("data: ")).map((block) =>
    JSON.parse(block.slice(6))
  )
}

export const json = (answer: Answer) => {
  expect(answer.status).toBe(200)
  return JSON.parse(answer.text) as JsonAnswer
}

export const say = (text: string) => ({ content: [{ type: "input_text", text }] })

/** The assistant text of a turn's events, from its deltas, checked against the stored item. */
export const answerOf = (events: ReadonlyArray<Event>) => {
  const deltas = events.filter((e) => e.type === "thread.item.updated").map((e) => e.update.delta).join("")
  const done = events.filter((e) => e.type === "thread.item.done" && e.item.type === "assistant_message")
  expect(done).toHaveLength(1)
  expect(done[0]?.item.content[0]?.text).toBe(deltas)
  return deltas
}
