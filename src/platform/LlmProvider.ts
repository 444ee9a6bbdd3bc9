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

/** Token counts of one call, as its provider reports them (once, at the end of a complete answer). */
export interface LlmUsage {
  readonly promptTokens: number
  readonly completionTokens: number
  readonly totalTokens: number
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

export interface LocalLlmOptions {
  /** between words (0 by default) */
  readonly delay?: Duration.DurationInput
  /** called once per call whose answer was read to the end */
  readonly onUsage?: (usage: LlmUsage, request: CompletionRequest) => Effect.Effect<void>
}

const wordCount = (text: string) => text.split(/\s+/).filter((word) => word !== "").length

// A rough count (no tokenizer): prompt tokens are the words of the messages, completion tokens the word deltas.
const localUsage = (request: CompletionRequest, deltas: ReadonlyArray<string>): LlmUsage => {
  const promptTokens = request.messages.reduce((sum, message) => sum + wordCount(message.content), 0)
  return { promptTokens, completionTokens: deltas.length, totalTokens: promptTokens + deltas.length }
}

/** The offline provider: `localAnswer` word by word, `delay` between words. */
export const makeLocalLlm = (options: LocalLlmOptions = {}): LlmProviderService => {
  const delay = Duration.decode(options.delay ?? 0)
  const onUsage = options.onUsage
  return {
    name: "local",
    stream: (request) => {
      const deltas = wordDeltas(localAnswer(request))
      const words = Stream.fromIterable(deltas)
      const paced = Duration.toMillis(delay) === 0 ? words : Stream.tap(words, () => Effect.sleep(delay))
      return onUsage === undefined
        ? paced
        : Stream.concat(paced, Stream.execute(Effect.suspend(() => onUsage(localUsage(request, deltas), request))))
    }
  }
}

export const LocalLlmLive = (options: LocalLlmOptions = {}) => Layer.succeed(LlmProvider, makeLocalLlm(options))
