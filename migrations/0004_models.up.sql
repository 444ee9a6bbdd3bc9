-- 0004_models (up)
-- The model catalog (API.md section 5). Deleting a model removes the row (no soft delete).

CREATE TABLE models (
  id                 bigserial   PRIMARY KEY,
  name               text        NOT NULL,
  display_name       text        NOT NULL,
  description        text        NULL,
  -- the id of an entry of app_settings.model_providers (not a foreign key: that list is JSON)
  provider_id        text        NULL,
  provider_slug      text        NULL,
  supports_reasoning boolean     NOT NULL DEFAULT false,
  supports_streaming boolean     NOT NULL DEFAULT true,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Names are unique ignoring case ("GPT-4o" and "gpt-4o" would name the same model).
CREATE UNIQUE INDEX models_name_key ON models (lower(name));
-- The catalog's order (display_name, id) is an index scan.
CREATE INDEX models_display_name_id_idx ON models (display_name, id);
