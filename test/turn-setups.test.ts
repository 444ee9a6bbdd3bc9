import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"

import { makeTurnSetups } from "../src/features/threads/TurnSetups.js"

/** Admits in a scope of its own, which the test closes when it likes (a request ending). */
const admitIn = (setups: Effect.Effect.Success<ReturnType<typeof makeTurnSetups>>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const done = yield* Scope.extend(setups.admit, scope)
    return { done, close: Scope.close(scope, Exit.void) }
  })

/** Whether an admission is still waiting after the waiting fiber had its chance to run. */
const waiting = (fiber: Fiber.RuntimeFiber<unknown>) =>
  Effect.zipRight(Effect.yieldNow(), Effect.map(Fiber.poll(fiber), (exit) => exit._tag === "None"))

describe("turn set-ups", () => {
  it.effect("admits at most its permits at once; the next waits until one is given back", () =>
    Effect.gen(function*() {
      const setups = yield* makeTurnSetups(2)
      const first = yield* admitIn(setups)
      yield* admitIn(setups)
      const third = yield* Effect.fork(admitIn(setups))
      expect(yield* waiting(third)).toBe(true)
      yield* first.done
      yield* Fiber.join(third)
    }))

  it.effect("a permit given back twice counts once", () =>
    Effect.gen(function*() {
      const setups = yield* makeTurnSetups(1)
      const first = yield* admitIn(setups)
      yield* first.done
      yield* first.done
      const second = yield* admitIn(setups)
      const third = yield* Effect.fork(admitIn(setups))
      expect(yield* waiting(third)).toBe(true)
      // the request's scope closing after `done` gives nothing back either
      yield* first.close
      expect(yield* waiting(third)).toBe(true)
      yield* second.done
      yield* Fiber.join(third)
    }))

  it.effect("a request that ends before its turn starts gives its permit back with its scope", () =>
    Effect.gen(function*() {
      const setups = yield* makeTurnSetups(1)
      const first = yield* admitIn(setups)
      const second = yield* Effect.fork(admitIn(setups))
      expect(yield* waiting(second)).toBe(true)
      yield* first.close
      yield* Fiber.join(second)
    }))

  it.effect("a client gone while it waits leaves the line and takes no permit", () =>
    Effect.gen(function*() {
      const setups = yield* makeTurnSetups(1)
      const first = yield* admitIn(setups)
      const gone = yield* Effect.fork(admitIn(setups))
      expect(yield* waiting(gone)).toBe(true)
      yield* Fiber.interrupt(gone)
      yield* first.done
      yield* admitIn(setups)
      const next = yield* Effect.fork(admitIn(setups))
      expect(yield* waiting(next)).toBe(true)
    }))
})
