-- 0008_jobs (down)
DROP TABLE jobs;
