-- 0011_jobs_retention (up): finished jobs are deleted once JOB_RETENTION_DAYS old (JobRecords,
-- run by every process that consumes jobs); this index finds them, oldest first.
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
