import { Effect, Metric } from "effect"

import { dbQueriesTotal } from "../../src/platform/Metrics.js"

/**
 * Runs `effect` (typically one request through the client) and returns its result with the number
 * of SQL statements the server sent meanwhile. The server runs in this process, so the
 * `db_queries_total` counter sees every statement; run requests one at a time when counting.
 */
export const countQueries = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const before = yield* Metric.value(dbQueriesTotal)
    const result = yield* effect
    const after = yield* Metric.value(dbQueriesTotal)
    return { result, queries: after.count - before.count }
  })
