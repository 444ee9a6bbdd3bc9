import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Ref, TestClock } from "effect"

import { makeInProcessJobQueue } from "../src/platform/JobQueue.js"

describe("the in-process job queue", () => {
  it.scoped("runs a job in the background with its payload and answers its id at once", () =>
    Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue()
      const seen = yield* Deferred.make<unknown>()
      yield* jobs.register("thread.title", (payload) => Deferred.succeed(seen, payload))
      const id = yield* jobs.enqueue("thread.title", { thread_id: "thr_0123456789abcdef" })
      expect(id).toMatch(/^job_[0-9a-f-]{36}$/)
      expect(yield* Deferred.await(seen)).toEqual({ thread_id: "thr_0123456789abcdef" })
    }))

  it.scoped("retries a failing job with backoff, 3 attempts in all, then gives up", () =>
    Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue({ backoff: "1 second" })
      const tries = yield* Ref.make(0)
      yield* jobs.register("flaky", () => Effect.zipRight(Ref.update(tries, (n) => n + 1), Effect.fail("down")))
      yield* jobs.enqueue("flaky", {})
      yield* TestClock.adjust("100 millis")
      expect(yield* Ref.get(tries)).toBe(1)
      yield* TestClock.adjust("10 seconds")
      expect(yield* Ref.get(tries)).toBe(3)
      yield* TestClock.adjust("1 minute")
      expect(yield* Ref.get(tries)).toBe(3)
    }))

  it.scoped("a job that succeeds on its second attempt runs no third", () =>
    Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue({ backoff: "1 second" })
      const tries = yield* Ref.make(0)
      yield* jobs.register("once-flaky", () =>
        Effect.flatMap(Ref.updateAndGet(tries, (n) => n + 1), (n) => n === 1 ? Effect.fail("blip") : Effect.void))
      yield* jobs.enqueue("once-flaky", {})
      yield* TestClock.adjust("1 minute")
      expect(yield* Ref.get(tries)).toBe(2)
    }))

  it.scoped("runs at most `concurrency` jobs at once", () =>
    Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue({ concurrency: 2 })
      const running = yield* Ref.make(0)
      const peak = yield* Ref.make(0)
      const release = yield* Deferred.make<void>()
      yield* jobs.register("slow", () =>
        Effect.gen(function*() {
          const now = yield* Ref.updateAndGet(running, (n) => n + 1)
          yield* Ref.update(peak, (p) => Math.max(p, now))
          yield* Deferred.await(release)
          yield* Ref.update(running, (n) => n - 1)
        }))
      for (let i = 0; i < 5; i++) yield* jobs.enqueue("slow", { i })
      yield* TestClock.adjust("10 millis")
      expect(yield* Ref.get(peak)).toBe(2)
      yield* Deferred.succeed(release, undefined)
    }))

  it.effect("stops its workers with its scope: a running job is interrupted, not retried", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const tries = yield* Ref.make(0)
      const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const jobs = yield* makeInProcessJobQueue()
        yield* jobs.register(
          "long",
          () =>
            Effect.zipRight(
              Ref.update(tries, (n) => n + 1),
              Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
            )
        )
        yield* jobs.enqueue("long", {})
        yield* Effect.never
      })))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(tries)).toBe(1)
    }))
})
