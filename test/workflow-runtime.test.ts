import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"

import { type Graph, type GraphNode } from "../src/domain/Workflow.js"
import { INITIAL_RUNTIME_STATE, type RuntimeState, runTurn, type TurnEvent } from "../src/features/threads/Runtime.js"
import { localAnswer, makeLocalLlm } from "../src/platform/LlmProvider.js"

const node = (slug: string, kind: string, parameters: GraphNode["parameters"] = {}): GraphNode => ({
  slug,
  kind,
  display_name: null,
  agent_key: null,
  parent_slug: null,
  is_enabled: true,
  parameters,
  metadata: {}
})
const edge = (source: string, target: string, condition: string | null = null) => ({
  source,
  target,
  condition,
  metadata: {}
})

/** What a turn gives, in the order it gives it: its events, and the text deltas between them. */
type Seen = TurnEvent | { readonly _tag: "TextDelta"; readonly text: string }

const llm = makeLocalLlm()
const turn = (graph: Graph, userMessage: string, runtime: RuntimeState = INITIAL_RUNTIME_STATE, stepLimit?: number) =>
  Effect.suspend(() => {
    const seen: Array<Seen> = []
    return runTurn({
      graph,
      runtime,
      userMessage,
      history: [],
      onDelta: (text) => seen.push({ _tag: "TextDelta", text }),
      onEvent: (event) => Effect.sync(() => seen.push(event)),
      llmFor: (model) => Effect.succeed({ provider: llm, model: model ?? "local" }),
      ...(stepLimit === undefined ? {} : { stepLimit })
    }).pipe(Effect.as(seen as ReadonlyArray<Seen>))
  })

const messages = (events: ReadonlyArray<Seen>) => events.flatMap((e) => (e._tag === "MessageDone" ? [e.text] : []))
const ending = (events: ReadonlyArray<Seen>) => events.at(-1)

describe("a workflow turn", () => {
  it.effect("start -> agent -> end streams the model's answer under the rendered instructions", () =>
    Effect.gen(function*() {
      const graph = {
        nodes: [
          node("start", "start"),
          node("agent", "agent", { instructions: "Answer {{ input.user_message }} kindly" }),
          node("end", "end")
        ],
        edges: [edge("start", "agent"), edge("agent", "end")]
      }
      const events = yield* turn(graph, "Hello")
      expect(events[0]).toEqual({ _tag: "MessageStarted", node: "agent" })
      const deltas = events.flatMap((e) => (e._tag === "TextDelta" ? [e.text] : []))
      const expected = localAnswer({
        model: "local",
        messages: [{ role: "system", content: "Answer Hello kindly" }, { role: "user", content: "Hello" }]
      })
      expect(deltas.join("")).toBe(expected)
      expect(messages(events)).toEqual([expected])
      expect(ending(events)).toEqual({ _tag: "TurnEnded", runtime: { resume_at: undefined, state: {} }, paused: false })
    }))

  it.effect("state assignments feed a condition that picks its edge by value, else the plain edge", () =>
    Effect.gen(function*() {
      const graph = {
        nodes: [
          node("start", "start"),
          node("set", "state", {
            assignments: { "state.vip": "input.user_message == 'gold'", "state.seen.first": "true" }
          }),
          node("route", "condition", { expression: "state.vip" }),
          node("yes", "assistant_message", { text: "Welcome back, {{ input.user_message }} member" }),
          node("no", "assistant_message", { text: "Hello" }),
          node("end", "end")
        ],
        edges: [
          edge("start", "set"),
          edge("set", "route"),
          edge("route", "yes", "true"),
          edge("route", "no"),
          edge("yes", "end"),
          edge("no", "end")
        ]
      }
      const gold = yield* turn(graph, "gold")
      expect(messages(gold)).toEqual(["Welcome back, gold member"])
      expect(ending(gold)).toMatchObject({ runtime: { state: { vip: true, seen: { first: true } } } })
      expect(messages(yield* turn(graph, "tin"))).toEqual(["Hello"])
    }))

  it.effect("pauses at wait_for_user_input and the next turn resumes after it, with the state kept", () =>
    Effect.gen(function*() {
      const graph = {
        nodes: [
          node("start", "start"),
          node("ask", "assistant_message", { text: "What is your name?" }),
          node("wait", "wait_for_user_input"),
          node("remember", "state", { assignments: { "state.name": "input.user_message" } }),
          node("greet", "assistant_message", { text: "Nice to meet you, {{ state.name }}" }),
          node("end", "end")
        ],
        edges: [
          edge("start", "ask"),
          edge("ask", "wait"),
          edge("wait", "remember"),
          edge("remember", "greet"),
          edge("greet", "end")
        ]
      }
      const first = yield* turn(graph, "hi")
      expect(messages(first)).toEqual(["What is your name?"])
      const paused = ending(first)
      expect(paused).toEqual({ _tag: "TurnEnded", runtime: { resume_at: "remember", state: {} }, paused: true })
      const second = yield* turn(graph, "Ada", paused?._tag === "TurnEnded" ? paused.runtime : INITIAL_RUNTIME_STATE)
      expect(messages(second)).toEqual(["Nice to meet you, Ada"])
      expect(ending(second)).toMatchObject({ runtime: { resume_at: undefined, state: { name: "Ada" } }, paused: false })
    }))

  it.effect("a graph stored before validation that reaches for __proto__ or constructor is refused at run time, naming the node", () =>
    Effect.gen(function*() {
      for (
        const [expression, assignment] of [["state.__proto__", "state.x"], ["1", "state.constructor"]] as const
      ) {
        const graph = {
          nodes: [
            node("start", "start"),
            node("sneaky", "state", { assignments: { [assignment]: expression } }),
            node("end", "end")
          ],
          edges: [edge("start", "sneaky"), edge("sneaky", "end")]
        }
        const error = yield* Effect.flip(turn(graph, "x"))
        expect(error).toMatchObject({ reason: "expression", message: expect.stringContaining("Node \"sneaky\"") })
        expect(Object.prototype).not.toHaveProperty("x")
      }
      const condition = {
        nodes: [
          node("start", "start"),
          node("route", "condition", { expression: "state.constructor" }),
          node("end", "end")
        ],
        edges: [edge("start", "route"), edge("route", "end")]
      }
      expect(yield* Effect.flip(turn(condition, "x"))).toMatchObject({ reason: "expression" })
    }))

  it.effect("ends a runaway loop at the step limit with an error", () =>
    Effect.gen(function*() {
      const graph = {
        nodes: [node("start", "start"), node("a", "state", { assignments: { "state.n": "1" } }), node("b", "state")],
        edges: [edge("start", "a"), edge("a", "b"), edge("b", "a")]
      }
      const error = yield* Effect.flip(turn(graph, "go", INITIAL_RUNTIME_STATE, 10))
      expect(error).toMatchObject({ reason: "step_limit" })
    }))

  it.effect("a condition with no matching edge, or an expression that fails at run time, is an error naming the node", () =>
    Effect.gen(function*() {
      const noEdge = {
        nodes: [node("start", "start"), node("route", "condition", { expression: "1" }), node("end", "end")],
        edges: [edge("start", "route"), edge("route", "end", "2")]
      }
      expect(yield* Effect.flip(turn(noEdge, "x"))).toMatchObject({
        reason: "graph",
        message: "Node \"route\": no edge matches its value"
      })
      const badCompare = {
        nodes: [
          node("start", "start"),
          node("route", "condition", { expression: "input.user_message < 3" }),
          node("end", "end")
        ],
        edges: [edge("start", "route"), edge("route", "end")]
      }
      const error = yield* Effect.flip(turn(badCompare, "x"))
      expect(error.reason).toBe("expression")
      expect(error.message).toContain("Node \"route\"")
    }))

  it.effect("passes through disabled nodes", () =>
    Effect.gen(function*() {
      const graph = {
        nodes: [
          node("start", "start"),
          { ...node("off", "assistant_message", { text: "never" }), is_enabled: false },
          node("on", "assistant_message", { text: "shown" }),
          node("end", "end")
        ],
        edges: [edge("start", "off"), edge("off", "on"), edge("on", "end")]
      }
      expect(messages(yield* turn(graph, "x"))).toEqual(["shown"])
    }))
})
