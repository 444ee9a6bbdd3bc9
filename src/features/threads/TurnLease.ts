import { randomUUID } from "node:crypto"

import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Schedule } from "effect"

import { Conflict } from "../../domain/errors.js"
import type { JsonObject, ThreadId } from "../../domain/Thread.js"
import type { ThreadRow, ThreadsRepo } from "./Repo.js"

/** How long a turn's lease lasts unrenewed: a turn whose instance died blocks its thread this long at most. */
const LEASE_SECONDS = 30
const RENEW_EVERY = Duration.seconds(10)
/**
 * How long a message waits for the turn before it: a client that sends its next message the moment
 * it read the last event of an answer may arrive while that turn gives its lease back.
 */
const WAIT_FOR_TURN = Schedule.spaced("50 millis").pipe(Schedule.upTo("2 seconds"))

const busy = () =>
  new Conflict({
    detail: "A reply is still being written in this thread; send the next message once it has finished"
  })

/** The turn of a thread, while it holds the thread's lease. */
export interface Turn {
  /**
   * Wraps the turn's set-up and the effect it gives, which runs the turn: the lease is renewed
   * while that runs and given back when it ends, however it ends (a set-up that fails gives it
   * back at once).
   */
  readonly run: <E1, E2, R1, R2>(
    setup: Effect.Effect<Effect.Effect<void, E2, R2>, E1, R1>
  ) => Effect.Effect<Effect.Effect<void, E2, R2>, E1, R1>
  /** The turn's last write: the thread's runtime state, stored as the lease is given back (one statement). */
  readonly end: (runtimeState: JsonObject) => Effect.Effect<void, SqlError>
}

const held = (repo: ThreadsRepo, threadId: ThreadId, turnId: string): Turn => {
  let released = false
  const release = Effect.suspend(() => released ? Effect.void : Effect.ignore(repo.releaseTurn(threadId, turnId)))
  const renewing = repo.renewTurn(threadId, turnId, LEASE_SECONDS).pipe(
    Effect.ignore,
    Effect.repeat(Schedule.spaced(RENEW_EVERY)),
    Effect.delay(RENEW_EVERY)
  )
  const leased = <E, R>(turn: Effect.Effect<void, E, R>): Effect.Effect<void, E, R> =>
    Effect.scoped(Effect.zipRight(Effect.forkScoped(renewing), turn)).pipe(Effect.ensuring(release))
  return {
    run: (setup) => setup.pipe(Effect.onError(() => release), Effect.map(leased)),
    end: (runtimeState) =>
      Effect.map(repo.endTurn(threadId, turnId, runtimeState), (ended) => {
        // a thread deleted meanwhile was not written: the finalizer gives the lease back
        if (ended) released = true
      })
  }
}

/**
 * One turn at a time per thread, across instances (migration 0012): takes the thread's lease, or
 * fails with a 409 Conflict while another turn holds it.
 */
export const takeTurn = (repo: ThreadsRepo, threadId: ThreadId) =>
  Effect.gen(function*() {
    const turnId = randomUUID()
    yield* repo.acquireTurn(threadId, turnId, LEASE_SECONDS).pipe(
      Effect.filterOrFail((taken) => taken, busy),
      Effect.retry({ schedule: WAIT_FOR_TURN, while: (error) => error instanceof Conflict })
    )
    return held(repo, threadId, turnId)
  })

/** A thread created for its first turn holds that turn's lease from its INSERT (`ThreadsRepo.create`'s `turn`). */
export const createWithTurn = <E, R>(
  repo: ThreadsRepo,
  create: (turn: { readonly id: string; readonly leaseSeconds: number }) => Effect.Effect<ThreadRow, E, R>
) =>
  Effect.suspend(() => {
    const lease = { id: randomUUID(), leaseSeconds: LEASE_SECONDS }
    return Effect.map(create(lease), (row) => ({ row, turn: held(repo, row.id, lease.id) }))
  })
