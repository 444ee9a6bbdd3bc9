-- 0001_audit_and_idempotency (up)
-- Runs inside one transaction together with its schema_migrations row. Never edit once applied:
-- add a new migration instead (the runner refuses to continue when this file's checksum changes).

-- One row per successful mutation or auth event, written in the mutation's own transaction.
-- user_id has no foreign key on purpose: the trail must outlive the users it mentions.
CREATE TABLE audit_logs (
  id            bigserial   PRIMARY KEY,
  user_id       bigint      NULL,
  action        text        NOT NULL,
  resource_type text        NOT NULL,
  resource_id   text        NULL,
  changes       jsonb       NOT NULL DEFAULT '{}'::jsonb,
  request_id    text        NULL,
  ip            text        NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- The admin listing orders by (created_at desc, id desc); every filter keeps that order as its
-- suffix so a filtered page is an index range scan too.
CREATE INDEX audit_logs_created_at_id_idx ON audit_logs (created_at DESC, id DESC);
CREATE INDEX audit_logs_user_id_idx ON audit_logs (user_id, created_at DESC, id DESC);
CREATE INDEX audit_logs_action_idx ON audit_logs (action, created_at DESC, id DESC);
CREATE INDEX audit_logs_resource_idx ON audit_logs (resource_type, resource_id, created_at DESC, id DESC);

-- Stored responses of POSTs sent with an Idempotency-Key. scope is who and where (user id +
-- route), so two users may reuse the same key. The response columns stay NULL while the first
-- request is still running (the row doubles as the lock that makes a concurrent repeat wait or fail).
CREATE TABLE idempotency_keys (
  key             text        NOT NULL,
  scope           text        NOT NULL,
  request_hash    text        NOT NULL,
  response_status int         NULL,
  response_body   jsonb       NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (scope, key)
);

-- Lets the periodic purge delete expired keys without scanning the table.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
