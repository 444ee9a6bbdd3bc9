import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"

import { AppConfig } from "./Config.js"
import { LlmProvider, LocalLlmLive } from "./LlmProvider.js"
import { makeOpenAiLlm } from "./OpenAiLlm.js"
import { resilient } from "./ResilientLlm.js"

/**
 * The provider `LLM_PROVIDER` names: the offline local model (the default), or the
 * OpenAI-compatible server at `OPENAI_BASE_URL` with `OPENAI_API_KEY`, with retries and timeouts.
 */
export const LlmProviderLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    config.llmProvider === "openai" && Option.isSome(config.openaiApiKey)
      ? Layer.effect(
        LlmProvider,
        Effect.map(
          makeOpenAiLlm({ baseUrl: config.openaiBaseUrl, apiKey: config.openaiApiKey.value }),
          (provider) => resilient(provider)
        )
      ).pipe(Layer.provide(NodeHttpClient.layer))
      : LocalLlmLive())
)
