import { ParseResult, Schema } from "effect"

import { isStorableText, NOT_STORABLE_TEXT, pathKey, utf8Length } from "./Text.js"

/**
 * Workflows (API.md section 6): a workflow has numbered versions (table workflow_definitions), each
 * a graph of nodes (workflow_steps) and edges (workflow_transitions); one version is active
 * ("production").
 */

/** The node kinds this backend executes; any other kind is refused by the graph validation. */
export const NODE_KINDS = [
  "start",
  "end",
  "agent",
  "assistant_message",
  "condition",
  "state",
  "wait_for_user_input"
] as const
export type NodeKind = (typeof NODE_KINDS)[number]

export const WorkflowSlug = Schema.Trim.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9_-]{0,127}$/, {
    message: () => "must be 1-128 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
  })
).annotations({ identifier: "WorkflowSlug", examples: ["default-workflow"] })

export const WorkflowName = Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(200))
export const WorkflowDescription = Schema.String.pipe(Schema.maxLength(2000))

/**
 * A string field of a graph whose error message states the bound and never echoes the value
 * (the default message quotes it, however long).
 */
const boundedText = (max: number, min = 0) =>
  Schema.String.pipe(Schema.minLength(min), Schema.maxLength(max)).annotations({
    message: () => ({
      message: min > 0
        ? `must be a string of ${min} to ${max} characters`
        : `must be a string of at most ${max} characters`,
      override: true
    })
  })

/** `boundedText(max)` or null, with the same kind of message. */
const nullableText = (max: number, min = 0) =>
  Schema.NullOr(boundedText(max, min)).annotations({
    message: () => ({
      message: `must be null or a string of ${min > 0 ? `${min} to ${max}` : `at most ${max}`} characters`,
      override: true
    })
  })

const NodeSlug = boundedText(128, 1)

/**
 * Bounds of a free-form JSON field (a node's `parameters` and `metadata`, an edge's `metadata`).
 * They keep every stored version, and every read of it, small, and every walk over it short:
 * - `depth`: objects and arrays nested at most 8 levels inside the field (`{"a": {"b": 1}}` is 1);
 *   real parameters are flat or 2-3 levels, and depth bounds every recursive serialiser;
 * - `keys` per object: 100; `keyLength`: 200 characters (the other names of a graph are <= 200);
 * - `stringLength`: 10,000 characters (UTF-16 code units), room for a long agent prompt;
 * - `arrayItems`: 1,000;
 * - `bytes`: the whole field at most 32 KiB as compact UTF-8 JSON, so that one string of the
 *   longest length fits in any script (10,000 characters are at most 30,000 bytes).
 * Strings and keys must also be storable text (no U+0000, no unpaired surrogate: PostgreSQL's
 * jsonb refuses them), and values plain JSON (finite numbers; no `undefined`, bigint, class).
 */
export const JSON_FIELD_LIMITS = {
  depth: 8,
  keys: 100,
  keyLength: 200,
  stringLength: 10_000,
  arrayItems: 1_000,
  bytes: 32 * 1024
} as const

export type JsonFieldLimits = { readonly [K in keyof typeof JSON_FIELD_LIMITS]: number }

type JsonObjectType = { readonly [x: string]: unknown }

interface JsonProblem {
  readonly path: ReadonlyArray<string | number>
  readonly message: string
}

const isPlainObject = (value: object): boolean => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Bytes of `text` as a JSON string literal (quotes and escapes included), in UTF-8. */
const jsonStringBytes = (text: string) => utf8Length(JSON.stringify(text))

/**
 * The first way `input` breaks the bounds, or undefined. Iterative (no recursion, whatever the
 * nesting), and it stops as soon as the field is over its byte budget, so its work is bounded by
 * the limits rather than by the input. Messages state the expectation, never the value.
 */
export const inspectJsonField = (input: unknown, L: JsonFieldLimits = JSON_FIELD_LIMITS): JsonProblem | undefined => {
  if (typeof input !== "object" || input === null || Array.isArray(input) || !isPlainObject(input)) {
    return { path: [], message: "must be a JSON object" }
  }
  let bytes = 0
  const tooBig = { path: [], message: `must be at most ${L.bytes} bytes serialised as JSON` }
  const stack: Array<{ readonly value: unknown; readonly path: ReadonlyArray<string | number> }> = [{
    value: input,
    path: []
  }]
  while (stack.length > 0) {
    const { path, value } = stack.pop()!
    switch (typeof value) {
      case "string":
        if (value.length > L.stringLength) {
          return { path, message: `must be a string of at most ${L.stringLength} characters` }
        }
        if (!isStorableText(value)) return { path, message: NOT_STORABLE_TEXT }
        bytes += jsonStringBytes(value)
        break
      case "number":
        if (!Number.isFinite(value)) return { path, message: "must be a finite number" }
        bytes += String(value).length
        break
      case "boolean":
        bytes += value ? 4 : 5
        break
      case "object": {
        if (value === null) {
          bytes += 4
          break
        }
        // the field itself is level 0: `path.length` is the nesting level of this container
        if (path.length > L.depth) {
          return { path, message: `objects and arrays may be nested at most ${L.depth} levels deep inside this field` }
        }
        if (Array.isArray(value)) {
          if (value.length > L.arrayItems) return { path, message: `must be an array of at most ${L.arrayItems} items` }
          bytes += 2 + Math.max(0, value.length - 1)
          if (bytes > L.bytes) return tooBig
          for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: [...path, i] })
          break
        }
        if (!isPlainObject(value)) {
          return { path, message: "must be a JSON value (string, number, boolean, null, array or object)" }
        }
        const keys = Object.keys(value)
        if (keys.length > L.keys) return { path, message: `must be an object of at most ${L.keys} keys` }
        bytes += 2 + Math.max(0, keys.length - 1) + keys.length // braces, commas, colons
        for (let i = keys.length - 1; i >= 0; i--) {
          const key = keys[i]!
          if (key.length > L.keyLength) return { path, message: `keys must be at most ${L.keyLength} characters` }
          if (!isStorableText(key)) return { path, message: `keys ${NOT_STORABLE_TEXT}` }
          bytes += jsonStringBytes(key)
          if (bytes > L.bytes) return tooBig
          stack.push({ value: (value as Record<string, unknown>)[key], path: [...path, pathKey(key)] })
        }
        break
      }
      default:
        return { path, message: "must be a JSON value (string, number, boolean, null, array or object)" }
    }
    if (bytes > L.bytes) return tooBig
  }
  return undefined
}

const L = JSON_FIELD_LIMITS
const JSON_OBJECT_DESCRIPTION =
  `A free-form JSON object, bounded: objects and arrays nested at most ${L.depth} levels inside ` +
  `it, at most ${L.keys} keys per object, keys of at most ${L.keyLength} characters, strings of at most ` +
  `${L.stringLength.toLocaleString("en-US")} characters, arrays of at most ${
    L.arrayItems.toLocaleString("en-US")
  } items, ` +
  `no NUL characters or unpaired surrogates, and at most ${
    L.bytes / 1024
  } KiB (${L.bytes} bytes) as compact UTF-8 JSON. ` +
  "A value over a bound is a 400 whose `errors[].path` points at it."

const checkJsonObject = (input: unknown, ast: Schema.Schema.AnyNoContext["ast"]) => {
  const problem = inspectJsonField(input)
  if (problem === undefined) return ParseResult.succeed(input as JsonObjectType)
  const type = new ParseResult.Type(ast, input, problem.message)
  const [head, ...rest] = problem.path
  return ParseResult.fail(head === undefined ? type : new ParseResult.Pointer([head, ...rest], input, type))
}

/** A client's free-form JSON field, checked against `JSON_FIELD_LIMITS` (see there for why). */
export const JsonObject = Schema.declare([], {
  decode: () => (input, _, ast) => checkJsonObject(input, ast),
  encode: () => (input, _, ast) => checkJsonObject(input, ast)
}, {
  identifier: "JsonObject",
  description: JSON_OBJECT_DESCRIPTION,
  jsonSchema: {
    type: "object",
    maxProperties: L.keys,
    additionalProperties: true,
    description: JSON_OBJECT_DESCRIPTION
  }
})

/** A stored free-form field as returned: not re-checked, so a version stored before the limits still reads. */
const StoredJsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * A node as a client sends it: `is_enabled` defaults to true, `parameters` and `metadata` to {}.
 * Optional fields are `exact` (absent, never `undefined`), and every message states the
 * expectation only, so no part of a refused value is echoed in the 400.
 */
export const GraphNodeInput = Schema.Struct({
  slug: NodeSlug,
  kind: boundedText(64),
  display_name: Schema.optionalWith(nullableText(200), { exact: true }),
  agent_key: Schema.optionalWith(nullableText(200), { exact: true }),
  parent_slug: Schema.optionalWith(nullableText(128, 1), { exact: true }),
  is_enabled: Schema.optionalWith(Schema.Boolean.annotations({ message: () => "must be true or false" }), {
    exact: true
  }),
  parameters: Schema.optionalWith(JsonObject, { exact: true }),
  metadata: Schema.optionalWith(JsonObject, { exact: true })
}).annotations({ identifier: "GraphNodeInput", message: () => "must be a node object" })
export type GraphNodeInput = typeof GraphNodeInput.Type

export const GraphEdgeInput = Schema.Struct({
  source: NodeSlug,
  target: NodeSlug,
  condition: Schema.optionalWith(nullableText(500), { exact: true }),
  metadata: Schema.optionalWith(JsonObject, { exact: true })
}).annotations({ identifier: "GraphEdgeInput", message: () => "must be an edge object" })
export type GraphEdgeInput = typeof GraphEdgeInput.Type

/** What clients send; its size and rules are checked by `validateGraph` (every problem at once). */
export const GraphInput = Schema.Struct({
  nodes: Schema.Array(GraphNodeInput).annotations({ message: () => "must be an array of nodes" }),
  // no `default` here: a plain struct keeps the message below for a graph that is not an object
  edges: Schema.optionalWith(Schema.Array(GraphEdgeInput).annotations({ message: () => "must be an array of edges" }), {
    exact: true
  })
}).annotations({ identifier: "GraphInput", message: () => "must be an object with `nodes` and optional `edges`" })
export type GraphInput = typeof GraphInput.Type

/** A node as stored and returned: every field present. */
export const GraphNode = Schema.Struct({
  slug: Schema.String,
  kind: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  agent_key: Schema.NullOr(Schema.String),
  parent_slug: Schema.NullOr(Schema.String),
  is_enabled: Schema.Boolean,
  parameters: StoredJsonObject,
  metadata: StoredJsonObject
}).annotations({ identifier: "GraphNode" })
export type GraphNode = typeof GraphNode.Type

export const GraphEdge = Schema.Struct({
  source: Schema.String,
  target: Schema.String,
  condition: Schema.NullOr(Schema.String),
  metadata: StoredJsonObject
}).annotations({ identifier: "GraphEdge" })
export type GraphEdge = typeof GraphEdge.Type

export const Graph = Schema.Struct({
  nodes: Schema.Array(GraphNode),
  edges: Schema.Array(GraphEdge)
}).annotations({ identifier: "Graph" })
export type Graph = typeof Graph.Type

/** A graph with the defaults of `GraphInput` (`edges`: []), `GraphNodeInput` and `GraphEdgeInput` filled in. */
export const normalizeGraph = (input: GraphInput): Graph => ({
  nodes: input.nodes.map((node) => ({
    slug: node.slug,
    kind: node.kind,
    display_name: node.display_name ?? null,
    agent_key: node.agent_key ?? null,
    parent_slug: node.parent_slug ?? null,
    is_enabled: node.is_enabled ?? true,
    parameters: node.parameters ?? {},
    metadata: node.metadata ?? {}
  })),
  edges: (input.edges ?? []).map((edge) => ({
    source: edge.source,
    target: edge.target,
    condition: edge.condition ?? null,
    metadata: edge.metadata ?? {}
  }))
})

export const SharePermission = Schema.Literal("read", "write")
export type SharePermission = typeof SharePermission.Type

/** A share as a workflow summary lists it (`shared_with`): who, and with which permission. */
export const WorkflowShareRef = Schema.Struct({
  user_id: Schema.Int,
  email: Schema.String,
  permission: SharePermission
}).annotations({ identifier: "WorkflowShareRef" })
export type WorkflowShareRef = typeof WorkflowShareRef.Type

export const WorkflowOwner = Schema.Struct({
  id: Schema.Int,
  email: Schema.String,
  display_name: Schema.NullOr(Schema.String)
}).annotations({ identifier: "WorkflowOwner" })

/** `WorkflowSummary` of API.md section 6, plus the owner's email and display name. */
export const WorkflowSummary = Schema.Struct({
  id: Schema.Int,
  slug: Schema.String,
  display_name: Schema.String,
  description: Schema.NullOr(Schema.String),
  owner_id: Schema.NullOr(Schema.Int),
  owner: Schema.NullOr(WorkflowOwner),
  active_version_id: Schema.NullOr(Schema.Int),
  is_default: Schema.Boolean,
  versions_count: Schema.Int,
  shared_with: Schema.Array(WorkflowShareRef),
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({ identifier: "WorkflowSummary" })
export type WorkflowSummary = typeof WorkflowSummary.Type

/** One version without its graph. `is_active`: it is the workflow's production version. */
export const WorkflowVersionSummary = Schema.Struct({
  id: Schema.Int,
  workflow_id: Schema.Int,
  version: Schema.Int,
  name: Schema.NullOr(Schema.String),
  is_active: Schema.Boolean,
  created_by: Schema.NullOr(Schema.Int),
  created_at: Schema.Date
}).annotations({ identifier: "WorkflowVersionSummary" })
export type WorkflowVersionSummary = typeof WorkflowVersionSummary.Type

export const WorkflowVersion = Schema.Struct({
  ...WorkflowVersionSummary.fields,
  graph: Graph
}).annotations({ identifier: "WorkflowVersion" })
export type WorkflowVersion = typeof WorkflowVersion.Type

/** GET /workflows/{id}: the summary with the active version and its graph. */
export const Workflow = Schema.Struct({
  ...WorkflowSummary.fields,
  active_version: Schema.NullOr(WorkflowVersion)
}).annotations({ identifier: "Workflow" })
export type Workflow = typeof Workflow.Type

/** GET /workflows/current: the default workflow and its active version (read through the cache). */
export const CurrentWorkflow = Schema.Struct({
  workflow_id: Schema.Int,
  slug: Schema.String,
  display_name: Schema.String,
  description: Schema.NullOr(Schema.String),
  version: WorkflowVersion
}).annotations({ identifier: "CurrentWorkflow" })
export type CurrentWorkflow = typeof CurrentWorkflow.Type

/** A share as the shares endpoints return it. */
export const WorkflowShare = Schema.Struct({
  workflow_id: Schema.Int,
  user_id: Schema.Int,
  email: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  permission: SharePermission,
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({ identifier: "WorkflowShare" })
export type WorkflowShare = typeof WorkflowShare.Type

/** GET .../versions/{vid}/export: what POST /workflows/import accepts back (its `graph`, `slug`, `display_name`). */
export const WorkflowExport = Schema.Struct({
  format: Schema.Literal("chatkit.workflow"),
  format_version: Schema.Literal(1),
  slug: Schema.String,
  display_name: Schema.String,
  description: Schema.NullOr(Schema.String),
  version: Schema.Int,
  name: Schema.NullOr(Schema.String),
  graph: Graph,
  exported_at: Schema.Date
}).annotations({ identifier: "WorkflowExport" })
export type WorkflowExport = typeof WorkflowExport.Type
