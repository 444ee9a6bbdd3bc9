import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Chunk, Context, Deferred, Duration, Effect, Exit, Fiber, Mailbox, Option, Stream } from "effect"

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

/**
 * Events waiting for the socket at most: a push cannot wait, so past it the response is ended
 * there (what is stored stays whole; a client this far behind is not reading).
 */
export const SSE_MAX_PENDING = 4_096

/**
 * Sends an event at once, from a callback, in order with the events of the stream (those it
 * emitted so far are sent before): the text deltas of an answer, one per token, which would
 * otherwise cross a stream stage per layer. Provided to the events of `sseResponse`.
 */
export class SsePush extends Context.Tag("chatkit/SsePush")<SsePush, (event: unknown) => void>() {}

/**
 * A `text/event-stream` response of `events`; `: ping` every `pingEvery` until they end. The
 * stream must not fail: errors are events of the protocol, turned into one before this point.
 *
 * The events run in a fiber of their own into a mailbox, which a ping fiber writes into too, and
 * so does `SsePush`, which the events are given; the response reads the mailbox, and writes what
 * it holds at once as one chunk. This is what `Stream.merge(data, pings)` did, for a fraction of
 * its cost per event (merge runs a channel-level race per element: ~60 µs per event; the mailbox
 * ~10 µs). The stream's scope closing (the client gone) interrupts both fibers, and so the events.
 *
 * When the server's shutdown grace period is nearly over (`Shutdown.ending`), a stream still open
 * is interrupted and ends with `onShutdown`, so the client knows to retry elsewhere.
 */
export const sseResponse = (
  events: Stream.Stream<unknown, never, SsePush>,
  options: { readonly pingEvery?: Duration.DurationInput; readonly onShutdown?: unknown } = {}
): HttpServerResponse.HttpServerResponse => {
  const pingEvery = options.pingEvery ?? SSE_PING_INTERVAL
  const body = Stream.unwrapScoped(Effect.gen(function*() {
    // Unbounded, every event through `push` and its bound: this version's unbounded Mailbox sends
    // twice what `unsafeOffer` put in before an `offerAll` (unsafeOfferAllArray keeps `messages`).
    const mailbox = yield* Mailbox.make<string>()
    let overrun = false
    const push = (event: unknown) => {
      if (Option.getOrElse(mailbox.unsafeSize(), () => 0) < SSE_MAX_PENDING) mailbox.unsafeOffer(sseData(event))
      else if (mailbox.unsafeDone(Exit.void)) overrun = true
    }
    yield* Effect.addFinalizer(() =>
      overrun
        ? Effect.logWarning(`an SSE client fell ${SSE_MAX_PENDING} events behind: its response was ended`)
        : Effect.void
    )
    const producer = yield* Stream.runForEachChunk(
      Stream.provideService(events, SsePush, push),
      (chunk) => Effect.sync(() => Chunk.forEach(chunk, push))
    ).pipe(
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
