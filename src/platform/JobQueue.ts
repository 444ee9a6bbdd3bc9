import { randomUUID } from "node:crypto"

import { SqlClient } from "@effect/sql"
import { type Job as BullJob, Queue as BullQueue, UnrecoverableError, Worker as BullWorker } from "bullmq"
import {
  Cause,
  Context,
  Data,
  Duration,
  Effect,
  Exit,
  Layer,
  Metric,
  MetricKey,
  Option,
  Queue,
  Random,
  Ref,
  Runtime,
  Schedule,
  type Scope
} from "effect"

import { AppConfig } from "./Config.js"
import { orDieOnSqlError } from "./Database.js"
import { JobRecords, type JobRecordsService } from "./JobRecords.js"
import { labelled } from "./Metrics.js"
import { OptionalRedis, redisKeyRoot, type RedisService } from "./Redis.js"

/**
 * Background jobs (API.md section 9): work a request starts but must not wait for (a thread's
 * title, a large document's ingestion). Jobs are typed by name with a JSON payload; every job has a
 * row in the `jobs` table (JobRecords) in both modes, which is what `GET /jobs/{id}` reads.
 *
 * - BullMQ on the shared Redis when REDIS_URL is set: durable, shared by every process; a worker
 *   that dies mid-job loses its lock and BullMQ's stalled-job check gives the job to another.
 * - In-process otherwise (the embedded default): the jobs still unfinished when the process stops
 *   are recorded as failed on the way out; those of a process that died (no way out) are taken over
 *   by the next queue to start on the database, or by another live one (migration 0013: the payload
 *   is kept in the row, and a live queue marks its jobs alive).
 *
 * Either way a job gets 3 attempts with exponential backoff, then is `failed` with a readable
 * error; completion is guarded in SQL (only a queued or running job becomes completed), so a job
 * retaken from a worker that was only slow is never completed twice.
 */

/** Attempts of a job in all, the first included (API.md section 9); a start by a worker that then died counts. */
export const JOB_ATTEMPTS = 3

export interface JobContext {
  readonly id: string
  /** 1 for the first attempt */
  readonly attempt: number
  /** true when a failure of this attempt fails the job (no retry follows) */
  readonly final: boolean
  /** 0 to 100, shown by `GET /jobs/{id}` */
  readonly progress: (percent: number) => Effect.Effect<void>
  /**
   * Runs the job's final write in one transaction with its completion, `write`'s value becoming
   * the job's result. The job's row is locked first: when another worker already completed it,
   * nothing is written and this fails with `JobAlreadyFinished`. For jobs whose last write must
   * not happen twice (an ingestion's chunks).
   */
  readonly completeWith: <A, E, R>(write: Effect.Effect<A, E, R>) => Effect.Effect<A, E | JobAlreadyFinished, R>
}

/** What a job answers becomes its `result` (JSON); a failure is retried, a `PermanentJobFailure` is not. */
export type JobHandler = (payload: unknown, job: JobContext) => Effect.Effect<unknown, unknown>

/** The job cannot succeed however often it is tried (bad payload, its subject is gone): no retry. */
export class PermanentJobFailure extends Data.TaggedError("PermanentJobFailure")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** Another worker completed (or failed) the job first; this attempt wrote nothing. */
export class JobAlreadyFinished extends Data.TaggedError("JobAlreadyFinished")<{ readonly id: string }> {}

/** The queue did not take the job (Redis unreachable); its record is failed with this reason. */
export class JobQueueUnavailable extends Data.TaggedError("JobQueueUnavailable")<{ readonly reason: string }> {
  override get message() {
    return `The job queue is unavailable: ${this.reason}`
  }
}

export interface EnqueueOptions {
  /** the user the job works for (who may read it); absent for system jobs, which only admins read */
  readonly owner?: number | undefined
}

export interface JobQueueService {
  /** Records and queues a job of `type`, answering its id at once; the job runs in the background. */
  readonly enqueue: (
    type: string,
    payload: unknown,
    options?: EnqueueOptions
  ) => Effect.Effect<string, JobQueueUnavailable>
  /**
   * The handler of every job of `type` (one per type; the last registered wins). `onFailed` runs
   * once a job of this type is failed for good, whatever the reason (its last attempt failed, its
   * workers kept dying, it could not be queued), with the readable error the job records.
   */
  readonly register: (type: string, handler: JobHandler, options?: RegisterOptions) => Effect.Effect<void>
}

export interface RegisterOptions {
  readonly onFailed?: (payload: unknown, error: string) => Effect.Effect<void, unknown>
}

interface Registration {
  readonly handler: JobHandler
  readonly onFailed: RegisterOptions["onFailed"]
}

export class JobQueue extends Context.Tag("chatkit/JobQueue")<JobQueue, JobQueueService>() {}

// ---------------------------------------------------------------------------------------------
// metrics

export const jobsTotalKey = MetricKey.counter("jobs_total", {
  description: "Job attempts by type and outcome (completed, retried, failed, skipped: already finished elsewhere)",
  incremental: true
})
const jobsTotal = labelled(jobsTotalKey)

export const jobsQueueDepthKey = MetricKey.gauge("jobs_queue_depth", {
  description: "Jobs in the queue by state (waiting: ready to run, delayed: waiting for a retry, active: running)"
})
const jobsQueueDepth = labelled(jobsQueueDepthKey)

type Outcome = "completed" | "retried" | "failed" | "skipped"

const countOutcome = (type: string, outcome: Outcome) => Metric.increment(jobsTotal({ type, outcome }))

// ---------------------------------------------------------------------------------------------
// one attempt, the same in both modes

/** What a person reading the job needs: the error's own words, never a stack trace or a defect's internals. */
export const readableJobError = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) return "the job failed with an internal error (see the worker's log)"
  const error = failure.value
  const detail = (error as { detail?: unknown } | null)?.detail
  if (typeof detail === "string" && detail !== "") return detail
  if (error instanceof Error && error.message !== "") return error.message
  if (typeof error === "string" && error !== "") return error
  return "the job failed"
}

type AttemptResult =
  | { readonly _tag: "done" }
  | { readonly _tag: "retry"; readonly error: string }
  | { readonly _tag: "failed"; readonly error: string }

interface QueuedJob {
  readonly id: string
  readonly type: string
  readonly payload: unknown
}

/**
 * Records `job` failed with `error` and runs its `onFailed`, in one transaction: a reader never
 * sees the job failed while its consequence (a document still pending) is not written yet, and a job
 * another worker finished meanwhile is left alone (false). A failing `onFailed` is logged and rolled
 * back to its savepoint; the job is failed all the same.
 */
const failJob = (
  sql: SqlClient.SqlClient,
  records: JobRecordsService,
  job: QueuedJob,
  error: string,
  onFailed: RegisterOptions["onFailed"]
) =>
  sql.withTransaction(Effect.gen(function*() {
    if (!(yield* records.lockUnfinished(job.id))) return false
    if (onFailed !== undefined) {
      yield* sql.withTransaction(onFailed(job.payload, error)).pipe(
        Effect.catchAllCause((cause) => Effect.logError("the job's onFailed failed", cause))
      )
    }
    return yield* records.fail(job.id, error)
  }))

const makeAttempt =
  (sql: SqlClient.SqlClient, records: JobRecordsService, handlers: Ref.Ref<Map<string, Registration>>) =>
  /**
   * Runs one attempt of `job`; `lastChance` when the queue will not retry it after a failure.
   * Never fails: the outcome is recorded and answered (an interruption, the process stopping, passes through).
   */
  (job: QueuedJob, lastChance: boolean, waitForHandler: Duration.DurationInput = 0): Effect.Effect<AttemptResult> =>
    Effect.gen(function*() {
      const failWith = (error: string, registration?: Registration) =>
        Effect.gen(function*() {
          yield* failJob(sql, records, job, error, registration?.onFailed)
          yield* countOutcome(job.type, "failed")
          yield* Effect.logWarning("job failed").pipe(Effect.annotateLogs({ error }))
          return { _tag: "failed", error } as const
        })
      const registration = yield* Effect.flatMap(Ref.get(handlers), (map) => Effect.fromNullable(map.get(job.type)))
        .pipe(
          Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo(waitForHandler))),
          Effect.option
        )
      // looked up first: a worker may start before its features registered, or before the migrations ran
      if (Option.isNone(registration)) return yield* failWith(`no handler for job type ${job.type} in this process`)
      const { handler } = registration.value

      const started = yield* records.start(job.id)
      if (Option.isNone(started)) {
        yield* Effect.logInfo("job already finished; attempt skipped")
        yield* countOutcome(job.type, "skipped")
        return { _tag: "done" } as const
      }
      const attempt = started.value.attempts
      if (attempt > JOB_ATTEMPTS) {
        // the earlier attempts ended with their worker (stalled): a job that kills its workers stops here
        return yield* failWith(
          `gave up after ${JOB_ATTEMPTS} attempts: the worker running it stopped before it finished`,
          registration.value
        )
      }
      let committed = false
      const context: JobContext = {
        id: job.id,
        attempt,
        final: lastChance || attempt >= JOB_ATTEMPTS,
        progress: (percent) => Effect.ignore(records.setProgress(job.id, percent)),
        completeWith: (write) =>
          sql.withTransaction(
            Effect.gen(function*() {
              if (!(yield* records.lockUnfinished(job.id))) return yield* new JobAlreadyFinished({ id: job.id })
              const value = yield* write
              yield* records.complete(job.id, value)
              committed = true
              return value
            })
          ).pipe(orDieOnSqlError)
      }
      const exit = yield* Effect.exit(handler(job.payload, context))
      if (Exit.isSuccess(exit)) {
        const recorded = committed || (yield* records.complete(job.id, exit.value))
        yield* countOutcome(job.type, recorded ? "completed" : "skipped")
        yield* Effect.logDebug(recorded ? "job completed" : "job finished elsewhere first; its result is kept")
        return { _tag: "done" } as const
      }
      if (Cause.isInterruptedOnly(exit.cause)) return yield* Effect.failCause(exit.cause)
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure) && failure.value instanceof JobAlreadyFinished) {
        yield* countOutcome(job.type, "skipped")
        return { _tag: "done" } as const
      }
      const error = readableJobError(exit.cause)
      if (Option.isNone(failure)) yield* Effect.logError("job died", exit.cause)
      const permanent = Option.isSome(failure) && failure.value instanceof PermanentJobFailure
      if (permanent || lastChance || attempt >= JOB_ATTEMPTS) return yield* failWith(error, registration.value)
      yield* records.retryLater(job.id, error)
      yield* countOutcome(job.type, "retried")
      yield* Effect.logInfo("job attempt failed; retrying").pipe(Effect.annotateLogs({ error, attempt }))
      return { _tag: "retry", error } as const
    }).pipe(
      // the database down: the attempt failed and could not even be recorded; the queue retries it
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause as Cause.Cause<never>)
          : Effect.as(
            Effect.logError("job attempt could not run", cause),
            {
              _tag: lastChance ? "failed" : "retry",
              error: "the job's record could not be updated"
            } as const
          )
      ),
      Effect.annotateLogs({ job_id: job.id, job_type: job.type }),
      Effect.withSpan(`JobQueue.${job.type}`, { attributes: { job_id: job.id } })
    )

const newJobId = () => `job_${randomUUID()}`

// ---------------------------------------------------------------------------------------------
// in-process

export interface InProcessJobQueueOptions {
  /** jobs running at once (default 2) */
  readonly concurrency?: number
  /** delay before the second attempt, doubling after (default 200 ms, jittered) */
  readonly backoff?: Duration.DurationInput
  /** jobs waiting at most; `enqueue` waits for room beyond (default 10,000) */
  readonly capacity?: number
  /**
   * As BullMQ's lock (JOB_LOCK_DURATION_MS): the queue marks its unfinished jobs alive in their rows
   * every third of this; an unfinished in-process job unmarked this long was left by a queue whose
   * process died, and is taken over (claimed, then run here). Default 30 s.
   */
  readonly lockDuration?: Duration.DurationInput
  /** How often such jobs are looked for, the first time one interval after start (JOB_STALLED_INTERVAL_MS; default 30 s). */
  readonly stalledInterval?: Duration.DurationInput
}

/** Jobs claimed from dead queues at one look at most. */
const TAKEOVER_BATCH = 100

/**
 * A background upkeep of the `jobs` table, retried every second for a minute before its failure is
 * logged: at a first start it runs before the migrations have made the table (the queue is
 * infrastructure, built first), and a database away for a moment needs no warning.
 */
const upkeep = (what: string) => <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<void> =>
  effect.pipe(
    Effect.retry(Schedule.spaced("1 second").pipe(Schedule.upTo("1 minute"))),
    Effect.catchAllCause((cause) => Effect.logWarning(`could not ${what}`, cause)),
    Effect.asVoid
  )

/** The in-process queue: workers live in the layer's scope and stop (interrupted) with it. */
export const makeInProcessJobQueue = (options: InProcessJobQueueOptions = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const records = yield* JobRecords
    const queue = yield* Queue.bounded<QueuedJob>(options.capacity ?? 10_000)
    const handlers = yield* Ref.make(new Map<string, Registration>())
    const attemptOf = makeAttempt(sql, records, handlers)
    const backoff = Duration.decode(options.backoff ?? "200 millis")
    // jobs enqueued and not finished yet: failed (records and onFailed) if the scope closes first
    const unfinished = new Map<string, QueuedJob>()
    const depth = Effect.flatMap(Queue.size(queue), (n) => Metric.set(jobsQueueDepth({ state: "waiting" }), n))

    const run = (job: QueuedJob) =>
      Effect.gen(function*() {
        for (let attempt = 1;; attempt++) {
          // a job taken over soon after start may come before the features registered their handlers
          const result = yield* attemptOf(job, attempt >= JOB_ATTEMPTS, "30 seconds")
          if (result._tag !== "retry") return
          const jitter = yield* Random.nextRange(0.8, 1.2)
          yield* Effect.sleep(Duration.times(backoff, 2 ** (attempt - 1) * jitter))
        }
      }).pipe(
        Effect.onExit((exit) => Exit.isInterrupted(exit) ? Effect.void : Effect.sync(() => unfinished.delete(job.id)))
      )

    yield* Effect.forEach(
      Array.from({ length: Math.max(1, options.concurrency ?? 2) }),
      () =>
        Effect.forkScoped(
          Effect.forever(Effect.flatMap(Effect.zipLeft(Queue.take(queue), depth), run))
        ),
      { discard: true }
    )
    // Declared after the workers, so it runs once they are interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const reason = "the server stopped before the job finished (in-process queue, no Redis)"
        const registered = yield* Ref.get(handlers)
        yield* Effect.forEach(
          unfinished.values(),
          (job) => Effect.ignore(failJob(sql, records, job, reason, registered.get(job.type)?.onFailed)),
          { discard: true }
        )
      }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
    )

    const accept = (job: QueuedJob) =>
      Effect.suspend(() => {
        unfinished.set(job.id, job)
        return Effect.zipRight(Queue.offer(queue, job), depth)
      })

    // This queue's unfinished jobs are marked alive; those of a queue that stopped marking are
    // taken over (the payload is in their rows), periodically.
    const lockDuration = Duration.decode(options.lockDuration ?? "30 seconds")
    const stalledInterval = Duration.decode(options.stalledInterval ?? "30 seconds")
    yield* Effect.suspend(() => records.touch([...unfinished.keys()])).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("could not mark the running jobs alive", cause)),
      Effect.repeat(Schedule.spaced(Duration.unsafeDivide(lockDuration, 3))),
      Effect.forkScoped
    )
    yield* records.takeOverStale(Duration.toSeconds(lockDuration), TAKEOVER_BATCH).pipe(
      Effect.tap((jobs) =>
        jobs.length === 0 ?
          Effect.void :
          Effect.logWarning("took over the jobs of an in-process queue that stopped").pipe(
            Effect.annotateLogs({ jobs: jobs.length })
          )
      ),
      Effect.flatMap((jobs) => Effect.forEach(jobs, accept, { discard: true })),
      upkeep("look for jobs to take over"),
      Effect.repeat(Schedule.spaced(stalledInterval)),
      // not at once: a job is stale a lock duration after its queue died, and the migrations may not have run yet
      Effect.delay(stalledInterval),
      Effect.forkScoped
    )

    const service: JobQueueService = {
      enqueue: (type, payload, enqueueOptions = {}) =>
        Effect.gen(function*() {
          const id = newJobId()
          yield* records.insert({ id, type, ownerId: enqueueOptions.owner ?? null, payload: payload ?? null }).pipe(
            orDieOnSqlError
          )
          yield* accept({ id, type, payload })
          return id
        }).pipe(Effect.withSpan("JobQueue.enqueue", { attributes: { job_type: type } })),
      register: (type, handler, registerOptions = {}) =>
        Ref.update(handlers, (map) => new Map(map).set(type, { handler, onFailed: registerOptions.onFailed }))
    }
    return service
  })

/** The in-process queue with its records; needs the database (the records go to its `jobs` table). */
export const InProcessJobQueueLive = (options: InProcessJobQueueOptions = {}) =>
  Layer.scoped(JobQueue, makeInProcessJobQueue(options)).pipe(Layer.provide(JobRecords.layer))

// ---------------------------------------------------------------------------------------------
// BullMQ

/** BullMQ's queue name; its keys are `<prefix>:jobs:...`. */
export const BULL_QUEUE_NAME = "jobs"

export interface BullJobQueueOptions {
  readonly redis: RedisService
  /** key prefix, e.g. `chatkit:bull` (see `bullPrefix`); tests use their own so they never share jobs */
  readonly prefix: string
  /** run consumers in this process (WORKER_MODE=on, `chatkit worker`); false: only enqueue */
  readonly consume: boolean
  readonly concurrency?: number
  /** delay before the second attempt, doubling after (default 1 s) */
  readonly backoffMs?: number
  /** a running job's lock; a worker that dies holding it loses the job after this (default 30 s) */
  readonly lockDurationMs?: number
  /** how often workers look for jobs whose worker died (default 30 s) */
  readonly stalledIntervalMs?: number
  /** how often the queue depth gauge is refreshed (default 5 s) */
  readonly depthIntervalMs?: number
  /** how long a closing worker lets its running jobs finish before leaving them to others (default 10 s) */
  readonly closeGraceMs?: number
}

/** `chatkit:bull`, or `chatkit:<namespace>:bull`: the same root as the cache and rate limits. */
export const bullPrefix = (namespace?: string) => `${redisKeyRoot(namespace)}bull`

const connectionOverrides = (name: string) => ({
  // BullMQ's requirement for its connections: commands wait for a reconnect instead of failing
  maxRetriesPerRequest: null,
  enableOfflineQueue: true,
  commandTimeout: undefined,
  enableAutoPipelining: false,
  connectionName: name
})

const describeError = (error: unknown) => (error instanceof Error ? error.message : String(error)).slice(0, 300)

export const makeBullJobQueue = (
  options: BullJobQueueOptions
): Effect.Effect<JobQueueService, never, Scope.Scope | JobRecords | SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const records = yield* JobRecords
    const handlers = yield* Ref.make(new Map<string, Registration>())
    const attemptOf = makeAttempt(sql, records, handlers)
    const runtime = yield* Effect.runtime<never>()
    const backoffMs = options.backoffMs ?? 1_000

    const producerConnection = yield* options.redis.duplicate(connectionOverrides("chatkit-jobs-producer"))
    const queue = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new BullQueue(BULL_QUEUE_NAME, {
          connection: producerConnection,
          prefix: options.prefix,
          defaultJobOptions: {
            attempts: JOB_ATTEMPTS,
            backoff: { type: "exponential", delay: backoffMs },
            // the jobs table keeps the durable record; Redis keeps recent ones for inspection
            removeOnComplete: { age: 3600, count: 1000 },
            removeOnFail: { age: 24 * 3600, count: 5000 }
          }
        })
      ),
      (queue) => Effect.promise(() => queue.close().catch(() => undefined))
    )
    queue.on("error", (error) => {
      Runtime.runFork(runtime)(Effect.logWarning("job queue connection error", describeError(error)))
    })

    const refreshDepth = Effect.tryPromise(() => queue.getJobCounts("wait", "prioritized", "delayed", "active")).pipe(
      Effect.flatMap((counts) =>
        Effect.all([
          Metric.set(jobsQueueDepth({ state: "waiting" }), (counts.wait ?? 0) + (counts.prioritized ?? 0)),
          Metric.set(jobsQueueDepth({ state: "delayed" }), counts.delayed ?? 0),
          Metric.set(jobsQueueDepth({ state: "active" }), counts.active ?? 0)
        ])
      ),
      Effect.timeout("2 seconds"),
      Effect.ignore
    )
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(refreshDepth, Effect.sleep(Duration.millis(options.depthIntervalMs ?? 5_000))))
    )

    if (options.consume) {
      const processor = async (job: BullJob) => {
        const lastChance = job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
        const result = await Runtime.runPromise(runtime)(
          attemptOf(
            { id: job.id ?? "", type: job.name, payload: job.data },
            lastChance,
            // the worker starts before the features have registered their handlers
            "30 seconds"
          )
        )
        if (result._tag === "retry") throw new Error(result.error)
        if (result._tag === "failed") throw new UnrecoverableError(result.error)
      }
      const workerConnection = yield* options.redis.duplicate(connectionOverrides("chatkit-jobs-worker"))
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const worker = new BullWorker(BULL_QUEUE_NAME, processor, {
            connection: workerConnection,
            prefix: options.prefix,
            concurrency: options.concurrency ?? 2,
            lockDuration: options.lockDurationMs ?? 30_000,
            stalledInterval: options.stalledIntervalMs ?? 30_000,
            // a start whose worker died is an attempt: the attempt after the last one fails the job (makeAttempt)
            maxStalledCount: JOB_ATTEMPTS
          })
          worker.on("error", (error) => {
            Runtime.runFork(runtime)(Effect.logWarning("job worker error", describeError(error)))
          })
          worker.on("stalled", (jobId) => {
            Runtime.runFork(runtime)(
              Effect.logWarning("job stalled (its worker stopped); queued again").pipe(
                Effect.annotateLogs({ job_id: jobId })
              )
            )
          })
          return worker
        }),
        (worker) =>
          // running jobs finish first; past the grace they are left to another worker (stalled)
          Effect.promise(() => worker.close()).pipe(
            Effect.timeout(Duration.millis(options.closeGraceMs ?? 10_000)),
            Effect.catchAll(() => Effect.promise(() => worker.close(true).catch(() => undefined))),
            Effect.ignore
          )
      )
      yield* Effect.logInfo("job consumers started").pipe(Effect.annotateLogs({ queue: BULL_QUEUE_NAME }))
    }

    const service: JobQueueService = {
      enqueue: (type, payload, enqueueOptions = {}) =>
        Effect.gen(function*() {
          const id = newJobId()
          yield* records.insert({ id, type, ownerId: enqueueOptions.owner ?? null }).pipe(orDieOnSqlError)
          yield* Effect.tryPromise(() => queue.add(type, payload, { jobId: id })).pipe(
            Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("Redis did not answer in 5 s") }),
            Effect.catchAll((error) =>
              Effect.zipRight(
                Effect.ignore(records.fail(id, `the job could not be queued: ${describeError(error)}`)),
                Effect.fail(new JobQueueUnavailable({ reason: describeError(error) }))
              )
            )
            // the caller is told (JobQueueUnavailable) and undoes what it prepared; onFailed is for jobs that ran
          )
          return id
        }).pipe(Effect.withSpan("JobQueue.enqueue", { attributes: { job_type: type } })),
      register: (type, handler, registerOptions = {}) =>
        Ref.update(handlers, (map) => new Map(map).set(type, { handler, onFailed: registerOptions.onFailed }))
    }
    return service
  })

/** How often a consuming process deletes old finished jobs' records, and how many a statement. */
const PRUNE_INTERVAL = Duration.hours(1)
const PRUNE_BATCH = 1_000

/**
 * Deletes, at start and every PRUNE_INTERVAL, the records of jobs finished more than `days` ago, in
 * batches so no statement holds many rows; several processes doing it at once only share the work.
 */
const pruneFinishedJobs = (records: JobRecordsService, days: number) => {
  const batches = records.deleteFinished(days, PRUNE_BATCH).pipe(
    Effect.repeat({ while: (deleted) => deleted === PRUNE_BATCH }),
    upkeep("delete old job records")
  )
  return Effect.forkScoped(Effect.repeat(batches, Schedule.spaced(PRUNE_INTERVAL)))
}

/**
 * The queue of the environment: BullMQ on the shared Redis when REDIS_URL is set, in-process
 * otherwise. `consume` (default: WORKER_MODE=on) runs the consumers in this process; the
 * in-process queue always does (nothing else could). A consuming process also prunes the records
 * of jobs finished JOB_RETENTION_DAYS ago.
 */
export const JobQueueLive = (
  options: { readonly consume?: boolean } = {}
): Layer.Layer<JobQueue, never, AppConfig | OptionalRedis | SqlClient.SqlClient> =>
  Layer.scoped(
    JobQueue,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const redis = yield* OptionalRedis
      const consume = Option.isNone(redis) || (options.consume ?? config.workerMode === "on")
      if (consume) yield* pruneFinishedJobs(yield* JobRecords, config.jobRetentionDays)
      if (Option.isNone(redis)) {
        return yield* makeInProcessJobQueue({
          concurrency: config.jobConcurrency,
          backoff: config.jobBackoffMs,
          lockDuration: config.jobLockDurationMs,
          stalledInterval: config.jobStalledIntervalMs
        })
      }
      return yield* makeBullJobQueue({
        redis: redis.value,
        prefix: bullPrefix(Option.getOrUndefined(config.redisNamespace)),
        consume,
        concurrency: config.jobConcurrency,
        backoffMs: config.jobBackoffMs,
        lockDurationMs: config.jobLockDurationMs,
        stalledIntervalMs: config.jobStalledIntervalMs,
        closeGraceMs: config.shutdownGraceMs
      })
    })
  ).pipe(Layer.provide(JobRecords.layer))
