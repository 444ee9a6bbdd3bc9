import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { ConflictProblem, NotFoundProblem, UpstreamUnavailableProblem } from "../domain/errors.js"
import { isStorableText, NOT_STORABLE_TEXT } from "../domain/Text.js"
import { DocumentResults, SearchResults, VectorDocument, VectorStore } from "../domain/VectorStore.js"
import { JsonObject } from "../domain/Workflow.js"
import { Page, PageParams, Payload } from "./schemas.js"
import { AdminAuthentication, Authentication } from "./Security.js"

/** Bounds of the vector stores API (API.md section 8), as the migration's checks (0007). */
export const VECTOR_LIMITS = {
  titleLength: 256,
  docIdLength: 256,
  descriptionLength: 2000,
  queryLength: 4000,
  maxTopK: 50,
  defaultTopK: 5,
  maxChunksPerDocument: 10,
  defaultChunksPerDocument: 3
} as const

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

/** Text of `min..max` characters, storable, optionally without control characters; the message never echoes it. */
const boundedText = (min: number, max: number, options: { readonly noControl: boolean }) =>
  Schema.String.pipe(
    Schema.filter((text) =>
      text.length >= min && text.length <= max && isStorableText(text) && !(options.noControl && CONTROL.test(text))
    )
  ).annotations({
    message: () => ({
      message: `must be a string of ${min} to ${max} characters${
        options.noControl ? " without control characters" : ""
      } (${NOT_STORABLE_TEXT})`,
      override: true
    })
  })

export const VectorStoreSlug = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9_-]{0,127}$/, {
    message: () => "must be 1-128 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
  })
).annotations({ identifier: "VectorStoreSlug", examples: ["product-docs"] })

export const VectorStoreTitle = boundedText(1, VECTOR_LIMITS.titleLength, { noControl: true })
export const VectorStoreDescription = boundedText(0, VECTOR_LIMITS.descriptionLength, { noControl: false })
export const VectorDocId = boundedText(1, VECTOR_LIMITS.docIdLength, { noControl: true }).annotations({
  identifier: "VectorDocId",
  examples: ["faq-42"]
})
export const SearchQuery = boundedText(1, VECTOR_LIMITS.queryLength, { noControl: false })

const Weight = Schema.Number.pipe(
  Schema.finite(),
  Schema.greaterThanOrEqualTo(0),
  Schema.lessThanOrEqualTo(1_000_000)
).annotations({
  message: () => ({ message: "must be a finite number from 0 to 1000000", override: true })
})

const TopK = Schema.Int.pipe(Schema.between(1, VECTOR_LIMITS.maxTopK)).annotations({
  message: () => ({ message: `must be an integer from 1 to ${VECTOR_LIMITS.maxTopK}`, override: true })
})

const ChunksPerDocument = Schema.Int.pipe(Schema.between(1, VECTOR_LIMITS.maxChunksPerDocument)).annotations({
  message: () => ({ message: `must be an integer from 1 to ${VECTOR_LIMITS.maxChunksPerDocument}`, override: true })
})

/** Any JSON value, but present: an absent `document` decodes as undefined. */
const DocumentBody = Schema.Unknown.pipe(
  Schema.filter((value) => value !== undefined || "is required: any JSON value")
).annotations({
  description: "Any JSON value (nested at most 64 levels; the body at most VECTOR_DOCUMENT_MAX_BYTES, 10 MiB)."
})

const searchFields = {
  query: SearchQuery,
  top_k: Schema.optional(TopK),
  metadata_filters: Schema.optional(JsonObject),
  dense_weight: Schema.optional(Weight),
  sparse_weight: Schema.optional(Weight)
}

export const SearchPayload = Payload(searchFields)
export type SearchPayload = typeof SearchPayload.Type
export const SearchDocumentsPayload = Payload({
  ...searchFields,
  chunks_per_document: Schema.optional(ChunksPerDocument)
})
export type SearchDocumentsPayload = typeof SearchDocumentsPayload.Type

export const CreateStorePayload = Payload({
  slug: VectorStoreSlug,
  title: VectorStoreTitle,
  description: Schema.optional(Schema.NullOr(VectorStoreDescription)),
  metadata: Schema.optional(JsonObject)
})
export type CreateStorePayload = typeof CreateStorePayload.Type

export const UpdateStorePayload = Payload({
  slug: Schema.optional(VectorStoreSlug),
  title: Schema.optional(VectorStoreTitle),
  description: Schema.optional(Schema.NullOr(VectorStoreDescription)),
  metadata: Schema.optional(JsonObject)
})
export type UpdateStorePayload = typeof UpdateStorePayload.Type

export const IngestPayload = Payload({
  doc_id: VectorDocId,
  document: DocumentBody,
  metadata: Schema.optional(JsonObject)
})
export type IngestPayload = typeof IngestPayload.Type

/**
 * A document too large to ingest inline, accepted for a `document.ingest` job (API.md section 8:
 * `doc_id`, `status: "pending"`, `job_id`), with the rest of the document's state as GET answers it.
 */
export const IngestAccepted = Schema.Struct({
  ...VectorDocument.fields,
  status: Schema.Literal("pending"),
  /** GET /api/v1/jobs/{job_id} follows the ingestion */
  job_id: Schema.String
}).annotations({ identifier: "VectorDocumentAccepted" })
export type IngestAccepted = typeof IngestAccepted.Type

const SlugPath = Schema.Struct({ slug: VectorStoreSlug })
const DocumentPath = Schema.Struct({ slug: VectorStoreSlug, doc_id: VectorDocId })

const SEARCH_DESCRIPTION = "Hybrid search computed in the database: dense cosine mapped to [0, 1] and BM25-style " +
  "sparse, weighted (dense_weight and sparse_weight default 0.5 each, scaled to sum 1). metadata_filters is JSONB " +
  "containment on the documents' metadata. Results are cached per (store version, query, parameters): any change " +
  "of the store stops serving them. 409 when the store's dimension is not the embeddings provider's; 503 " +
  "upstream_unavailable when the provider fails."

/** Vector stores (API.md section 8): read by any user, written by administrators. */
export class VectorStoresApi extends HttpApiGroup.make("vectorStores")
  .add(
    HttpApiEndpoint.get("list", "/vector-stores")
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(VectorStore))
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "List vector stores")
      .annotate(OpenApi.Description, "Any signed-in user. Ordered by slug.")
  )
  .add(
    HttpApiEndpoint.post("create", "/vector-stores")
      .setPayload(CreateStorePayload)
      .addSuccess(VectorStore, { status: 201 })
      .addError(ConflictProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Create a vector store (admin)")
      .annotate(
        OpenApi.Description,
        "Its embedding model and dimension are the embeddings provider's, fixed from now on; 409 when the slug is taken."
      )
  )
  .add(
    HttpApiEndpoint.get("get", "/vector-stores/:slug")
      .setPath(SlugPath)
      .addSuccess(VectorStore)
      .addError(NotFoundProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "A vector store")
      .annotate(OpenApi.Description, "Any signed-in user; 404 when it does not exist or was deleted.")
  )
  .add(
    HttpApiEndpoint.patch("update", "/vector-stores/:slug")
      .setPath(SlugPath)
      .setPayload(UpdateStorePayload)
      .addSuccess(VectorStore)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Update a vector store (admin)")
      .annotate(
        OpenApi.Description,
        "Absent fields stay as they are; 409 when the new slug is taken or for a new slug of the system store."
      )
  )
  .add(
    HttpApiEndpoint.del("delete", "/vector-stores/:slug")
      .setPath(SlugPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Delete a vector store (admin)")
      .annotate(OpenApi.Description, "With its documents; 409 for the system store chatkit-workflows.")
  )
  .add(
    HttpApiEndpoint.post("ingest", "/vector-stores/:slug/documents")
      .setPath(SlugPath)
      .setPayload(IngestPayload)
      // first: a pending document with a job_id is the 202, any other document the 201
      .addSuccess(IngestAccepted, { status: 202 })
      .addSuccess(VectorDocument, { status: 201 })
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .addError(UpstreamUnavailableProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Ingest a document (admin)")
      .annotate(
        OpenApi.Description,
        "Flattened to `path: value` lines, chunked and embedded. A document whose JSON is at most " +
          "VECTOR_INLINE_MAX_BYTES (64 KiB) is made live before the answer (201, status ready; 503 " +
          "upstream_unavailable when the embeddings provider fails, nothing written). A larger one is answered " +
          "202 {doc_id, status: pending, job_id} and ingested by a document.ingest job (GET /jobs/{job_id}); " +
          "the document turns ready, or failed with a readable error after 3 attempts. Re-ingesting a doc_id " +
          "replaces it atomically once the new version is ready; meanwhile search serves the old one. 409 when " +
          "the store's dimension is not the embeddings provider's; 503 service_unavailable when the job queue " +
          "cannot take the job."
      )
  )
  .add(
    HttpApiEndpoint.get("listDocuments", "/vector-stores/:slug/documents")
      .setPath(SlugPath)
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(VectorDocument))
      .addError(NotFoundProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "List a store's documents")
      .annotate(OpenApi.Description, "Ordered by doc_id.")
  )
  .add(
    HttpApiEndpoint.get("getDocument", "/vector-stores/:slug/documents/:doc_id")
      .setPath(DocumentPath)
      .addSuccess(VectorDocument)
      .addError(NotFoundProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "A document of a store")
      .annotate(
        OpenApi.Description,
        "Its state: status ready (searchable), pending or failed (with error), chunk_count and metadata."
      )
  )
  .add(
    HttpApiEndpoint.del("deleteDocument", "/vector-stores/:slug/documents/:doc_id")
      .setPath(DocumentPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFoundProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Delete a document (admin)")
      .annotate(OpenApi.Description, "Its chunks go at once: the next search no longer returns it.")
  )
  .add(
    HttpApiEndpoint.post("searchJson", "/vector-stores/:slug/search_json")
      .setPath(SlugPath)
      .setPayload(SearchPayload)
      .addSuccess(SearchResults)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .addError(UpstreamUnavailableProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "Search a store's chunks")
      .annotate(OpenApi.Description, `top_k 1 to 50 (default 5), best first. ${SEARCH_DESCRIPTION}`)
  )
  .add(
    HttpApiEndpoint.post("searchDocuments", "/vector-stores/:slug/search_documents")
      .setPath(SlugPath)
      .setPayload(SearchDocumentsPayload)
      .addSuccess(DocumentResults)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .addError(UpstreamUnavailableProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "Search a store's documents")
      .annotate(
        OpenApi.Description,
        "The top_k documents (1 to 50, default 5) with their best chunks (chunks_per_document 1 to 10, default 3); " +
          `a document's score is its best chunk's. ${SEARCH_DESCRIPTION}`
      )
  )
  .annotate(OpenApi.Title, "Vector stores")
{}
