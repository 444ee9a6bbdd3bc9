import { Context, Data, Duration, Effect, Layer, Stream } from "effect"

/**
 * The language model behind agent nodes and thread titles, whatever serves it: `local` (offline,
 * deterministic, the embedded default) or an OpenAI-compatible server. A provider streams text;
 * retries, timeouts and the circuit breaker wrap it, so it stays a plain client.
 */

export interface ChatMessage {
  readonly role: "system" | "user" | "assistant"
  readonly content: string
}

export interface CompletionRequest {
  readonly model: string
  readonly messages: ReadonlyArray<ChatMessage>
}

/**
 * Why a call failed; `retryAfterMs` is the provider's `Retry-After`, when it sent one (for
 * `circuit_open`, the breaker's remaining cool-down: the call was not made).
 */
export class LlmError extends Data.TaggedError("LlmError")<{
  readonly provider: string
  readonly reason: "http" | "connection" | "timeout" | "malformed" | "circuit_open"
  readonly status?: number
  readonly retryAfterMs?: number
}> {
  override get message() {
    return `${this.provider}: ${this.reason}${this.status === undefined ? "" : ` ${this.status}`}`
  }
}

export interface LlmProviderService {
  /** the provider's name in metrics and logs (`local`, `openai`, or an app-settings provider id) */
  readonly name: string
  /** the answer as text deltas, in order; interrupting the stream cancels the call */
  readonly stream: (request: CompletionRequest) => Stream.Stream<string, LlmError>
}

export class LlmProvider extends Context.Tag("chatkit/LlmProvider")<LlmProvider, LlmProviderService>() {}

/** The whole answer of a streamed call (thread titles need no stream). */
export const complete = (provider: LlmProviderService, request: CompletionRequest) =>
  Stream.runFold(provider.stream(request), "", (text, delta) => text + delta)

const lastUserMessage = (messages: ReadonlyArray<ChatMessage>) =>
  [...messages].reverse().find((message) => message.role === "user")?.content.trim() ?? ""

const quote = (text: string, max: number) => {
  const words = text.split(/\s+/).filter((word) => word !== "")
  return words.length <= max ? words.join(" ") : `${words.slice(0, max).join(" ")} …`
}

/**
 * What the local model answers: the same text for the same conversation, useful enough to see a
 * conversation work end to end and honest about being no model.
 */
export const localAnswer = (request: CompletionRequest): string => {
  const said = lastUserMessage(request.messages)
  const turns = request.messages.filter((message) => message.role === "user").length
  const instructions = request.messages.find((message) => message.role === "system")?.content.trim()
  return [
    said === "" ? "You sent an empty message." : `You wrote: "${quote(said, 40)}"`,
    `This is turn ${turns} of the conversation${
      instructions === undefined ? "" : `, under the instructions "${quote(instructions, 20)}"`
    }.`,
    "I am chatkit-backend's local model: I work offline and only echo what I am given.",
    "Set LLM_PROVIDER=openai (with OPENAI_API_KEY and OPENAI_BASE_URL) or add a provider in the app settings for real answers."
  ].join(" ")
}

/** Splits an answer into word-sized deltas that concatenate back to it exactly. */
export const wordDeltas = (text: string): ReadonlyArray<string> => text.match(/\S+\s*|\s+/g) ?? []

/** The offline provider: `localAnswer` word by word, `delay` between words (0 by default). */
export const makeLocalLlm = (options: { readonly delay?: Duration.DurationInput } = {}): LlmProviderService => {
  const delay = Duration.decode(options.delay ?? 0)
  return {
    name: "local",
    stream: (request) => {
      const words = Stream.fromIterable(wordDeltas(localAnswer(request)))
      return Duration.toMillis(delay) === 0 ? words : Stream.tap(words, () => Effect.sleep(delay))
    }
  }
}

export const LocalLlmLive = (options: { readonly delay?: Duration.DurationInput } = {}) =>
  Layer.succeed(LlmProvider, makeLocalLlm(options))
