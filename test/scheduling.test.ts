import * as diagnostics from "node:diagnostics_channel"
import { Worker } from "node:worker_threads"

import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Scheduler } from "effect"

import { makeOpenAiLlm } from "../src/platform/OpenAiLlm.js"
import {
  BACKGROUND_SLICE_MS,
  inBackground,
  inForeground,
  streaming,
  STREAMING_SLICE_MS
} from "../src/platform/Scheduling.js"
import { sseResponse } from "../src/platform/Sse.js"
import { UpstreamHttpClient } from "../src/platform/UpstreamHttpClient.js"

/** One operation of work: holds the CPU for OP_MS (at least), and counts itself. */
const OP_MS = 0.05
let opsDone = 0
const busyOp = Effect.sync(() => {
  const until = performance.now() + OP_MS
  while (performance.now() < until) { /* holding the CPU, as a statement's decoding would */ }
  opsDone++
})

/** `fibers` fibers of `ops` operations each, all with work at once; `yielding`: each gives way after each operation. */
const busyFibers = (fibers: number, ops: number, options: { readonly yielding?: boolean } = {}) =>
  Effect.forEach(
    Array.from({ length: fibers }),
    () =>
      Effect.fork(
        Effect.forEach(
          Array.from({ length: ops }),
          () => options.yielding ? Effect.zipRight(busyOp, Effect.yieldNow()) : busyOp,
          {
            discard: true
          }
        )
      ),
    { concurrency: "unbounded" }
  ).pipe(Effect.flatMap(Fiber.joinAll))

/** Runs `effect` with a callback on every turn of the event loop: the most operations done between two turns. */
const mostOpsInATurn = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    let most = 0
    let atLastTurn = opsDone
    let ticking = true
    const tick = () => {
      most = Math.max(most, opsDone - atLastTurn)
      atLastTurn = opsDone
      if (ticking) setImmediate(tick)
    }
    setImmediate(tick)
    yield* Effect.ensuring(effect, Effect.sync(() => (ticking = false)))
    return Math.max(most, opsDone - atLastTurn)
  })

describe("background work", () => {
  it.live("gives each turn of the event loop one slice of its work, however many fibers have some", () =>
    Effect.gen(function*() {
      // at most a slice's worth, plus the operations before the next look at the clock
      const bound = BACKGROUND_SLICE_MS / OP_MS + 16
      expect(yield* mostOpsInATurn(inBackground(busyFibers(10, 100)))).toBeLessThanOrEqual(bound)
      // Effect's schedulers: every fiber's work before the next turn (default), or 256 operations of each (batched)
      expect(yield* mostOpsInATurn(busyFibers(10, 100))).toBe(1000)
      const batched = Scheduler.makeBatched((run) => setImmediate(run))
      expect(yield* mostOpsInATurn(busyFibers(10, 100).pipe(Effect.withScheduler(batched)))).toBe(1000)
    }))

  it.live("gives shorter slices while an answer streams, and the usual ones again once none does", () =>
    Effect.gen(function*() {
      const streamingBound = STREAMING_SLICE_MS / OP_MS + 16
      const whileStreaming = yield* Effect.scoped(
        Effect.zipRight(streaming, mostOpsInATurn(inBackground(busyFibers(10, 100))))
      )
      expect(whileStreaming).toBeLessThanOrEqual(streamingBound)
      expect(yield* mostOpsInATurn(inBackground(busyFibers(10, 100)))).toBeGreaterThan(streamingBound)
      // an SSE response streams until its scope (the request's) closes
      const whileResponding = yield* Effect.scoped(
        Effect.zipRight(sseResponse(Effect.never), mostOpsInATurn(inBackground(busyFibers(10, 100))))
      )
      expect(whileResponding).toBeLessThanOrEqual(streamingBound)
    }))

  it.live("lets foreground work resumed by a callback go on at once, ahead of the background's", () =>
    Effect.gen(function*() {
      /** How many background operations ran between a timer's callback and the code it resumes. */
      const opsBeforeResumed = (place: <A>(effect: Effect.Effect<A>) => Effect.Effect<A>) =>
        inBackground(Effect.gen(function*() {
          const busy = yield* Effect.fork(busyFibers(10, 200))
          const waited = yield* place(Effect.async<number>((resume) => {
            setTimeout(() => {
              const atCallback = opsDone
              resume(Effect.sync(() => opsDone - atCallback))
            }, 5)
          }))
          yield* Fiber.join(busy)
          return waited
        }))
      expect(yield* opsBeforeResumed(inForeground)).toBe(0)
      expect(yield* opsBeforeResumed((effect) => effect)).toBeGreaterThan(0)
    }))
})

/**
 * An HTTP server in a thread of its own (as a provider is in a process of its own): it answers
 * while this thread's event loop is busy, with `answer` (the body of a handler of `(req, res)`,
 * which may post messages to this thread).
 */
const otherThreadServer = (answer = `res.end("ok")`) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly worker: Worker }>((resume) => {
      const worker = new Worker(
        `const { createServer } = require("node:http"); const { parentPort } = require("node:worker_threads");
       const server = createServer((req, res) => { ${answer} });
       server.listen(0, "127.0.0.1", () => parentPort.postMessage(server.address().port));`,
        { eval: true }
      )
      worker.once("message", (port: number) => resume(Effect.succeed({ url: `http://127.0.0.1:${port}/`, worker })))
    }),
    ({ worker }) => Effect.promise(() => worker.terminate())
  )

describe("calls to providers", () => {
  it.live("get their answers when made from background work, however busy", () =>
    Effect.gen(function*() {
      const { url } = yield* otherThreadServer()
      const client = yield* HttpClient.HttpClient
      const ask = client.get(url).pipe(
        Effect.flatMap((response) => response.text),
        Effect.timeout("2 seconds"),
        Effect.option
      )
      yield* ask // the first call sets up what the others reuse
      const answered = yield* inBackground(Effect.gen(function*() {
        // many fibers of short steps: a slice often ends right after a call's request went out
        const busy = yield* Effect.fork(busyFibers(50, 1_000_000, { yielding: true }))
        let answered = 0
        for (let call = 0; call < 50; call++) {
          const text = yield* ask
          if (text._tag === "Some" && text.value === "ok") answered++
        }
        yield* Fiber.interrupt(busy)
        return answered
      }))
      expect(answered).toBe(50)
    }).pipe(Effect.scoped, Effect.provide(UpstreamHttpClient)), 120_000)
})

describe("a streamed answer", () => {
  it.live(
    "is read in the foreground from its headers on: its first token is relayed before background work goes on",
    () =>
      Effect.gen(function*() {
        // the headers and the first token in one write, as a fast model sends them
        const { url } = yield* otherThreadServer(
          `req.resume(); req.on("end", () => {
           res.writeHead(200, { "content-type": "text/event-stream" });
           res.end('data: {"choices":[{"delta":{"content":"Hi"}}]}\\n\\ndata: [DONE]\\n\\n');
         })`
        )
        const provider = yield* makeOpenAiLlm({ baseUrl: url })
        // Node tells when it has read an answer's headers, in the socket's callback (the token came with them)
        let atHeaders: number | undefined
        const onHeaders = () => (atHeaders = opsDone)
        yield* Effect.acquireRelease(
          Effect.sync(() => diagnostics.subscribe("http.client.response.finish", onHeaders)),
          () => Effect.sync(() => diagnostics.unsubscribe("http.client.response.finish", onHeaders))
        )
        const opsBeforeDelta = yield* inBackground(Effect.gen(function*() {
          const busy = yield* Effect.fork(busyFibers(10, 1_000_000, { yielding: true }))
          yield* Effect.sleep("50 millis") // the background busy when the answer comes
          let ops: number | undefined
          yield* provider.answer({ model: "m", messages: [{ role: "user", content: "hello" }] }, () => {
            if (ops === undefined && atHeaders !== undefined) ops = opsDone - atHeaders
          })
          yield* Fiber.interrupt(busy)
          return ops
        }))
        expect(opsBeforeDelta).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(UpstreamHttpClient)),
    60_000
  )
})
