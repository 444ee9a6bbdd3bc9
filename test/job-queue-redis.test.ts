import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Clock, Effect, Layer, Logger, Metric, Option, Redacted, Ref } from "effect"

import { JobsRepo } from "../src/features/jobs/Repo.js"
import {
  type BullJobQueueOptions,
  bullPrefix,
  jobsQueueDepthKey,
  jobsTotalKey,
  makeBullJobQueue
} from "../src/platform/JobQueue.js"
import { JobRecords } from "../src/platform/JobRecords.js"
import { labelled } from "../src/platform/Metrics.js"
import { migrateUp } from "../src/platform/Migrations.js"
import { makeRedis, Redis } from "../src/platform/Redis.js"
import { LiveClock, testDatabaseLayer, uniqueSchema } from "./support/database.js"
import { reachableRedis, testRedisUrl } from "./support/redis.js"

/**
 * The BullMQ queue on TEST_REDIS_URL (skipped without it; a URL that does not answer fails the
 * suite), over a migrated database of its own. Each test has its own key prefix, removed after.
 */

const Migrated = Layer.effectDiscard(Effect.orDie(migrateUp()))
const Env = Layer.mergeAll(JobRecords.layer, JobsRepo.Default, reachableRedis).pipe(
  Layer.provideMerge(Migrated),
  Layer.provideMerge(testDatabaseLayer("job-queue-redis")),
  Layer.provide(LiveClock)
)

const live = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.withClock(self, Clock.make())

const recordOf = (id: string) =>
  Effect.flatMap(JobsRepo, (repo) => repo.findById(id)).pipe(Effect.map(Option.getOrThrow))

const waitForRecord = (
  id: string,
  done: (row: Effect.Effect.Success<ReturnType<typeof recordOf>>) => boolean,
  timeoutMs = 10_000
) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < timeoutMs; waited += 25) {
      const row = yield* recordOf(id)
      if (done(row)) return row
      yield* Effect.sleep("25 millis")
    }
    return yield* Effect.dieMessage(
      `job ${id} never reached the expected state: ${JSON.stringify(yield* recordOf(id))}`
    )
  })

/** A key prefix of its own, and its keys deleted when the test's scope closes. */
const ownPrefix = Effect.gen(function*() {
  const redis = yield* Redis
  const prefix = bullPrefix(uniqueSchema("jq"))
  yield* Effect.addFinalizer(() =>
    Effect.ignore(redis.run(async (client) => {
      let cursor = "0"
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500)
        cursor = next
        if (keys.length > 0) await client.del(...keys)
      } while (cursor !== "0")
    }))
  )
  return prefix
})

const queueOn = (prefix: string, options: Partial<BullJobQueueOptions> = {}) =>
  Effect.flatMap(Redis, (redis) =>
    makeBullJobQueue({
      redis,
      prefix,
      consume: true,
      backoffMs: 50,
      lockDurationMs: 2_000,
      stalledIntervalMs: 1_000,
      depthIntervalMs: 50,
      closeGraceMs: 2_000,
      ...options
    }))

const outcomes = (type: string, outcome: string) =>
  Effect.map(Metric.value(labelled(jobsTotalKey)({ type, outcome })), (state) => state.count)

describe.skipIf(Option.isNone(testRedisUrl))("the BullMQ job queue (TEST_REDIS_URL)", () => {
  layer(Env, { timeout: 60_000 })("on Redis", (it) => {
    it.scoped("retries a failing job with backoff and completes it on the second attempt", () =>
      live(Effect.gen(function*() {
        const jobs = yield* queueOn(yield* ownPrefix)
        const tries = yield* Ref.make<Array<number>>([])
        yield* jobs.register("test.once-flaky", (payload, job) =>
          Effect.flatMap(
            Ref.updateAndGet(tries, (list) => [...list, job.attempt]),
            (list) => list.length === 1 ? Effect.fail(new Error("first try fails")) : Effect.succeed({ got: payload })
          ))
        const retriedBefore = yield* outcomes("test.once-flaky", "retried")
        const id = yield* jobs.enqueue("test.once-flaky", { n: 7 })
        const done = yield* waitForRecord(id, (row) => row.status === "completed")
        expect(done).toMatchObject({ attempts: 2, result: { got: { n: 7 } }, error: null, progress: 100 })
        yield* Effect.sleep("300 millis")
        expect(yield* Ref.get(tries)).toEqual([1, 2])
        expect((yield* outcomes("test.once-flaky", "retried")) - retriedBefore).toBe(1)
      })))

    it.scoped("exhausts its 3 attempts, then the job is failed with a readable error and never retried again", () =>
      live(Effect.gen(function*() {
        const jobs = yield* queueOn(yield* ownPrefix)
        const tries = yield* Ref.make(0)
        const failedWith = yield* Ref.make<Array<string>>([])
        yield* jobs.register(
          "test.down",
          () => Effect.zipRight(Ref.update(tries, (n) => n + 1), Effect.fail(new Error("the provider answered 503"))),
          { onFailed: (_, error) => Ref.update(failedWith, (list) => [...list, error]) }
        )
        const failedBefore = yield* outcomes("test.down", "failed")
        const id = yield* jobs.enqueue("test.down", {})
        const failed = yield* waitForRecord(id, (row) => row.status === "failed")
        expect(failed).toMatchObject({ attempts: 3, error: "the provider answered 503", result: null })
        expect(failed.finished_at).toBeInstanceOf(Date)
        // past the backoff of a 4th attempt: there is none
        yield* Effect.sleep("1 second")
        expect(yield* Ref.get(tries)).toBe(3)
        expect(yield* Ref.get(failedWith)).toEqual(["the provider answered 503"])
        expect((yield* outcomes("test.down", "failed")) - failedBefore).toBe(1)
        expect((yield* recordOf(id)).attempts).toBe(3)
      })))

    it.scoped("a process that does not consume (WORKER_MODE=off) leaves jobs waiting, counted, until a consumer runs them", () =>
      live(Effect.gen(function*() {
        const prefix = yield* ownPrefix
        const producer = yield* queueOn(prefix, { consume: false })
        const first = yield* producer.enqueue("test.later", { n: 1 })
        const second = yield* producer.enqueue("test.later", { n: 2 })
        yield* Effect.sleep("500 millis")
        expect((yield* recordOf(first)).status).toBe("queued")
        expect((yield* recordOf(second)).status).toBe("queued")
        const waiting = yield* Metric.value(labelled(jobsQueueDepthKey)({ state: "waiting" }))
        expect(waiting.value).toBe(2)

        const consumer = yield* queueOn(prefix, { consume: true })
        yield* consumer.register("test.later", (payload) => Effect.succeed(payload))
        expect((yield* waitForRecord(first, (row) => row.status === "completed")).result).toEqual({ n: 1 })
        expect((yield* waitForRecord(second, (row) => row.status === "completed")).result).toEqual({ n: 2 })
        yield* Effect.sleep("300 millis")
        expect((yield* Metric.value(labelled(jobsQueueDepthKey)({ state: "waiting" }))).value).toBe(0)
      })))

    it.scoped(
      "a Redis that does not answer refuses the job: JobQueueUnavailable, and its record is failed",
      () =>
        live(Effect.gen(function*() {
          const down = yield* makeRedis(Redacted.make("redis://127.0.0.1:1"), { connectTimeoutMs: 200 }).pipe(
            Effect.provide(Logger.remove(Logger.defaultLogger))
          )
          const jobs = yield* makeBullJobQueue({
            redis: down,
            prefix: bullPrefix(uniqueSchema("jq-down")),
            consume: false
          })
          const error = yield* Effect.flip(jobs.enqueue("test.never", {}))
          expect(error._tag).toBe("JobQueueUnavailable")
          const sql = yield* SqlClient.SqlClient
          const rows = yield* sql<
            { status: string; error: string }
          >`SELECT status, error FROM jobs WHERE type = 'test.never'`
          expect(rows).toHaveLength(1)
          expect(rows[0]!.status).toBe("failed")
          expect(rows[0]!.error).toMatch(/^the job could not be queued: /)
        })),
      20_000
    )
  })
})
