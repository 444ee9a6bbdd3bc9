import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"

/**
 * Which vector path the database has (migration 0007 chose it once): `pgvector` when
 * `vector_chunks.embedding` is a pgvector `vector` (HNSW cosine indexes, `<=>`), `portable` when it
 * is `real[]` (cosine computed in SQL over the store's chunks). Read once when the layer is built,
 * after the migrations, and logged; `/health/ready` shows it (`checks.vector.path`).
 */
export type VectorPath = "pgvector" | "portable"

/** What `vector_chunks.embedding` is now: a path, or why it is neither. */
type ReadPath = { readonly path: VectorPath } | { readonly problem: string }

/** The type of `vector_chunks.embedding` in the first schema of the search_path that has the table. */
const readVectorPath: Effect.Effect<ReadPath, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ type: string }>`
    SELECT format_type(a.atttypid, a.atttypmod) AS type
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = to_regclass('vector_chunks') AND a.attname = 'embedding' AND NOT a.attisdropped`
  const type = rows[0]?.type
  if (type === undefined) {
    return { problem: "vector_chunks.embedding does not exist: migration 0007 has not been applied" }
  }
  if (type === "real[]") return { path: "portable" }
  // `vector`, or schema-qualified when the extension's schema is not first on the search_path
  if (type === "vector" || type.endsWith(".vector")) return { path: "pgvector" }
  return { problem: `vector_chunks.embedding has an unexpected type ${type}` }
})

/** The path of the migrated schema; a schema without one is a defect (the server cannot search). */
export const detectVectorPath = Effect.flatMap(
  readVectorPath,
  (read) => "path" in read ? Effect.succeed(read.path) : Effect.dieMessage(read.problem)
)

export class VectorSupport extends Effect.Service<VectorSupport>()("chatkit/VectorSupport", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const path = yield* detectVectorPath
    // PGlite is one standalone backend: no autovacuum launcher, so no table is ever analyzed for it
    const [launcher] = yield* sql<{ running: boolean }>`
      SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'autovacuum launcher') AS running`
    const analyzeAfterWrites = launcher?.running !== true
    yield* Effect.logInfo("vector search path").pipe(
      Effect.annotateLogs({ vector_path: path, analyze_after_writes: analyzeAfterWrites })
    )
    /**
     * For /health/ready: fails with a reason when the column no longer has the type detected at
     * start (a migration rolled back or re-run under a running server, whose statements are then
     * those of the other path), or cannot be read. One catalog lookup.
     */
    const check: Effect.Effect<void, string | SqlError> = readVectorPath.pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      Effect.flatMap((read) =>
        "problem" in read
          ? Effect.fail(read.problem)
          : read.path === path
          ? Effect.void
          : Effect.fail(`the vector path changed from ${path} to ${read.path} since start: restart the server`)
      )
    )
    /**
     * `true` when no autovacuum runs (PGlite): the vector tables' statistics are then the
     * repository's to refresh, or the planner, guessing a one-row store, never picks the HNSW index.
     */
    return { path, analyzeAfterWrites, check } as const
  })
}) {}
