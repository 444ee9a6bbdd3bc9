-- 0007_vector_stores (up): vector stores of JSON documents, their chunks and embeddings
-- (API.md section 8, issue 12). Runs in one transaction (Migrations.ts), on PostgreSQL and PGlite.
--
-- Two storage paths for the embeddings, chosen here once and read back at start (VectorSupport.ts):
-- - `pgvector`: the `vector` extension is available (PGlite has it): `embedding vector` and one HNSW
--   cosine index per dimension in use (partial expression indexes, a column without a typmod
--   cannot be indexed otherwise);
-- - `portable`: no extension (Debian's PostgreSQL): `embedding real[]`, cosine computed in SQL.
--
-- Re-ingestion is atomic by generations: a document's new chunks are written under the next
-- generation while readers join `chunks.generation = documents.live_generation`; going live is one
-- UPDATE of the document, in the transaction that also deletes the chunks of other generations.

CREATE TABLE vector_stores (
  id              bigserial   PRIMARY KEY,
  slug            text        NOT NULL,
  title           text        NOT NULL,
  description     text        NULL,
  metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  -- what produced the vectors and their length, fixed at creation (trigger below)
  embedding_model text        NOT NULL,
  dimension       int         NOT NULL,
  -- bumped by every change of the store or of its documents: part of the search cache key
  version         bigint      NOT NULL DEFAULT 1,
  -- the system store (chatkit-workflows): never deleted
  is_protected    boolean     NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  deleted_at      timestamptz NULL,
  CONSTRAINT vector_stores_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,127}$'),
  CONSTRAINT vector_stores_title_length CHECK (char_length(title) BETWEEN 1 AND 256),
  CONSTRAINT vector_stores_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  CONSTRAINT vector_stores_model_length CHECK (char_length(embedding_model) BETWEEN 1 AND 256),
  -- pgvector's HNSW indexes `vector` up to 2,000 dimensions
  CONSTRAINT vector_stores_dimension_range CHECK (dimension BETWEEN 2 AND 2000),
  CONSTRAINT vector_stores_version_check CHECK (version >= 1),
  CONSTRAINT vector_stores_protected_live CHECK (NOT (is_protected AND deleted_at IS NOT NULL))
);

-- A slug is unique among stores that are not deleted.
CREATE UNIQUE INDEX vector_stores_slug_live_key ON vector_stores (slug) WHERE deleted_at IS NULL;

-- The vectors of a store only compare with vectors of the same model and length.
CREATE FUNCTION vector_stores_keep_embedding() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.dimension <> OLD.dimension OR NEW.embedding_model <> OLD.embedding_model THEN
    RAISE EXCEPTION 'vector store %: the embedding model and dimension are fixed at creation', OLD.slug
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER vector_stores_keep_embedding BEFORE UPDATE ON vector_stores
  FOR EACH ROW EXECUTE FUNCTION vector_stores_keep_embedding();

-- The system store exists from the first start, so deleting it is always refused (409).
INSERT INTO vector_stores (slug, title, description, embedding_model, dimension, is_protected)
VALUES ('chatkit-workflows', 'ChatKit workflows', 'System store of the workflows', 'local-hashed-tokens-v1', 384, true);

CREATE TABLE vector_documents (
  id               bigserial   PRIMARY KEY,
  store_id         bigint      NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
  doc_id           text        NOT NULL,
  -- what the live generation was ingested from (NULL until a first generation is live)
  raw_json         jsonb       NULL,
  linearized_text  text        NOT NULL DEFAULT '',
  -- the live generation's metadata (the caller's over ingestion's): filtered and returned by search
  metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  -- the submission being ingested as `latest_generation`, NULL when none: it replaces raw_json and
  -- metadata only when that generation goes live, so a reader never sees new metadata on old chunks
  pending_raw_json jsonb       NULL,
  pending_metadata jsonb       NULL,
  -- the state of the latest submission; an older live generation stays searchable meanwhile
  status           text        NOT NULL DEFAULT 'pending',
  chunk_count      int         NOT NULL DEFAULT 0,
  error            text        NULL,
  -- the generation readers see (NULL: none yet) and the newest one handed out
  live_generation  int         NULL,
  latest_generation int        NOT NULL DEFAULT 1,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at       timestamptz NULL,
  CONSTRAINT vector_documents_doc_id_format CHECK (char_length(doc_id) BETWEEN 1 AND 256 AND doc_id !~ '[[:cntrl:]]'),
  CONSTRAINT vector_documents_status_check CHECK (status IN ('pending', 'ready', 'failed')),
  CONSTRAINT vector_documents_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  CONSTRAINT vector_documents_pending_metadata_object CHECK (
    pending_metadata IS NULL OR jsonb_typeof(pending_metadata) = 'object'
  ),
  CONSTRAINT vector_documents_chunk_count_check CHECK (chunk_count >= 0),
  CONSTRAINT vector_documents_generations_check CHECK (
    latest_generation >= 1 AND (live_generation IS NULL OR live_generation BETWEEN 1 AND latest_generation)
  ),
  -- ready means the latest submission is the live one
  CONSTRAINT vector_documents_ready_is_live CHECK (status <> 'ready' OR live_generation = latest_generation),
  CONSTRAINT vector_documents_error_when_failed CHECK ((status = 'failed') = (error IS NOT NULL))
);

-- A doc_id is unique in its store among documents that are not deleted (the upsert's conflict target).
CREATE UNIQUE INDEX vector_documents_doc_id_live_key ON vector_documents (store_id, doc_id)
  WHERE deleted_at IS NULL;
-- A store's documents by doc_id (pages of GET .../documents).
CREATE INDEX vector_documents_store_idx ON vector_documents (store_id, doc_id, id);

CREATE TABLE vector_chunks (
  id          bigserial PRIMARY KEY,
  document_id bigint    NOT NULL REFERENCES vector_documents (id) ON DELETE CASCADE,
  generation  int       NOT NULL,
  chunk_index int       NOT NULL,
  text        text      NOT NULL,
  -- the chunk's own data (test-chatkit: its flattened paths); the document's is on the document
  metadata    jsonb     NOT NULL DEFAULT '{}'::jsonb,
  tsv         tsvector  GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
  -- the length of `embedding`, checked against it below; the store's, checked on write
  dimension   int       NOT NULL,
  CONSTRAINT vector_chunks_position_key UNIQUE (document_id, generation, chunk_index),
  CONSTRAINT vector_chunks_index_check CHECK (chunk_index >= 0 AND generation >= 1),
  CONSTRAINT vector_chunks_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  CONSTRAINT vector_chunks_dimension_range CHECK (dimension BETWEEN 2 AND 2000)
);

-- Sparse candidates: chunks matching the query's words.
CREATE INDEX vector_chunks_tsv_idx ON vector_chunks USING gin (tsv);

-- The embedding column, its check and its indexes, by path. The extension is created when the
-- server has it and this role may create it; its type must then be visible on the search_path.
DO $$
DECLARE
  with_vector boolean := false;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS vector;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE NOTICE 'vector extension available but not creatable by this role: portable vector path';
    END;
  END IF;
  with_vector := to_regtype('vector') IS NOT NULL;
  IF with_vector THEN
    EXECUTE 'ALTER TABLE vector_chunks ADD COLUMN embedding vector NOT NULL';
    EXECUTE 'ALTER TABLE vector_chunks ADD CONSTRAINT vector_chunks_embedding_dimension
      CHECK (vector_dims(embedding) = dimension)';
    -- one per dimension a provider uses: the local one (384) and text-embedding-3-small (1536)
    EXECUTE 'CREATE INDEX vector_chunks_embedding_384_idx ON vector_chunks
      USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dimension = 384';
    EXECUTE 'CREATE INDEX vector_chunks_embedding_1536_idx ON vector_chunks
      USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dimension = 1536';
  ELSE
    EXECUTE 'ALTER TABLE vector_chunks ADD COLUMN embedding real[] NOT NULL';
    EXECUTE 'ALTER TABLE vector_chunks ADD CONSTRAINT vector_chunks_embedding_dimension
      CHECK (array_ndims(embedding) = 1 AND array_length(embedding, 1) = dimension)';
  END IF;
END
$$;
