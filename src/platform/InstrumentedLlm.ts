import { Cause, Effect, Exit, Metric, MetricLabel, Option } from "effect"

import type { CompletionRequest, LlmError, LlmProviderService, LlmUsage, OnDelta } from "./LlmProvider.js"
import { llmRequestsTotal, llmTimeToFirstTokenSeconds, llmTokensTotal } from "./Metrics.js"

/**
 * Spans and metrics around a provider. Each call gets a `llm.stream` span (provider, model, and
 * the token counts when `recordUsage` runs inside it; never the messages or the answer), one
 * `llm_requests_total` by outcome, and one `llm_time_to_first_token_seconds` if a delta came.
 * Wrap the outermost provider, around `resilient`, so that a call is what its reader sees:
 * retries inside it, `circuit_open` counted, the first token timed from the first attempt.
 */

/** How a call ended: `cancelled` when its caller stopped it before the end (interruption, client gone). */
export type LlmOutcome = "ok" | LlmError["reason"] | "cancelled" | "defect"

const outcomeOf = (exit: Exit.Exit<unknown, LlmError>): LlmOutcome => {
  if (Exit.isSuccess(exit)) return "ok"
  return Option.match(Cause.failureOption(exit.cause), {
    onSome: (error) => error.reason,
    onNone: () => (Option.isSome(Cause.dieOption(exit.cause)) ? "defect" : "cancelled")
  })
}

export const instrumented = (provider: LlmProviderService): LlmProviderService => {
  const answer = (request: CompletionRequest, onDelta: OnDelta): Effect.Effect<void, LlmError> => {
    const labels = [MetricLabel.make("provider", provider.name), MetricLabel.make("model", request.model)]
    const timeToFirstToken = Metric.taggedWithLabels(llmTimeToFirstTokenSeconds, labels)
    return Effect.clockWith((clock) => {
      const startedAt = clock.unsafeCurrentTimeNanos()
      let waiting = true
      // Synchronous (the clock read and the histogram updated in place): the first delta pays no Effect.
      return provider.answer(request, (delta) => {
        if (waiting) {
          waiting = false
          timeToFirstToken.unsafeUpdate(Number(clock.unsafeCurrentTimeNanos() - startedAt) / 1e9, [])
        }
        onDelta(delta)
      })
    }).pipe(
      // runs however the call ends, and leaves an interruption an interruption
      Effect.onExit((exit) =>
        Metric.increment(
          Metric.taggedWithLabels(llmRequestsTotal, [...labels, MetricLabel.make("outcome", outcomeOf(exit))])
        )
      ),
      Effect.withSpan("llm.stream", {
        kind: "client",
        attributes: { "llm.provider": provider.name, "llm.model": request.model }
      })
    )
  }
  return { name: provider.name, answer }
}

/**
 * An `onUsage` for a provider (`makeOpenAiLlm`, `makeLocalLlm`): counts `llm_tokens_total` by kind
 * and puts the counts on the current span, which is the call's `llm.stream` when the provider is
 * `instrumented`. `provider` is the name the metrics use, the provider's `name`.
 */
export const recordUsage = (provider: string) => (usage: LlmUsage, request: CompletionRequest): Effect.Effect<void> => {
  const tokens = (kind: "prompt" | "completion") =>
    Metric.taggedWithLabels(llmTokensTotal, [
      MetricLabel.make("provider", provider),
      MetricLabel.make("model", request.model),
      MetricLabel.make("kind", kind)
    ])
  return Effect.all([
    Metric.incrementBy(tokens("prompt"), usage.promptTokens),
    Metric.incrementBy(tokens("completion"), usage.completionTokens),
    Effect.annotateCurrentSpan({
      "llm.tokens.prompt": usage.promptTokens,
      "llm.tokens.completion": usage.completionTokens
    })
  ], { discard: true })
}
