import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Chunk, Deferred, Duration, Effect, Fiber, Mailbox, Option, Stream } from "effect"

import { Shutdown } from "./Server.js"

/**
 * Server-sent events as the ChatKit protocol sends them: one `data: <compact JSON>` line per
 * event, no `event:` or `id:` fields, keys whose value is null left out (the reference server's
 * `exclude_none`), flushed as produced, and a `: ping` comment while nothing else is sent so
 * proxies keep the connection open.
 */

export const SSE_PING_INTERVAL = Duration.seconds(15)

const withoutNulls = (_key: string, value: unknown) => (value === null ? undefined : value)

/** Compact JSON without null-valued keys, as the protocol's JSON answers and events are; arrays keep their nulls. */
export const protocolJson = (value: unknown): string => JSON.stringify(value, withoutNulls)

/** `data: {...}\n\n` for one event. */
export const sseData = (event: unknown): string => `data: ${protocolJson(event)}\n\n`

const encoder = new TextEncoder()

const PING = ": ping\n\n"

/** Events produced ahead of the socket at most (then the producer waits for the writes). */
const SSE_BUFFER = 64

/**
 * A `text/event-stream` response of `events`; `: ping` every `pingEvery` until they end. The
 * stream must not fail: errors are events of the protocol, turned into one before this point.
 *
 * The events run in a fiber of their own into a mailbox, which a ping fiber writes into too; the
 * response reads the mailbox, and writes what it holds at once as one chunk. This is what
 * `Stream.merge(data, pings)` did, for a fraction of its cost per event (merge runs a
 * channel-level race per element: ~60 µs per event; the mailbox ~10 µs). The stream's scope
 * closing (the client gone) interrupts both fibers, and so the events.
 *
 * When the server's shutdown grace period is nearly over (`Shutdown.ending`), a stream still open
 * is interrupted and ends with `onShutdown`, so the client knows to retry elsewhere.
 */
export const sseResponse = (
  events: Stream.Stream<unknown>,
  options: { readonly pingEvery?: Duration.DurationInput; readonly onShutdown?: unknown } = {}
): HttpServerResponse.HttpServerResponse => {
  const pingEvery = options.pingEvery ?? SSE_PING_INTERVAL
  const body = Stream.unwrapScoped(Effect.gen(function*() {
    const mailbox = yield* Mailbox.make<string>({ capacity: SSE_BUFFER })
    const producer = yield* Stream.runForEachChunk(events, (chunk) => mailbox.offerAll(Chunk.map(chunk, sseData))).pipe(
      Effect.exit,
      Effect.flatMap((exit) => mailbox.done(exit)),
      Effect.forkScoped
    )
    yield* mailbox.offer(PING).pipe(Effect.delay(pingEvery), Effect.forever, Effect.forkScoped)
    const shutdown = yield* Effect.serviceOption(Shutdown)
    if (Option.isSome(shutdown) && options.onShutdown !== undefined) {
      const last = sseData(options.onShutdown)
      yield* Deferred.await(shutdown.value.ending).pipe(
        // interrupted first (its finalizers settle what it stored), so the final event is the last one
        Effect.zipRight(Fiber.interrupt(producer)),
        Effect.zipRight(mailbox.offer(last)),
        Effect.zipRight(mailbox.end),
        Effect.forkScoped
      )
    }
    return Mailbox.toStream(mailbox).pipe(
      Stream.mapChunks((texts) => Chunk.of(encoder.encode(Chunk.join(texts, ""))))
    )
  }))
  return HttpServerResponse.stream(body, {
    contentType: "text/event-stream",
    headers: { "cache-control": "no-store", "x-accel-buffering": "no" }
  })
}
