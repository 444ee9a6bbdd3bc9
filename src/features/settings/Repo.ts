import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"

import { AppearanceSettings, ProviderKind } from "../../domain/Settings.js"
import { columnsOf, findOneRow, patchColumns } from "../../platform/Database.js"

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

/** The app_settings row (migration 0003) with its providers decoded. */
const SettingsRow = Schema.Struct({
  thread_title_prompt: Schema.String,
  thread_title_model: Schema.String,
  default_model: Schema.String,
  // jsonb arrives parsed; should a driver hand it over as text, it still decodes
  model_providers: Schema.Union(StoredProviders, Schema.parseJson(StoredProviders)),
  ...AppearanceSettings.fields,
  updated_at: Schema.DateFromSelf
})
export type SettingsRow = typeof SettingsRow.Type

const AppSettingsChanges = Schema.Struct({
  thread_title_prompt: Schema.optionalWith(Schema.String, { exact: true }),
  thread_title_model: Schema.optionalWith(Schema.String, { exact: true }),
  default_model: Schema.optionalWith(Schema.String, { exact: true }),
  model_providers: Schema.optionalWith(StoredProviders, { exact: true })
})
export type AppSettingsChanges = typeof AppSettingsChanges.Type

const AppearanceChanges = Schema.partial(AppearanceSettings)
export type AppearanceChanges = typeof AppearanceChanges.Type

const COLUMNS = columnsOf(SettingsRow)

const APPEARANCE_COLUMNS = columnsOf(AppearanceSettings)

/** The one row: migration 0003 inserts it, so its absence is a broken database. */
const theRow = <A, E, R>(query: Effect.Effect<Option.Option<A>, E, R>) =>
  Effect.flatMap(
    query,
    Option.match({
      onNone: () => Effect.dieMessage("app_settings has no row: run the migrations"),
      onSome: Effect.succeed
    })
  )

/** SQL of the single app_settings row (created by migration 0003, so it always exists). */
export class SettingsRepo extends Effect.Service<SettingsRepo>()("chatkit/SettingsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const columns = sql.literal(COLUMNS)
    const appearanceColumns = sql.literal(APPEARANCE_COLUMNS)

    const selectRow = findOneRow({
      Request: Schema.Void,
      Result: SettingsRow,
      execute: () => sql`SELECT ${columns} FROM app_settings WHERE id = 1`
    })

    const load = theRow(selectRow(undefined)).pipe(Effect.withSpan("SettingsRepo.load"))

    const lockRow = findOneRow({
      Request: Schema.Void,
      Result: SettingsRow,
      execute: () => sql`SELECT ${columns} FROM app_settings WHERE id = 1 FOR UPDATE`
    })

    /** The row, locked until the transaction ends (a PATCH reads, merges and writes under it). */
    const lock = theRow(lockRow(undefined))

    const selectAppearance = findOneRow({
      Request: Schema.Void,
      Result: AppearanceSettings,
      execute: () => sql`SELECT ${appearanceColumns} FROM app_settings WHERE id = 1`
    })

    const loadAppearance = theRow(selectAppearance(undefined)).pipe(Effect.withSpan("SettingsRepo.loadAppearance"))

    const updateAppRow = findOneRow({
      Request: AppSettingsChanges,
      Result: SettingsRow,
      execute: ({ model_providers, ...plain }) =>
        sql`UPDATE app_settings SET ${
          patchColumns(sql, {
            ...plain,
            model_providers: model_providers === undefined
              ? undefined
              : sql`${JSON.stringify(model_providers)}::jsonb`,
            updated_at: sql`now()`
          })
        }
          WHERE id = 1 RETURNING ${columns}`
    })

    /** Writes the app settings fields and bumps updated_at. */
    const updateApp = (changes: AppSettingsChanges) => theRow(updateAppRow(changes))

    const updateAppearanceRow = findOneRow({
      Request: AppearanceChanges,
      Result: AppearanceSettings,
      execute: (changes) =>
        sql`UPDATE app_settings SET ${patchColumns(sql, changes)} WHERE id = 1 RETURNING ${appearanceColumns}`
    })

    /** Writes appearance fields; updated_at belongs to the app settings and is left alone. */
    const updateAppearance = (changes: AppearanceChanges) => theRow(updateAppearanceRow(changes))

    return { load, lock, loadAppearance, updateApp, updateAppearance } as const
  })
}) {}
