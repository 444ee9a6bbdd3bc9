-- 0003_app_settings (up)
-- The single application settings row (API.md section 4): the admin app settings (thread title
-- prompt and model, default model, model providers) and the appearance settings.

CREATE TABLE app_settings (
  -- one row only: the primary key can only ever be 1
  id                  smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  thread_title_prompt text        NOT NULL DEFAULT 'Write a short title (at most 6 words) for a conversation that starts with the message below. Answer with the title only.',
  thread_title_model  text        NOT NULL DEFAULT 'gpt-4o-mini',
  default_model       text        NOT NULL DEFAULT 'gpt-4o-mini',
  -- [{id, provider, api_base, api_key_ciphertext, api_key_key_id, api_key_hint, is_default}]:
  -- the ciphertext is AES-256-GCM (see src/features/settings/SecretBox.ts); the hint is kept apart
  -- so a read never needs to decrypt. Only the server writes this column, always as a whole.
  model_providers     jsonb       NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(model_providers) = 'array'),
  color_scheme        text        NOT NULL DEFAULT 'system' CHECK (color_scheme IN ('system', 'light', 'dark')),
  accent_color        text        NOT NULL DEFAULT '#2563EB' CHECK (accent_color ~ '^#[0-9A-Fa-f]{6}$'),
  radius_style        text        NOT NULL DEFAULT 'medium' CHECK (radius_style IN ('none', 'small', 'medium', 'large', 'full')),
  greeting            text        NOT NULL DEFAULT 'How can I help you today?',
  placeholder         text        NOT NULL DEFAULT 'Send a message',
  disclaimer          text        NOT NULL DEFAULT '',
  updated_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO app_settings (id) VALUES (1);
