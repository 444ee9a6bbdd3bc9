import { createServer, request } from "node:http"

import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"

import { AppConfig, testConfig } from "../src/platform/Config.js"
import { requestPipeline } from "../src/platform/Http.js"
import { SSE_MAX_PENDING, sseData, SsePush, sseResponse } from "../src/platform/Sse.js"
import { LiveClock } from "./support/database.js"

/** Three events 150 ms apart, pings every 200 ms, through the platform's request pipeline on a real port. */
const events = Effect.flatMap(SsePush, (push) =>
  Effect.forEach(
    [0, 1, 2],
    (n) =>
      Effect.sync(() => push({ type: "tick", n, title: null, nested: { keep: [1, null], drop: null } })).pipe(
        Effect.delay("150 millis")
      ),
    { discard: true }
  ))
/** `push` called `times` times in one go from a callback (as a provider's read sends its tokens), between two events. */
const pushing = (times: number) =>
  Effect.flatMap(SsePush, (push) =>
    Effect.sync(() => push({ type: "before" })).pipe(
      Effect.zipRight(Effect.async<void>((resume) => {
        setImmediate(() => {
          for (let n = 0; n < times; n++) push({ type: "pushed", n })
          resume(Effect.void)
        })
      })),
      Effect.zipRight(Effect.sync(() => push({ type: "after" })))
    ))
const Router = HttpRouter.empty.pipe(
  HttpRouter.get("/events", sseResponse(events, { pingEvery: "200 millis" })),
  HttpRouter.get("/pushed", sseResponse(pushing(3))),
  HttpRouter.get("/flood", sseResponse(pushing(SSE_MAX_PENDING / 10))),
  Effect.catchTag("RouteNotFound", () => HttpServerResponse.empty({ status: 404 }))
)
const Served = Layer.unwrapEffect(Effect.map(AppConfig, (config) => HttpServer.serve(Router, requestPipeline(config))))
  .pipe(
    Layer.provide(testConfig()),
    Layer.provideMerge(NodeHttpServer.layer(() => createServer(), { port: 0, host: "127.0.0.1" })),
    Layer.provide(LiveClock)
  )

interface Chunk {
  readonly at: number
  readonly text: string
}

/** Reads the raw socket: every chunk with the time it arrived. */
const readStream = (port: number, path = "/events") =>
  Effect.promise(() =>
    new Promise<{ headers: Record<string, unknown>; chunks: Array<Chunk> }>((resolve, reject) => {
      const started = Date.now()
      const chunks: Array<Chunk> = []
      request({ host: "127.0.0.1", port, path }, (response) => {
        response.setEncoding("utf8")
        response.on("data", (text: string) => chunks.push({ at: Date.now() - started, text }))
        response.on("end", () => resolve({ headers: response.headers, chunks }))
      }).on("error", reject).end()
    })
  )

layer(Served)("server-sent events", (it) => {
  it.effect("sends each event as one compact data line as it is produced, nulls left out, pings between", () =>
    Effect.gen(function*() {
      const address = (yield* HttpServer.HttpServer).address
      const { chunks, headers } = yield* readStream(address._tag === "TcpAddress" ? address.port : 0)
      expect(headers["content-type"]).toBe("text/event-stream")
      expect(headers["cache-control"]).toBe("no-store")
      expect(headers["x-accel-buffering"]).toBe("no")
      expect(headers["x-request-id"]).toBeDefined()
      const text = chunks.map((c) => c.text).join("")
      const data = text.split("\n\n").filter((block) => block.startsWith("data: "))
      expect(data).toEqual([0, 1, 2].map((n) => `data: {"type":"tick","n":${n},"nested":{"keep":[1,null]}}`))
      expect(text).toContain(": ping\n\n")
      // flushed as produced: the first event arrived long before the last
      const firstAt = chunks.find((c) => c.text.includes("\"n\":0"))?.at ?? Infinity
      const lastAt = chunks.find((c) => c.text.includes("\"n\":2"))?.at ?? 0
      expect(lastAt - firstAt).toBeGreaterThanOrEqual(250)
    }))

  const dataOf = (path: string) =>
    Effect.gen(function*() {
      const address = (yield* HttpServer.HttpServer).address
      const { chunks } = yield* readStream(address._tag === "TcpAddress" ? address.port : 0, path)
      return chunks.map((c) => c.text).join("").split("\n\n").filter((block) => block.startsWith("data: "))
    })

  it.effect("events sent from a callback go out in order with those sent before and after it", () =>
    Effect.gen(function*() {
      expect(yield* dataOf("/pushed")).toEqual([
        `data: {"type":"before"}`,
        ...[0, 1, 2].map((n) => `data: {"type":"pushed","n":${n}}`),
        `data: {"type":"after"}`
      ])
    }))

  it.effect("past SSE_MAX_PENDING characters unsent the response ends there, on an event's end: memory stays bounded", () =>
    Effect.gen(function*() {
      // SSE_MAX_PENDING / 10 events of ~35 characters each, pushed in one go, before any is written
      const data = yield* dataOf("/flood")
      const sent = data.length - 1
      expect(data[0]).toBe(`data: {"type":"before"}`)
      expect(data.slice(1)).toEqual(Array.from({ length: sent }, (_, n) => `data: {"type":"pushed","n":${n}}`))
      // what waits in the body, plus what the response and the socket took before they were full
      expect(data.join("\n\n").length).toBeLessThanOrEqual(SSE_MAX_PENDING + 64 * 1024)
      expect(sent).toBeGreaterThan(SSE_MAX_PENDING / 40)
      expect(sent).toBeLessThan(SSE_MAX_PENDING / 10)
    }))

  it.effect("sseData leaves out null keys at any depth", () =>
    Effect.sync(() => {
      expect(sseData({ type: "error", code: "stream.error", message: null, allow_retry: true }))
        .toBe("data: {\"type\":\"error\",\"code\":\"stream.error\",\"allow_retry\":true}\n\n")
    }))
})
