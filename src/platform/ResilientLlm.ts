import { Cause, Deferred, Duration, Effect, Exit, Fiber, Option, Schedule } from "effect"

import { type CompletionRequest, LlmError, type LlmProviderService, type OnDelta } from "./LlmProvider.js"

/**
 * Retries, timeouts and the circuit breaker around a provider. A call is retried only while
 * nothing has reached the reader: once a delta is out, a failure ends the call with its error
 * (a retry would repeat or contradict what was shown).
 */

/**
 * What `resilient` needs of a circuit breaker: `makeCircuitBreaker` in CircuitBreaker.ts gives one
 * (its `CircuitOpen` carries `_tag` and `retryAfterMs`). Each attempt, up to its first delta, runs
 * through `run`; an open breaker fails the call with reason `circuit_open`, without retrying.
 */
export interface LlmCircuitBreaker {
  readonly run: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: { readonly isFailure?: (cause: Cause.Cause<E>) => boolean }
  ) => Effect.Effect<A, E | { readonly _tag: "CircuitOpen"; readonly retryAfterMs: number }, R>
}

export interface ResilienceOptions {
  /** from the start of an attempt to its first delta (default 30 s): then reason `timeout`, retried */
  readonly firstTokenTimeout?: Duration.DurationInput
  /** one attempt from start to end (default 120 s): then reason `timeout` */
  readonly totalTimeout?: Duration.DurationInput
  /** attempts in all, the first included (default 3) */
  readonly attempts?: number
  /** the first retry's delay before jitter, doubling after (default 200 ms) */
  readonly retryBaseDelay?: Duration.DurationInput
  /** a Retry-After above this is not waited for: the error goes to the caller (default 10 s) */
  readonly maxRetryAfter?: Duration.DurationInput
  readonly breaker?: LlmCircuitBreaker
}

export const resilienceDefaults = {
  firstTokenTimeout: Duration.seconds(30),
  totalTimeout: Duration.seconds(120),
  attempts: 3,
  retryBaseDelay: Duration.millis(200),
  maxRetryAfter: Duration.seconds(10)
} as const

/** Worth another attempt: 408, 429 and 5xx answers, connection failures, timeouts. */
export const isTransient = (error: LlmError): boolean =>
  error.reason === "connection" || error.reason === "timeout" ||
  (error.reason === "http" && error.status !== undefined &&
    (error.status === 408 || error.status === 429 || error.status >= 500))

/** The retry policy: exponential from `retryBaseDelay`, jittered, at least the Retry-After. */
export const retrySchedule = (options: {
  readonly attempts: number
  readonly retryBaseDelay: Duration.DurationInput
  readonly maxRetryAfter: Duration.DurationInput
}): Schedule.Schedule<unknown, LlmError> => {
  const maxRetryAfterMs = Duration.toMillis(options.maxRetryAfter)
  return Schedule.exponential(options.retryBaseDelay).pipe(
    Schedule.jittered,
    Schedule.intersect(Schedule.recurs(Math.max(0, options.attempts - 1))),
    Schedule.intersect(Schedule.identity<LlmError>()),
    Schedule.whileInput((error: LlmError) =>
      isTransient(error) && (error.retryAfterMs === undefined || error.retryAfterMs <= maxRetryAfterMs)
    ),
    Schedule.modifyDelay(([, error], delay) =>
      error.retryAfterMs === undefined ? delay : Duration.max(delay, Duration.millis(error.retryAfterMs))
    )
  )
}

export const resilient = (provider: LlmProviderService, options: ResilienceOptions = {}): LlmProviderService => {
  const firstTokenMs = Duration.toMillis(options.firstTokenTimeout ?? resilienceDefaults.firstTokenTimeout)
  const totalMs = Duration.toMillis(options.totalTimeout ?? resilienceDefaults.totalTimeout)
  const attempts = Math.max(1, options.attempts ?? resilienceDefaults.attempts)
  const schedule = retrySchedule({
    attempts,
    retryBaseDelay: options.retryBaseDelay ?? resilienceDefaults.retryBaseDelay,
    maxRetryAfter: options.maxRetryAfter ?? resilienceDefaults.maxRetryAfter
  })
  const timeout = () => new LlmError({ provider: provider.name, reason: "timeout" })
  const log = Effect.annotateLogs({ llm_provider: provider.name })

  const throughBreaker = <A>(effect: Effect.Effect<A, LlmError>): Effect.Effect<A, LlmError> =>
    options.breaker === undefined ? effect : options.breaker.run(effect, {
      // Only the provider's own trouble counts against it, not a request it refused (400, 401, ...).
      isFailure: (cause) => Option.match(Cause.failureOption(cause), { onNone: () => true, onSome: isTransient })
    }).pipe(Effect.mapError((error) =>
      error._tag === "CircuitOpen"
        ? new LlmError({ provider: provider.name, reason: "circuit_open", retryAfterMs: error.retryAfterMs })
        : error
    ))

  /**
   * One attempt: once the breaker lets it through (never before: an open breaker calls nobody),
   * the call runs in a fiber of its own, under the total timeout; the attempt waits through the
   * breaker, under the first-token timeout, for its first delta (or its end, for an empty answer),
   * then for its end. Deltas go straight on to `onDelta`; `started` records that one went, after
   * which a failure is not retried.
   */
  const attempt = (request: CompletionRequest, onDelta: OnDelta, progress: { started: boolean; attempt: number }) =>
    Effect.gen(function*() {
      progress.attempt++
      const firstDelta = yield* Deferred.make<void>()
      const call = yield* throughBreaker(Effect.gen(function*() {
        const call = yield* provider.answer(request, (delta) => {
          if (!progress.started) {
            progress.started = true
            Deferred.unsafeDone(firstDelta, Exit.void)
          }
          onDelta(delta)
        }).pipe(Effect.timeoutFail({ duration: totalMs, onTimeout: timeout }), Effect.fork)
        yield* Effect.raceFirst(Deferred.await(firstDelta), Fiber.join(call)).pipe(
          Effect.timeoutFail({ duration: Math.min(firstTokenMs, totalMs), onTimeout: timeout }),
          Effect.onError(() => Fiber.interrupt(call))
        )
        return call
      }))
      yield* Fiber.join(call)
    }).pipe(
      Effect.tapError((error) =>
        Effect.logInfo(`llm ${provider.name}: attempt ${progress.attempt} of ${attempts} failed (${error.message})`)
          .pipe(log)
      )
    )

  const answer = (request: CompletionRequest, onDelta: OnDelta): Effect.Effect<void, LlmError> =>
    Effect.suspend(() => {
      const progress = { started: false, attempt: 0 }
      return Effect.retry(attempt(request, onDelta, progress), { schedule, while: () => !progress.started })
    })

  return { name: provider.name, answer }
}
