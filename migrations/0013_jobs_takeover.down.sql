-- 0013_jobs_takeover (down)
DROP INDEX jobs_in_process_unfinished_idx;
ALTER TABLE jobs DROP COLUMN payload;
