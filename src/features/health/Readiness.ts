import { SqlClient } from "@effect/sql"
import { Duration, Effect, Option } from "effect"

import type { DependencyCheck, NotReady, Readiness } from "../../api/OperationsApi.js"
import { OptionalRedis } from "../../platform/Redis.js"

const CHECK_TIMEOUT = "1 second"

/** Runs one check with the 1 s timeout, reporting its latency and a reason without internals. */
const timed = <E, R>(check: Effect.Effect<unknown, E, R>): Effect.Effect<typeof DependencyCheck.Type, never, R> =>
  check.pipe(
    Effect.timeoutFail({ duration: CHECK_TIMEOUT, onTimeout: () => "timed out after 1 s" }),
    Effect.timed,
    Effect.map(([duration]) => ({ status: "ok" as const, latency_ms: round(duration) })),
    Effect.catchAll((error) =>
      Effect.succeed({
        status: "error" as const,
        latency_ms: 0,
        error: typeof error === "string" ? error : "unreachable"
      })
    )
  )

const round = (duration: Duration.Duration) => Math.round(Duration.toMillis(duration) * 100) / 100

/** The checks of /health/ready: the database, and Redis when it is configured. */
export class ReadinessChecks extends Effect.Service<ReadinessChecks>()("chatkit/ReadinessChecks", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const redis = yield* OptionalRedis
    /** The readiness document when every check passes; failing with it (`NotReady`, 503) otherwise. */
    const run: Effect.Effect<typeof Readiness.Type, typeof NotReady.Type> = Effect.gen(function*() {
      const [database, redisCheck] = yield* Effect.all(
        [
          timed(sql`SELECT 1`),
          Option.match(redis, { onNone: () => Effect.succeed(undefined), onSome: (r) => timed(r.ping()) })
        ],
        { concurrency: "unbounded" }
      )
      const checks = { database, ...(redisCheck === undefined ? {} : { redis: redisCheck }) }
      const status = database.status === "error" ? "unavailable" : redisCheck?.status === "error" ? "degraded" : "ok"
      const body: typeof Readiness.Type = { status, checks }
      if (status !== "ok") return yield* Effect.fail<typeof NotReady.Type>(body)
      return body
    })
    return { run } as const
  })
}) {}
