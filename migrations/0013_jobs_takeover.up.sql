-- 0013_jobs_takeover (up): the in-process queue (no Redis) keeps each job's payload in its row and
-- marks its unfinished jobs alive every few seconds (updated_at), so that after a crash another
-- process, or the next start, takes over the jobs whose marks stopped. BullMQ keeps its jobs'
-- payloads in Redis: NULL here.
ALTER TABLE jobs ADD COLUMN payload jsonb;
CREATE INDEX jobs_in_process_unfinished_idx ON jobs (updated_at)
  WHERE payload IS NOT NULL AND status IN ('queued', 'running');
