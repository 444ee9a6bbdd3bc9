import { randomUUID } from "node:crypto"

import { SqlClient } from "@effect/sql"
import { Effect, Either, Option, Redacted } from "effect"

import { type FieldIssue, ValidationError } from "../../domain/errors.js"
import { AppearanceSettings, AppSettings, type ModelProvider, type ModelProviderInput } from "../../domain/Settings.js"
import { Cache } from "../../platform/Cache.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import { AuditLog, changedFields } from "../audit/AuditLog.js"
import { type AppearanceChanges, SettingsRepo, type SettingsRow, type StoredProvider } from "./Repo.js"
import { apiKeyHint, SecretBox } from "./SecretBox.js"

/** Cache keys; each is its own cache name in `cache_requests_total`. */
export const APP_SETTINGS_CACHE_KEY = "app_settings"
export const APPEARANCE_CACHE_KEY = "appearance"

export interface UpdateAppSettingsInput {
  readonly thread_title_prompt?: string | undefined
  readonly thread_title_model?: string | undefined
  readonly default_model?: string | undefined
  readonly model_providers?: ReadonlyArray<ModelProviderInput> | undefined
}

const toProvider = (stored: StoredProvider): ModelProvider => ({
  id: stored.id,
  provider: stored.provider,
  api_base: stored.api_base,
  api_key_hint: stored.api_key_hint,
  is_default: stored.is_default
})

export const toAppSettings = (row: SettingsRow): AppSettings => ({
  thread_title_prompt: row.thread_title_prompt,
  thread_title_model: row.thread_title_model,
  default_model: row.default_model,
  model_providers: row.model_providers.map(toProvider),
  updated_at: row.updated_at
})

/** What the audit trail records of a provider: no key, not even its hint. */
const auditView = (stored: StoredProvider) => ({
  id: stored.id,
  provider: stored.provider,
  api_base: stored.api_base,
  is_default: stored.is_default,
  has_key: stored.api_key_ciphertext !== null
})

/**
 * Application and appearance settings (API.md section 4): one row, read through the cache, each
 * PATCH committed with its audit row and followed by the invalidation of exactly the cache entry it
 * changed. API keys are sealed by SecretBox; responses and the audit trail only ever hold hints.
 */
export class SettingsService extends Effect.Service<SettingsService>()("chatkit/SettingsService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* SettingsRepo
    const cache = yield* Cache
    const audit = yield* AuditLog
    const box = yield* SecretBox

    const getAppSettings = cache.getOrLoad(APP_SETTINGS_CACHE_KEY, AppSettings, Effect.map(repo.load, toAppSettings))
      .pipe(
        orDieOnSqlError,
        Effect.withSpan("SettingsService.getAppSettings")
      )

    const getAppearance = cache.getOrLoad(APPEARANCE_CACHE_KEY, AppearanceSettings, repo.loadAppearance).pipe(
      orDieOnSqlError,
      Effect.withSpan("SettingsService.getAppearance")
    )

    /**
     * The stored list a PATCH's `model_providers` asks for, or every problem found with it.
     * Entries with an id keep their sealed key unless told otherwise; keys are sealed here.
     */
    const mergeProviders = (
      stored: ReadonlyArray<StoredProvider>,
      inputs: ReadonlyArray<ModelProviderInput>
    ): Either.Either<
      { readonly list: ReadonlyArray<StoredProvider>; readonly keysChanged: ReadonlyArray<string> },
      ValidationError
    > => {
      const issues: Array<FieldIssue> = []
      const byId = new Map(stored.map((p) => [p.id, p]))
      const seen = new Set<string>()
      const keysChanged: Array<string> = []
      const list: Array<StoredProvider> = []
      inputs.forEach((input, i) => {
        const at = (field: string) => `model_providers.${i}.${field}`
        const previous = input.id === undefined ? undefined : byId.get(input.id)
        if (input.id !== undefined) {
          if (previous === undefined) issues.push({ path: at("id"), message: "no stored provider has this id" })
          if (seen.has(input.id)) issues.push({ path: at("id"), message: "is listed twice" })
          seen.add(input.id)
        }
        if (input.api_key !== undefined && input.delete_api_key === true) {
          issues.push({ path: at("delete_api_key"), message: "cannot be true together with api_key" })
        }
        const api_base = input.api_base === undefined ? (previous?.api_base ?? null) : input.api_base
        if (input.provider === "openai_compatible" && api_base === null) {
          issues.push({ path: at("api_base"), message: "is required for an openai_compatible provider" })
        }
        const id = input.id ?? randomUUID()
        let key = {
          api_key_ciphertext: previous?.api_key_ciphertext ?? null,
          api_key_key_id: previous?.api_key_key_id ?? null,
          api_key_hint: previous?.api_key_hint ?? null
        }
        if (input.api_key !== undefined) {
          const plain = Redacted.value(input.api_key)
          const sealed = box.seal(plain)
          key = { api_key_ciphertext: sealed.sealed, api_key_key_id: sealed.keyId, api_key_hint: apiKeyHint(plain) }
          keysChanged.push(id)
        } else if (input.delete_api_key === true) {
          if (key.api_key_ciphertext !== null) keysChanged.push(id)
          key = { api_key_ciphertext: null, api_key_key_id: null, api_key_hint: null }
        }
        list.push({ id, provider: input.provider, api_base, ...key, is_default: input.is_default ?? false })
      })
      if (list.filter((p) => p.is_default).length > 1) {
        issues.push({ path: "model_providers", message: "at most one provider can be is_default" })
      }
      for (const p of stored) if (!seen.has(p.id) && p.api_key_ciphertext !== null) keysChanged.push(p.id)
      return issues.length > 0
        ? Either.left(new ValidationError({ detail: "The model providers are not valid", errors: issues }))
        : Either.right({ list, keysChanged })
    }

    /** PATCH semantics; a request that changes nothing writes nothing (no audit row, no invalidation). */
    const updateAppSettings = (input: UpdateAppSettingsInput): Effect.Effect<AppSettings, ValidationError> =>
      Effect.gen(function*() {
        const result = yield* sql.withTransaction(
          Effect.gen(function*() {
            const before = yield* repo.lock
            const merged = input.model_providers === undefined
              ? undefined
              : yield* mergeProviders(before.model_providers, input.model_providers)
            const plain = changedFields(before, {
              thread_title_prompt: input.thread_title_prompt,
              thread_title_model: input.thread_title_model,
              default_model: input.default_model
            })
            const diff: Record<string, unknown> = { ...plain.diff }
            const providersBefore = before.model_providers.map(auditView)
            const providersAfter = merged?.list.map(auditView)
            if (providersAfter !== undefined && JSON.stringify(providersBefore) !== JSON.stringify(providersAfter)) {
              diff.model_providers = { from: providersBefore, to: providersAfter }
            }
            if (merged !== undefined && merged.keysChanged.length > 0) diff.provider_keys_changed = merged.keysChanged
            if (Object.keys(diff).length === 0) return { row: before, changed: false }
            const after = yield* repo.updateApp({
              ...plain.changes,
              ...(merged === undefined ? {} : { model_providers: merged.list })
            })
            yield* audit.record({
              action: "app_settings.update",
              resourceType: "app_settings",
              resourceId: 1,
              changes: diff
            })
            return { row: after, changed: true }
          })
        )
        // after the commit: a read that raced the write cannot re-cache the old row (generations)
        if (result.changed) yield* cache.invalidatePrefix(APP_SETTINGS_CACHE_KEY)
        return toAppSettings(result.row)
      }).pipe(orDieOnSqlError, Effect.withSpan("SettingsService.updateAppSettings"))

    const updateAppearance = (input: AppearanceChanges): Effect.Effect<AppearanceSettings> =>
      Effect.gen(function*() {
        const result = yield* sql.withTransaction(
          Effect.gen(function*() {
            const before = yield* repo.lock
            const { changes, diff } = changedFields(before, input)
            if (Object.keys(diff).length === 0) {
              const current: AppearanceSettings = {
                color_scheme: before.color_scheme,
                accent_color: before.accent_color,
                radius_style: before.radius_style,
                greeting: before.greeting,
                placeholder: before.placeholder,
                disclaimer: before.disclaimer
              }
              return { row: current, changed: false }
            }
            const after = yield* repo.updateAppearance(changes)
            yield* audit.record({
              action: "appearance_settings.update",
              resourceType: "appearance_settings",
              resourceId: 1,
              changes: diff
            })
            return { row: after, changed: true }
          })
        )
        if (result.changed) yield* cache.invalidatePrefix(APPEARANCE_CACHE_KEY)
        return result.row
      }).pipe(orDieOnSqlError, Effect.withSpan("SettingsService.updateAppearance"))

    /**
     * The plain API key of a provider (for calling it), `None` when it has none or the key cannot be
     * opened (its secret is no longer configured: the admin must enter it again).
     */
    const providerApiKey = (providerId: string) =>
      Effect.gen(function*() {
        const row = yield* repo.load
        const stored = row.model_providers.find((p) => p.id === providerId)
        if (stored === undefined || stored.api_key_ciphertext === null) return Option.none<Redacted.Redacted<string>>()
        const opened = box.open(stored.api_key_ciphertext)
        if (Either.isLeft(opened)) {
          yield* Effect.logWarning("a model provider's API key cannot be decrypted; enter it again").pipe(
            Effect.annotateLogs({ provider_id: providerId, key_id: stored.api_key_key_id, reason: opened.left.reason })
          )
          return Option.none<Redacted.Redacted<string>>()
        }
        return Option.some(opened.right)
      }).pipe(orDieOnSqlError, Effect.withSpan("SettingsService.providerApiKey"))

    return { getAppSettings, updateAppSettings, getAppearance, updateAppearance, providerApiKey } as const
  }),
  dependencies: [SettingsRepo.Default, SecretBox.Default]
}) {}
