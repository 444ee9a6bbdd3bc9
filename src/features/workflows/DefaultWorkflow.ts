import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option } from "effect"

import { Cache } from "../../platform/Cache.js"
import { AuditLog } from "../audit/AuditLog.js"
import { WorkflowsRepo } from "./Repo.js"
import { CURRENT_KEY, DEFAULT_GRAPH } from "./Service.js"

export const DEFAULT_WORKFLOW_SLUG = "default-workflow"

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
      const definitionId = yield* repo.insertDefinition({
        workflowId: id,
        version: 1,
        name: "initial",
        createdBy: null,
        graph: DEFAULT_GRAPH
      })
      yield* repo.setActiveVersion(id, definitionId)
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
