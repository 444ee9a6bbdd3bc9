import { Cause, Clock, Data, Duration, Effect, Exit, Metric, type Scope, SynchronizedRef } from "effect"

import { circuitBreakerState } from "./Metrics.js"

/**
 * A small circuit breaker for calls to outside providers (LLM, embeddings); Effect 3 has none.
 * closed -> (failureThreshold consecutive counted failures) -> open: calls fail at once with
 * CircuitOpen -> (cooldown) -> half_open: one trial call -> its success closes, its failure reopens.
 * Interruptions and failures the `isFailure` predicate rejects are neutral: they neither count nor
 * reset the count, and a trial ended so frees the trial slot. The state is per process.
 */

/** Defaults; LLM_CIRCUIT_FAILURES and LLM_CIRCUIT_COOLDOWN_SECONDS will set them for providers. */
export const circuitBreakerDefaults = { failureThreshold: 5, cooldown: Duration.seconds(30) } as const

export class CircuitOpen extends Data.TaggedError("CircuitOpen")<{
  readonly breaker: string
  /** ms until the cool-down ends; 0 while a trial call is in flight */
  readonly retryAfterMs: number
}> {
  override get message() {
    return `circuit breaker ${this.breaker} is open (retry after ${this.retryAfterMs} ms)`
  }
}

export type CircuitState = "closed" | "open" | "half_open"

export interface CircuitBreakerOptions {
  readonly name: string
  readonly failureThreshold?: number
  readonly cooldown?: Duration.DurationInput
  /** which failures count against the provider (default: all but interruptions) */
  readonly isFailure?: (cause: Cause.Cause<unknown>) => boolean
}

export interface CircuitBreaker {
  readonly name: string
  readonly state: Effect.Effect<CircuitState>
  readonly run: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: { readonly isFailure?: (cause: Cause.Cause<E>) => boolean }
  ) => Effect.Effect<A, E | CircuitOpen, R>
}

type Phase =
  | { readonly _tag: "closed"; readonly failures: number }
  | { readonly _tag: "open"; readonly until: number }
  | { readonly _tag: "half_open"; readonly trialRunning: boolean }

type Admission = "call" | "trial" | { readonly retryAfterMs: number }

const gaugeValue: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 }
const closed = (failures: number): Phase => ({ _tag: "closed", failures })
const halfOpen = (trialRunning: boolean): Phase => ({ _tag: "half_open", trialRunning })

/** The scope owns the cool-down timers (they move the gauge to half-open even when no call comes). */
export const makeCircuitBreaker = (options: CircuitBreakerOptions): Effect.Effect<CircuitBreaker, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { name } = options
    const threshold = options.failureThreshold ?? circuitBreakerDefaults.failureThreshold
    const cooldownMs = Duration.toMillis(options.cooldown ?? circuitBreakerDefaults.cooldown)
    const breakerIsFailure = options.isFailure ?? (() => true)
    const scope = yield* Effect.scope
    const gauge = Metric.tagged(circuitBreakerState, "provider", name)
    const phase = yield* SynchronizedRef.make<Phase>(closed(0))
    yield* Metric.set(gauge, gaugeValue.closed)

    // Every change goes through here, inside the ref's lock, so gauge and log follow the true order.
    const move = (from: Phase, to: Phase): Effect.Effect<Phase> =>
      from._tag === to._tag ? Effect.succeed(to) : Metric.set(gauge, gaugeValue[to._tag]).pipe(
        Effect.zipRight(
          (to._tag === "open" ? Effect.logWarning : Effect.logInfo)(
            `circuit breaker ${name}: ${from._tag} -> ${to._tag}`
          )
        ),
        Effect.annotateLogs({ circuit_breaker: name, state: to._tag }),
        Effect.as(to)
      )

    const open = (from: Phase) =>
      Effect.gen(function*() {
        const until = (yield* Clock.currentTimeMillis) + cooldownMs
        // Matched on `until` so a timer never touches a later opening; interruptible because it is
        // forked from the uninterruptible bookkeeping, and the scope must be able to close.
        yield* Effect.forkIn(
          Effect.interruptible(Effect.sleep(cooldownMs)).pipe(Effect.zipRight(SynchronizedRef.updateEffect(phase, (p) =>
            p._tag === "open" && p.until === until ? move(p, halfOpen(false)) : Effect.succeed(p)))),
          scope
        )
        return yield* move(from, { _tag: "open", until })
      })

    // The clock, not only the timer, decides: a call right at the cool-down's end is the trial.
    const settle = (p: Phase, now: number) =>
      p._tag === "open" && p.until <= now ? move(p, halfOpen(false)) : Effect.succeed(p)

    const admit = SynchronizedRef.modifyEffect(
      phase,
      (current) =>
        Effect.gen(function*(): Effect.fn.Return<readonly [Admission, Phase]> {
          const now = yield* Clock.currentTimeMillis
          const p = yield* settle(current, now)
          if (p._tag === "closed") return ["call", p]
          if (p._tag === "open") return [{ retryAfterMs: p.until - now }, p]
          return p.trialRunning ? [{ retryAfterMs: 0 }, p] : ["trial", halfOpen(true)]
        })
    )

    const record = (admission: "call" | "trial", exit: Exit.Exit<unknown, unknown>, counts: boolean) =>
      SynchronizedRef.updateEffect(phase, (p) => {
        if (admission === "trial") {
          if (p._tag !== "half_open") return Effect.succeed(p)
          return Exit.isSuccess(exit) ? move(p, closed(0)) : counts ? open(p) : Effect.succeed(halfOpen(false))
        }
        // A call admitted while closed says nothing once others have opened the breaker.
        if (p._tag !== "closed") return Effect.succeed(p)
        if (Exit.isSuccess(exit)) return Effect.succeed(closed(0))
        if (!counts) return Effect.succeed(p)
        return p.failures + 1 >= threshold ? open(p) : Effect.succeed(closed(p.failures + 1))
      })

    const run = <A, E, R>(
      effect: Effect.Effect<A, E, R>,
      runOptions?: { readonly isFailure?: (cause: Cause.Cause<E>) => boolean }
    ): Effect.Effect<A, E | CircuitOpen, R> =>
      // Uninterruptible around the call so a cancelled trial always gives its slot back.
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const admission = yield* admit
          if (typeof admission !== "string") {
            return yield* new CircuitOpen({ breaker: name, retryAfterMs: admission.retryAfterMs })
          }
          const exit = yield* Effect.exit(restore(effect))
          const isFailure = runOptions?.isFailure ?? breakerIsFailure
          const counts = Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) && isFailure(exit.cause)
          yield* record(admission, exit, counts)
          return yield* exit
        })
      )

    const state = SynchronizedRef.modifyEffect(
      phase,
      (current) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => settle(current, now)).pipe(
          Effect.map((p): readonly [CircuitState, Phase] => [p._tag, p])
        )
    )

    return { name, state, run } satisfies CircuitBreaker
  })
