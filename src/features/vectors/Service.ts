import { createHash } from "node:crypto"

import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"

import { Page } from "../../api/schemas.js"
import {
  type CreateStorePayload,
  type IngestAccepted,
  type IngestPayload,
  type SearchDocumentsPayload,
  type SearchPayload,
  type UpdateStorePayload,
  VECTOR_LIMITS
} from "../../api/VectorStoresApi.js"
import { Conflict, NotFound, ServiceUnavailable, UpstreamUnavailable } from "../../domain/errors.js"
import { type PageRequest, toPage } from "../../domain/Page.js"
import {
  DocumentResults,
  type SearchResult,
  SearchResults,
  VectorDocument,
  VectorStore
} from "../../domain/VectorStore.js"
import { Cache } from "../../platform/Cache.js"
import { AppConfig } from "../../platform/Config.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import { Embeddings, type EmbeddingsError } from "../../platform/Embeddings.js"
import { type JobContext, JobQueue, PermanentJobFailure } from "../../platform/JobQueue.js"
import { AuditLog, changedFields, diffChanges } from "../audit/AuditLog.js"
import type { JsonValue } from "../workflows/Expressions.js"
import { chunk, flatten, ingestionMetadata, linearizedText } from "./Ingestion.js"
import {
  type DimensionMismatch,
  type DocumentRow,
  type IngestionSuperseded,
  SEARCH_MAX_TOP_K,
  type StoreRow,
  VectorStoresRepo
} from "./Repo.js"

/** Search results are cached under this prefix, keyed by store id and version (see `searchKey`). */
export const VECTOR_SEARCH_CACHE_PREFIX = "vectors"

/** The job that ingests a document too large to ingest inline (API.md section 9's job types). */
export const DOCUMENT_INGEST_JOB = "document.ingest"

/** What a document.ingest job is given: the submission to ingest (its content waits in the document's row). */
const IngestJob = Schema.Struct({
  store_id: Schema.Int,
  doc_id: Schema.String,
  generation: Schema.Int,
  /** the administrator who submitted it, the actor of the audit row */
  requested_by: Schema.NullOr(Schema.Int)
})
type IngestJob = typeof IngestJob.Type

/** The serialized size of a document, what VECTOR_INLINE_MAX_BYTES is compared with. */
export const documentBytes = (document: unknown) => Buffer.byteLength(JSON.stringify(document) ?? "", "utf8")

const storeNotFound = (slug: string) => new NotFound({ detail: `Vector store ${slug} does not exist` })
const documentNotFound = (slug: string, docId: string) =>
  new NotFound({ detail: `Document ${JSON.stringify(docId.slice(0, 256))} does not exist in vector store ${slug}` })

const toStore = (row: StoreRow): VectorStore => ({
  id: row.id,
  slug: row.slug,
  title: row.title,
  description: row.description,
  metadata: row.metadata,
  embedding_model: row.embedding_model,
  dimension: row.dimension,
  version: row.version,
  is_protected: row.is_protected,
  created_at: row.created_at,
  updated_at: row.updated_at
})

const toDocument = (row: DocumentRow): VectorDocument => ({
  doc_id: row.doc_id,
  status: row.status,
  chunk_count: row.chunk_count,
  metadata: row.metadata,
  error: row.error,
  created_at: row.created_at,
  updated_at: row.updated_at
})

export const StorePage = Page(VectorStore)
export type StorePage = typeof StorePage.Type
export const DocumentPage = Page(VectorDocument)
export type DocumentPage = typeof DocumentPage.Type

/** A provider failure as the 503 the caller sees, with its Retry-After when the provider (or breaker) gave one. */
const upstreamUnavailable = (error: EmbeddingsError) =>
  new UpstreamUnavailable({
    detail: error.reason === "circuit_open"
      ? "The embeddings provider is failing (circuit open); retry later"
      : "The embeddings provider is unavailable; retry later",
    ...(error.retryAfterMs === undefined ? {} : { retry_after: Math.ceil(error.retryAfterMs / 1000) })
  })

const hashOf = (value: unknown) => createHash("sha256").update(JSON.stringify(value)).digest("base64url")

interface SearchParams {
  readonly query: string
  readonly topK: number
  readonly metadataFilters: SearchPayload["metadata_filters"]
  readonly denseWeight: number | undefined
  readonly sparseWeight: number | undefined
}

const searchParams = (payload: SearchPayload, topK: number): SearchParams => ({
  query: payload.query,
  topK,
  metadataFilters: payload.metadata_filters,
  denseWeight: payload.dense_weight,
  sparseWeight: payload.sparse_weight
})

/**
 * Vector stores (API.md section 8): stores and documents by slug, inline ingestion, and the hybrid
 * search read through the cache. Every admin write commits with its audit row. A cached search is
 * keyed by the store's id and `version`, which every change of the store or its documents bumps in
 * the same statement: a search after a change reads the new version, so misses, at once.
 */
export class VectorStoresService extends Effect.Service<VectorStoresService>()("chatkit/VectorStoresService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* VectorStoresRepo
    const cache = yield* Cache
    const audit = yield* AuditLog
    const embeddings = yield* Embeddings
    const jobs = yield* JobQueue
    const config = yield* AppConfig

    const liveStore = (slug: string) =>
      Effect.flatMap(
        repo.findStoreBySlug(slug),
        Option.match({ onNone: () => Effect.fail(storeNotFound(slug)), onSome: Effect.succeed })
      )

    /** Vectors of another length cannot be written into, nor compared with, the store's. */
    const requireProviderDimension = (store: StoreRow, doing: "write to" | "search") =>
      store.dimension === embeddings.dimension
        ? Effect.void
        : Effect.fail(
          new Conflict({
            detail: `Cannot ${doing} vector store ${store.slug}: it holds vectors of dimension ${store.dimension} ` +
              `(model ${store.embedding_model}) but the embeddings provider ${embeddings.name} gives dimension ` +
              `${embeddings.dimension} (model ${embeddings.model})`
          })
        )

    const embed = (texts: ReadonlyArray<string>) => embeddings.embed(texts).pipe(Effect.mapError(upstreamUnavailable))

    const dimensionConflict = (slug: string) => (error: DimensionMismatch) =>
      new Conflict({ detail: `Vector store ${slug}: ${error.message}` })

    // -----------------------------------------------------------------------------------------
    // stores

    const list = (page: PageRequest): Effect.Effect<StorePage> =>
      Effect.map(repo.listStores(page), ({ items, total }) => toPage(page, items.map(toStore), total)).pipe(
        orDieOnSqlError,
        Effect.withSpan("VectorStoresService.list")
      )

    const get = (slug: string): Effect.Effect<VectorStore, NotFound> =>
      Effect.map(liveStore(slug), toStore).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.get"))

    const create = (input: CreateStorePayload): Effect.Effect<VectorStore, Conflict> =>
      sql.withTransaction(
        Effect.gen(function*() {
          const row = yield* repo.createStore({
            slug: input.slug,
            title: input.title,
            description: input.description ?? null,
            metadata: input.metadata ?? {},
            embeddingModel: embeddings.model,
            dimension: embeddings.dimension
          })
          yield* audit.record({
            action: "vector_store.create",
            resourceType: "vector_store",
            resourceId: row.id,
            changes: diffChanges({}, {
              slug: row.slug,
              title: row.title,
              description: row.description,
              metadata: row.metadata,
              embedding_model: row.embedding_model,
              dimension: row.dimension
            })
          })
          return toStore(row)
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.create"))

    /** PATCH semantics; a request that changes nothing writes nothing (and keeps the version). */
    const update = (slug: string, input: UpdateStorePayload): Effect.Effect<VectorStore, NotFound | Conflict> =>
      sql.withTransaction(
        Effect.gen(function*() {
          const before = yield* liveStore(slug)
          const { changes, diff } = changedFields(
            { slug: before.slug, title: before.title, description: before.description, metadata: before.metadata },
            input
          )
          if (Object.keys(diff).length === 0) return toStore(before)
          const after = yield* repo.updateStore(before.id, changes)
          if (Option.isNone(after)) return yield* storeNotFound(slug)
          yield* audit.record({
            action: "vector_store.update",
            resourceType: "vector_store",
            resourceId: before.id,
            changes: diff
          })
          return toStore(after.value)
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.update"))

    const remove = (slug: string): Effect.Effect<void, NotFound | Conflict> =>
      sql.withTransaction(
        Effect.gen(function*() {
          const store = yield* liveStore(slug)
          const deleted = yield* repo.deleteStore(store.id)
          if (Option.isNone(deleted)) return yield* storeNotFound(slug)
          yield* audit.record({
            action: "vector_store.delete",
            resourceType: "vector_store",
            resourceId: store.id,
            changes: { slug: store.slug, title: store.title }
          })
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.delete"))

    // -----------------------------------------------------------------------------------------
    // documents

    /** A document flattened, chunked and embedded: the work done before any transaction is held. */
    const prepareDocument = (document: unknown, metadata: Record<string, unknown> | null | undefined) =>
      Effect.gen(function*() {
        const flat = flatten(document as JsonValue)
        const chunks = chunk(flat.lines)
        const vectors = yield* embed(chunks.map((c) => c.text))
        return { flat, chunks, vectors, metadata: { ...ingestionMetadata(flat), ...metadata } }
      })

    /** Makes a prepared generation of a document the live one, with its audit row (inside the caller's transaction). */
    const makeLive = (
      target: {
        readonly store: StoreRow
        readonly docId: string
        readonly generation: number
        readonly userId?: typeof IngestJob.Type.requested_by
        readonly jobId?: string
      },
      { chunks, flat, metadata, vectors }: Effect.Effect.Success<ReturnType<typeof prepareDocument>>
    ) =>
      Effect.gen(function*() {
        const live = yield* repo.completeIngestion({
          storeId: target.store.id,
          docId: target.docId,
          generation: target.generation,
          linearizedText: linearizedText(flat.lines),
          metadata,
          chunks: chunks.map((c, i) => ({
            index: c.index,
            text: c.text,
            metadata: { line_start: c.lineStart, line_end: c.lineEnd },
            embedding: vectors[i]!
          }))
        })
        yield* audit.record({
          action: "vector_store.document.ingest",
          resourceType: "vector_document",
          resourceId: live.id,
          ...(target.userId === undefined ? {} : { userId: target.userId }),
          changes: {
            store: target.store.slug,
            doc_id: target.docId,
            generation: target.generation,
            chunk_count: live.chunk_count,
            ...(target.jobId === undefined ? {} : { job_id: target.jobId })
          }
        })
        return live
      })

    /**
     * Ingests a document inline: flatten, chunk and embed first (no transaction is held while the
     * provider answers; its failure writes nothing), then, in one transaction, the submission, the
     * switch to the new generation and the audit row. Re-ingesting a doc_id replaces it: readers
     * see the old chunks or the new ones, never a mix.
     */
    const ingestInline = (
      store: StoreRow,
      input: IngestPayload
    ): Effect.Effect<VectorDocument, NotFound | Conflict | UpstreamUnavailable> => {
      const slug = store.slug
      return Effect.gen(function*() {
        const prepared = yield* prepareDocument(input.document, input.metadata)
        const row = yield* sql.withTransaction(
          Effect.gen(function*() {
            const submitted = yield* repo.submitDocument({
              storeId: store.id,
              docId: input.doc_id,
              document: input.document,
              metadata: prepared.metadata
            })
            if (Option.isNone(submitted)) return yield* storeNotFound(slug)
            return yield* makeLive(
              { store, docId: input.doc_id, generation: submitted.value.latest_generation },
              prepared
            )
          })
        ).pipe(
          Effect.catchTags({
            DimensionMismatch: (error) => Effect.fail(dimensionConflict(slug)(error)),
            // the store's row is locked from the submission to the switch: only a defect gets here
            IngestionSuperseded: (error: IngestionSuperseded) =>
              Effect.dieMessage(`ingestion of generation ${error.generation} superseded in its own transaction`)
          })
        )
        return toDocument(row)
      }).pipe(
        // a non-finite vector from the provider is the provider's fault, not the caller's
        Effect.catchTag(
          "ValidationError",
          () => Effect.fail(new UpstreamUnavailable({ detail: "The embeddings provider answered unusable vectors" }))
        ),
        orDieOnSqlError
      )
    }

    /**
     * Accepts a large document for a document.ingest job: the submission (status pending, the
     * content kept in the row, search still serving the live version if any) and its audit row
     * commit first, then the job is queued with the submission's generation. A queue that refuses
     * the job fails the submission (with the reason) and answers 503.
     */
    const ingestLater = (
      store: StoreRow,
      input: IngestPayload,
      requestedBy: number | null
    ): Effect.Effect<IngestAccepted, NotFound | ServiceUnavailable> =>
      Effect.gen(function*() {
        const submitted = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* repo.submitDocument({
              storeId: store.id,
              docId: input.doc_id,
              document: input.document,
              metadata: input.metadata ?? {}
            })
            if (Option.isNone(row)) return yield* storeNotFound(store.slug)
            yield* audit.record({
              action: "vector_store.document.submit",
              resourceType: "vector_document",
              resourceId: row.value.id,
              changes: { store: store.slug, doc_id: input.doc_id, generation: row.value.latest_generation }
            })
            return row.value
          })
        )
        const generation = submitted.latest_generation
        const jobId = yield* jobs.enqueue(
          DOCUMENT_INGEST_JOB,
          { store_id: store.id, doc_id: input.doc_id, generation, requested_by: requestedBy } satisfies IngestJob,
          requestedBy === null ? {} : { owner: requestedBy }
        ).pipe(
          Effect.catchTag("JobQueueUnavailable", (error) =>
            Effect.zipRight(
              Effect.ignore(repo.failIngestion({
                storeId: store.id,
                docId: input.doc_id,
                generation,
                error: `The ingestion could not be queued: ${error.reason}`
              })),
              Effect.fail(
                new ServiceUnavailable({
                  detail: "The job queue is unavailable; the document was not ingested, retry later"
                })
              )
            ))
        )
        return { ...toDocument(submitted), status: "pending", job_id: jobId } as const
      }).pipe(orDieOnSqlError)

    /**
     * Ingests a document: inline (201, ready) up to VECTOR_INLINE_MAX_BYTES of JSON, through a
     * document.ingest job beyond (202, pending, with the job's id).
     */
    const ingest = (
      slug: string,
      input: IngestPayload,
      requestedBy: number | null = null
    ): Effect.Effect<VectorDocument | IngestAccepted, NotFound | Conflict | UpstreamUnavailable | ServiceUnavailable> =>
      Effect.gen(function*() {
        const store = yield* liveStore(slug).pipe(orDieOnSqlError)
        yield* requireProviderDimension(store, "write to")
        const bytes = documentBytes(input.document)
        yield* Effect.annotateCurrentSpan({ bytes })
        return bytes > config.vectorInlineMaxBytes
          ? yield* ingestLater(store, input, requestedBy)
          : yield* ingestInline(store, input)
      }).pipe(Effect.withSpan("VectorStoresService.ingest", { attributes: { store: slug } }))

    /**
     * The document.ingest job: the submission of `generation` flattened, chunked and embedded
     * (no transaction held meanwhile), then made live in one transaction with the job's completion,
     * so a job retaken from a worker that was only slow never writes its chunks twice. A newer
     * submission, or the document's deletion, leaves nothing to do (completed, `superseded`). The
     * provider failing is retried; once the job fails for good, `failSubmission` fails the document
     * with the job's error.
     */
    const runIngestJob = (job: IngestJob, context: JobContext) =>
      Effect.gen(function*() {
        const superseded = { doc_id: job.doc_id, generation: job.generation, superseded: true }
        const store = yield* repo.findStore(job.store_id)
        if (Option.isNone(store)) return superseded
        const pending = yield* repo.pendingSubmission(job.store_id, job.doc_id)
        if (Option.isNone(pending) || pending.value.generation !== job.generation) return superseded
        if (store.value.dimension !== embeddings.dimension) {
          return yield* new PermanentJobFailure({
            reason: `The vector store holds vectors of dimension ${store.value.dimension} but the embeddings ` +
              `provider ${embeddings.name} gives dimension ${embeddings.dimension}`
          })
        }
        yield* context.progress(10)
        const prepared = yield* prepareDocument(pending.value.raw_json, pending.value.metadata)
        yield* context.progress(80)
        return yield* context.completeWith(
          Effect.gen(function*() {
            const live = yield* makeLive({
              store: store.value,
              docId: job.doc_id,
              generation: job.generation,
              userId: job.requested_by,
              jobId: context.id
            }, prepared)
            return { doc_id: job.doc_id, generation: job.generation, chunk_count: live.chunk_count }
          }).pipe(
            // replaced or deleted between the read above and this transaction: nothing to do
            Effect.catchTag("IngestionSuperseded", () => Effect.succeed(superseded))
          )
        )
      }).pipe(
        Effect.catchTag(
          "DimensionMismatch",
          (error) => Effect.fail(new PermanentJobFailure({ reason: error.message }))
        ),
        Effect.catchTag("ValidationError", (error) => Effect.fail(new PermanentJobFailure({ reason: error.detail }))),
        Effect.withSpan("VectorStoresService.runIngestJob", { attributes: { doc_id: job.doc_id } })
      )

    /** The job failed for good: its submission is failed with the job's error (a live older version stays searchable). */
    const failSubmission = (payload: unknown, error: string) =>
      Effect.flatMap(Schema.decodeUnknown(IngestJob)(payload), (job) =>
        repo.failIngestion({
          storeId: job.store_id,
          docId: job.doc_id,
          generation: job.generation,
          error: `Ingestion failed: ${error}`
        })).pipe(Effect.catchTag("IngestionSuperseded", () => Effect.void))

    yield* jobs.register(
      DOCUMENT_INGEST_JOB,
      (payload, context) =>
        Effect.flatMap(
          Schema.decodeUnknown(IngestJob)(payload).pipe(
            Effect.mapError(() => new PermanentJobFailure({ reason: "the document.ingest job's payload is malformed" }))
          ),
          (job) => runIngestJob(job, context)
        ),
      { onFailed: failSubmission }
    )

    const listDocuments = (slug: string, page: PageRequest): Effect.Effect<DocumentPage, NotFound> =>
      Effect.gen(function*() {
        const store = yield* liveStore(slug)
        const { items, total } = yield* repo.listDocuments(store.id, page)
        return toPage(page, items.map(toDocument), total)
      }).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.listDocuments"))

    const getDocument = (slug: string, docId: string): Effect.Effect<VectorDocument, NotFound> =>
      Effect.gen(function*() {
        const store = yield* liveStore(slug)
        const row = yield* repo.findDocument(store.id, docId)
        if (Option.isNone(row)) return yield* documentNotFound(slug, docId)
        return toDocument(row.value)
      }).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.getDocument"))

    const deleteDocument = (slug: string, docId: string): Effect.Effect<void, NotFound> =>
      sql.withTransaction(
        Effect.gen(function*() {
          const store = yield* liveStore(slug)
          const deleted = yield* repo.deleteDocument(store.id, docId)
          if (Option.isNone(deleted)) return yield* documentNotFound(slug, docId)
          yield* audit.record({
            action: "vector_store.document.delete",
            resourceType: "vector_document",
            resourceId: deleted.value.id,
            changes: { store: store.slug, doc_id: docId }
          })
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.deleteDocument"))

    // -----------------------------------------------------------------------------------------
    // search

    /**
     * The hits of a search, without the cache. The repo refuses what the schemas already bound
     * (top_k, weights, filters), so its ValidationError passes through as the 400 it is.
     */
    const searchHits = (store: StoreRow, params: SearchParams) =>
      Effect.gen(function*() {
        const [embedding] = yield* embed([params.query])
        return yield* repo.search({
          storeId: store.id,
          dimension: store.dimension,
          embedding: embedding!,
          query: params.query,
          topK: params.topK,
          denseWeight: params.denseWeight,
          sparseWeight: params.sparseWeight,
          metadataFilters: params.metadataFilters
        }).pipe(Effect.catchTag("DimensionMismatch", (error) => Effect.fail(dimensionConflict(store.slug)(error))))
      })

    /** `vectors:search:<store id>:<version>:<kind>:<hash of the query and parameters>`. */
    const searchKey = (store: StoreRow, kind: string, params: unknown) =>
      `${VECTOR_SEARCH_CACHE_PREFIX}:search:${store.id}:${store.version}:${kind}:${hashOf(params)}`

    const searchJson = (slug: string, payload: SearchPayload) =>
      Effect.gen(function*() {
        const store = yield* liveStore(slug)
        yield* requireProviderDimension(store, "search")
        const params = searchParams(payload, payload.top_k ?? VECTOR_LIMITS.defaultTopK)
        return yield* cache.getOrLoad(
          searchKey(store, "chunks", params),
          SearchResults,
          Effect.map(searchHits(store, params), (hits): SearchResults => ({ results: hits }))
        )
      }).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.searchJson", { attributes: { store: slug } }))

    /**
     * The best documents, each with its best chunks; a document's score is its best chunk's, so many
     * weak chunks never outrank one strong match. Chunks are searched `top_k * chunks_per_document`
     * deep (at most 50), then grouped in rank order.
     */
    const searchDocuments = (slug: string, payload: SearchDocumentsPayload) =>
      Effect.gen(function*() {
        const store = yield* liveStore(slug)
        yield* requireProviderDimension(store, "search")
        const topK = payload.top_k ?? VECTOR_LIMITS.defaultTopK
        const perDocument = payload.chunks_per_document ?? VECTOR_LIMITS.defaultChunksPerDocument
        const params = searchParams(payload, Math.min(SEARCH_MAX_TOP_K, topK * perDocument))
        return yield* cache.getOrLoad(
          searchKey(store, "documents", { ...params, topK, perDocument }),
          DocumentResults,
          Effect.map(searchHits(store, params), (hits) => groupByDocument(hits, topK, perDocument))
        )
      }).pipe(orDieOnSqlError, Effect.withSpan("VectorStoresService.searchDocuments", { attributes: { store: slug } }))

    return {
      list,
      get,
      create,
      update,
      delete: remove,
      ingest,
      listDocuments,
      getDocument,
      deleteDocument,
      searchJson,
      searchDocuments
    } as const
  }),
  dependencies: [VectorStoresRepo.Default]
}) {}

/** Hits (best first) grouped by document in order of their best hit: `topK` documents, `perDocument` chunks each. */
export const groupByDocument = (
  hits: ReadonlyArray<SearchResult>,
  topK: number,
  perDocument: number
): DocumentResults => {
  const groups = new Map<string, {
    doc_id: string
    score: number
    metadata: SearchResult["metadata"]
    chunks: Array<{
      chunk_index: number
      text: string
      score: number
      dense_score: number
      sparse_score: number
    }>
  }>()
  for (const hit of hits) {
    let group = groups.get(hit.doc_id)
    if (group === undefined) {
      if (groups.size >= topK) continue
      group = { doc_id: hit.doc_id, score: hit.score, metadata: hit.metadata, chunks: [] }
      groups.set(hit.doc_id, group)
    }
    if (group.chunks.length < perDocument) {
      group.chunks.push({
        chunk_index: hit.chunk_index,
        text: hit.text,
        score: hit.score,
        dense_score: hit.dense_score,
        sparse_score: hit.sparse_score
      })
    }
  }
  return { results: [...groups.values()] }
}
