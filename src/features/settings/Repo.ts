import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"

import type { AppearanceSettings } from "../../domain/Settings.js"
import { ProviderKind } from "../../domain/Settings.js"
import { patchColumns } from "../../platform/Database.js"

/** One entry of `app_settings.model_providers` as stored: the key only sealed, its hint apart. */
export const StoredProvider = Schema.Struct({
  id: Schema.String,
  provider: ProviderKind,
  api_base: Schema.NullOr(Schema.String),
  /** `v1.<key id>.<nonce>.<ciphertext>.<tag>` (SecretBox), or null when no key is stored */
  api_key_ciphertext: Schema.NullOr(Schema.String),
  api_key_key_id: Schema.NullOr(Schema.String),
  api_key_hint: Schema.NullOr(Schema.String),
  is_default: Schema.Boolean
})
export type StoredProvider = typeof StoredProvider.Type

const StoredProviders = Schema.Array(StoredProvider)

/** The settings row with its providers decoded. */
export interface SettingsRow extends AppearanceSettings {
  readonly thread_title_prompt: string
  readonly thread_title_model: string
  readonly default_model: string
  readonly model_providers: ReadonlyArray<StoredProvider>
  readonly updated_at: Date
}

export interface AppSettingsChanges {
  readonly thread_title_prompt?: string
  readonly thread_title_model?: string
  readonly default_model?: string
  readonly model_providers?: ReadonlyArray<StoredProvider>
}

export type AppearanceChanges = { readonly [K in keyof AppearanceSettings]?: AppearanceSettings[K] | undefined }

const COLUMNS =
  "thread_title_prompt, thread_title_model, default_model, model_providers, color_scheme, accent_color, " +
  "radius_style, greeting, placeholder, disclaimer, updated_at"

const APPEARANCE_COLUMNS = "color_scheme, accent_color, radius_style, greeting, placeholder, disclaimer"

/** SQL of the single app_settings row (created by migration 0003, so it always exists). */
export class SettingsRepo extends Effect.Service<SettingsRepo>()("chatkit/SettingsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const decodeRow = (rows: ReadonlyArray<Record<string, unknown>>) =>
      Effect.gen(function*() {
        const row = rows[0]
        if (row === undefined) return yield* Effect.dieMessage("app_settings has no row: run the migrations")
        const raw = typeof row.model_providers === "string" ? JSON.parse(row.model_providers) : row.model_providers
        const model_providers = yield* Effect.orDie(Schema.decodeUnknown(StoredProviders)(raw))
        return { ...row, model_providers } as unknown as SettingsRow
      })

    const load = sql<Record<string, unknown>>`SELECT ${sql.literal(COLUMNS)} FROM app_settings WHERE id = 1`.pipe(
      Effect.flatMap(decodeRow),
      Effect.withSpan("SettingsRepo.load")
    )

    /** The row, locked until the transaction ends (a PATCH reads, merges and writes under it). */
    const lock = sql<Record<string, unknown>>`SELECT ${sql.literal(COLUMNS)} FROM app_settings WHERE id = 1 FOR UPDATE`
      .pipe(
        Effect.flatMap(decodeRow)
      )

    const loadAppearance = sql<AppearanceSettings>`SELECT ${
      sql.literal(APPEARANCE_COLUMNS)
    } FROM app_settings WHERE id = 1`
      .pipe(
        Effect.flatMap((rows) =>
          Option.match(Option.fromNullable(rows[0]), {
            onNone: () => Effect.dieMessage("app_settings has no row: run the migrations"),
            onSome: (row) => Effect.succeed<AppearanceSettings>(row)
          })
        ),
        Effect.withSpan("SettingsRepo.loadAppearance")
      )

    /** Writes the app settings fields and bumps updated_at. */
    const updateApp = (changes: AppSettingsChanges) => {
      const { model_providers, ...plain } = changes
      const set = patchColumns(sql, {
        ...plain,
        model_providers: model_providers === undefined ? undefined : sql`${JSON.stringify(model_providers)}::jsonb`,
        updated_at: sql`now()`
      })
      return sql<Record<string, unknown>>`UPDATE app_settings SET ${set}
        WHERE id = 1 RETURNING ${sql.literal(COLUMNS)}`.pipe(Effect.flatMap(decodeRow))
    }

    /** Writes appearance fields; updated_at belongs to the app settings and is left alone. */
    const updateAppearance = (changes: AppearanceChanges) =>
      sql<AppearanceSettings>`UPDATE app_settings SET ${patchColumns(sql, changes)} WHERE id = 1
        RETURNING ${sql.literal(APPEARANCE_COLUMNS)}`.pipe(
        Effect.flatMap((rows) =>
          Option.match(Option.fromNullable(rows[0]), {
            onNone: () => Effect.dieMessage("app_settings has no row: run the migrations"),
            onSome: (row) => Effect.succeed<AppearanceSettings>(row)
          })
        )
      )

    return { load, lock, loadAppearance, updateApp, updateAppearance } as const
  })
}) {}
