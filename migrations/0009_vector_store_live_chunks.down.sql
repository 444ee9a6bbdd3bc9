-- 0009_vector_store_live_chunks (down)
ALTER TABLE vector_stores DROP COLUMN live_chunks;
