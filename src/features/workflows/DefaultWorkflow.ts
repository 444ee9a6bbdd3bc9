import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option } from "effect"

import { type Graph, normalizeGraph } from "../../domain/Workflow.js"
import { Cache } from "../../platform/Cache.js"
import { AuditLog } from "../audit/AuditLog.js"
import { CURRENT_KEY } from "./CacheKeys.js"
import { WorkflowsRepo } from "./Repo.js"

export const DEFAULT_WORKFLOW_SLUG = "default-workflow"

/** The graph of the bootstrap default workflow, and of a new workflow created without one. */
export const DEFAULT_GRAPH: Graph = normalizeGraph({
  nodes: [
    { slug: "start", kind: "start", display_name: "Start" },
    {
      slug: "agent",
      kind: "agent",
      display_name: "Assistant",
      parameters: { instructions: "You are a helpful assistant." }
    },
    { slug: "end", kind: "end", display_name: "End" }
  ],
  edges: [{ source: "start", target: "agent" }, { source: "agent", target: "end" }]
})

/**
 * When no live workflow exists, creates `default-workflow` (start → agent → end) as the default
 * workflow, owned by nobody (administrators manage it). Returns its id when this call created it.
 * Idempotent, and safe when several instances start at once: the check and the insert run in one
 * transaction under the advisory lock every writer of the default flag takes.
 */
export const ensureDefaultWorkflow = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const repo = yield* WorkflowsRepo
  const audit = yield* AuditLog
  const cache = yield* Cache
  // every start after the first: one cheap read, no lock
  if ((yield* repo.countLive) > 0) return Option.none<number>()
  const created = yield* sql.withTransaction(
    Effect.gen(function*() {
      yield* repo.lockDefault
      if ((yield* repo.countLive) > 0) return Option.none<number>()
      const inserted = yield* repo.insert({
        slug: DEFAULT_WORKFLOW_SLUG,
        display_name: "Default workflow",
        description: "Created at start because no workflow existed: start → agent → end.",
        owner_id: null,
        is_default: true
      })
      if (Option.isNone(inserted)) return Option.none<number>()
      const id = inserted.value.id
      const versionId = yield* repo.insertVersion({
        workflowId: id,
        version: 1,
        name: "initial",
        createdBy: null,
        graph: DEFAULT_GRAPH
      })
      yield* repo.setActiveVersion(id, versionId)
      yield* audit.record({
        action: "workflow.create",
        resourceType: "workflow",
        resourceId: id,
        userId: null,
        changes: {
          slug: { from: null, to: DEFAULT_WORKFLOW_SLUG },
          is_default: { from: null, to: true },
          source: "bootstrap"
        }
      })
      return Option.some(id)
    })
  )
  // another instance may have cached "no default workflow" meanwhile
  if (Option.isSome(created)) yield* cache.invalidatePrefix(CURRENT_KEY)
  return created
}).pipe(Effect.withSpan("Workflows.ensureDefaultWorkflow"))

/** At start, after the migrations: `ensureDefaultWorkflow`, logged. */
export const BootstrapDefaultWorkflow = Layer.effectDiscard(
  Effect.flatMap(
    ensureDefaultWorkflow,
    Option.match({
      onNone: () => Effect.logDebug("a workflow exists; no default workflow created"),
      onSome: (id) => Effect.logInfo("default workflow created").pipe(Effect.annotateLogs({ workflow_id: id }))
    })
  )
).pipe(Layer.provide(Layer.mergeAll(WorkflowsRepo.Default, AuditLog.Default)))
