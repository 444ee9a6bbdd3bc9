-- 0006_chat_threads (up): ChatKit conversations (API.md section 7, CHATKIT-PROTOCOL.md section 2).
-- Threads, their items (the protocol's JSON, stored as sent) and the users' feedback on items.

CREATE TABLE chat_threads (
  id                  text        PRIMARY KEY,
  owner_id            bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  title               text        NULL,
  -- the protocol's ThreadStatus: {"type": "active"} | {"type": "locked"|"closed", "reason"?: text}
  status              jsonb       NOT NULL DEFAULT '{"type": "active"}'::jsonb,
  -- the workflow the thread runs; a conversation outlives nothing it needs silently (no cascade)
  workflow_id         bigint      NOT NULL REFERENCES workflows (id),
  -- the version the thread was started on; NULL once that version is deleted (the turn then runs
  -- the workflow's active version), so deleting a version never deletes conversations
  workflow_version_id bigint      NULL,
  -- where the workflow run stands between turns (current node, state.*)
  runtime_state       jsonb       NOT NULL DEFAULT '{}'::jsonb,
  metadata            jsonb       NOT NULL DEFAULT '{}'::jsonb,
  -- the seq of the newest item ever appended: appends take the next values under the row lock
  last_item_seq       bigint      NOT NULL DEFAULT 0,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  deleted_at          timestamptz NULL,
  CONSTRAINT chat_threads_id_format CHECK (id ~ '^thr_[0-9a-f]{16}$'),
  CONSTRAINT chat_threads_status_shape CHECK (
    jsonb_typeof(status) = 'object'
    AND status ->> 'type' IN ('active', 'locked', 'closed')
    AND (NOT status ? 'reason' OR jsonb_typeof(status -> 'reason') IN ('string', 'null'))
  ),
  CONSTRAINT chat_threads_runtime_state_object CHECK (jsonb_typeof(runtime_state) = 'object'),
  CONSTRAINT chat_threads_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
  CONSTRAINT chat_threads_last_item_seq_check CHECK (last_item_seq >= 0),
  -- the version is one of the thread's workflow's own; its deletion clears only the version column
  CONSTRAINT chat_threads_workflow_version_fk FOREIGN KEY (workflow_version_id, workflow_id)
    REFERENCES workflow_definitions (id, workflow_id) ON DELETE SET NULL (workflow_version_id)
);

-- An owner's live threads, most recently active first (threads.list; ties by id).
CREATE INDEX chat_threads_owner_live_idx ON chat_threads (owner_id, updated_at DESC, id DESC)
  WHERE deleted_at IS NULL;
-- Admin review by workflow or by user (GET /admin/threads), newest first.
CREATE INDEX chat_threads_workflow_idx ON chat_threads (workflow_id, updated_at DESC, id DESC)
  WHERE deleted_at IS NULL;

CREATE TABLE chat_thread_items (
  id         text        PRIMARY KEY,
  thread_id  text        NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
  -- position in the thread, 1, 2, ...: order never depends on equal timestamps
  seq        bigint      NOT NULL,
  -- the protocol's item type (user_message, assistant_message, ...); unknown kinds are kept
  type       text        NOT NULL,
  -- the item as the protocol serialises it, passed through untouched
  payload    jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT chat_thread_items_id_format CHECK (id ~ '^(msg|tc|wf|tsk|shcx)_[A-Za-z0-9_-]{1,200}$'),
  CONSTRAINT chat_thread_items_type_format CHECK (type ~ '^[a-z][a-z0-9_.]{0,63}$'),
  CONSTRAINT chat_thread_items_payload_object CHECK (jsonb_typeof(payload) = 'object'),
  CONSTRAINT chat_thread_items_seq_check CHECK (seq >= 1),
  -- a thread's items in order (items.list, get_by_id, retry)
  CONSTRAINT chat_thread_items_seq_key UNIQUE (thread_id, seq),
  -- target of the feedback's foreign key: an item is named with its thread
  CONSTRAINT chat_thread_items_thread_item_key UNIQUE (thread_id, id)
);

CREATE TABLE chat_item_feedback (
  thread_id  text        NOT NULL,
  item_id    text        NOT NULL,
  user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind       text        NOT NULL CONSTRAINT chat_item_feedback_kind_check CHECK (kind IN ('positive', 'negative')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (item_id, user_id),
  -- feedback is only ever on an item of the thread it names; it goes with the item
  CONSTRAINT chat_item_feedback_item_fk FOREIGN KEY (thread_id, item_id)
    REFERENCES chat_thread_items (thread_id, id) ON DELETE CASCADE
);

CREATE INDEX chat_item_feedback_thread_idx ON chat_item_feedback (thread_id);
