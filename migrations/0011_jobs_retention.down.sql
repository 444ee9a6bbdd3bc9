-- 0011_jobs_retention (down)
DROP INDEX jobs_finished_idx;
