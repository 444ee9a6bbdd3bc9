import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Readable } from "node:stream"

import { Context, Deferred, Duration, Effect, Fiber, Option, type Scope } from "effect"

import { streaming } from "./Scheduling.js"
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

const PING = ": ping\n\n"

/**
 * Text waiting in the body at most (~1 MB, beyond what the response and the socket buffer): a push
 * cannot wait, so past it the response is ended there (what is stored stays whole; a client this
 * far behind is not reading).
 */
export const SSE_MAX_PENDING = 1_000_000

/**
 * Sends an event at once, in order with those sent before it (the function an `sseResponse`'s
 * events are sent with). It is a plain call, usable from a callback: a token read from the
 * provider is sent with no Effect between.
 */
export class SsePush extends Context.Tag("chatkit/SsePush")<SsePush, (event: unknown) => void>() {}

/**
 * A `text/event-stream` response of the events `events` sends (through `SsePush`) while it runs;
 * `: ping` every `pingEvery` until it ends. It must not fail: errors are events of the protocol,
 * turned into one before this point.
 *
 * The body is a Node stream the platform pipes to the socket, and every event is written into it
 * as it is sent: a token is a `push` and a socket write (a stream of events cost a stream stage
 * per element and per layer of the stream, and a body stream a mailbox hand-over, a pull and the
 * platform's write loop per token). `events` and the pings run in fibers of the request's scope,
 * which closes when the response ends or the client goes away, and so interrupts them.
 *
 * When the server's shutdown grace period is nearly over (`Shutdown.ending`), `events` still
 * running is interrupted and the response ends with `onShutdown`, so the client knows to retry elsewhere.
 */
export const sseResponse = (
  events: Effect.Effect<void, never, SsePush>,
  options: { readonly pingEvery?: Duration.DurationInput; readonly onShutdown?: unknown } = {}
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pingEvery = options.pingEvery ?? SSE_PING_INTERVAL
    // background work gives way more often until the response ends, so its events go out sooner
    yield* streaming
    const body = new Readable({ read: () => undefined })
    let open = true
    let overrun = false
    const end = () => {
      if (!open) return
      open = false
      body.push(null)
    }
    const send = (text: string) => {
      if (!open) return
      if (body.readableLength + text.length <= SSE_MAX_PENDING) body.push(text)
      else {
        overrun = true
        end()
      }
    }
    const push = (event: unknown) => open && send(sseData(event))
    yield* Effect.addFinalizer(() =>
      overrun
        ? Effect.logWarning(`an SSE client fell ${SSE_MAX_PENDING} characters behind: its response was ended`)
        : Effect.void
    )
    let shuttingDown = false
    const producer = yield* Effect.provideService(events, SsePush, push).pipe(
      // however the events end, the response ends, unless the shutdown below has a last word
      Effect.ensuring(Effect.sync(() => shuttingDown || end())),
      Effect.forkScoped
    )
    yield* Effect.sync(() => send(PING)).pipe(Effect.delay(pingEvery), Effect.forever, Effect.forkScoped)
    const shutdown = yield* Effect.serviceOption(Shutdown)
    if (Option.isSome(shutdown) && options.onShutdown !== undefined) {
      const last = options.onShutdown
      yield* Deferred.await(shutdown.value.ending).pipe(
        // interrupted first (its finalizers settle what it stored), so the final event is the last one
        Effect.zipRight(Effect.sync(() => (shuttingDown = true))),
        Effect.zipRight(Fiber.interrupt(producer)),
        Effect.zipRight(Effect.sync(() => {
          push(last)
          end()
        })),
        Effect.forkScoped
      )
    }
    return HttpServerResponse.raw(body, {
      contentType: "text/event-stream",
      headers: { "cache-control": "no-store", "x-accel-buffering": "no" }
    })
  })
