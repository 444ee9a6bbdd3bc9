import type * as HttpClient from "@effect/platform/HttpClient"
import { Duration, Effect, Layer, Option, type Redacted } from "effect"

import type { CircuitBreaker } from "./CircuitBreaker.js"
import { AppConfig, type AppConfigShape, InvalidConfig } from "./Config.js"
import {
  Embeddings,
  type EmbeddingsService,
  instrumentedEmbeddings,
  makeLocalEmbeddings,
  makeOpenAiEmbeddings
} from "./Embeddings.js"
import { makeProviderBreaker } from "./LlmProviderLive.js"
import { UpstreamHttpClient } from "./UpstreamHttpClient.js"

/** The breaker of the OpenAI embeddings, apart from the chat provider's (one can be down alone). */
export const OPENAI_EMBEDDINGS_BREAKER = "openai-embeddings"

/**
 * OpenAI's embeddings at `OPENAI_BASE_URL` with `OPENAI_API_KEY`, under the LLM's settings:
 * LLM_TOTAL_TIMEOUT_SECONDS per request, LLM_RETRY_ATTEMPTS, and the given breaker (made with
 * LLM_CIRCUIT_FAILURES / LLM_CIRCUIT_COOLDOWN_SECONDS by `EmbeddingsLive`); instrumented.
 */
export const makeConfiguredOpenAiEmbeddings = (
  config: AppConfigShape,
  breaker: CircuitBreaker,
  apiKey: Redacted.Redacted
): Effect.Effect<EmbeddingsService, never, HttpClient.HttpClient> =>
  Effect.map(
    makeOpenAiEmbeddings({
      name: "openai",
      baseUrl: config.openaiBaseUrl,
      apiKey,
      timeout: Duration.seconds(config.llmTotalTimeoutSeconds),
      attempts: config.llmRetryAttempts,
      breaker
    }),
    instrumentedEmbeddings
  )

/**
 * The provider `EMBEDDINGS_PROVIDER` names: `local` (the default; offline, 384 dimensions) or
 * `openai` (`text-embedding-3-small`, 1536 dimensions). `openai` without OPENAI_API_KEY fails
 * the layer with InvalidConfig rather than falling back to `local`: the two do not share a
 * dimension, so a silent fallback would make every existing store unwritable.
 */
export const EmbeddingsLive: Layer.Layer<Embeddings, InvalidConfig, AppConfig> = Layer.unwrapEffect(
  Effect.map(AppConfig, (config): Layer.Layer<Embeddings, InvalidConfig> => {
    if (config.embeddingsProvider === "local") {
      return Layer.sync(Embeddings, () => instrumentedEmbeddings(makeLocalEmbeddings()))
    }
    return Option.match(config.openaiApiKey, {
      onNone: () =>
        Layer.fail(new InvalidConfig({ problems: ["OPENAI_API_KEY: is required when EMBEDDINGS_PROVIDER=openai"] })),
      onSome: (apiKey) =>
        Layer.scoped(
          Embeddings,
          Effect.flatMap(
            makeProviderBreaker(config, OPENAI_EMBEDDINGS_BREAKER),
            (breaker) => makeConfiguredOpenAiEmbeddings(config, breaker, apiKey)
          )
        ).pipe(Layer.provide(UpstreamHttpClient))
    })
  })
)
