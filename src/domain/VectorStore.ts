import { Schema } from "effect"

/** API.md section 8: what the vector stores API answers (and the repository's search hits). */

/** JSON metadata as stored (objects; checked on the way in by the API's input schemas). */
export const StoredJson = Schema.Record({ key: Schema.String, value: Schema.Unknown })

export const VectorStore = Schema.Struct({
  id: Schema.Int,
  slug: Schema.String,
  title: Schema.String,
  description: Schema.NullOr(Schema.String),
  metadata: StoredJson,
  embedding_model: Schema.String,
  dimension: Schema.Int,
  /** bumped by every change of the store or its documents */
  version: Schema.Int,
  is_protected: Schema.Boolean,
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({ identifier: "VectorStore" })
export type VectorStore = typeof VectorStore.Type

export const VectorDocument = Schema.Struct({
  doc_id: Schema.String,
  status: Schema.Literal("pending", "ready", "failed"),
  chunk_count: Schema.Int,
  metadata: StoredJson,
  error: Schema.NullOr(Schema.String),
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({ identifier: "VectorDocument" })
export type VectorDocument = typeof VectorDocument.Type

/** One chunk found by a search, with the scores that ranked it. */
export const SearchResult = Schema.Struct({
  doc_id: Schema.String,
  chunk_index: Schema.Int,
  text: Schema.String,
  /** the fused score: dense and sparse, each in [0, 1], weighted */
  score: Schema.Number,
  /** the cosine similarity of the chunk and the query, in [-1, 1] (test-chatkit's `dense_score`) */
  dense_score: Schema.Number,
  /** BM25 of the chunk for the query's distinctive words, unnormalised (0 when none matches; test-chatkit's `bm25_score`) */
  sparse_score: Schema.Number,
  /** the document's metadata */
  metadata: StoredJson,
  /** the chunk's own (its lines in the flattened document) */
  chunk_metadata: StoredJson
}).annotations({ identifier: "VectorSearchResult" })
export type SearchResult = typeof SearchResult.Type

export const SearchResults = Schema.Struct({ results: Schema.Array(SearchResult) })
export type SearchResults = typeof SearchResults.Type

export const DocumentChunk = Schema.Struct({
  chunk_index: Schema.Int,
  text: Schema.String,
  score: Schema.Number,
  dense_score: Schema.Number,
  sparse_score: Schema.Number
}).annotations({ identifier: "VectorDocumentChunk" })

export const DocumentResults = Schema.Struct({
  results: Schema.Array(Schema.Struct({
    doc_id: Schema.String,
    /** its best chunk's */
    score: Schema.Number,
    metadata: StoredJson,
    chunks: Schema.Array(DocumentChunk)
  }))
})
export type DocumentResults = typeof DocumentResults.Type
