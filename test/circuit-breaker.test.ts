import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Either, Exit, Fiber, Metric, Option, Ref, TestClock } from "effect"

import { CircuitOpen, makeCircuitBreaker } from "../src/platform/CircuitBreaker.js"
import { circuitBreakerState } from "../src/platform/Metrics.js"

// One provider name per test: the gauge lives in the process-wide metric registry.
const setup = (provider: string) =>
  Effect.gen(function*() {
    const breaker = yield* makeCircuitBreaker({ name: provider, failureThreshold: 5, cooldown: "30 seconds" })
    const calls = yield* Ref.make(0)
    const counted = <A, E>(effect: Effect.Effect<A, E>) => Ref.update(calls, (n) => n + 1).pipe(Effect.zipRight(effect))
    const fail = breaker.run(counted(Effect.fail("provider down" as const))).pipe(Effect.either)
    const succeed = breaker.run(counted(Effect.succeed("ok" as const)))
    const gauge = Metric.value(Metric.tagged(circuitBreakerState, "provider", provider)).pipe(
      Effect.map((state) => state.value)
    )
    return { breaker, calls: Ref.get(calls), counted, fail, succeed, gauge }
  })

const openedBreaker = (provider: string) => Effect.tap(setup(provider), ({ fail }) => Effect.repeatN(fail, 4))

describe("CircuitBreaker", () => {
  it.scoped("opens after 5 consecutive failures, not after 4 failures + a success + 4 failures", () =>
    Effect.gen(function*() {
      const { breaker, fail, gauge, succeed } = yield* setup("cb-consecutive")
      yield* Effect.repeatN(fail, 3)
      yield* succeed
      yield* Effect.repeatN(fail, 3)
      expect(yield* breaker.state).toBe("closed")
      expect(yield* gauge).toBe(0)
      yield* fail
      expect(yield* breaker.state).toBe("open")
      expect(yield* gauge).toBe(2)
    }))

  it.scoped("fails fast while open, without running the effect, with the remaining cool-down", () =>
    Effect.gen(function*() {
      const { calls, fail } = yield* openedBreaker("cb-fast")
      expect(yield* calls).toBe(5)
      expect(yield* fail).toEqual(Either.left(new CircuitOpen({ breaker: "cb-fast", retryAfterMs: 30_000 })))
      yield* TestClock.adjust("10 seconds")
      const rejected = yield* fail
      expect(Either.isLeft(rejected) && rejected.left).toMatchObject({ _tag: "CircuitOpen", retryAfterMs: 20_000 })
      expect(yield* calls).toBe(5)
    }))

  it.scoped("half-opens exactly at the end of the cool-down; one trial while concurrent callers fail fast", () =>
    Effect.gen(function*() {
      const { breaker, calls, counted, fail, gauge } = yield* openedBreaker("cb-trial")
      yield* TestClock.adjust(Duration.millis(29_999))
      expect(yield* breaker.state).toBe("open")
      expect(yield* gauge).toBe(2)
      yield* TestClock.adjust(Duration.millis(1))
      expect(yield* gauge).toBe(1) // the cool-down timer moved it, no call needed
      expect(yield* breaker.state).toBe("half_open")

      const release = yield* Deferred.make<void>()
      const trial = yield* Effect.fork(breaker.run(counted(Deferred.await(release))))
      yield* Effect.yieldNow()
      expect(yield* calls).toBe(6)
      const concurrent = yield* fail
      expect(Either.isLeft(concurrent) && concurrent.left).toMatchObject({ _tag: "CircuitOpen", retryAfterMs: 0 })
      expect(yield* calls).toBe(6)
      expect(yield* gauge).toBe(1)

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(trial)
      expect(yield* breaker.state).toBe("closed")
      expect(yield* gauge).toBe(0)
    }))

  it.scoped("a failed trial reopens for another full cool-down", () =>
    Effect.gen(function*() {
      const { breaker, fail, gauge, succeed } = yield* openedBreaker("cb-reopen")
      yield* TestClock.adjust("30 seconds")
      expect(yield* fail).toEqual(Either.left("provider down"))
      expect(yield* breaker.state).toBe("open")
      expect(yield* gauge).toBe(2)
      expect(yield* fail).toEqual(Either.left(new CircuitOpen({ breaker: "cb-reopen", retryAfterMs: 30_000 })))
      yield* TestClock.adjust(Duration.millis(29_999))
      expect(yield* breaker.state).toBe("open")
      yield* TestClock.adjust(Duration.millis(1))
      expect(yield* breaker.state).toBe("half_open")
      expect(yield* succeed).toBe("ok")
      expect(yield* breaker.state).toBe("closed")
    }))

  it.scoped("an interrupted trial releases the half-open slot and does not count", () =>
    Effect.gen(function*() {
      const { breaker, calls, counted, gauge, succeed } = yield* openedBreaker("cb-interrupt")
      yield* TestClock.adjust("30 seconds")
      const started = yield* Deferred.make<void>()
      const trial = yield* Effect.fork(
        breaker.run(counted(Deferred.succeed(started, undefined).pipe(Effect.zipRight(Effect.never))))
      )
      yield* Deferred.await(started)
      expect(Exit.isInterrupted(yield* Fiber.interrupt(trial))).toBe(true)
      expect(yield* breaker.state).toBe("half_open")
      expect(yield* gauge).toBe(1)
      expect(yield* succeed).toBe("ok") // a new trial is let through
      expect(yield* calls).toBe(7)
      expect(yield* breaker.state).toBe("closed")
    }))

  it.scoped("interruptions while closed never count", () =>
    Effect.gen(function*() {
      const { breaker } = yield* setup("cb-interrupt-closed")
      yield* Effect.repeatN(Effect.exit(breaker.run(Effect.interrupt)), 9)
      expect(yield* breaker.state).toBe("closed")
    }))

  it.scoped("failures the predicate rejects do not count", () =>
    Effect.gen(function*() {
      const { breaker, fail, gauge } = yield* setup("cb-predicate")
      // A 4xx says the provider is up: it must not open the breaker.
      const badRequest = breaker.run(Effect.fail({ status: 400 }), {
        isFailure: (cause) => !Cause.failureOption(cause).pipe(Option.exists((error) => error.status < 500))
      })
      yield* Effect.repeatN(Effect.either(badRequest), 9)
      expect(yield* breaker.state).toBe("closed")
      yield* Effect.repeatN(fail, 4)
      expect(yield* gauge).toBe(2)

      const lenient = yield* makeCircuitBreaker({
        name: "cb-predicate-breaker",
        failureThreshold: 2,
        isFailure: (cause) => cause._tag !== "Fail"
      })
      yield* Effect.repeatN(Effect.either(lenient.run(Effect.fail("not counted"))), 4)
      expect(yield* lenient.state).toBe("closed")
      yield* Effect.repeatN(Effect.exit(lenient.run(Effect.die("defect"))), 1) // defects still count
      expect(yield* lenient.state).toBe("open")
    }))
})
