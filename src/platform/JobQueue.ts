import { randomUUID } from "node:crypto"

import { Cause, Context, type Duration, Effect, Layer, Queue, Ref, Schedule } from "effect"

/**
 * Background jobs: work a request starts but must not wait for (a thread's title). Jobs are typed
 * by name with a JSON payload, so a durable queue (BullMQ on Redis, the vector-stores issue) can
 * take this interface over; this in-process queue is the embedded default, and loses the jobs
 * still queued when the process stops.
 */

export type JobHandler = (payload: unknown) => Effect.Effect<void, unknown>

export interface JobQueueService {
  /** Queues a job of `type` and answers its id at once; the job runs in the background. */
  readonly enqueue: (type: string, payload: unknown) => Effect.Effect<string>
  /** The handler of every job of `type` (one per type; the last registered wins). */
  readonly register: (type: string, handler: JobHandler) => Effect.Effect<void>
}

export class JobQueue extends Context.Tag("chatkit/JobQueue")<JobQueue, JobQueueService>() {}

export interface InProcessJobQueueOptions {
  /** jobs running at once (default 2) */
  readonly concurrency?: number
  /** attempts in all, the first included (default 3) */
  readonly attempts?: number
  /** delay before the second attempt, doubling after (default 200 ms, jittered) */
  readonly backoff?: Duration.DurationInput
  /** jobs waiting at most; `enqueue` waits for room beyond (default 10,000) */
  readonly capacity?: number
}

interface QueuedJob {
  readonly id: string
  readonly type: string
  readonly payload: unknown
}

/** The in-process queue: workers live in the layer's scope and stop (interrupted) with it. */
export const makeInProcessJobQueue = (options: InProcessJobQueueOptions = {}) =>
  Effect.gen(function*() {
    const queue = yield* Queue.bounded<QueuedJob>(options.capacity ?? 10_000)
    const handlers = yield* Ref.make(new Map<string, JobHandler>())
    const attempts = Math.max(1, options.attempts ?? 3)
    const retry = Schedule.exponential(options.backoff ?? "200 millis").pipe(
      Schedule.jittered,
      Schedule.intersect(Schedule.recurs(attempts - 1))
    )

    const run = (job: QueuedJob) =>
      Effect.gen(function*() {
        const handler = (yield* Ref.get(handlers)).get(job.type)
        if (handler === undefined) return yield* Effect.logError("job type has no handler; job dropped")
        yield* handler(job.payload).pipe(
          Effect.retry(retry),
          Effect.matchCauseEffect({
            onSuccess: () => Effect.logDebug("job completed"),
            // an interruption is the process stopping, not the job failing
            onFailure: (cause) =>
              Cause.isInterruptedOnly(cause)
                ? Effect.failCause(cause)
                : Effect.logWarning(`job failed after ${attempts} attempts`, cause)
          })
        )
      }).pipe(Effect.annotateLogs({ job_id: job.id, job_type: job.type }), Effect.withSpan(`JobQueue.${job.type}`))

    yield* Effect.forEach(
      Array.from({ length: Math.max(1, options.concurrency ?? 2) }),
      () => Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(queue), run))),
      { discard: true }
    )

    const service: JobQueueService = {
      enqueue: (type, payload) =>
        Effect.gen(function*() {
          const id = `job_${randomUUID()}`
          yield* Queue.offer(queue, { id, type, payload })
          return id
        }),
      register: (type, handler) => Ref.update(handlers, (map) => new Map(map).set(type, handler))
    }
    return service
  })

export const InProcessJobQueueLive = (options: InProcessJobQueueOptions = {}) =>
  Layer.scoped(JobQueue, makeInProcessJobQueue(options))
