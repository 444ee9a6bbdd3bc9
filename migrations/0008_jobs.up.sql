-- 0008_jobs (up): background job records (API.md section 9). The queue (BullMQ on Redis, or the
-- in-process one) runs the jobs; this table is what GET /api/v1/jobs/{id} answers in both modes.

CREATE TABLE jobs (
  id          text        PRIMARY KEY,
  -- document.ingest, thread.title, ...
  type        text        NOT NULL,
  status      text        NOT NULL DEFAULT 'queued',
  -- attempts started so far (a retry or a job retaken from a dead worker counts one more)
  attempts    integer     NOT NULL DEFAULT 0,
  -- 0 to 100
  progress    integer     NOT NULL DEFAULT 0,
  result      jsonb       NULL,
  -- a readable message of the last failure (kept while a retry is queued, final once failed)
  error       text        NULL,
  -- the user the job works for; NULL for system jobs (thread titles), which only admins see
  owner_id    bigint      NULL REFERENCES users (id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  started_at  timestamptz NULL,
  finished_at timestamptz NULL,
  CONSTRAINT jobs_id_format CHECK (id ~ '^job_[0-9A-Za-z_-]{1,64}$'),
  CONSTRAINT jobs_type_format CHECK (type ~ '^[a-z][a-z0-9_.-]{0,63}$'),
  CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'running', 'completed', 'failed')),
  CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
  CONSTRAINT jobs_progress_check CHECK (progress BETWEEN 0 AND 100),
  -- a finished job has its finish time, an unfinished one none
  CONSTRAINT jobs_finished_check CHECK ((status IN ('completed', 'failed')) = (finished_at IS NOT NULL))
);

-- The jobs of a user (the foreign key's ON DELETE, and an owner's listing later).
CREATE INDEX jobs_owner_idx ON jobs (owner_id, created_at DESC) WHERE owner_id IS NOT NULL;
