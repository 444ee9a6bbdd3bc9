import * as HttpClient from "@effect/platform/HttpClient"
import { Effect, Option, Scope, SynchronizedRef } from "effect"

import type { ModelProvider } from "../../domain/Settings.js"
import type { CircuitBreaker } from "../../platform/CircuitBreaker.js"
import { AppConfig } from "../../platform/Config.js"
import { LlmProvider, type LlmProviderService } from "../../platform/LlmProvider.js"
import { makeProviderBreaker, makeResilientOpenAi, OPENAI_API_BASE } from "../../platform/LlmProviderLive.js"
import { UpstreamHttpClient } from "../../platform/UpstreamHttpClient.js"
import { ModelsService } from "../models/Service.js"
import { SettingsService } from "../settings/Service.js"

/** The provider that answers a call, and the model name to send it. */
export interface RoutedLlm {
  readonly provider: LlmProviderService
  readonly model: string
}

const named = (name: string | undefined) => {
  const trimmed = name?.trim()
  return trimmed === undefined || trimmed === "" ? undefined : trimmed
}

/**
 * Which provider and key serve a model (issue 10): the requested model, else the app settings'
 * `default_model` -> its catalog entry's `provider_id` -> that app-settings provider (its
 * `api_base`, its decrypted key); a catalog model without a provider goes to the app-settings
 * default provider; a model outside the catalog, or no provider to take it, goes to the provider
 * of the environment (`LlmProvider`: LLM_PROVIDER, OPENAI_API_KEY, OPENAI_BASE_URL).
 */
export class LlmRouter extends Effect.Service<LlmRouter>()("chatkit/LlmRouter", {
  scoped: Effect.gen(function*() {
    const config = yield* AppConfig
    const settings = yield* SettingsService
    const models = yield* ModelsService
    const fromEnvironment = yield* LlmProvider
    const client = yield* HttpClient.HttpClient
    const scope = yield* Effect.scope
    // one breaker per app-settings provider for the life of the process, whatever its key becomes
    const breakers = yield* SynchronizedRef.make(new Map<string, CircuitBreaker>())

    const breakerFor = (id: string) =>
      SynchronizedRef.modifyEffect(breakers, (map) => {
        const found = map.get(id)
        if (found !== undefined) return Effect.succeed([found, map] as const)
        return Effect.map(
          Scope.extend(makeProviderBreaker(config, id), scope),
          (breaker) => [breaker, new Map(map).set(id, breaker)] as const
        )
      })

    const fromSettings = (provider: ModelProvider) =>
      Effect.gen(function*() {
        const apiKey = yield* settings.providerApiKey(provider.id)
        return yield* makeResilientOpenAi(config, yield* breakerFor(provider.id), {
          name: provider.id,
          baseUrl: provider.api_base ?? OPENAI_API_BASE,
          apiKey: Option.getOrUndefined(apiKey)
        })
      }).pipe(Effect.provideService(HttpClient.HttpClient, client))

    const route = (requested: string | undefined): Effect.Effect<RoutedLlm> =>
      Effect.gen(function*() {
        const app = yield* settings.getAppSettings
        const model = named(requested) ?? named(app.default_model)
        if (model === undefined) return { provider: fromEnvironment, model: "default" }
        const entry = yield* models.providerOf(model)
        if (Option.isNone(entry)) return { provider: fromEnvironment, model }
        const providerId = entry.value
        const assigned = providerId === null ? undefined : app.model_providers.find((p) => p.id === providerId)
        if (providerId !== null && assigned === undefined) {
          yield* Effect.logWarning("a catalog model names a provider the app settings do not have").pipe(
            Effect.annotateLogs({ model, provider_id: providerId })
          )
        }
        const chosen = assigned ?? app.model_providers.find((p) => p.is_default)
        if (chosen === undefined) return { provider: fromEnvironment, model }
        return { provider: yield* fromSettings(chosen), model }
      }).pipe(Effect.withSpan("LlmRouter.route"))

    return { route } as const
  }),
  dependencies: [SettingsService.Default, ModelsService.Default, UpstreamHttpClient]
}) {}
