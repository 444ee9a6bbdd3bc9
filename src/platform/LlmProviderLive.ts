import type * as HttpClient from "@effect/platform/HttpClient"
import { Duration, Effect, Layer, Option, type Redacted } from "effect"

import { type CircuitBreaker, makeCircuitBreaker } from "./CircuitBreaker.js"
import { AppConfig, type AppConfigShape } from "./Config.js"
import { instrumented, recordUsage } from "./InstrumentedLlm.js"
import { LlmProvider, type LlmProviderService, makeLocalLlm } from "./LlmProvider.js"
import { makeOpenAiLlm } from "./OpenAiLlm.js"
import { resilient } from "./ResilientLlm.js"
import { UpstreamHttpClient } from "./UpstreamHttpClient.js"

/** Where a provider of kind `openai` without an `api_base` lives, as in OpenAI's SDKs. */
export const OPENAI_API_BASE = "https://api.openai.com/v1"

/** One provider's breaker as configured: LLM_CIRCUIT_FAILURES failed attempts in a row open it. */
export const makeProviderBreaker = (config: AppConfigShape, name: string) =>
  makeCircuitBreaker({
    name,
    failureThreshold: config.llmCircuitFailures,
    cooldown: Duration.seconds(config.llmCircuitCooldownSeconds)
  })

/**
 * An OpenAI-compatible server behind the configured timeouts and retries and the given breaker
 * (one per provider, kept across calls, so its state outlives a change of key), with its metrics
 * and a span per call.
 */
export const makeResilientOpenAi = (
  config: AppConfigShape,
  breaker: CircuitBreaker,
  server: { readonly name: string; readonly baseUrl: string; readonly apiKey: Redacted.Redacted | undefined }
): Effect.Effect<LlmProviderService, never, HttpClient.HttpClient> =>
  Effect.map(
    makeOpenAiLlm({ ...server, onUsage: recordUsage(server.name) }),
    (provider) =>
      instrumented(resilient(provider, {
        firstTokenTimeout: Duration.seconds(config.llmFirstTokenTimeoutSeconds),
        totalTimeout: Duration.seconds(config.llmTotalTimeoutSeconds),
        attempts: config.llmRetryAttempts,
        breaker
      }))
  )

/**
 * The provider `LLM_PROVIDER` names, which serves whatever the app settings do not route
 * elsewhere: the offline local model (the default), or the OpenAI-compatible server at
 * `OPENAI_BASE_URL` with `OPENAI_API_KEY`.
 */
export const LlmProviderLive = Layer.unwrapEffect(
  Effect.map(
    AppConfig,
    (config) =>
      Option.match(config.llmProvider === "openai" ? config.openaiApiKey : Option.none(), {
        onNone: () =>
          Layer.succeed(
            LlmProvider,
            instrumented(
              makeLocalLlm({ delay: Duration.millis(config.localLlmDelayMs), onUsage: recordUsage("local") })
            )
          ),
        onSome: (apiKey) =>
          Layer.scoped(
            LlmProvider,
            Effect.gen(function*() {
              const breaker = yield* makeProviderBreaker(config, "openai")
              return yield* makeResilientOpenAi(config, breaker, {
                name: "openai",
                baseUrl: config.openaiBaseUrl,
                apiKey
              })
            })
          ).pipe(Layer.provide(UpstreamHttpClient))
      })
  )
)
