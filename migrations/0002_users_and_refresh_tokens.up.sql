-- Users (API.md sections 2 and 3) and rotating refresh tokens with reuse detection.

CREATE TABLE users (
  id            bigserial PRIMARY KEY,
  email         text NOT NULL CHECK (email = lower(email)),
  display_name  text NULL,
  password_hash text NOT NULL,
  is_admin      boolean NOT NULL DEFAULT false,
  is_lti        boolean NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  deleted_at    timestamptz NULL
);

-- An email is unique among users that are not deleted.
CREATE UNIQUE INDEX users_email_live_key ON users (email) WHERE deleted_at IS NULL;

CREATE TABLE refresh_tokens (
  id          bigserial PRIMARY KEY,
  user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  family_id   uuid NOT NULL,
  token_hash  text NOT NULL UNIQUE,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz NULL,
  revoked_at  timestamptz NULL,
  replaced_by bigint NULL REFERENCES refresh_tokens (id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  ip          text NULL,
  user_agent  text NULL
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
