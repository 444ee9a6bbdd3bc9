-- Workflows (API.md section 6): versioned graphs, their steps and transitions, and shares.

CREATE TABLE workflows (
  id                bigserial   PRIMARY KEY,
  slug              text        NOT NULL,
  display_name      text        NOT NULL,
  description       text        NULL,
  -- NULL: owned by the system (the bootstrap default workflow); only admins manage it
  owner_id          bigint      NULL REFERENCES users (id) ON DELETE SET NULL,
  -- the production version; NULL only between the insert of a workflow and of its first version
  active_version_id bigint      NULL,
  is_default        boolean     NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  deleted_at        timestamptz NULL
);

-- A slug is unique among workflows that are not deleted; at most one live default.
CREATE UNIQUE INDEX workflows_slug_live_key ON workflows (slug) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX workflows_one_default_key ON workflows (is_default) WHERE is_default AND deleted_at IS NULL;
CREATE INDEX workflows_owner_idx ON workflows (owner_id) WHERE deleted_at IS NULL;

CREATE TABLE workflow_definitions (
  id          bigserial   PRIMARY KEY,
  workflow_id bigint      NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
  version     int         NOT NULL CHECK (version >= 1),
  name        text        NULL,
  created_by  bigint      NULL REFERENCES users (id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT workflow_definitions_version_key UNIQUE (workflow_id, version),
  -- target of the composite foreign key below
  CONSTRAINT workflow_definitions_id_workflow_key UNIQUE (id, workflow_id)
);

-- The active version is always one of the workflow's own versions.
ALTER TABLE workflows ADD CONSTRAINT workflows_active_version_fk
  FOREIGN KEY (active_version_id, id) REFERENCES workflow_definitions (id, workflow_id);

CREATE TABLE workflow_steps (
  id            bigserial PRIMARY KEY,
  definition_id bigint    NOT NULL REFERENCES workflow_definitions (id) ON DELETE CASCADE,
  slug          text      NOT NULL,
  kind          text      NOT NULL,
  display_name  text      NULL,
  agent_key     text      NULL,
  parent_slug   text      NULL,
  is_enabled    boolean   NOT NULL DEFAULT true,
  parameters    jsonb     NOT NULL DEFAULT '{}'::jsonb,
  metadata      jsonb     NOT NULL DEFAULT '{}'::jsonb,
  position      int       NOT NULL,
  CONSTRAINT workflow_steps_slug_key UNIQUE (definition_id, slug)
);

CREATE TABLE workflow_transitions (
  id            bigserial PRIMARY KEY,
  definition_id bigint    NOT NULL REFERENCES workflow_definitions (id) ON DELETE CASCADE,
  source_slug   text      NOT NULL,
  target_slug   text      NOT NULL,
  condition     text      NULL,
  metadata      jsonb     NOT NULL DEFAULT '{}'::jsonb,
  position      int       NOT NULL
);

CREATE INDEX workflow_transitions_definition_idx ON workflow_transitions (definition_id, position);

CREATE TABLE workflow_shares (
  workflow_id bigint      NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
  user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  permission  text        NOT NULL CHECK (permission IN ('read', 'write')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, user_id)
);

CREATE INDEX workflow_shares_user_idx ON workflow_shares (user_id);
