import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"

import { ReadinessChecks } from "../src/features/health/Readiness.js"
import { testConfig } from "../src/platform/Config.js"
import { layerEmbedded } from "../src/platform/Database.js"
import { migrateUp } from "../src/platform/Migrations.js"
import { OptionalRedis } from "../src/platform/Redis.js"
import type { VectorPath } from "../src/platform/VectorSupport.js"
import { TestApp } from "./support/app.js"
import { LiveClock, testDatabaseLayer, testDatabaseUrl } from "./support/database.js"
import { raw } from "./support/session.js"

/**
 * /health/ready names the vector search path in use (issue 12): `pgvector` on PGlite, `portable` on
 * TEST_DATABASE_URL's PostgreSQL (Debian's, without the extension), where an unreachable server
 * fails the suite (its layer does not build) rather than skipping it.
 */

const suite = (
  name: string,
  database: Layer.Layer<SqlClient.SqlClient, unknown>,
  expected: Effect.Effect<VectorPath, unknown, SqlClient.SqlClient>
) => {
  const Checks = ReadinessChecks.Default.pipe(
    Layer.provideMerge(Layer.effectDiscard(migrateUp()).pipe(Layer.provideMerge(database))),
    Layer.provide(Layer.succeed(OptionalRedis, Option.none()))
  )
  layer(Checks, { timeout: 120_000, excludeTestServices: true })(name, (it) => {
    it.effect("the vector check names the path of the migrated schema", () =>
      Effect.gen(function*() {
        const ready = yield* (yield* ReadinessChecks).run
        expect(ready.status).toBe("ok")
        expect(ready.checks.database.status).toBe("ok")
        expect(ready.checks.vector).toMatchObject({ status: "ok", path: yield* expected })
        expect(ready.checks.vector.latency_ms).toBeGreaterThanOrEqual(0)
        expect(ready.checks.redis).toBeUndefined()
      }))

    it.effect("a schema that no longer has the path detected at start is degraded (503), and recovers", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const checks = yield* ReadinessChecks
        const path = yield* expected
        yield* sql`ALTER TABLE vector_chunks RENAME COLUMN embedding TO embedding_moved`
        const failed = yield* Effect.flip(checks.run).pipe(
          Effect.ensuring(Effect.orDie(sql`ALTER TABLE vector_chunks RENAME COLUMN embedding_moved TO embedding`))
        )
        expect(failed.status).toBe("degraded")
        expect(failed.checks.database?.status).toBe("ok")
        expect(failed.checks.vector).toMatchObject({
          status: "error",
          path,
          error: "vector_chunks.embedding does not exist: migration 0007 has not been applied"
        })
        expect((yield* checks.run).checks.vector).toMatchObject({ status: "ok", path })
      }))
  })
}

const embedded = layerEmbedded("memory://").pipe(Layer.provide(testConfig()), Layer.provide(LiveClock))
suite("readiness on PGlite", embedded, Effect.succeed("pgvector"))

/** The path migration 0007 takes on a database: pgvector when the extension is available. */
const pathOfDatabase = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql`SELECT 1 FROM pg_available_extensions WHERE name = 'vector'`,
    (rows): VectorPath => rows.length > 0 ? "pgvector" : "portable"
  ))

describe.runIf(Option.isSome(testDatabaseUrl))("on TEST_DATABASE_URL", () => {
  suite("readiness on PostgreSQL", testDatabaseLayer("health_vector"), pathOfDatabase)
})

layer(TestApp("health-vector"), { timeout: 120_000 })("GET /health/ready", (it) => {
  it.effect("answers 200 with the vector check, naming its path, beside the database's", () =>
    Effect.gen(function*() {
      const response = yield* raw("GET", "/health/ready")
      expect(response.status).toBe(200)
      expect(response.body).toMatchObject({
        status: "ok",
        checks: { database: { status: "ok" }, vector: { status: "ok", path: yield* pathOfDatabase } }
      })
    }))
})
