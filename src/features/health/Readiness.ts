import { SqlClient } from "@effect/sql"
import { Deferred, Duration, Effect, Option } from "effect"

import type { DependencyCheck, NotReady, Readiness } from "../../api/OperationsApi.js"
import { OptionalRedis } from "../../platform/Redis.js"
import { Shutdown } from "../../platform/Server.js"
import { type VectorPath, VectorSupport } from "../../platform/VectorSupport.js"

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

/** The vector check names the search path in use, whatever its status. */
export type VectorCheck = typeof DependencyCheck.Type & { readonly path: VectorPath }

/** The readiness document, with the vector check's path (API.md section 1, issue 12). */
export interface ReadinessDocument {
  readonly status: (typeof Readiness.Type)["status"]
  readonly checks: {
    readonly database: typeof DependencyCheck.Type
    readonly vector: VectorCheck
    readonly redis?: typeof DependencyCheck.Type
  }
}

/**
 * The checks of /health/ready: the database, the vector search path (the one detected at start,
 * still the schema's), and Redis when it is configured. The database down, or the instance shutting
 * down (so load balancers stop sending it requests), makes the answer `unavailable`; the vector path
 * or Redis failing, `degraded`.
 */
export class ReadinessChecks extends Effect.Service<ReadinessChecks>()("chatkit/ReadinessChecks", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const redis = yield* OptionalRedis
    const vectors = yield* VectorSupport
    // absent where no server process is built (tests of the checks alone)
    const shutdown = yield* Effect.serviceOption(Shutdown)
    const draining = Option.match(shutdown, {
      onNone: () => Effect.succeed(false),
      onSome: (s) => Deferred.isDone(s.draining)
    })
    /** The readiness document when every check passes; failing with it (`NotReady`, 503) otherwise. */
    const run: Effect.Effect<ReadinessDocument, typeof NotReady.Type> = Effect.gen(function*() {
      const [database, vectorCheck, redisCheck] = yield* Effect.all(
        [
          timed(sql`SELECT 1`),
          timed(vectors.check),
          Option.match(redis, { onNone: () => Effect.succeed(undefined), onSome: (r) => timed(r.ping()) })
        ],
        { concurrency: "unbounded" }
      )
      const vector: VectorCheck = { ...vectorCheck, path: vectors.path }
      const checks = { database, vector, ...(redisCheck === undefined ? {} : { redis: redisCheck }) }
      const status = database.status === "error" || (yield* draining)
        ? "unavailable"
        : vector.status === "error" || redisCheck?.status === "error"
        ? "degraded"
        : "ok"
      const body: ReadinessDocument = { status, checks }
      if (status !== "ok") return yield* Effect.fail<typeof NotReady.Type>(body)
      return body
    })
    return { run } as const
  }),
  dependencies: [VectorSupport.Default]
}) {}
