import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"

import { makeCircuitBreaker } from "./CircuitBreaker.js"
import { AppConfig } from "./Config.js"
import { LlmProvider, LocalLlmLive } from "./LlmProvider.js"
import { makeOpenAiLlm } from "./OpenAiLlm.js"
import { resilient } from "./ResilientLlm.js"

/**
 * The provider `LLM_PROVIDER` names: the offline local model (the default), or the
 * OpenAI-compatible server at `OPENAI_BASE_URL` with `OPENAI_API_KEY`, with retries, timeouts and a
 * circuit breaker.
 */
export const LlmProviderLive = Layer.unwrapEffect(
  Effect.map(
    AppConfig,
    (config) =>
      Option.match(config.llmProvider === "openai" ? config.openaiApiKey : Option.none(), {
        onNone: () => LocalLlmLive(),
        onSome: (apiKey) =>
          Layer.scoped(
            LlmProvider,
            Effect.gen(function*() {
              const provider = yield* makeOpenAiLlm({ baseUrl: config.openaiBaseUrl, apiKey })
              // one breaker per provider: 5 failed attempts in a row open it for 30 s
              const breaker = yield* makeCircuitBreaker({ name: provider.name })
              return resilient(provider, { breaker })
            })
          ).pipe(Layer.provide(NodeHttpClient.layer))
      })
  )
)
