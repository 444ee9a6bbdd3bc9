import { PgClient } from "@effect/sql-pg"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Effect, Option, Ref, Schema } from "effect"

import { Conflict, ValidationError } from "../../domain/errors.js"
import type { PageRequest } from "../../domain/Page.js"
import { JsonObject } from "../../domain/Thread.js"
import { SearchResult } from "../../domain/VectorStore.js"
import {
  columnsOf,
  countedPageQuery,
  decodedCountedPage,
  findOneRow,
  isUniqueViolation,
  orDieOnBadRow,
  patchColumns,
  singleRow
} from "../../platform/Database.js"
import type { Embedding } from "../../platform/Embeddings.js"
import { VectorSupport } from "../../platform/VectorSupport.js"

/**
 * SQL of the vector stores (migration 0007): stores, documents ingested by generations, their
 * chunks, and the hybrid search, computed in the database in one statement.
 *
 * Lock order, so that no two writers deadlock: a store's row before any of its documents' rows.
 * Every write that changes what a store holds bumps its `version` (the search cache key).
 */

/** The system store of the workflows: created by the migration, never deleted nor renamed. */
export const SYSTEM_STORE_SLUG = "chatkit-workflows"

export const StoreRow = Schema.Struct({
  id: Schema.Int,
  slug: Schema.String,
  title: Schema.String,
  description: Schema.NullOr(Schema.String),
  metadata: JsonObject,
  embedding_model: Schema.String,
  dimension: Schema.Int,
  version: Schema.Int,
  is_protected: Schema.Boolean,
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  deleted_at: Schema.NullOr(Schema.DateFromSelf)
})
export type StoreRow = typeof StoreRow.Type

export const DocumentStatus = Schema.Literal("pending", "ready", "failed")
export type DocumentStatus = typeof DocumentStatus.Type

/**
 * A vector_documents row without its contents. `status` is the state of the latest submission;
 * `live_generation` is what search serves (an older generation stays live while a newer one is
 * pending or after it failed). `metadata` and `chunk_count` are the live generation's.
 */
export const DocumentRow = Schema.Struct({
  id: Schema.Int,
  store_id: Schema.Int,
  doc_id: Schema.String,
  metadata: JsonObject,
  status: DocumentStatus,
  chunk_count: Schema.Int,
  error: Schema.NullOr(Schema.String),
  live_generation: Schema.NullOr(Schema.Int),
  latest_generation: Schema.Int,
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  deleted_at: Schema.NullOr(Schema.DateFromSelf)
})
export type DocumentRow = typeof DocumentRow.Type

/** What an ingestion job reads back: the submission of the document's latest generation. */
export const PendingSubmission = Schema.Struct({
  generation: Schema.Int,
  raw_json: Schema.Unknown,
  metadata: JsonObject
})
export type PendingSubmission = typeof PendingSubmission.Type

export interface NewStore {
  readonly slug: string
  readonly title: string
  readonly description?: string | null | undefined
  readonly metadata?: JsonObject | undefined
  readonly embeddingModel: string
  readonly dimension: number
  readonly isProtected?: boolean | undefined
}

export interface StoreChanges {
  readonly slug?: string | undefined
  readonly title?: string | undefined
  readonly description?: string | null | undefined
  readonly metadata?: JsonObject | undefined
}

export interface NewChunk {
  readonly index: number
  readonly text: string
  readonly metadata?: JsonObject | undefined
  readonly embedding: Embedding | ReadonlyArray<number>
}

export interface CompleteIngestion {
  readonly storeId: number
  readonly docId: string
  /** the generation `submitDocument` handed out for this submission */
  readonly generation: number
  readonly linearizedText: string
  /** the document's metadata once live (the caller's over ingestion's) */
  readonly metadata: JsonObject
  readonly chunks: ReadonlyArray<NewChunk>
}

export const SEARCH_MAX_TOP_K = 50
/** test-chatkit's defaults (`search(..., dense_weight=0.5, sparse_weight=0.5)`). */
export const DEFAULT_DENSE_WEIGHT = 0.5
export const DEFAULT_SPARSE_WEIGHT = 0.5
/** Dense and sparse candidates taken each, per result asked for, before fusing. */
export const CANDIDATES_PER_RESULT = 10

export interface SearchRequest {
  readonly storeId: number
  /** the store's dimension; `embedding` must have this length */
  readonly dimension: number
  /** the query's embedding, unit length */
  readonly embedding: Embedding | ReadonlyArray<number>
  readonly query: string
  /** 1..50 */
  readonly topK: number
  readonly denseWeight?: number | undefined
  readonly sparseWeight?: number | undefined
  /** JSONB containment on the document's metadata */
  readonly metadataFilters?: JsonObject | undefined
}

/** The vectors of a write do not have the store's length. */
export class DimensionMismatch extends Data.TaggedError("DimensionMismatch")<{
  readonly expected: number
  readonly actual: number
}> {
  override get message() {
    return `embedding of dimension ${this.actual} for a store of dimension ${this.expected}`
  }
}

/**
 * A completion or failure for a generation that is no longer the document's latest: a newer
 * submission replaced it, or the document (or its store) was deleted. Nothing was written.
 */
export class IngestionSuperseded extends Data.TaggedError("IngestionSuperseded")<{
  readonly docId: string
  readonly generation: number
}> {}

const STORE_COLUMNS = columnsOf(StoreRow)
const DOCUMENT_COLUMNS = columnsOf(DocumentRow)
const D_COLUMNS = DOCUMENT_COLUMNS.split(", ").map((c) => `d.${c}`).join(", ")

/**
 * A word of the query found in at least this share of the store's live chunks (at most
 * COMMON_WORD_CAP chunks, at least 2) is common and left out of the sparse score, where its idf
 * would be small anyway. Counting stops at the threshold, so a word costs at most COMMON_WORD_CAP
 * index entries.
 */
const COMMON_WORD_SHARE = 0.25
const COMMON_WORD_CAP = 1000
/** test-chatkit's BM25 parameters. */
const BM25_K1 = 1.5
const BM25_B = 0.75

/**
 * Where no autovacuum runs (PGlite), the chunks an ingestion may write before the repository
 * analyzes a table that has never been: below this, an exact scan is what the planner picks anyway.
 */
const ANALYZE_FIRST_CHUNKS = 500

/** Chunks per INSERT: 7 fields of JSON each, ~8 KB a 384-dimension vector. */
const CHUNKS_PER_STATEMENT = 250

const slugTaken = (slug: string) => new Conflict({ detail: `A vector store with slug ${slug} already exists` })

const invalid = (path: string, message: string) => new ValidationError({ detail: message, errors: [{ path, message }] })

const isPlainObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The weights scaled to sum 1, as test-chatkit divides by their sum (both 0: every score 0). */
const normalisedWeights = (dense: number, sparse: number) => {
  const sum = dense + sparse
  return sum > 0 ? { dense: dense / sum, sparse: sparse / sum } : { dense: 0, sparse: 0 }
}

/** A vector as a `real[]` literal; bound as text and cast (`'{...}'::real[]`), one format for both paths. */
const realArray = (vector: ArrayLike<number>) => `{${Array.from(vector, (x) => String(x)).join(",")}}`

const finiteVector = (vector: ArrayLike<number>) => Array.from(vector).every((x) => Number.isFinite(x))

export class VectorStoresRepo extends Effect.Service<VectorStoresRepo>()("chatkit/VectorStoresRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const { analyzeAfterWrites, path } = yield* VectorSupport
    const storeColumns = sql.literal(STORE_COLUMNS)
    const documentColumns = sql.literal(DOCUMENT_COLUMNS)
    const dColumns = sql.literal(D_COLUMNS)
    const json = (value: unknown) => sql`${JSON.stringify(value)}::jsonb`

    // -----------------------------------------------------------------------------------------
    // stores

    const insertStore = singleRow({
      Request: Schema.Struct({
        slug: Schema.String,
        title: Schema.String,
        description: Schema.NullOr(Schema.String),
        metadata: JsonObject,
        embedding_model: Schema.String,
        dimension: Schema.Int,
        is_protected: Schema.Boolean
      }),
      Result: StoreRow,
      execute: (row) =>
        sql`INSERT INTO vector_stores (slug, title, description, metadata, embedding_model, dimension, is_protected)
          VALUES (${row.slug}, ${row.title}, ${row.description}, ${json(row.metadata)}, ${row.embedding_model},
            ${row.dimension}, ${row.is_protected})
          RETURNING ${storeColumns}`
    })

    /** A new store; its model and dimension (the embeddings provider's) are fixed from now on. */
    const createStore = (input: NewStore): Effect.Effect<StoreRow, Conflict | SqlError> =>
      insertStore({
        slug: input.slug,
        title: input.title,
        description: input.description ?? null,
        metadata: input.metadata ?? {},
        embedding_model: input.embeddingModel,
        dimension: input.dimension,
        is_protected: input.isProtected ?? false
      }).pipe(
        Effect.catchIf(isUniqueViolation("vector_stores_slug_live_key"), () => Effect.fail(slugTaken(input.slug))),
        Effect.withSpan("VectorStoresRepo.createStore")
      )

    const findStoreRow = findOneRow({
      Request: Schema.Struct({ id: Schema.NullOr(Schema.Int), slug: Schema.NullOr(Schema.String) }),
      Result: StoreRow,
      execute: ({ id, slug }) =>
        sql`SELECT ${storeColumns} FROM vector_stores
          WHERE deleted_at IS NULL AND ${id === null ? sql`slug = ${slug ?? ""}` : sql`id = ${id}`}`
    })

    /** A live store by id; `None` when missing or deleted. */
    const findStore = (id: number) => findStoreRow({ id, slug: null })
    /** A live store by slug (the API's name for it). */
    const findStoreBySlug = (slug: string) => findStoreRow({ id: null, slug })

    /** A page of the live stores by slug, with their total; one statement. */
    const listStores = (page: PageRequest) =>
      countedPageQuery(sql, {
        columns: storeColumns,
        from: sql`FROM vector_stores WHERE deleted_at IS NULL`,
        orderBy: "slug",
        limit: page.pageSize,
        offset: page.offset
      }).pipe(
        Effect.flatMap(decodedCountedPage(StoreRow, "id")),
        Effect.withSpan("VectorStoresRepo.listStores")
      )

    const updateStoreRow = findOneRow({
      Request: Schema.Struct({
        id: Schema.Int,
        changes: Schema.Struct({
          slug: Schema.optional(Schema.String),
          title: Schema.optional(Schema.String),
          description: Schema.optional(Schema.NullOr(Schema.String)),
          metadata: Schema.optional(JsonObject)
        })
      }),
      Result: Schema.Struct({ renamed_protected: Schema.Boolean, row: Schema.Unknown }),
      execute: ({ changes, id }) =>
        sql`
          WITH target AS (
            SELECT id, is_protected, slug FROM vector_stores WHERE id = ${id} AND deleted_at IS NULL FOR UPDATE
          ),
          changed AS (
            UPDATE vector_stores s SET ${
          patchColumns(sql, {
            slug: changes.slug,
            title: changes.title,
            description: changes.description,
            metadata: changes.metadata === undefined ? undefined : json(changes.metadata),
            version: sql`s.version + 1`,
            updated_at: sql`now()`
          })
        }
            FROM target
            WHERE s.id = target.id
              AND NOT (target.is_protected AND COALESCE(${changes.slug ?? null}::text, target.slug) <> target.slug)
            RETURNING ${sql.literal(STORE_COLUMNS.split(", ").map((c) => `s.${c}`).join(", "))}
          )
          SELECT (target.is_protected AND COALESCE(${
          changes.slug ?? null
        }::text, target.slug) <> target.slug) AS renamed_protected,
            (SELECT to_jsonb(changed) FROM changed) AS row
          FROM target`
    })

    /**
     * Applies `changes` to a live store and bumps its version; `None` when it is not live. A slug
     * already taken, or a new slug for the protected store, is a `Conflict`.
     */
    const updateStore = (
      id: number,
      changes: StoreChanges
    ): Effect.Effect<Option.Option<StoreRow>, Conflict | SqlError> =>
      updateStoreRow({ id, changes }).pipe(
        Effect.catchIf(
          isUniqueViolation("vector_stores_slug_live_key"),
          () => Effect.fail(slugTaken(changes.slug ?? ""))
        ),
        Effect.flatMap(Option.match({
          onNone: () => Effect.succeed(Option.none<StoreRow>()),
          onSome: (result) =>
            result.renamed_protected
              ? Effect.fail(new Conflict({ detail: `The system store ${SYSTEM_STORE_SLUG} cannot be renamed` }))
              : decodeStoreJson(result.row)
        })),
        Effect.withSpan("VectorStoresRepo.updateStore")
      )

    // `to_jsonb` of a row: timestamps come back as ISO text
    const StoreJson = Schema.Struct({
      ...StoreRow.fields,
      created_at: Schema.Date,
      updated_at: Schema.Date,
      deleted_at: Schema.NullOr(Schema.Date)
    })
    const decodeStoreJson = (row: unknown) =>
      Schema.decodeUnknown(Schema.NullOr(StoreJson))(row).pipe(
        Effect.map(Option.fromNullable),
        Effect.orDie
      )

    const deleteStoreRow = findOneRow({
      Request: Schema.Int,
      Result: Schema.Struct({ is_protected: Schema.Boolean, row: Schema.NullOr(Schema.Unknown) }),
      execute: (id) =>
        sql`
          WITH target AS (
            SELECT id, is_protected FROM vector_stores WHERE id = ${id} AND deleted_at IS NULL FOR UPDATE
          ),
          gone AS (
            UPDATE vector_stores s SET deleted_at = now(), updated_at = now(), version = s.version + 1
            FROM target WHERE s.id = target.id AND NOT target.is_protected
            RETURNING s.*
          ),
          documents AS (
            UPDATE vector_documents d SET deleted_at = now(), updated_at = now(),
              pending_raw_json = NULL, pending_metadata = NULL
            WHERE d.store_id IN (SELECT id FROM gone) AND d.deleted_at IS NULL
            RETURNING d.id
          ),
          chunks AS (
            DELETE FROM vector_chunks WHERE document_id IN (SELECT id FROM documents) RETURNING 1
          )
          SELECT target.is_protected, (SELECT to_jsonb(gone) FROM gone) AS row
          FROM target`
    })

    /**
     * Soft-deletes a live store with its documents, whose chunks go (nothing reads them again);
     * `None` when it is not live, `Conflict` for the protected store. One statement.
     */
    const deleteStore = (id: number): Effect.Effect<Option.Option<StoreRow>, Conflict | SqlError> =>
      deleteStoreRow(id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.succeed(Option.none<StoreRow>()),
          onSome: (result) =>
            result.is_protected
              ? Effect.fail(new Conflict({ detail: `The system store ${SYSTEM_STORE_SLUG} cannot be deleted` }))
              : decodeStoreJson(result.row)
        })),
        Effect.withSpan("VectorStoresRepo.deleteStore")
      )

    // -----------------------------------------------------------------------------------------
    // documents

    const submitRow = findOneRow({
      Request: Schema.Struct({ storeId: Schema.Int, docId: Schema.String, raw: Schema.String, metadata: JsonObject }),
      Result: DocumentRow,
      execute: ({ docId, metadata, raw, storeId }) =>
        sql`
          WITH s AS (
            UPDATE vector_stores SET version = version + 1 WHERE id = ${storeId} AND deleted_at IS NULL RETURNING id
          )
          INSERT INTO vector_documents (store_id, doc_id, pending_raw_json, pending_metadata)
          SELECT s.id, ${docId}, ${raw}::jsonb, ${json(metadata)} FROM s
          ON CONFLICT (store_id, doc_id) WHERE deleted_at IS NULL DO UPDATE SET
            latest_generation = vector_documents.latest_generation + 1,
            status = 'pending', error = NULL,
            pending_raw_json = EXCLUDED.pending_raw_json, pending_metadata = EXCLUDED.pending_metadata,
            updated_at = now()
          RETURNING ${documentColumns}`
    })

    /**
     * Records a submission of `docId` (new, or a re-ingestion) as the document's next generation,
     * status `pending`: search keeps serving the live generation, if any, until `completeIngestion`
     * of this one. The row (its `latest_generation` is the generation to ingest); `None` when the
     * store is not live. One statement.
     */
    const submitDocument = (
      input: {
        readonly storeId: number
        readonly docId: string
        readonly document: unknown
        readonly metadata?: JsonObject | undefined
      }
    ) =>
      submitRow({
        storeId: input.storeId,
        docId: input.docId,
        raw: JSON.stringify(input.document),
        metadata: input.metadata ?? {}
      }).pipe(Effect.withSpan("VectorStoresRepo.submitDocument"))

    const pendingRow = findOneRow({
      Request: Schema.Struct({ storeId: Schema.Int, docId: Schema.String }),
      Result: PendingSubmission,
      execute: ({ docId, storeId }) =>
        sql`SELECT latest_generation AS generation, pending_raw_json AS raw_json, pending_metadata AS metadata
          FROM vector_documents
          WHERE store_id = ${storeId} AND doc_id = ${docId} AND deleted_at IS NULL AND status = 'pending'
            AND pending_raw_json IS NOT NULL`
    })

    /** The submission waiting to be ingested (what a job works on); `None` when there is none. */
    const pendingSubmission = (storeId: number, docId: string) => pendingRow({ storeId, docId })

    const lockForCompletion = findOneRow({
      Request: Schema.Struct({ storeId: Schema.Int, docId: Schema.String }),
      Result: Schema.Struct({ id: Schema.Int, latest_generation: Schema.Int, dimension: Schema.Int }),
      execute: ({ docId, storeId }) =>
        sql`
          WITH s AS (
            SELECT id, dimension FROM vector_stores WHERE id = ${storeId} AND deleted_at IS NULL FOR UPDATE
          )
          SELECT d.id, d.latest_generation, s.dimension
          FROM s JOIN vector_documents d ON d.store_id = s.id
          WHERE d.doc_id = ${docId} AND d.deleted_at IS NULL
          FOR UPDATE OF d`
    })

    const goLive = singleRow({
      Request: Schema.Struct({
        id: Schema.Int,
        storeId: Schema.Int,
        generation: Schema.Int,
        chunkCount: Schema.Int,
        linearizedText: Schema.String,
        metadata: JsonObject
      }),
      Result: DocumentRow,
      execute: ({ chunkCount, generation, id, linearizedText, metadata, storeId }) =>
        sql`
          WITH live AS (
            UPDATE vector_documents SET live_generation = ${generation}, status = 'ready', error = NULL,
              chunk_count = ${chunkCount}, raw_json = COALESCE(pending_raw_json, raw_json),
              linearized_text = ${linearizedText}, metadata = ${json(metadata)},
              pending_raw_json = NULL, pending_metadata = NULL, updated_at = now()
            WHERE id = ${id}
            RETURNING ${documentColumns}
          ),
          old AS (
            DELETE FROM vector_chunks WHERE document_id = ${id} AND generation <> ${generation} RETURNING 1
          ),
          -- the statement's snapshot: the document as it was, its live generation's chunks replaced
          before AS (SELECT CASE WHEN live_generation IS NULL THEN 0 ELSE chunk_count END AS chunks
            FROM vector_documents WHERE id = ${id}),
          bump AS (
            UPDATE vector_stores SET version = version + 1,
              live_chunks = live_chunks + ${chunkCount} - COALESCE((SELECT chunks FROM before), 0)
            WHERE id = ${storeId} RETURNING 1
          )
          SELECT * FROM live`
    })

    // Statistics where no autovacuum keeps them (analyzeAfterWrites): chunks written since the last
    // ANALYZE, and the rows it counted (pg_class.reltuples; -1, never analyzed, counts as 0).
    const written = yield* Ref.make<{ readonly since: number; readonly analyzedRows: number | undefined }>({
      since: 0,
      analyzedRows: undefined
    })
    const analyzedRows = Effect.map(
      sql<{ rows: number }>`SELECT greatest(reltuples, 0)::float8 AS rows FROM pg_class
        WHERE oid = to_regclass('vector_chunks')`,
      (rows) => rows[0]?.rows ?? 0
    )

    /**
     * After `count` more chunks: ANALYZE both tables once the chunks written since the last one
     * outnumber the rows it counted (plus ANALYZE_FIRST_CHUNKS), i.e. the table has about doubled,
     * so its growth costs a few ANALYZEs (each samples at most 30,000 rows), not one per write.
     * In the ingestion's transaction: its own chunks count, and the next search plans with them.
     */
    const analyzeIfGrown = (count: number) =>
      analyzeAfterWrites
        ? Effect.gen(function*() {
          const state = yield* Ref.get(written)
          const rows = state.analyzedRows ?? (yield* analyzedRows)
          const since = state.since + count
          if (since < ANALYZE_FIRST_CHUNKS + rows) return yield* Ref.set(written, { since, analyzedRows: rows })
          yield* sql`ANALYZE vector_chunks, vector_documents`.pipe(
            Effect.withSpan("VectorStoresRepo.analyze", { attributes: { chunks_since: since, rows_before: rows } })
          )
          yield* Ref.set(written, { since: 0, analyzedRows: yield* analyzedRows })
        })
        : Effect.void

    const insertChunks = (
      documentId: number,
      generation: number,
      dimension: number,
      chunks: ReadonlyArray<NewChunk>
    ) =>
      sql`
        INSERT INTO vector_chunks (document_id, generation, chunk_index, text, metadata, dimension, embedding)
        SELECT ${documentId}, ${generation}, x.chunk_index, x.text, COALESCE(x.metadata, '{}'::jsonb), ${dimension},
          x.embedding
        FROM jsonb_to_recordset(${
        JSON.stringify(chunks.map((c) => ({
          chunk_index: c.index,
          text: c.text,
          metadata: c.metadata ?? {},
          embedding: Array.from(c.embedding)
        })))
      }::jsonb) AS x(chunk_index int, text text, metadata jsonb, embedding real[])`

    /**
     * Writes the chunks of `generation` and makes it the live one, `ready` with its chunk count,
     * metadata and text, then deletes the chunks of every other generation: one transaction, so
     * a reader sees the old document or the new one, never a mix. `IngestionSuperseded` (nothing
     * written) when a newer submission took over or the document is gone; `DimensionMismatch`
     * when a vector has not the store's length.
     */
    const completeIngestion = (
      input: CompleteIngestion
    ): Effect.Effect<DocumentRow, IngestionSuperseded | DimensionMismatch | ValidationError | SqlError> =>
      sql.withTransaction(
        Effect.gen(function*() {
          const locked = yield* lockForCompletion({ storeId: input.storeId, docId: input.docId })
          if (Option.isNone(locked) || locked.value.latest_generation !== input.generation) {
            return yield* new IngestionSuperseded({ docId: input.docId, generation: input.generation })
          }
          const { dimension, id } = locked.value
          for (const chunk of input.chunks) {
            if (chunk.embedding.length !== dimension) {
              return yield* new DimensionMismatch({ expected: dimension, actual: chunk.embedding.length })
            }
            if (!finiteVector(chunk.embedding)) {
              return yield* invalid(`chunks[${chunk.index}].embedding`, "an embedding holds a value that is not finite")
            }
          }
          for (let from = 0; from < input.chunks.length; from += CHUNKS_PER_STATEMENT) {
            yield* insertChunks(id, input.generation, dimension, input.chunks.slice(from, from + CHUNKS_PER_STATEMENT))
          }
          yield* analyzeIfGrown(input.chunks.length)
          return yield* goLive({
            id,
            storeId: input.storeId,
            generation: input.generation,
            chunkCount: input.chunks.length,
            linearizedText: input.linearizedText,
            metadata: input.metadata
          })
        })
      ).pipe(
        Effect.withSpan("VectorStoresRepo.completeIngestion", {
          attributes: { chunks: input.chunks.length, generation: input.generation }
        })
      )

    const failRow = findOneRow({
      Request: Schema.Struct({
        storeId: Schema.Int,
        docId: Schema.String,
        generation: Schema.Int,
        error: Schema.String
      }),
      Result: DocumentRow,
      execute: ({ docId, error, generation, storeId }) =>
        sql`
          WITH s AS (SELECT id FROM vector_stores WHERE id = ${storeId} AND deleted_at IS NULL FOR UPDATE),
          failed AS (
            UPDATE vector_documents d SET status = 'failed', error = ${error},
              pending_raw_json = NULL, pending_metadata = NULL, updated_at = now()
            FROM s
            WHERE d.store_id = s.id AND d.doc_id = ${docId} AND d.deleted_at IS NULL
              AND d.latest_generation = ${generation}
            RETURNING ${dColumns}
          ),
          bump AS (UPDATE vector_stores SET version = version + 1 WHERE id IN (SELECT store_id FROM failed) RETURNING 1)
          SELECT * FROM failed`
    })

    /**
     * Marks the submission of `generation` failed with a readable `error`; a live older
     * generation stays searchable. `IngestionSuperseded` when it is no longer the latest.
     */
    const failIngestion = (
      input: { readonly storeId: number; readonly docId: string; readonly generation: number; readonly error: string }
    ): Effect.Effect<DocumentRow, IngestionSuperseded | SqlError> =>
      failRow(input).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new IngestionSuperseded({ docId: input.docId, generation: input.generation })),
          onSome: Effect.succeed
        })),
        Effect.withSpan("VectorStoresRepo.failIngestion")
      )

    const findDocumentRow = findOneRow({
      Request: Schema.Struct({ storeId: Schema.Int, docId: Schema.String }),
      Result: DocumentRow,
      execute: ({ docId, storeId }) =>
        sql`SELECT ${documentColumns} FROM vector_documents
          WHERE store_id = ${storeId} AND doc_id = ${docId} AND deleted_at IS NULL`
    })

    /** A live document of the store; `None` when missing or deleted. */
    const findDocument = (storeId: number, docId: string) => findDocumentRow({ storeId, docId })

    /** A page of the store's live documents by doc_id, with their total; one statement. */
    const listDocuments = (storeId: number, page: PageRequest) =>
      countedPageQuery(sql, {
        columns: documentColumns,
        from: sql`FROM vector_documents WHERE store_id = ${storeId} AND deleted_at IS NULL`,
        orderBy: "doc_id",
        limit: page.pageSize,
        offset: page.offset
      }).pipe(
        Effect.flatMap(decodedCountedPage(DocumentRow, "id")),
        Effect.withSpan("VectorStoresRepo.listDocuments")
      )

    const deleteDocumentRow = findOneRow({
      Request: Schema.Struct({ storeId: Schema.Int, docId: Schema.String }),
      Result: DocumentRow,
      execute: ({ docId, storeId }) =>
        sql`
          WITH s AS (SELECT id FROM vector_stores WHERE id = ${storeId} AND deleted_at IS NULL FOR UPDATE),
          gone AS (
            UPDATE vector_documents d SET deleted_at = now(), updated_at = now(),
              pending_raw_json = NULL, pending_metadata = NULL
            FROM s
            WHERE d.store_id = s.id AND d.doc_id = ${docId} AND d.deleted_at IS NULL
            RETURNING ${dColumns}
          ),
          chunks AS (DELETE FROM vector_chunks WHERE document_id IN (SELECT id FROM gone) RETURNING 1),
          bump AS (
            UPDATE vector_stores SET version = version + 1,
              live_chunks = live_chunks
                - (SELECT COALESCE(sum(chunk_count) FILTER (WHERE live_generation IS NOT NULL), 0) FROM gone)
            WHERE id IN (SELECT store_id FROM gone) RETURNING 1
          )
          SELECT * FROM gone`
    })

    /** Soft-deletes a live document and deletes its chunks; `None` when it is not live. One statement. */
    const deleteDocument = (storeId: number, docId: string) =>
      deleteDocumentRow({ storeId, docId }).pipe(Effect.withSpan("VectorStoresRepo.deleteDocument"))

    // -----------------------------------------------------------------------------------------
    // search

    const checkSearch = (
      request: SearchRequest
    ): Effect.Effect<{ dense: number; sparse: number }, ValidationError | DimensionMismatch> => {
      const dense = request.denseWeight ?? DEFAULT_DENSE_WEIGHT
      const sparse = request.sparseWeight ?? DEFAULT_SPARSE_WEIGHT
      if (!Number.isInteger(request.topK) || request.topK < 1 || request.topK > SEARCH_MAX_TOP_K) {
        return Effect.fail(invalid("top_k", `top_k must be an integer from 1 to ${SEARCH_MAX_TOP_K}`))
      }
      if (!Number.isFinite(dense) || dense < 0) {
        return Effect.fail(invalid("dense_weight", "dense_weight must be a finite number >= 0"))
      }
      if (!Number.isFinite(sparse) || sparse < 0) {
        return Effect.fail(invalid("sparse_weight", "sparse_weight must be a finite number >= 0"))
      }
      if (request.metadataFilters !== undefined && !isPlainObject(request.metadataFilters)) {
        return Effect.fail(invalid("metadata_filters", "metadata_filters must be a JSON object"))
      }
      if (!Number.isInteger(request.dimension) || request.dimension < 2 || request.dimension > 2000) {
        return Effect.die(new RangeError(`search: invalid dimension ${request.dimension}`))
      }
      if (request.embedding.length !== request.dimension) {
        return Effect.fail(new DimensionMismatch({ expected: request.dimension, actual: request.embedding.length }))
      }
      if (!finiteVector(request.embedding)) {
        return Effect.fail(invalid("embedding", "the query embedding holds a value that is not finite"))
      }
      return Effect.succeed(normalisedWeights(dense, sparse))
    }

    /**
     * The statement of a search. Candidates: the `topK * 10` chunks nearest the query (pgvector:
     * `<=>` over the dimension's HNSW index; portable: the dot product of unit vectors, computed
     * over the store's chunks in the database) and the `topK * 10` chunks holding the query's
     * distinctive words with the highest summed idf (from the GIN-backed df counts, so the BM25
     * below runs on the candidates only). Each candidate gets both scores, fused as test-chatkit
     * does: `dense_weight * (1 + cos) / 2 + sparse_weight * bm25 / max bm25`, weights summing to 1.
     *
     * BM25 as test-chatkit's (k1 1.5, b 0.75, idf `ln((N - df + 0.5) / (df + 0.5) + 1)`) over the
     * `simple` tsvector: N is the store's live chunks (`vector_stores.live_chunks`, migration 0009),
     * df is counted with the GIN index up to the common-word threshold (a common word is left out:
     * it would cost a count of most of the store and weigh almost nothing), a chunk's length is its
     * number of distinct words and the average length is the candidates'. `ts_rank_cd` alone has
     * no idf: "is" three times outranked "event horizon" (2 questions of the 32 of the tests).
     * Only the live generation of live documents of a live store.
     */
    const searchStatement = (request: SearchRequest, weights: { dense: number; sparse: number }) => {
      const dim = sql.literal(String(request.dimension))
      const candidates = request.topK * CANDIDATES_PER_RESULT
      const vector = realArray(request.embedding)
      const filter = request.metadataFilters === undefined || Object.keys(request.metadataFilters).length === 0
        ? sql``
        : sql`AND d.metadata @> ${json(request.metadataFilters)}`
      // readers see the live generation of the store's live documents; the store is checked once
      const liveChunks = sql`vector_chunks c
        JOIN vector_documents d ON d.id = c.document_id AND d.live_generation = c.generation
        WHERE d.store_id = ${request.storeId} AND d.deleted_at IS NULL ${filter} AND c.dimension = ${dim}
          AND EXISTS (SELECT 1 FROM store)`
      const pgvector = path === "pgvector"
      const query = sql`${vector}::real[]`
      const words = sql`(SELECT words FROM sparse_query)`
      const lexemes = sql`(SELECT lexemes FROM sparse_query)`
      const dot = sql`(SELECT sum(a::float8 * b) FROM unnest(c.embedding, ${query}) AS t(a, b))`
      // pgvector: `<=>` is the cosine distance, 1 - cos; ordered by it, the HNSW index of `dim` serves
      const denseOrder = pgvector ? sql`c.embedding::vector(${dim}) <=> ${query}::vector(${dim})` : sql`${dot} DESC`
      const cosine = pgvector ? sql`1 - (c.embedding::vector(${dim}) <=> ${query}::vector(${dim}))` : dot
      const tf = sql`COALESCE(array_length(u.positions, 1), 1)::float8`
      const k1 = sql.literal(`${BM25_K1}::float8`)
      const k1plus1 = sql.literal(`${BM25_K1 + 1}::float8`)
      const b = sql.literal(`${BM25_B}::float8`)
      // Each candidate list is one scan under a one-time filter: joined with another relation, the
      // dense scan would lose the index order.
      return sql`
        WITH store AS MATERIALIZED (
          SELECT 1 FROM vector_stores
          WHERE id = ${request.storeId} AND deleted_at IS NULL AND dimension = ${request.dimension}
        ),
        stats AS MATERIALIZED (
          SELECT n, greatest(2, least(${COMMON_WORD_CAP}, ceil(${COMMON_WORD_SHARE}::float8 * n)))::int AS common
          FROM (
            SELECT COALESCE((
              SELECT live_chunks FROM vector_stores WHERE id = ${request.storeId} AND deleted_at IS NULL
            ), 0)::float8 AS n
          ) x
        ),
        terms AS MATERIALIZED (
          SELECT t.lexeme, t.quoted, m.df, m.ids
          FROM (
            SELECT w.lexeme,
              chr(39) || replace(replace(w.lexeme, chr(92), chr(92) || chr(92)), chr(39), chr(39) || chr(39))
                || chr(39) AS quoted
            FROM unnest(to_tsvector('simple', ${request.query})) AS w
          ) t
          -- the chunks counted are kept: a word below the threshold was counted whole, so the
          -- chunks of the distinctive words are the sparse candidates, read once
          CROSS JOIN LATERAL (
            SELECT count(*) AS df, array_agg(x.id) AS ids FROM (
              SELECT c.id FROM ${liveChunks} AND c.tsv @@ t.quoted::tsquery LIMIT (SELECT common FROM stats)
            ) x
          ) m
        ),
        weighted AS MATERIALIZED (
          SELECT t.lexeme, t.quoted, t.ids, ln((s.n - t.df + 0.5) / (t.df + 0.5) + 1) AS idf
          FROM terms t CROSS JOIN stats s
          WHERE t.df > 0 AND t.df < s.common
        ),
        sparse_query AS MATERIALIZED (
          SELECT COALESCE((SELECT string_agg(quoted, ' | ') FROM weighted), '')::tsquery AS words,
            COALESCE((SELECT array_agg(lexeme) FROM weighted), '{}') AS lexemes
        ),
        candidates AS (
          (SELECT c.id FROM ${liveChunks} ORDER BY ${denseOrder} LIMIT ${candidates})
          UNION
          -- ranked by the idf of the distinctive words each holds, from the counted ids alone (no
          -- row read): ts_rank_cd over every match read and decompressed each tsvector (100 ms for
          -- 2,500 matches at 100k chunks on PGlite) and knew no idf
          (SELECT m.id FROM weighted w CROSS JOIN LATERAL unnest(w.ids) AS m(id)
            GROUP BY m.id ORDER BY sum(w.idf) DESC, m.id LIMIT ${candidates})
        ),
        scored AS MATERIALIZED (
          SELECT d.doc_id, c.chunk_index, c.text, d.metadata, c.metadata AS chunk_metadata,
            CASE WHEN c.tsv @@ ${words} THEN c.tsv END AS tsv,
            ${cosine}::float8 AS dense_score,
            length(c.tsv)::float8 AS length
          FROM candidates k
          JOIN vector_chunks c ON c.id = k.id
          JOIN vector_documents d ON d.id = c.document_id
        ),
        ranked AS MATERIALIZED (
          SELECT s.*, (
              SELECT COALESCE(sum(
                w.idf * ${tf} * ${k1plus1}
                  / (${tf} + ${k1} * (1 - ${b} + ${b} * s.length / greatest(s.average, 1)))
              ), 0)
              -- only the query's lexemes of the chunk: marked (weight A) and kept by ts_filter
              FROM weighted w
              JOIN unnest(ts_filter(setweight(s.tsv, 'A', ${lexemes}), '{a}')) u ON u.lexeme = w.lexeme
            )::float8 AS sparse_score -- 0 without a match (tsv NULL)
          FROM (SELECT scored.*, avg(length) OVER () AS average FROM scored) s
        )
        SELECT doc_id, chunk_index, text, metadata, chunk_metadata, dense_score, sparse_score,
          ${weights.dense}::float8 * (1 + dense_score) / 2
            + ${weights.sparse}::float8 * COALESCE(sparse_score / NULLIF(max(sparse_score) OVER (), 0), 0) AS score
        FROM ranked
        ORDER BY score DESC, doc_id, chunk_index
        LIMIT ${request.topK}`
    }

    /**
     * pgvector: lets the HNSW scan go on past `ef_search` rows until enough pass the filters
     * (other stores', other generations', metadata), for this transaction only.
     */
    const withHnswSettings = <A, E, R>(request: SearchRequest, effect: Effect.Effect<A, E, R>) =>
      path === "pgvector"
        ? sql.withTransaction(
          Effect.zipRight(
            sql`SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
              set_config('hnsw.ef_search', ${String(Math.max(40, request.topK * CANDIDATES_PER_RESULT))}, true)`,
            effect
          )
        )
        : effect

    const decodeHits = Schema.decodeUnknown(Schema.Array(SearchResult))

    /**
     * The `topK` best chunks of the store for `query` (its text and its embedding), best first,
     * ties by doc_id and chunk index; hybrid dense + sparse in one statement (see
     * `searchStatement`). Never loads a store's chunks into the process. Empty when the store is
     * not live or has another dimension.
     */
    const search = (
      request: SearchRequest
    ): Effect.Effect<ReadonlyArray<SearchResult>, ValidationError | DimensionMismatch | SqlError> =>
      Effect.flatMap(checkSearch(request), (weights) =>
        withHnswSettings(
          request,
          Effect.flatMap(searchStatement(request, weights), (rows) => orDieOnBadRow(decodeHits(rows)))
        )).pipe(
          Effect.withSpan("VectorStoresRepo.search", {
            attributes: { top_k: request.topK, vector_path: path, dimension: request.dimension }
          })
        )

    /**
     * `EXPLAIN` of the search statement, as text lines, under the same settings (tests, diagnosis);
     * `analyze` runs it (`EXPLAIN (ANALYZE, BUFFERS)`) for its timings.
     */
    const explainSearch = (request: SearchRequest, options: { readonly analyze?: boolean } = {}) =>
      Effect.flatMap(checkSearch(request), (weights) =>
        withHnswSettings(
          request,
          Effect.map(
            sql<{ "QUERY PLAN": string }>`EXPLAIN ${
              sql.literal(options.analyze === true ? "(ANALYZE, BUFFERS)" : "")
            } ${searchStatement(request, weights)}`,
            (rows) => rows.map((row) => row["QUERY PLAN"])
          )
        ))

    return {
      path,
      createStore,
      findStore,
      findStoreBySlug,
      listStores,
      updateStore,
      deleteStore,
      submitDocument,
      pendingSubmission,
      completeIngestion,
      failIngestion,
      findDocument,
      listDocuments,
      deleteDocument,
      search,
      explainSearch
    } as const
  }),
  dependencies: [VectorSupport.Default]
}) {}
