import { Either, Schema } from "effect"

import { VECTOR_LIMITS, VectorStoreSlug } from "../../api/VectorStoresApi.js"
import type { FieldIssue } from "../../domain/errors.js"
import { utf8Length } from "../../domain/Text.js"
import { type Graph, NODE_KINDS } from "../../domain/Workflow.js"
import { type ExpressionError, parseAssignmentTarget, parseExpression, parseTemplate } from "./Expressions.js"

/**
 * Graph validation (API.md section 6), pure. Returns every problem found, each with the path of
 * the offending field (`nodes[3].kind`, `edges[1].target`), so a client can fix them all at once.
 * The size caps (node and edge counts, then the serialised size) are checked first and alone:
 * they bound the work of every other check.
 */

export const MAX_NODES = 500
export const MAX_EDGES = 2000
/**
 * 512 KiB: the most a version's graph (`{nodes, edges}` as compact UTF-8 JSON, as stored and as
 * every read returns it) may weigh. Each free-form field is bounded on its own (`JSON_FIELD_LIMITS`,
 * 32 KiB), but 500 nodes of them would still be 32 MiB; 512 KiB is about 1 KiB per node of the
 * largest graph, half the 1 MiB body limit, and keeps a version read (and the cached current
 * workflow) small. It also applies to imports, which may come from another installation.
 */
export const MAX_GRAPH_BYTES = 512 * 1024

/** The graph's size as compact UTF-8 JSON, or undefined when it is not JSON (never so after decoding). */
const graphBytes = (graph: Graph): number | undefined => {
  try {
    return utf8Length(JSON.stringify({ nodes: graph.nodes, edges: graph.edges }))
  } catch {
    return undefined
  }
}

const SUPPORTED = NODE_KINDS.join(", ")
const isKnownKind = (kind: string): boolean => (NODE_KINDS as ReadonlyArray<string>).includes(kind)

/** A key as an issue path may name it: short and plain, else "(key)" (a key is never echoed in full). */
const keyPath = (key: string) => /^[A-Za-z0-9_.$-]{1,64}$/.test(key) ? `[${JSON.stringify(key)}]` : "[(key)]"

/**
 * The expressions and templates of the graph the runtime reads (see Expressions.ts for the
 * grammar and why these): every edge `condition`; a condition node's `parameters.expression`; a
 * state node's `parameters.assignments` (`{"state.x": "<expression>"}`); the templates
 * `agent.parameters.instructions` and `assistant_message.parameters.text`. Each must parse; disabled
 * nodes too, so enabling one later never meets a broken expression.
 */
const expressionIssues = (graph: Graph, issue: (path: string, message: string) => void) => {
  graph.edges.forEach((edge, k) => {
    if (edge.condition === null) return
    const parsed = parseExpression(edge.condition)
    if (parsed._tag === "Left") issue(`edges[${k}].condition`, parsed.left.message)
  })
  graph.nodes.forEach((node, i) => {
    const params = node.parameters
    const at = (name: string) => `nodes[${i}].parameters.${name}`
    const check = (name: string, parse: (text: string) => Either.Either<unknown, ExpressionError>, what: string) => {
      if (!Object.hasOwn(params, name)) return
      const value = params[name]
      if (typeof value !== "string") return issue(at(name), `must be a string (${what})`)
      const parsed = parse(value)
      if (parsed._tag === "Left") issue(at(name), parsed.left.message)
    }
    switch (node.kind) {
      case "condition":
        return check("expression", parseExpression, "an expression")
      case "agent":
        return check("instructions", parseTemplate, "a template")
      case "assistant_message":
        return check("text", parseTemplate, "a template")
      case "state": {
        if (!Object.hasOwn(params, "assignments")) return
        const assignments = params.assignments
        if (typeof assignments !== "object" || assignments === null || Array.isArray(assignments)) {
          return issue(at("assignments"), "must be an object of \"state.x\": \"<expression>\" pairs")
        }
        for (const [target, expression] of Object.entries(assignments)) {
          const path = `${at("assignments")}${keyPath(target)}`
          const parsedTarget = parseAssignmentTarget(target)
          if (parsedTarget._tag === "Left") issue(path, `target: ${parsedTarget.left.message}`)
          if (typeof expression !== "string") issue(path, "must be a string (an expression)")
          else {
            const parsed = parseExpression(expression)
            if (parsed._tag === "Left") issue(path, parsed.left.message)
          }
        }
        return
      }
    }
  })
}

/** What an `agent` node retrieves before it answers: the `topK` best chunks of the store `storeSlug`. */
export interface AgentRetrieval {
  readonly storeSlug: string
  readonly topK: number
}

const isStoreSlug = Schema.is(VectorStoreSlug)

/**
 * An agent node's retrieval (issue 12): `vector_store_slug` (absent or null: none) and `top_k`
 * (absent or null: 5; else an integer from 1 to 50, as the search API's), or the problems of its
 * parameters, by parameter name. Only the shape is checked: whether the store exists is a matter
 * for the turn that searches it (a store may be created after the workflow, or deleted).
 */
export const agentRetrieval = (
  parameters: { readonly [key: string]: unknown }
): Either.Either<
  AgentRetrieval | undefined,
  ReadonlyArray<{ readonly parameter: string; readonly message: string }>
> => {
  const slug = Object.hasOwn(parameters, "vector_store_slug") ? parameters["vector_store_slug"] : undefined
  const topK = Object.hasOwn(parameters, "top_k") ? parameters["top_k"] : undefined
  const problems: Array<{ parameter: string; message: string }> = []
  if (slug !== undefined && slug !== null && !isStoreSlug(slug)) {
    problems.push({
      parameter: "vector_store_slug",
      message: "must be a vector store slug: 1-128 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
    })
  }
  if (
    topK !== undefined && topK !== null &&
    !(typeof topK === "number" && Number.isInteger(topK) && topK >= 1 && topK <= VECTOR_LIMITS.maxTopK)
  ) {
    problems.push({ parameter: "top_k", message: `must be an integer from 1 to ${VECTOR_LIMITS.maxTopK}` })
  } else if (topK !== undefined && topK !== null && (slug === undefined || slug === null)) {
    problems.push({ parameter: "top_k", message: "applies only with vector_store_slug (the store to retrieve from)" })
  }
  if (problems.length > 0) return Either.left(problems)
  if (typeof slug !== "string") return Either.right(undefined)
  return Either.right({ storeSlug: slug, topK: typeof topK === "number" ? topK : VECTOR_LIMITS.defaultTopK })
}

/** The retrieval parameters of every agent node, disabled ones too (enabling one later must not meet a broken one). */
const retrievalIssues = (graph: Graph, issue: (path: string, message: string) => void) => {
  graph.nodes.forEach((node, i) => {
    if (node.kind !== "agent") return
    const found = agentRetrieval(node.parameters)
    if (Either.isLeft(found)) {
      for (const problem of found.left) issue(`nodes[${i}].parameters.${problem.parameter}`, problem.message)
    }
  })
}

export const validateGraph = (graph: Graph): ReadonlyArray<FieldIssue> => {
  const issues: Array<FieldIssue> = []
  const issue = (path: string, message: string) => issues.push({ path, message })

  if (graph.nodes.length > MAX_NODES) {
    issue("nodes", `a graph has at most ${MAX_NODES} nodes (got ${graph.nodes.length})`)
  }
  if (graph.edges.length > MAX_EDGES) {
    issue("edges", `a graph has at most ${MAX_EDGES} edges (got ${graph.edges.length})`)
  }
  if (issues.length > 0) return issues
  // every field of a decoded graph is bounded in depth (JsonObject), so serialising it is safe
  const bytes = graphBytes(graph)
  if (bytes === undefined) return [{ path: "graph", message: "must be plain JSON" }]
  if (bytes > MAX_GRAPH_BYTES) {
    return [{
      path: "graph",
      message: `a version's graph must be at most ${MAX_GRAPH_BYTES} bytes (${
        MAX_GRAPH_BYTES / 1024
      } KiB) serialised as JSON (got ${bytes})`
    }]
  }

  // slugs: unique; the first occurrence is the one edges and parents refer to
  const indexOf = new Map<string, number>()
  graph.nodes.forEach((node, i) => {
    const first = indexOf.get(node.slug)
    if (first === undefined) indexOf.set(node.slug, i)
    else issue(`nodes[${i}].slug`, `duplicate slug "${node.slug}" (already used by nodes[${first}])`)
  })
  const nodeOf = (slug: string) => {
    const i = indexOf.get(slug)
    return i === undefined ? undefined : graph.nodes[i]
  }

  graph.nodes.forEach((node, i) => {
    if (!isKnownKind(node.kind)) issue(`nodes[${i}].kind`, `unknown kind "${node.kind}"; supported kinds: ${SUPPORTED}`)
  })

  // exactly one enabled start
  const starts = graph.nodes.flatMap((node, i) => (node.kind === "start" && node.is_enabled ? [i] : []))
  if (starts.length === 0) issue("nodes", "the graph needs exactly one enabled start node (it has none)")
  for (const i of starts.slice(1)) {
    issue(`nodes[${i}].kind`, `only one enabled start node is allowed (nodes[${starts[0]}] is one already)`)
  }

  // edges: endpoints exist, start has no incoming, end no outgoing, conditions only out of condition nodes
  graph.edges.forEach((edge, k) => {
    const source = nodeOf(edge.source)
    const target = nodeOf(edge.target)
    if (source === undefined) issue(`edges[${k}].source`, `no node has slug "${edge.source}"`)
    if (target === undefined) issue(`edges[${k}].target`, `no node has slug "${edge.target}"`)
    if (target?.kind === "start") {
      issue(`edges[${k}].target`, `the start node "${edge.target}" cannot have incoming edges`)
    }
    if (source?.kind === "end") issue(`edges[${k}].source`, `the end node "${edge.source}" cannot have outgoing edges`)
    if (edge.condition !== null && source !== undefined && source.kind !== "condition") {
      issue(
        `edges[${k}].condition`,
        `only edges leaving a condition node may have a condition ("${edge.source}" is ${source.kind})`
      )
    }
  })

  // reachability from the (first) enabled start, over edges whose endpoints exist
  const startIndex = starts[0]
  if (startIndex !== undefined) {
    const next = new Map<string, Array<string>>()
    for (const edge of graph.edges) {
      if (indexOf.has(edge.source) && indexOf.has(edge.target)) {
        const targets = next.get(edge.source) ?? []
        targets.push(edge.target)
        next.set(edge.source, targets)
      }
    }
    const startSlug = graph.nodes[startIndex]?.slug ?? ""
    const seen = new Set<string>([startSlug])
    const queue = [startSlug]
    for (let head = 0; head < queue.length; head++) {
      for (const target of next.get(queue[head] ?? "") ?? []) {
        if (!seen.has(target)) {
          seen.add(target)
          queue.push(target)
        }
      }
    }
    graph.nodes.forEach((node, i) => {
      // disabled nodes never run: they may be left unconnected
      if (node.is_enabled && !seen.has(node.slug) && indexOf.get(node.slug) === i) {
        issue(`nodes[${i}]`, `node "${node.slug}" is not reachable from the start node "${startSlug}"`)
      }
    })
  }

  // parent_slug: refers to a node, and the chains never loop (each loop reported once)
  const state = new Map<string, "visiting" | "done">()
  graph.nodes.forEach((node, i) => {
    if (node.parent_slug !== null && !indexOf.has(node.parent_slug)) {
      issue(`nodes[${i}].parent_slug`, `no node has slug "${node.parent_slug}"`)
    }
  })
  graph.nodes.forEach((node, i) => {
    if (state.has(node.slug) || indexOf.get(node.slug) !== i) return
    const chain: Array<string> = []
    let current: string | null = node.slug
    while (current !== null && indexOf.has(current) && !state.has(current)) {
      state.set(current, "visiting")
      chain.push(current)
      current = nodeOf(current)?.parent_slug ?? null
    }
    if (current !== null && state.get(current) === "visiting") {
      const loop = chain.slice(chain.indexOf(current))
      const first = indexOf.get(loop[0] ?? "") ?? i
      issue(`nodes[${first}].parent_slug`, `parent_slug references loop: ${[...loop, current].join(" → ")}`)
    }
    for (const slug of chain) state.set(slug, "done")
  })

  expressionIssues(graph, issue)
  retrievalIssues(graph, issue)

  return issues
}
