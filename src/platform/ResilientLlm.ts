import {
  Cause,
  Chunk,
  Clock,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Mailbox,
  Option,
  Schedule,
  Scope,
  Stream
} from "effect"

import { type CompletionRequest, LlmError, type LlmProviderService } from "./LlmProvider.js"

/**
 * Retries, timeouts and the circuit breaker around a provider. A call is retried only while
 * nothing has reached the reader: once a delta is out, a failure ends the stream with its error
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

/** Chunks read ahead of the reader at most, after an attempt's first one. */
const REST_BUFFER = 16

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

  const stream = (request: CompletionRequest): Stream.Stream<string, LlmError> =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const outer = yield* Effect.scope
      let attempt = 0

      // One attempt up to its first delta, in its own scope: closed (aborting the call) if it fails,
      // kept open with the stream's scope if it succeeds.
      const start = Effect.gen(function*() {
        attempt++
        const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
        return yield* Effect.gen(function*() {
          const deadline = (yield* Clock.currentTimeMillis) + totalMs
          const pull = yield* Scope.extend(Stream.toPull(provider.stream(request)), scope)
          const firstChunk: Effect.Effect<Chunk.Chunk<string>, LlmError> = pull.pipe(
            Effect.matchEffect({
              onFailure: Option.match({ onNone: () => Effect.succeed(Chunk.empty<string>()), onSome: Effect.fail }),
              onSuccess: (chunk) => Chunk.isEmpty(chunk) ? firstChunk : Effect.succeed(chunk)
            })
          )
          const first = yield* throughBreaker(
            Effect.timeoutFail(firstChunk, { duration: Math.min(firstTokenMs, totalMs), onTimeout: timeout })
          )
          if (Chunk.isEmpty(first)) return Stream.empty
          // The rest, under one deadline for the attempt: a fiber forwards the pulls into a mailbox,
          // a timer fiber fails the mailbox at the deadline, and the reader takes from it. (A timeout
          // around each pull raced two fibers per token: ~45 µs of CPU each, the mailbox ~10 µs.)
          // Both fibers live in the attempt's scope, closed with the stream.
          const rest = yield* Mailbox.make<string, LlmError>({ capacity: REST_BUFFER })
          const forward: Effect.Effect<void> = Effect.matchCauseEffect(pull, {
            onSuccess: (chunk) => Effect.flatMap(rest.offerAll(chunk), () => forward),
            onFailure: (cause) =>
              Option.match(Cause.flipCauseOption(cause), { onNone: () => rest.end, onSome: (c) => rest.failCause(c) })
          })
          yield* Effect.forkIn(forward, scope)
          const left = deadline - (yield* Clock.currentTimeMillis)
          yield* Effect.forkIn(Effect.flatMap(Effect.sleep(Math.max(0, left)), () => rest.fail(timeout())), scope)
          return Stream.concat(Stream.fromChunk(first), Mailbox.toStream(rest))
        }).pipe(
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))),
          Effect.tapError((error) =>
            Effect.logInfo(`llm ${provider.name}: attempt ${attempt} of ${attempts} failed (${error.message})`).pipe(
              log
            )
          )
        )
      })

      return yield* Effect.retry(start, schedule)
    }))

  return { name: provider.name, stream }
}
