import { Context, Duration, Effect, Layer, Schedule } from "effect"

import { ThreadsRepo } from "./Repo.js"

/** How often each instance looks for answers an instance that died left `in_progress` (30 s; tests set more). */
export class SweepInterval extends Context.Reference<SweepInterval>()("chatkit/AbandonedAnswers/SweepInterval", {
  defaultValue: (): Duration.Duration => Duration.seconds(30)
}) {}

/**
 * Settles, at start and every SweepInterval, the answers that a crashed instance left streaming
 * (`incomplete`, or removed when they had no text), so no thread keeps an answer in progress that
 * nobody writes. Safe on every instance at once: it takes only answers of threads whose turn lease
 * has lapsed (TurnLease: a live turn renews it every 10 s) and skips rows another sweep holds.
 */
export const AbandonedAnswersSweep = Layer.scopedDiscard(
  Effect.gen(function*() {
    const repo = yield* ThreadsRepo
    const interval = yield* SweepInterval
    const sweep = repo.settleAbandonedAnswers().pipe(
      Effect.tap(({ marked, removed }) =>
        marked + removed === 0
          ? Effect.void
          : Effect.logWarning("settled answers left in progress by an instance that stopped").pipe(
            Effect.annotateLogs({ incomplete: marked, removed })
          )
      ),
      Effect.catchAllCause((cause) => Effect.logWarning("could not settle abandoned answers", cause))
    )
    yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(interval)))
  })
).pipe(Layer.provide(ThreadsRepo.Default))
