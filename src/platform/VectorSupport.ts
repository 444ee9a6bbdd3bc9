import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Which vector path the database has (migration 0007 chose it once): `pgvector` when
 * `vector_chunks.embedding` is a pgvector `vector` (HNSW cosine indexes, `<=>`), `portable` when it
 * is `real[]` (cosine computed in SQL over the store's chunks). Read once when the layer is built,
 * after the migrations, and logged; `/health/ready` can show `path`.
 */
export type VectorPath = "pgvector" | "portable"

/** The type of `vector_chunks.embedding` in the first schema of the search_path that has the table. */
export const detectVectorPath = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ type: string }>`
    SELECT format_type(a.atttypid, a.atttypmod) AS type
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = to_regclass('vector_chunks') AND a.attname = 'embedding' AND NOT a.attisdropped`
  const type = rows[0]?.type
  if (type === undefined) {
    return yield* Effect.dieMessage("vector_chunks.embedding does not exist: migration 0007 has not been applied")
  }
  if (type === "real[]") return "portable" as VectorPath
  // `vector`, or schema-qualified when the extension's schema is not first on the search_path
  if (type === "vector" || type.endsWith(".vector")) return "pgvector" as VectorPath
  return yield* Effect.dieMessage(`vector_chunks.embedding has an unexpected type ${type}`)
})

export class VectorSupport extends Effect.Service<VectorSupport>()("chatkit/VectorSupport", {
  effect: Effect.gen(function*() {
    const path = yield* detectVectorPath
    yield* Effect.logInfo("vector search path").pipe(Effect.annotateLogs({ vector_path: path }))
    return { path } as const
  })
}) {}
