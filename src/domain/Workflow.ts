import { Schema } from "effect"

/**
 * Workflows (API.md section 6): a workflow has numbered versions (definitions), each a graph of
 * nodes (workflow_steps) and edges (workflow_transitions); one version is active ("production").
 */

/** The node kinds this backend executes; any other kind is refused by the graph validation. */
export const NODE_KINDS = ["start", "end", "agent", "assistant_message", "condition", "state", "wait_for_user_input"] as const
export type NodeKind = (typeof NODE_KINDS)[number]

export const WorkflowSlug = Schema.Trim.pipe(
  Schema.pattern(/^[a-z0-9][a-z0-9_-]{0,127}$/, {
    message: () => "must be 1-128 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
  })
).annotations({ identifier: "WorkflowSlug", examples: ["default-workflow"] })

export const WorkflowName = Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(200))
export const WorkflowDescription = Schema.String.pipe(Schema.maxLength(2000))

const NodeSlug = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(128))
const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** A node as a client sends it: `is_enabled` defaults to true, `parameters` and `metadata` to {}. */
export const GraphNodeInput = Schema.Struct({
  slug: NodeSlug,
  kind: Schema.String.pipe(Schema.maxLength(64)),
  display_name: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(200)))),
  agent_key: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(200)))),
  parent_slug: Schema.optional(Schema.NullOr(NodeSlug)),
  is_enabled: Schema.optional(Schema.Boolean),
  parameters: Schema.optional(JsonObject),
  metadata: Schema.optional(JsonObject)
}).annotations({ identifier: "GraphNodeInput" })
export type GraphNodeInput = typeof GraphNodeInput.Type

export const GraphEdgeInput = Schema.Struct({
  source: NodeSlug,
  target: NodeSlug,
  condition: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(500)))),
  metadata: Schema.optional(JsonObject)
}).annotations({ identifier: "GraphEdgeInput" })
export type GraphEdgeInput = typeof GraphEdgeInput.Type

/** What clients send; its size and rules are checked by `validateGraph` (every problem at once). */
export const GraphInput = Schema.Struct({
  nodes: Schema.Array(GraphNodeInput),
  edges: Schema.optionalWith(Schema.Array(GraphEdgeInput), { default: () => [] })
}).annotations({ identifier: "GraphInput" })
export type GraphInput = typeof GraphInput.Type

/** A node as stored and returned: every field present. */
export const GraphNode = Schema.Struct({
  slug: Schema.String,
  kind: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  agent_key: Schema.NullOr(Schema.String),
  parent_slug: Schema.NullOr(Schema.String),
  is_enabled: Schema.Boolean,
  parameters: JsonObject,
  metadata: JsonObject
}).annotations({ identifier: "GraphNode" })
export type GraphNode = typeof GraphNode.Type

export const GraphEdge = Schema.Struct({
  source: Schema.String,
  target: Schema.String,
  condition: Schema.NullOr(Schema.String),
  metadata: JsonObject
}).annotations({ identifier: "GraphEdge" })
export type GraphEdge = typeof GraphEdge.Type

export const Graph = Schema.Struct({
  nodes: Schema.Array(GraphNode),
  edges: Schema.Array(GraphEdge)
}).annotations({ identifier: "Graph" })
export type Graph = typeof Graph.Type

/** A graph with the defaults of `GraphNodeInput` / `GraphEdgeInput` filled in. */
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
  edges: input.edges.map((edge) => ({
    source: edge.source,
    target: edge.target,
    condition: edge.condition ?? null,
    metadata: edge.metadata ?? {}
  }))
})

export const SharePermission = Schema.Literal("read", "write")
export type SharePermission = typeof SharePermission.Type

export const WorkflowShare = Schema.Struct({
  user_id: Schema.Int,
  email: Schema.String,
  permission: SharePermission
}).annotations({ identifier: "WorkflowShareRef" })
export type WorkflowShare = typeof WorkflowShare.Type

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
  shared_with: Schema.Array(WorkflowShare),
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({ identifier: "WorkflowSummary" })
export type WorkflowSummary = typeof WorkflowSummary.Type

/** One version (definition) without its graph. `is_active`: it is the workflow's production version. */
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
export const Share = Schema.Struct({
  workflow_id: Schema.Int,
  user_id: Schema.Int,
  email: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  permission: SharePermission,
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({ identifier: "WorkflowShare" })
export type Share = typeof Share.Type

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
