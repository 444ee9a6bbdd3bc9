import { HttpServerResponse } from "@effect/platform"
import { Duration, Stream } from "effect"

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

/**
 * A `text/event-stream` response of `events`; `: ping` every `pingEvery` until they end. The
 * stream must not fail: errors are events of the protocol, turned into one before this point.
 */
export const sseResponse = (
  events: Stream.Stream<unknown>,
  options: { readonly pingEvery?: Duration.DurationInput } = {}
): HttpServerResponse.HttpServerResponse => {
  const data = Stream.map(events, sseData)
  const pings = Stream.tick(options.pingEvery ?? SSE_PING_INTERVAL).pipe(Stream.drop(1), Stream.as(": ping\n\n"))
  return HttpServerResponse.stream(
    Stream.merge(data, pings, { haltStrategy: "left" }).pipe(Stream.map((text) => encoder.encode(text))),
    {
      contentType: "text/event-stream",
      headers: { "cache-control": "no-store", "x-accel-buffering": "no" }
    }
  )
}
