import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Clock, Context, Deferred, Effect, Fiber, Layer, Metric, Option, Ref, Schedule } from "effect"

import { JobsRepo } from "../src/features/jobs/Repo.js"
import { testConfig } from "../src/platform/Config.js"
import {
  type JobContext,
  JobQueue,
  JobQueueLive,
  jobsTotalKey,
  makeInProcessJobQueue,
  PermanentJobFailure
} from "../src/platform/JobQueue.js"
import { JobRecords } from "../src/platform/JobRecords.js"
import { labelled } from "../src/platform/Metrics.js"
import { migrateUp } from "../src/platform/Migrations.js"
import { OptionalRedis } from "../src/platform/Redis.js"
import { LiveClock, testDatabaseLayer } from "./support/database.js"
import { captureLogs } from "./support/logs.js"

/**
 * The in-process job queue (the embedded default) over a migrated database of its own (PGlite, or a
 * schema of TEST_DATABASE_URL): every job has its `jobs` row, retries with backoff, 3 attempts.
 */

const Migrated = Layer.effectDiscard(Effect.orDie(migrateUp()))
const Env = Layer.mergeAll(JobRecords.layer, JobsRepo.Default).pipe(
  Layer.provideMerge(Migrated),
  Layer.provideMerge(testDatabaseLayer("job-queue")),
  Layer.provide(LiveClock)
)

const recordOf = (id: string) =>
  Effect.flatMap(JobsRepo, (repo) => repo.findById(id)).pipe(Effect.map(Option.getOrThrow))

/** Polls the job's row until `done` holds (2 s at most). */
const waitForRecord = (id: string, done: (row: Effect.Effect.Success<ReturnType<typeof recordOf>>) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const row = yield* recordOf(id)
      if (done(row)) return row
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage(
      `job ${id} never reached the expected state: ${JSON.stringify(yield* recordOf(id))}`
    )
  })

/** Backoffs, polls and timeouts on the real clock (the test layer's clock is a TestClock). */
const live = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.withClock(self, Clock.make())

const outcomes = (type: string, outcome: string) =>
  Effect.map(Metric.value(labelled(jobsTotalKey)({ type, outcome })), (state) => state.count)

layer(Env, { timeout: 60_000 })("the in-process job queue", (it) => {
  it.scoped("records a job queued, runs it in the background with its payload, and stores its result", () =>
    live(Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue()
      const release = yield* Deferred.make<void>()
      const seen = yield* Deferred.make<unknown>()
      yield* jobs.register("test.echo", (payload) =>
        Effect.zipRight(
          Effect.zipRight(Deferred.succeed(seen, payload), Deferred.await(release)),
          Effect.succeed({ echoed: payload })
        ))
      const id = yield* jobs.enqueue("test.echo", { thread_id: "thr_0123456789abcdef" })
      expect(id).toMatch(/^job_[0-9a-f-]{36}$/)
      expect(yield* Deferred.await(seen)).toEqual({ thread_id: "thr_0123456789abcdef" })
      const running = yield* recordOf(id)
      expect(running).toMatchObject({ type: "test.echo", status: "running", attempts: 1, owner_id: null })
      expect(running.started_at).toBeInstanceOf(Date)
      expect(running.finished_at).toBeNull()
      yield* Deferred.succeed(release, undefined)
      const done = yield* waitForRecord(id, (row) => row.status === "completed")
      expect(done).toMatchObject({
        status: "completed",
        attempts: 1,
        progress: 100,
        result: { echoed: { thread_id: "thr_0123456789abcdef" } },
        error: null
      })
      expect(done.finished_at!.getTime()).toBeGreaterThanOrEqual(done.started_at!.getTime())
    })))

  it.scoped("retries a failing job with backoff and completes it on the second attempt, with no third", () =>
    live(Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue({ backoff: "30 millis" })
      const tries = yield* Ref.make<Array<number>>([])
      yield* jobs.register("test.once-flaky", (_, job) =>
        Effect.flatMap(
          Ref.updateAndGet(tries, (list) => [...list, job.attempt]),
          (list) => list.length === 1 ? Effect.fail(new Error("blip")) : Effect.succeed("ok")
        ))
      const before = yield* outcomes("test.once-flaky", "retried")
      const id = yield* jobs.enqueue("test.once-flaky", {})
      const done = yield* waitForRecord(id, (row) => row.status === "completed")
      expect(done).toMatchObject({ attempts: 2, result: "ok", error: null })
      yield* Effect.sleep("200 millis")
      expect(yield* Ref.get(tries)).toEqual([1, 2])
      expect((yield* outcomes("test.once-flaky", "retried")) - before).toBe(1)
    })))

  it.scoped("gives up after 3 attempts: the job is failed with the last error, readable, and onFailed runs once", () =>
    live(Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue({ backoff: "20 millis" })
      const tries = yield* Ref.make(0)
      const failedWith = yield* Ref.make<Array<string>>([])
      yield* jobs.register(
        "test.down",
        () =>
          Effect.zipRight(
            Ref.update(tries, (n) => n + 1),
            Effect.fail(new Error("the provider answered 503"))
          ),
        { onFailed: (_, error) => Ref.update(failedWith, (list) => [...list, error]) }
      )
      const before = yield* outcomes("test.down", "failed")
      const id = yield* jobs.enqueue("test.down", {})
      // between attempts the job is queued again, with the reason of the retry
      const retrying = yield* waitForRecord(id, (row) => row.status === "queued" && row.attempts >= 1)
      expect(retrying.error).toBe("the provider answered 503")
      const failed = yield* waitForRecord(id, (row) => row.status === "failed")
      expect(failed).toMatchObject({ attempts: 3, error: "the provider answered 503", result: null })
      expect(failed.finished_at).toBeInstanceOf(Date)
      yield* Effect.sleep("200 millis")
      expect(yield* Ref.get(tries)).toBe(3)
      expect(yield* Ref.get(failedWith)).toEqual(["the provider answered 503"])
      expect((yield* outcomes("test.down", "failed")) - before).toBe(1)
    })))

  it.scoped("onFailed runs before the failure is visible, and a failing onFailed still leaves the job failed", () =>
    live(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const jobs = yield* makeInProcessJobQueue()
      const consequence = yield* Ref.make("not yet")
      const permanently = () => Effect.fail(new PermanentJobFailure({ reason: "the document is unreadable" }))
      yield* jobs.register("test.consequence", permanently, {
        // slow on purpose: a reader must not see the job failed before this is done
        onFailed: () => Effect.zipRight(Effect.sleep("200 millis"), Ref.set(consequence, "written"))
      })
      yield* jobs.register("test.broken-onfailed", permanently, {
        // a statement that fails inside the failure's transaction
        onFailed: () => sql`SELECT 1 / 0`
      })
      const slow = yield* jobs.enqueue("test.consequence", {})
      yield* waitForRecord(slow, (row) => row.status === "failed")
      expect(yield* Ref.get(consequence)).toBe("written")
      const broken = yield* jobs.enqueue("test.broken-onfailed", {})
      expect(yield* waitForRecord(broken, (row) => row.status === "failed")).toMatchObject({
        error: "the document is unreadable"
      })
    })))

  it.scoped("a permanent failure is not retried; a defect's internals never reach the record", () =>
    live(Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue({ backoff: "20 millis" })
      yield* jobs.register(
        "test.permanent",
        () => Effect.fail(new PermanentJobFailure({ reason: "the thread is gone" }))
      )
      yield* jobs.register("test.defect", () => Effect.dieMessage("SELECT secret FROM somewhere exploded"))
      const permanent = yield* jobs.enqueue("test.permanent", {})
      expect(yield* waitForRecord(permanent, (row) => row.status === "failed")).toMatchObject({
        attempts: 1,
        error: "the thread is gone"
      })
      const defect = yield* jobs.enqueue("test.defect", {})
      const died = yield* waitForRecord(defect, (row) => row.status === "failed")
      expect(died.attempts).toBe(3)
      expect(died.error).toBe("the job failed with an internal error (see the worker's log)")
    })))

  it.scoped("records the owner it is given", () =>
    live(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [user] = yield* sql<{ id: number }>`
        INSERT INTO users (email, password_hash, is_admin) VALUES ('job-owner@example.com', 'x', false) RETURNING id`
      const jobs = yield* makeInProcessJobQueue()
      yield* jobs.register("test.owned", () => Effect.void)
      const id = yield* jobs.enqueue("test.owned", {}, { owner: user!.id })
      expect((yield* waitForRecord(id, (row) => row.status === "completed")).owner_id).toBe(user!.id)
    })))

  it.scoped("completeWith writes nothing when another worker completed the job first", () =>
    live(Effect.gen(function*() {
      const records = yield* JobRecords
      const jobs = yield* makeInProcessJobQueue()
      const writes = yield* Ref.make(0)
      yield* jobs.register("test.raced", (_, job) =>
        Effect.gen(function*() {
          // another worker, retaking the job from this one, completes it first
          yield* records.complete(job.id, { by: "the other worker" })
          return yield* job.completeWith(Effect.as(Ref.update(writes, (n) => n + 1), { by: "this worker" }))
        }))
      const before = yield* outcomes("test.raced", "skipped")
      const id = yield* jobs.enqueue("test.raced", {})
      yield* Effect.sleep("50 millis")
      const row = yield* waitForRecord(id, (r) => r.status === "completed")
      yield* Effect.sleep("100 millis")
      expect(row.result).toEqual({ by: "the other worker" })
      expect(yield* Ref.get(writes)).toBe(0)
      expect((yield* outcomes("test.raced", "skipped")) - before).toBe(1)
    })))

  it.scoped("runs at most `concurrency` jobs at once", () =>
    live(Effect.gen(function*() {
      const jobs = yield* makeInProcessJobQueue({ concurrency: 2 })
      const running = yield* Ref.make(0)
      const peak = yield* Ref.make(0)
      const release = yield* Deferred.make<void>()
      yield* jobs.register("test.slow", () =>
        Effect.gen(function*() {
          const now = yield* Ref.updateAndGet(running, (n) => n + 1)
          yield* Ref.update(peak, (p) => Math.max(p, now))
          yield* Deferred.await(release)
          yield* Ref.update(running, (n) => n - 1)
        }))
      const ids = []
      for (let i = 0; i < 5; i++) ids.push(yield* jobs.enqueue("test.slow", { i }))
      yield* Effect.sleep("200 millis")
      expect(yield* Ref.get(peak)).toBe(2)
      yield* Deferred.succeed(release, undefined)
      for (const id of ids) yield* waitForRecord(id, (row) => row.status === "completed")
    })))

  it.effect("stops with its scope: the running job is interrupted, not retried; it and the queued ones are failed, onFailed told", () =>
    live(Effect.gen(function*() {
      const started = yield* Deferred.make<string>()
      const queuedId = yield* Deferred.make<string>()
      const tries = yield* Ref.make(0)
      const told = yield* Ref.make<Array<unknown>>([])
      const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const jobs = yield* makeInProcessJobQueue({ concurrency: 1 })
        yield* jobs.register(
          "test.long",
          (_, job) =>
            Effect.zipRight(
              Ref.update(tries, (n) => n + 1),
              Effect.zipRight(Deferred.succeed(started, job.id), Effect.never)
            ),
          { onFailed: (payload) => Ref.update(told, (list) => [...list, payload]) }
        )
        yield* jobs.enqueue("test.long", { n: 1 })
        yield* Deferred.succeed(queuedId, yield* jobs.enqueue("test.long", { n: 2 }))
        yield* Effect.never
      })))
      const id = yield* Deferred.await(started)
      const waiting = yield* Deferred.await(queuedId)
      expect((yield* recordOf(waiting)).status).toBe("queued")
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(tries)).toBe(1)
      for (const lost of [id, waiting]) {
        expect(yield* recordOf(lost)).toMatchObject({
          status: "failed",
          error: "the server stopped before the job finished (in-process queue, no Redis)"
        })
      }
      expect(yield* Ref.get(told)).toEqual([{ n: 1 }, { n: 2 }])
    })))

  it.scoped("takes over the jobs a crashed process left (unmarked past the lock): run here with their rows' payloads, a lost attempt counted", () =>
    live(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const records = yield* JobRecords
      // what a killed process left: a job running (its attempt died with it) and one still queued
      yield* records.insert({ id: "job_orphan-running", type: "test.orphan", ownerId: null, payload: { n: 1 } })
      yield* records.insert({ id: "job_orphan-queued", type: "test.orphan", ownerId: null, payload: { n: 2 } })
      yield* sql`UPDATE jobs SET status = 'running', attempts = 1, started_at = now() WHERE id = 'job_orphan-running'`
      yield* sql`UPDATE jobs SET updated_at = now() - interval '1 minute' WHERE id LIKE 'job_orphan-%'`
      const jobs = yield* makeInProcessJobQueue({ lockDuration: "5 seconds", stalledInterval: "100 millis" })
      // registered after the queue started, as the features do: the taken-over jobs wait for it
      yield* jobs.register("test.orphan", (payload) => Effect.succeed({ echoed: payload }))
      expect(yield* waitForRecord("job_orphan-running", (row) => row.status === "completed")).toMatchObject({
        attempts: 2,
        result: { echoed: { n: 1 } }
      })
      expect(yield* waitForRecord("job_orphan-queued", (row) => row.status === "completed")).toMatchObject({
        attempts: 1,
        result: { echoed: { n: 2 } }
      })
    })))

  it.scoped("a live queue marks its jobs alive: another queue on the database never takes them over", () =>
    live(Effect.gen(function*() {
      const options = { lockDuration: "600 millis", stalledInterval: "100 millis" } as const
      const release = yield* Deferred.make<void>()
      const runs = yield* Ref.make<Array<string>>([])
      const handler = (queue: string) => (_: unknown, job: JobContext) =>
        Effect.zipRight(
          Ref.update(runs, (list) => [...list, `${queue} attempt ${job.attempt}`]),
          Deferred.await(release)
        )
      const first = yield* makeInProcessJobQueue(options)
      yield* first.register("test.alive", handler("first"))
      const id = yield* first.enqueue("test.alive", {})
      yield* waitForRecord(id, (row) => row.status === "running")
      const second = yield* makeInProcessJobQueue(options)
      yield* second.register("test.alive", handler("second"))
      // two and a half lock durations, the second queue looking every 100 ms
      yield* Effect.sleep("1500 millis")
      expect(yield* Ref.get(runs)).toEqual(["first attempt 1"])
      yield* Deferred.succeed(release, undefined)
      expect(yield* waitForRecord(id, (row) => row.status === "completed")).toMatchObject({ attempts: 1 })
    })))

  it.scoped("a job whose every attempt died with its process is failed when taken over, and its onFailed told", () =>
    live(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const records = yield* JobRecords
      yield* records.insert({ id: "job_doomed-1", type: "test.doomed", ownerId: null, payload: { doc: "manual" } })
      yield* sql`UPDATE jobs SET status = 'running', attempts = 3, started_at = now(),
        updated_at = now() - interval '1 minute' WHERE id = 'job_doomed-1'`
      const told = yield* Ref.make<Array<unknown>>([])
      const jobs = yield* makeInProcessJobQueue({ lockDuration: "5 seconds", stalledInterval: "100 millis" })
      yield* jobs.register("test.doomed", () => Effect.dieMessage("never runs"), {
        onFailed: (payload, error) => Ref.update(told, (list) => [...list, { payload, error }])
      })
      const failed = yield* waitForRecord("job_doomed-1", (row) => row.status === "failed")
      const error = "gave up after 3 attempts: the worker running it stopped before it finished"
      expect(failed).toMatchObject({ attempts: 4, error })
      expect(yield* Ref.get(told)).toEqual([{ payload: { doc: "manual" }, error }])
    })))

  it.effect("takeOverStale claims a stale in-process job once; never a fresh one, nor one without a payload (BullMQ's)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const records = yield* JobRecords
      yield* records.insert({ id: "job_claim-stale", type: "test.claim", ownerId: null, payload: {} })
      yield* records.insert({ id: "job_claim-fresh", type: "test.claim", ownerId: null, payload: {} })
      yield* records.insert({ id: "job_claim-bullmq", type: "test.claim", ownerId: null })
      yield* sql`UPDATE jobs SET updated_at = now() - interval '1 minute'
        WHERE id IN ('job_claim-stale', 'job_claim-bullmq')`
      const claimed = (rows: ReadonlyArray<{ id: string }>) =>
        rows.map((row) => row.id).filter((id) => id.startsWith("job_claim-"))
      expect(claimed(yield* records.takeOverStale(30, 100))).toEqual(["job_claim-stale"])
      expect(claimed(yield* records.takeOverStale(30, 100))).toEqual([])
    }))

  it.effect("a finished job never starts, completes or fails again", () =>
    Effect.gen(function*() {
      const records = yield* JobRecords
      yield* records.insert({ id: "job_guard-1", type: "test.guard", ownerId: null })
      expect(yield* records.start("job_guard-1")).toEqual(Option.some({ attempts: 1 }))
      expect(yield* records.complete("job_guard-1", { n: 1 })).toBe(true)
      expect(yield* records.complete("job_guard-1", { n: 2 })).toBe(false)
      expect(yield* records.fail("job_guard-1", "late")).toBe(false)
      expect(yield* records.start("job_guard-1")).toEqual(Option.none())
      expect(yield* recordOf("job_guard-1")).toMatchObject({ status: "completed", result: { n: 1 }, attempts: 1 })
    }))

  it.effect("a consuming queue deletes the records of jobs finished JOB_RETENTION_DAYS ago, and only those", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const ids = ["job_prune-done", "job_prune-failed", "job_prune-recent", "job_prune-running"] as const
      yield* sql`INSERT INTO jobs (id, type, status, created_at, finished_at) VALUES
        (${ids[0]}, 'test.prune', 'completed', now() - interval '9 days', now() - interval '8 days'),
        (${ids[1]}, 'test.prune', 'failed', now() - interval '30 days', now() - interval '29 days'),
        (${ids[2]}, 'test.prune', 'completed', now() - interval '9 days', now() - interval '6 days'),
        (${ids[3]}, 'test.prune', 'running', now() - interval '40 days', NULL)`
      const remaining = sql<{ id: string }>`SELECT id FROM jobs WHERE id IN ${sql.in(ids)} ORDER BY id`.pipe(
        Effect.map((rows) => rows.map((row) => row.id))
      )
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(
          JobQueueLive().pipe(
            Layer.provide(testConfig({ JOB_RETENTION_DAYS: "7" })),
            Layer.provide(Layer.succeed(OptionalRedis, Option.none()))
          )
        )
        // the pruning starts with the queue, in the background
        yield* remaining.pipe(
          Effect.filterOrFail((left) => left.length === 2),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("3 seconds"))),
          Effect.ignore
        )
      }))
      expect(yield* remaining).toEqual(["job_prune-recent", "job_prune-running"])
    }).pipe(live))

  it.effect("the table refuses an unknown status, a bad id and progress out of 0-100", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const refused = (statement: Effect.Effect<unknown, unknown>) =>
        Effect.map(Effect.flip(statement), (e) => (e as { _tag?: string })._tag)
      expect(yield* refused(sql`INSERT INTO jobs (id, type, status) VALUES ('job_x1', 't', 'lost')`)).toBe("SqlError")
      expect(yield* refused(sql`INSERT INTO jobs (id, type) VALUES ('nojob', 't')`)).toBe("SqlError")
      expect(yield* refused(sql`INSERT INTO jobs (id, type, progress) VALUES ('job_x2', 't', 101)`)).toBe("SqlError")
      expect(yield* refused(sql`INSERT INTO jobs (id, type, status) VALUES ('job_x3', 't', 'completed')`)).toBe(
        "SqlError"
      )
    }))
})

layer(testDatabaseLayer("job-queue-first-start").pipe(Layer.provide(LiveClock)), { timeout: 60_000 })(
  "the in-process job queue at a first start",
  (it) => {
    it.scoped(
      "starts before the migrations (it is infrastructure): its upkeep waits for the jobs table, with no warning",
      () =>
        live(Effect.gen(function*() {
          const logs = captureLogs()
          const built = yield* Layer.build(
            JobQueueLive().pipe(
              Layer.provide(testConfig({ JOB_STALLED_INTERVAL_MS: "500" })),
              Layer.provide(Layer.succeed(OptionalRedis, Option.none()))
            )
          ).pipe(Effect.provide(logs.layer))
          yield* Context.get(built, JobQueue).register("test.first", (payload) => Effect.succeed({ echoed: payload }))
          yield* Effect.sleep("1500 millis")
          yield* Effect.orDie(migrateUp())
          const sql = yield* SqlClient.SqlClient
          // a job a crashed process left, taken over once the table exists
          yield* sql`INSERT INTO jobs (id, type, payload, updated_at) VALUES
          ('job_first-start', 'test.first', '{"n":1}'::jsonb, now() - interval '1 hour')`
          const [row] = yield* sql<{ status: string; result: unknown }>`SELECT status, result FROM jobs
          WHERE id = 'job_first-start'`.pipe(
            Effect.filterOrFail(([found]) => found?.status === "completed"),
            Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("10 seconds")))
          )
          expect(row?.result).toEqual({ echoed: { n: 1 } })
          expect(logs.lines.filter((line) => line.includes("message=\"could not"))).toEqual([])
        })),
      { timeout: 60_000 }
    )
  }
)
