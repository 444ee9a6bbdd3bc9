import { Effect, type Scope } from "effect"

/**
 * Turns set up at once at most, per instance; the others wait their turn. A set-up (the thread
 * and its message written, the workflow and its version read: ~20 ms of CPU on a 2-core runner)
 * runs in pieces between its statements. Fifty at once interleave, and a token of an answer
 * already streaming waits behind the pieces of all of them; two at a time, behind two at most.
 * One after another, set-ups also finish sooner on average than all sharing the CPU (and the last
 * one no later).
 */
export const TURN_SETUPS_AT_ONCE = 2

export interface TurnSetupsService {
  /**
   * Waits for a permit (interruptibly: a client gone while it waits leaves the line) and gives the
   * effect that gives it back, once: when the turn's workflow starts to run, or when the scope (the
   * request's) closes, whichever comes first.
   */
  readonly admit: Effect.Effect<Effect.Effect<void>, never, Scope.Scope>
}

export const makeTurnSetups = (permits: number): Effect.Effect<TurnSetupsService> =>
  Effect.map(Effect.makeSemaphore(permits), (semaphore) => ({
    admit: Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        yield* restore(semaphore.take(1))
        let held = true
        const done = Effect.suspend(() => {
          if (!held) return Effect.void
          held = false
          return semaphore.release(1)
        })
        yield* Effect.addFinalizer(() => done)
        return done
      })
    )
  }))

export class TurnSetups extends Effect.Service<TurnSetups>()("chatkit/TurnSetups", {
  effect: makeTurnSetups(TURN_SETUPS_AT_ONCE)
}) {}
