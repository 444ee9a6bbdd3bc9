import { Data, Effect, Either } from "effect"

import { VECTOR_LIMITS } from "../../api/VectorStoresApi.js"
import type { Graph, GraphEdge, GraphNode } from "../../domain/Workflow.js"
import {
  boundedSources,
  type ChatMessage,
  type LlmError,
  type LlmProviderService,
  type OnDelta,
  retrievalContext,
  type RetrievedSource
} from "../../platform/LlmProvider.js"
import {
  evaluate,
  jsonEquals,
  type JsonValue,
  parseAssignmentTarget,
  parseExpression,
  renderTemplate,
  type Scope
} from "../workflows/Expressions.js"
import { type AgentRetrieval, agentRetrieval } from "../workflows/Graph.js"

/**
 * One turn of a thread's workflow (API.md section 6): from where the thread stands (its start, or
 * the node after the `wait_for_user_input` it paused at) to an `end` or the next pause, one node at
 * a time. What happens comes out as events (a message starts, is done, the turn ends); the text of
 * the message in between goes to `onDelta` as it is produced. The new runtime state comes last, so
 * the caller stores it with the turn and a paused workflow resumes on any instance.
 */

/** What a thread keeps between turns: where to resume and the workflow's `state.*`. */
export interface RuntimeState {
  readonly resume_at?: string | undefined
  readonly state: { readonly [key: string]: JsonValue }
}

export const INITIAL_RUNTIME_STATE: RuntimeState = { state: {} }

/** Nodes one turn may visit at most: a loop in a graph ends with an error instead of running forever. */
export const DEFAULT_STEP_LIMIT = 100

export type TurnEvent =
  /** an assistant message begins (from an `agent` or an `assistant_message` node) */
  | { readonly _tag: "MessageStarted"; readonly node: string }
  /** the sources the message's model was given (an agent node that retrieves), right after its start */
  | { readonly _tag: "SourcesFound"; readonly sources: ReadonlyArray<RetrievedSource> }
  | { readonly _tag: "MessageDone"; readonly text: string }
  /**
   * the turn is over (an `end`, or a pause): the state to store. It is the only way state leaves a
   * turn: a turn cut short (a failure, a client gone) never gets here, so the thread keeps the state
   * it had before the turn and its next message runs from the same place.
   */
  | { readonly _tag: "TurnEnded"; readonly runtime: RuntimeState; readonly paused: boolean }

/** Why a turn stopped early; `message` is safe to show the user. */
export class TurnFailed extends Data.TaggedError("TurnFailed")<{
  /** `retrieval_unavailable`: the embeddings provider failed, so a retry may work; `retrieval`: it will not as is */
  readonly reason: "graph" | "expression" | "step_limit" | "llm" | "retrieval" | "retrieval_unavailable"
  readonly message: string
  readonly llm?: LlmError
}> {}

/**
 * Why a search for an agent node found no answer: the store does not exist (or was deleted), it
 * cannot be searched as it is (its vectors do not fit the embeddings provider), or the provider
 * is unavailable. `detail` is safe to show the user.
 */
export class RetrievalFailed extends Data.TaggedError("RetrievalFailed")<{
  readonly reason: "not_found" | "unusable" | "unavailable"
  readonly detail: string
}> {}

/** A search an agent node asks for: the user's message in the store `storeSlug`, `topK` chunks. */
export interface RetrievalRequest extends AgentRetrieval {
  readonly query: string
}

export interface TurnInput {
  readonly graph: Graph
  readonly runtime: RuntimeState
  readonly userMessage: string
  /** the conversation before this message, oldest first */
  readonly history: ReadonlyArray<ChatMessage>
  /**
   * The text of the message being written, as it comes, between its `MessageStarted` and its
   * `MessageDone` (synchronously, from the model's read of its answer: no stream element per token).
   */
  readonly onDelta: OnDelta
  /**
   * What happens, as it happens: the turn goes on once it returns (a message's row is written
   * before its model is asked, say). A call per event, not a stream: a stream stage per node and
   * message cost ~4,000 Effect operations a turn, half of a turn's.
   */
  readonly onEvent: (event: TurnEvent) => Effect.Effect<void>
  /** the provider and model of an agent node (its `model` parameter, if any) */
  readonly llmFor: (
    model: string | undefined
  ) => Effect.Effect<{ readonly provider: LlmProviderService; readonly model: string }>
  /** the hybrid search of the vector stores, best first; without it an agent node that retrieves fails the turn */
  readonly retrieve?: (request: RetrievalRequest) => Effect.Effect<ReadonlyArray<RetrievedSource>, RetrievalFailed>
  readonly stepLimit?: number
}

const textParameter = (node: GraphNode, key: string): string | undefined => {
  const value = node.parameters[key]
  return typeof value === "string" ? value : undefined
}

const MAX_QUERY_LENGTH = VECTOR_LIMITS.queryLength

/** The user's message as a search query: trimmed, at most the search API's bound, never cut inside a surrogate pair. */
const searchQuery = (message: string) => {
  const trimmed = message.trim()
  if (trimmed.length <= MAX_QUERY_LENGTH) return trimmed
  const end = /[\uD800-\uDBFF]/.test(trimmed.charAt(MAX_QUERY_LENGTH - 1)) ? MAX_QUERY_LENGTH - 1 : MAX_QUERY_LENGTH
  return trimmed.slice(0, end)
}

const graphError = (message: string) => new TurnFailed({ reason: "graph", message })

const expressionError = (node: GraphNode, message: string) =>
  new TurnFailed({ reason: "expression", message: `Node "${node.slug}": ${message}` })

/** Sets `segments` under `state`, copying only the path it changes. */
const assign = (
  state: { readonly [key: string]: JsonValue },
  segments: ReadonlyArray<string | number>,
  value: JsonValue
): { readonly [key: string]: JsonValue } => {
  const [head, ...rest] = segments
  const key = String(head)
  const current = Object.hasOwn(state, key) ? state[key] : undefined
  const child = typeof current === "object" && current !== null && !Array.isArray(current) ? current : {}
  return {
    ...state,
    [key]: rest.length === 0 ? value : assign(child as { readonly [key: string]: JsonValue }, rest, value)
  }
}

/**
 * Runs one turn. Disabled nodes are passed through; a node with several plain edges follows the
 * first; a `condition` node follows the edge whose condition equals its expression's value, else
 * its edge without a condition.
 */
export const runTurn = (input: TurnInput): Effect.Effect<void, TurnFailed> => {
  const nodes = new Map(input.graph.nodes.map((node) => [node.slug, node]))
  const outgoing = (slug: string) => input.graph.edges.filter((edge) => edge.source === slug)
  const limit = input.stepLimit ?? DEFAULT_STEP_LIMIT
  const conversation: Array<ChatMessage> = [...input.history, { role: "user", content: input.userMessage }]
  let state = input.runtime.state
  const scope = (): Scope => ({ input: { user_message: input.userMessage }, state })

  const plainNext = (node: GraphNode): Either.Either<string | undefined, TurnFailed> => {
    const edge = outgoing(node.slug).find((e) => e.condition === null) ?? outgoing(node.slug)[0]
    return Either.right(edge?.target)
  }

  const conditionNext = (node: GraphNode): Either.Either<string | undefined, TurnFailed> => {
    const expression = textParameter(node, "expression") ?? "null"
    const value = Either.flatMap(parseExpression(expression), (expr) => evaluate(expr, scope()))
    if (Either.isLeft(value)) return Either.left(expressionError(node, value.left.message))
    const edges = outgoing(node.slug)
    let chosen: GraphEdge | undefined
    for (const edge of edges) {
      if (edge.condition === null) continue
      const expected = Either.flatMap(parseExpression(edge.condition), (expr) => evaluate(expr, scope()))
      if (Either.isLeft(expected)) return Either.left(expressionError(node, expected.left.message))
      if (jsonEquals(expected.right, value.right)) {
        chosen = edge
        break
      }
    }
    chosen ??= edges.find((edge) => edge.condition === null)
    if (chosen === undefined) return Either.left(graphError(`Node "${node.slug}": no edge matches its value`))
    return Either.right(chosen.target)
  }

  const applyAssignments = (node: GraphNode): Either.Either<void, TurnFailed> => {
    const assignments = node.parameters["assignments"]
    if (typeof assignments !== "object" || assignments === null || Array.isArray(assignments)) {
      return Either.right(undefined)
    }
    for (const [target, expression] of Object.entries(assignments)) {
      if (typeof expression !== "string") {
        return Either.left(expressionError(node, "an assignment is not an expression"))
      }
      const segments = parseAssignmentTarget(target)
      if (Either.isLeft(segments)) return Either.left(expressionError(node, segments.left.message))
      const value = Either.flatMap(parseExpression(expression), (expr) => evaluate(expr, scope()))
      if (Either.isLeft(value)) return Either.left(expressionError(node, value.left.message))
      state = assign(state, segments.right, value.right)
    }
    return Either.right(undefined)
  }

  const render = (node: GraphNode, key: string) => {
    const text = renderTemplate(textParameter(node, key) ?? "", scope())
    return Either.mapLeft(text, (error) => expressionError(node, error.message))
  }

  const retrievalError = (node: GraphNode, store: string, error: RetrievalFailed) => {
    const at = `Node "${node.slug}"`
    switch (error.reason) {
      case "not_found":
        return new TurnFailed({ reason: "retrieval", message: `${at}: the vector store "${store}" does not exist` })
      case "unusable":
        return new TurnFailed({
          reason: "retrieval",
          message: `${at}: the vector store "${store}" cannot be searched: ${error.detail}`
        })
      case "unavailable":
        return new TurnFailed({
          reason: "retrieval_unavailable",
          message: `${at}: the vector store "${store}" could not be searched (${error.detail})`
        })
    }
  }

  /**
   * The sources of an agent node that retrieves (undefined when it does not), bounded for the
   * model's context. A failed search fails the turn before its message starts: nothing is stored
   * for an answer that never began.
   */
  const sourcesFor = (node: GraphNode): Effect.Effect<ReadonlyArray<RetrievedSource> | undefined, TurnFailed> =>
    Effect.gen(function*() {
      const retrieval = agentRetrieval(node.parameters)
      if (Either.isLeft(retrieval)) {
        const problem = retrieval.left[0]!
        return yield* graphError(`Node "${node.slug}": parameters.${problem.parameter} ${problem.message}`)
      }
      if (retrieval.right === undefined) return undefined
      const { storeSlug, topK } = retrieval.right
      const query = searchQuery(input.userMessage)
      if (query === "") return []
      if (input.retrieve === undefined) {
        return yield* graphError(`Node "${node.slug}": retrieval from vector stores is not available here`)
      }
      const found = yield* input.retrieve({ storeSlug, topK, query }).pipe(
        Effect.mapError((error) => retrievalError(node, storeSlug, error))
      )
      return boundedSources(found)
    })

  /** An assistant message whose text streams from the node's model. */
  const agentMessage = (node: GraphNode): Effect.Effect<void, TurnFailed> =>
    Effect.gen(function*() {
      const instructions = yield* render(node, "instructions")
      const sources = yield* sourcesFor(node)
      const { model, provider } = yield* input.llmFor(textParameter(node, "model"))
      const system: Array<ChatMessage> = [
        ...(instructions.trim() === "" ? [] : [{ role: "system", content: instructions } as const]),
        ...(sources === undefined ? [] : [{ role: "system", content: retrievalContext(sources) } as const])
      ]
      const messages: ReadonlyArray<ChatMessage> = system.length === 0 ? conversation : [...system, ...conversation]
      yield* input.onEvent({ _tag: "MessageStarted", node: node.slug })
      if (sources !== undefined && sources.length > 0) yield* input.onEvent({ _tag: "SourcesFound", sources })
      let text = ""
      yield* provider.answer({ model, messages, sources }, (delta) => {
        text += delta
        input.onDelta(delta)
      }).pipe(Effect.mapError((llm) => new TurnFailed({ reason: "llm", message: "The model could not answer", llm })))
      conversation.push({ role: "assistant", content: text })
      yield* input.onEvent({ _tag: "MessageDone", text })
    })

  const fixedMessage = (node: GraphNode, text: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      conversation.push({ role: "assistant", content: text })
      return input.onEvent({ _tag: "MessageStarted", node: node.slug }).pipe(
        Effect.zipRight(Effect.sync(() => input.onDelta(text))),
        Effect.zipRight(input.onEvent({ _tag: "MessageDone", text }))
      )
    })

  const ended = (resumeAt: string | undefined, paused: boolean): Effect.Effect<void> =>
    Effect.suspend(() => input.onEvent({ _tag: "TurnEnded", runtime: { resume_at: resumeAt, state }, paused }))

  /** The nodes from `first` on, one after another, to an end or a pause. */
  const from = (first: string): Effect.Effect<void, TurnFailed> =>
    Effect.gen(function*() {
      let slug: string | undefined = first
      for (let steps = 0;; steps++) {
        if (slug === undefined) return yield* ended(undefined, false)
        if (steps >= limit) {
          return yield* new TurnFailed({
            reason: "step_limit",
            message: `The workflow ran more than ${limit} steps in one turn`
          })
        }
        const node = nodes.get(slug)
        if (node === undefined) return yield* graphError(`The workflow has no node "${slug}"`)
        if (!node.is_enabled) {
          slug = yield* plainNext(node)
          continue
        }
        switch (node.kind) {
          case "end":
            return yield* ended(undefined, false)
          case "wait_for_user_input":
            return yield* ended(yield* plainNext(node), true)
          case "condition":
            slug = yield* conditionNext(node)
            break
          case "state":
            yield* applyAssignments(node)
            slug = yield* plainNext(node)
            break
          case "assistant_message":
            yield* fixedMessage(node, yield* render(node, "text"))
            slug = yield* plainNext(node)
            break
          case "agent":
            yield* agentMessage(node)
            slug = yield* plainNext(node)
            break
          default:
            slug = yield* plainNext(node)
        }
      }
    })

  const start = input.runtime.resume_at ??
    input.graph.nodes.find((node) => node.kind === "start" && node.is_enabled)?.slug
  return start === undefined ? Effect.fail(graphError("The workflow has no enabled start node")) : from(start)
}
