import { Context, Data, Duration, Effect, Layer } from "effect"

/**
 * The language model behind agent nodes and thread titles, whatever serves it: `local` (offline,
 * deterministic, the embedded default) or an OpenAI-compatible server. A provider streams text;
 * retries, timeouts and the circuit breaker wrap it, so it stays a plain client.
 */

export interface ChatMessage {
  readonly role: "system" | "user" | "assistant"
  readonly content: string
}

/**
 * A passage an agent node retrieved from a vector store for this call, best first. Its text is
 * already in `messages` (the `retrievalContext` system message); the local model reads it from here.
 */
export interface RetrievedSource {
  readonly docId: string
  readonly title: string
  readonly text: string
  readonly score: number
}

export interface CompletionRequest {
  readonly model: string
  readonly messages: ReadonlyArray<ChatMessage>
  /** what retrieval found (possibly nothing); absent when the node retrieves nothing */
  readonly sources?: ReadonlyArray<RetrievedSource> | undefined
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

/**
 * Where a call's text goes as it arrives: called once per delta, in order, synchronously from the
 * provider's own read of its answer. A token is the hot path of a conversation (50 streams at 50
 * tokens a second are 2,500 calls a second), so it crosses no Effect stream and no fiber on its way
 * to the client; a stream stage per layer cost ~20 µs of CPU per token each.
 */
export type OnDelta = (delta: string) => void

export interface LlmProviderService {
  /** the provider's name in metrics and logs (`local`, `openai`, or an app-settings provider id) */
  readonly name: string
  /**
   * Makes the call, gives its text to `onDelta` as it arrives, and succeeds once the answer is
   * complete; interrupting it cancels the call.
   */
  readonly answer: (request: CompletionRequest, onDelta: OnDelta) => Effect.Effect<void, LlmError>
}

export class LlmProvider extends Context.Tag("chatkit/LlmProvider")<LlmProvider, LlmProviderService>() {}

/** The whole answer of a call (thread titles need no stream). */
export const complete = (provider: LlmProviderService, request: CompletionRequest) =>
  Effect.suspend(() => {
    let text = ""
    return Effect.map(provider.answer(request, (delta) => (text += delta)), () => text)
  })

/** At most this many characters of retrieved text go into a call's context, whatever `top_k` asks. */
export const RETRIEVAL_CONTEXT_MAX_CHARS = 12_000
/** At most this many characters of one passage (a chunk may hold 20,000): a long one leaves room for others. */
export const RETRIEVAL_PASSAGE_MAX_CHARS = 4_000

/** `text` cut to at most `max` UTF-16 units, never inside a surrogate pair, marked when cut. */
const cut = (text: string, max: number) => {
  if (text.length <= max) return text
  const end = /[\uD800-\uDBFF]/.test(text.charAt(max - 2)) ? max - 2 : max - 1
  return `${text.slice(0, end)}…`
}

/**
 * The passages a call may carry, best first, within RETRIEVAL_CONTEXT_MAX_CHARS (each at most
 * RETRIEVAL_PASSAGE_MAX_CHARS); those that do not fit are dropped, so the model sees, and the
 * answer cites, the same sources.
 */
export const boundedSources = (sources: ReadonlyArray<RetrievedSource>): ReadonlyArray<RetrievedSource> => {
  const kept: Array<RetrievedSource> = []
  let left = RETRIEVAL_CONTEXT_MAX_CHARS
  for (const source of sources) {
    if (left < 200) break
    const text = cut(source.text, Math.min(RETRIEVAL_PASSAGE_MAX_CHARS, left))
    kept.push({ ...source, text })
    left -= text.length
  }
  return kept
}

/** The system message that lists a call's retrieved sources with their text (already bounded). */
export const retrievalContext = (sources: ReadonlyArray<RetrievedSource>): string =>
  sources.length === 0
    ? "A search of this assistant's sources for the user's last message found nothing. Say so if the answer needed them."
    : [
      "Sources retrieved for the user's last message, best first. Use them when they are relevant and name the " +
      "source (its title) of what you take from them.",
      ...sources.map((source, i) => `[${i + 1}] ${source.title} (document ${source.docId})\n${source.text}`)
    ].join("\n\n")

const lastUserMessage = (messages: ReadonlyArray<ChatMessage>) =>
  [...messages].reverse().find((message) => message.role === "user")?.content.trim() ?? ""

const quote = (text: string, max: number) => {
  const words = text.split(/\s+/).filter((word) => word !== "")
  return words.length <= max ? words.join(" ") : `${words.slice(0, max).join(" ")} …`
}

/**
 * The retrieval part of a local answer: the best passage quoted (its first 60 words), so
 * retrieval shows offline; a search that found nothing says so; a call without retrieval, nothing.
 */
const retrievalAnswer = (sources: ReadonlyArray<RetrievedSource> | undefined): ReadonlyArray<string> => {
  if (sources === undefined) return []
  const [best] = sources
  if (best === undefined) return ["I searched the sources of this assistant and found nothing about it."]
  return [`According to ${best.title}: "${quote(best.text, 60)}"`]
}

/**
 * What the local model answers: the same text for the same conversation, useful enough to see a
 * conversation work end to end and honest about being no model. With retrieved sources it quotes
 * the best one first; the system message listing them is not taken for the instructions.
 */
export const localAnswer = (request: CompletionRequest): string => {
  const said = lastUserMessage(request.messages)
  const turns = request.messages.filter((message) => message.role === "user").length
  const context = request.sources === undefined ? undefined : retrievalContext(request.sources)
  const instructions = request.messages.find((message) => message.role === "system" && message.content !== context)
    ?.content.trim()
  return [
    ...retrievalAnswer(request.sources),
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

/** The offline provider: `localAnswer` word by word, `delay` before each word. */
export const makeLocalLlm = (options: LocalLlmOptions = {}): LlmProviderService => {
  const delay = Duration.decode(options.delay ?? 0)
  const onUsage = options.onUsage
  return {
    name: "local",
    answer: (request, onDelta) =>
      Effect.suspend(() => {
        const deltas = wordDeltas(localAnswer(request))
        const words = Duration.toMillis(delay) === 0
          ? Effect.sync(() => deltas.forEach((delta) => onDelta(delta)))
          : Effect.forEach(deltas, (delta) => Effect.zipRight(Effect.sleep(delay), Effect.sync(() => onDelta(delta))), {
            discard: true
          })
        return onUsage === undefined ? words : Effect.zipRight(words, onUsage(localUsage(request, deltas), request))
      })
  }
}

export const LocalLlmLive = (options: LocalLlmOptions = {}) => Layer.succeed(LlmProvider, makeLocalLlm(options))
