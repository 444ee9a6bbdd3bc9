import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"

import { testConfig } from "../src/platform/Config.js"
import { layerEmbedded } from "../src/platform/Database.js"
import { LiveClock } from "./support/database.js"

/**
 * The embedded database (PGlite) runs in a thread of its own: its statements, synchronous
 * WebAssembly, never hold up the server's event loop; it writes its data directory out when the
 * server stops; and a data directory it cannot open fails the start with the reason.
 */

const embedded = (dataDir: string) => layerEmbedded(dataDir).pipe(Layer.provide(testConfig()), Layer.provide(LiveClock))

/** Runs `use` with a SqlClient on the embedded database in `dataDir`, stopped after. */
const withEmbedded = <A, E>(dataDir: string, use: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) =>
  Effect.flatMap(SqlClient.SqlClient, use).pipe(Effect.provide(embedded(dataDir)))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "chatkit-embedded-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("the embedded database", () => {
  it.live(
    "runs a long statement while the server's timers keep firing",
    () =>
      withEmbedded("memory://", (sql) =>
        Effect.gen(function*() {
          let ticks = 0
          const timer = setInterval(() => ticks++, 10)
          const started = Date.now()
          const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM generate_series(1, 3000000)`.pipe(
            Effect.ensuring(Effect.sync(() => clearInterval(timer)))
          )
          const elapsed = Date.now() - started
          expect(row?.n).toBe(3_000_000)
          // on the server's thread the statement would hold the timer for all of it (0 or 1 tick)
          expect(elapsed).toBeGreaterThan(100)
          expect(ticks).toBeGreaterThanOrEqual(Math.floor(elapsed / 10 / 2))
        })),
    60_000
  )

  it.live("keeps what was written in its data directory across a stop and a start", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* withEmbedded(dir, (sql) =>
        sql`CREATE TABLE kept (note text)`.pipe(Effect.zipRight(sql`INSERT INTO kept VALUES ('still here')`)))
      const rows = yield* withEmbedded(dir, (sql) =>
        sql<{ note: string }>`SELECT note FROM kept`)
      expect(rows).toEqual([{ note: "still here" }])
    }).pipe(Effect.scoped), 60_000)

  it.live("fails to start, with the reason, on a data directory it cannot open", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      mkdirSync(join(dir, "pglite"))
      writeFileSync(join(dir, "pglite", "PG_VERSION"), "not a version\n")
      const started = Date.now()
      const error = yield* Effect.flip(withEmbedded(dir, (sql) => sql`SELECT 1`))
      expect(error._tag).toBe("SqlError")
      expect(error.message).toMatch(/^The embedded database did not start: \S/)
      // its thread, already gone, is not waited for until the stop timeout (10 s)
      expect(Date.now() - started).toBeLessThan(5_000)
    }).pipe(Effect.scoped), 60_000)
})
