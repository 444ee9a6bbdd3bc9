-- 0007_vector_stores (down): in reverse order of creation (indexes, checks and the trigger go with
-- their tables). The vector extension goes too when nothing else uses it: another schema's tables
-- (a second instance, a test) may, and then it stays.
DROP TABLE vector_chunks;
DROP TABLE vector_documents;
DROP TABLE vector_stores;
DROP FUNCTION vector_stores_keep_embedding();

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
    BEGIN
      DROP EXTENSION vector;
    EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
      RAISE NOTICE 'vector extension kept: %', SQLERRM;
    END;
  END IF;
END
$$;
