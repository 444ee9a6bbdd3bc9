import { SqlClient } from "@effect/sql"
import { type SqlError } from "@effect/sql/SqlError"
import { DateTime, Effect, Option, Schema, Struct } from "effect"

import { Conflict, type Forbidden, NotFound, ValidationError } from "../../domain/errors.js"
import { type PageRequest, toPage } from "../../domain/Page.js"
import { CurrentUser } from "../../domain/User.js"
import {
  CurrentWorkflow,
  type Graph,
  type GraphInput,
  normalizeGraph,
  type Workflow,
  type WorkflowExport,
  WorkflowSummary,
  WorkflowVersion,
  type WorkflowVersionSummary
} from "../../domain/Workflow.js"
import { Cache } from "../../platform/Cache.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import { AuditLog, changedFields, diffChanges } from "../audit/AuditLog.js"
import { activeKey, CURRENT_KEY, DEFAULT_TARGET_KEY } from "./CacheKeys.js"
import { DEFAULT_GRAPH } from "./DefaultWorkflow.js"
import { validateGraph } from "./Graph.js"
import { workflowNotFound, WorkflowsPolicy } from "./Policy.js"
import { type SummaryRow, type VersionRow, type WorkflowRow, WorkflowsRepo } from "./Repo.js"

const CachedCurrent = Schema.Option(CurrentWorkflow)
const CachedVersion = Schema.Option(WorkflowVersion)

/** Which workflow and version a new thread runs by default (no version: the default has none active). */
const WorkflowTarget = Schema.Struct(Struct.pick(WorkflowSummary.fields, "id", "active_version_id"))
export type WorkflowTarget = typeof WorkflowTarget.Type
const CachedTarget = Schema.Option(WorkflowTarget)

export interface CreateWorkflowInput {
  readonly slug: string
  readonly display_name: string
  readonly description?: string | null | undefined
  readonly graph?: GraphInput | undefined
}

export interface UpdateWorkflowInput {
  readonly slug?: string | undefined
  readonly display_name?: string | undefined
  readonly description?: string | null | undefined
}

export interface CreateVersionInput {
  readonly graph: GraphInput
  readonly name?: string | null | undefined
  readonly mark_as_active?: boolean | undefined
}

export interface ImportInput {
  readonly slug?: string | undefined
  readonly display_name?: string | undefined
  readonly description?: string | null | undefined
  readonly graph: GraphInput
  readonly mark_as_active?: boolean | undefined
}

/** Validates a client's graph: every problem in one 400. */
export const checkGraph = (input: GraphInput): Effect.Effect<Graph, ValidationError> => {
  const graph = normalizeGraph(input)
  const errors = validateGraph(graph)
  return errors.length === 0
    ? Effect.succeed(graph)
    : Effect.fail(
      new ValidationError({
        detail: `The workflow graph is invalid (${errors.length} problem${errors.length === 1 ? "" : "s"})`,
        errors
      })
    )
}

export const toSummary = (row: SummaryRow): WorkflowSummary => ({
  id: row.id,
  slug: row.slug,
  display_name: row.display_name,
  description: row.description,
  owner_id: row.owner_id,
  owner: row.owner_id === null || row.owner_email === null
    ? null
    : { id: row.owner_id, email: row.owner_email, display_name: row.owner_display_name },
  active_version_id: row.active_version_id,
  is_default: row.is_default,
  versions_count: row.versions_count,
  shared_with: row.shared_with,
  created_at: row.created_at,
  updated_at: row.updated_at
})

const toVersionSummary = (row: VersionRow): WorkflowVersionSummary => ({
  id: row.id,
  workflow_id: row.workflow_id,
  version: row.version,
  name: row.name,
  is_active: row.is_active,
  created_by: row.created_by,
  created_at: row.created_at
})

/** A slug made from a display name: lower case, runs of other characters as "-". */
export const slugify = (text: string) =>
  text.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 100) || "workflow"

/**
 * Workflows (API.md section 6) and their versions; who may do what is `WorkflowsPolicy`'s, the
 * shares are `WorkflowShares`'. Operations act for the request's `CurrentUser`. Every mutation runs
 * in one transaction with its audit row, the workflow row locked `FOR UPDATE` (so concurrent
 * version creations number n+1, n+2); the cached default workflow and active versions are
 * invalidated after the commit of every write that changes them.
 */
export class WorkflowsService extends Effect.Service<WorkflowsService>()("chatkit/WorkflowsService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* WorkflowsRepo
    const audit = yield* AuditLog
    const cache = yield* Cache
    const policy = yield* WorkflowsPolicy

    /** Drops what a write to `row` made stale, after its commit. */
    const invalidate = (row: Pick<WorkflowRow, "id" | "is_default">, what: { readonly active: boolean }) =>
      Effect.zipRight(
        what.active ? cache.invalidatePrefix(activeKey(row.id)) : Effect.void,
        row.is_default ? cache.invalidatePrefix(CURRENT_KEY) : Effect.void
      )

    const loadVersion = (workflowId: number, versionId: number) =>
      Effect.flatMap(repo.findVersion(workflowId, versionId), (found) =>
        Option.match(found, {
          onNone: () => Effect.succeedNone,
          onSome: (row) =>
            Effect.map(repo.loadGraph(row.id), (graph): Option.Option<WorkflowVersion> =>
              Option.some({ ...toVersionSummary(row), graph }))
        }))

    /** The active version of a live workflow, with its graph, read through the cache. */
    const activeVersion = (workflowId: number) =>
      cache.getOrLoad(
        activeKey(workflowId),
        CachedVersion,
        Effect.flatMap(repo.find(workflowId), (row) =>
          Option.isNone(row) || row.value.active_version_id === null
            ? Effect.succeedNone
            : loadVersion(workflowId, row.value.active_version_id))
      )

    const summary = (id: number) =>
      Effect.flatMap(
        repo.findSummary(id),
        Option.match({
          onNone: () => Effect.fail(workflowNotFound(id)),
          onSome: (row) => Effect.succeed(toSummary(row))
        })
      )

    const detail = (id: number): Effect.Effect<Workflow, NotFound | SqlError> =>
      Effect.zipWith(
        summary(id),
        activeVersion(id),
        (s, active) => ({ ...s, active_version: Option.getOrNull(active) })
      )

    /** Inserts a workflow with `graph` as its active version 1; Conflict when the slug is taken. */
    const insertWithGraph = (input: {
      readonly slug: string
      readonly display_name: string
      readonly description: string | null
      readonly owner_id: number | null
      readonly graph: Graph
      readonly createdBy: number | null
      readonly is_default?: boolean
    }) =>
      Effect.gen(function*() {
        const inserted = yield* repo.insert(input)
        if (Option.isNone(inserted)) {
          return yield* new Conflict({ detail: `A workflow with slug ${input.slug} already exists` })
        }
        const versionId = yield* repo.insertVersion({
          workflowId: inserted.value.id,
          version: 1,
          name: null,
          createdBy: input.createdBy,
          graph: input.graph
        })
        yield* repo.setActiveVersion(inserted.value.id, versionId)
        return { row: inserted.value, versionId }
      })

    const graphStats = (graph: Graph) => ({ nodes: graph.nodes.length, edges: graph.edges.length })

    // -- workflows --------------------------------------------------------------------------

    const list = (page: PageRequest) =>
      CurrentUser.pipe(
        Effect.flatMap((user) => repo.listSummaries(user, page.pageSize, page.offset)),
        Effect.map(({ items, total }) => toPage(page, items.map(toSummary), total)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.list")
      )

    const get = (id: number): Effect.Effect<Workflow, NotFound | Forbidden, CurrentUser> =>
      policy.require(id, "read").pipe(
        Effect.zipRight(detail(id)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.get", { attributes: { "workflow.id": id } })
      )

    const create = (input: CreateWorkflowInput): Effect.Effect<Workflow, Conflict | ValidationError, CurrentUser> =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        const graph = input.graph === undefined ? DEFAULT_GRAPH : yield* checkGraph(input.graph)
        const fields = { slug: input.slug, display_name: input.display_name, description: input.description ?? null }
        const { row } = yield* sql.withTransaction(
          Effect.gen(function*() {
            const created = yield* insertWithGraph({ ...fields, owner_id: user.id, graph, createdBy: user.id })
            yield* audit.record({
              action: "workflow.create",
              resourceType: "workflow",
              resourceId: created.row.id,
              changes: { ...diffChanges({}, fields), version: 1, ...graphStats(graph) }
            })
            return created
          })
        )
        // just committed: a 404 here would be a bug
        return yield* Effect.catchTag(detail(row.id), "NotFound", Effect.die)
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.create"))

    /** PATCH semantics; a request that changes nothing writes nothing (and no audit row). */
    const update = (id: number, input: UpdateWorkflowInput) =>
      Effect.gen(function*() {
        const before = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* policy.require(id, "write", { lock: true })
            const { changes, diff } = changedFields(
              { slug: row.slug, display_name: row.display_name, description: row.description },
              input
            )
            if (Object.keys(diff).length === 0) return Option.none<WorkflowRow>()
            yield* repo.update(id, changes)
            yield* audit.record({ action: "workflow.update", resourceType: "workflow", resourceId: id, changes: diff })
            return Option.some(row)
          })
        )
        // the default workflow's slug and names are part of the cached current workflow
        if (Option.isSome(before)) yield* invalidate(before.value, { active: false })
        return yield* detail(id)
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.update", { attributes: { "workflow.id": id } }))

    /** Soft delete (owner or admin). The default workflow cannot be deleted: make another one the default first. */
    const remove = (id: number): Effect.Effect<void, NotFound | Forbidden | Conflict, CurrentUser> =>
      Effect.gen(function*() {
        const row = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* policy.require(id, "manage", { lock: true })
            if (row.is_default) {
              return yield* new Conflict({
                detail: `Workflow ${id} is the default workflow; make another one the default first`
              })
            }
            const deleted = yield* repo.softDelete(id)
            if (Option.isNone(deleted)) return yield* workflowNotFound(id)
            yield* audit.record({
              action: "workflow.delete",
              resourceType: "workflow",
              resourceId: id,
              changes: {
                slug: row.slug,
                ...diffChanges({ deleted_at: null }, { deleted_at: deleted.value.deleted_at })
              }
            })
            return row
          })
        )
        yield* invalidate(row, { active: true })
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.delete", { attributes: { "workflow.id": id } }))

    /** A copy of the active version as version 1 of a new workflow the caller owns. */
    const duplicate = (
      id: number,
      input: { readonly display_name: string; readonly slug?: string | undefined }
    ): Effect.Effect<Workflow, NotFound | Forbidden | Conflict, CurrentUser> =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        const source = yield* policy.require(id, "read")
        const graph = source.active_version_id === null
          ? DEFAULT_GRAPH
          : yield* repo.loadGraph(source.active_version_id)
        const pickSlug = Effect.gen(function*() {
          if (input.slug !== undefined) return input.slug
          const base = `${source.slug.slice(0, 110)}-copy`
          const taken = yield* repo.slugsLike(base)
          let n = 1
          while (taken.has(n === 1 ? base : `${base}-${n}`)) n++
          return n === 1 ? base : `${base}-${n}`
        })
        const attempt = sql.withTransaction(
          Effect.gen(function*() {
            const slug = yield* pickSlug
            const fields = { slug, display_name: input.display_name, description: source.description }
            const created = yield* insertWithGraph({ ...fields, owner_id: user.id, graph, createdBy: user.id })
            yield* audit.record({
              action: "workflow.duplicate",
              resourceType: "workflow",
              resourceId: created.row.id,
              changes: {
                ...diffChanges({}, fields),
                source_workflow_id: id,
                source_version_id: source.active_version_id
              }
            })
            return created.row
          })
        )
        // a generated slug may be taken by a concurrent copy between the read and the insert: pick again
        const row = yield* (input.slug === undefined
          ? Effect.retry(attempt, { times: 3, while: (e) => e instanceof Conflict })
          : attempt)
        return yield* detail(row.id)
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.duplicate", { attributes: { "workflow.id": id } }))

    // -- versions ---------------------------------------------------------------------------

    const listVersions = (id: number, page: PageRequest) =>
      policy.require(id, "read").pipe(
        Effect.zipRight(repo.listVersions(id, page.pageSize, page.offset)),
        Effect.map(({ items, total }) => toPage(page, items.map(toVersionSummary), total)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.listVersions", { attributes: { "workflow.id": id } })
      )

    const getVersion = (
      id: number,
      versionId: number
    ): Effect.Effect<WorkflowVersion, NotFound | Forbidden, CurrentUser> =>
      policy.require(id, "read").pipe(
        Effect.zipRight(loadVersion(id, versionId)),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new NotFound({ detail: `Workflow ${id} has no version ${versionId}` })),
          onSome: Effect.succeed
        })),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.getVersion", { attributes: { "workflow.id": id } })
      )

    /**
     * Version n+1 in one transaction: the workflow row is locked first, so concurrent calls get
     * consecutive numbers instead of a unique violation.
     */
    const createVersion = (id: number, input: CreateVersionInput) =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        const graph = yield* checkGraph(input.graph)
        const activate = input.mark_as_active ?? false
        const { row, versionId } = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* policy.require(id, "write", { lock: true })
            const version = yield* repo.nextVersion(id)
            const versionId = yield* repo.insertVersion({
              workflowId: id,
              version,
              name: input.name ?? null,
              createdBy: user.id,
              graph
            })
            yield* audit.record({
              action: "workflow.version.create",
              resourceType: "workflow",
              resourceId: id,
              changes: {
                version_id: versionId,
                version,
                name: input.name ?? null,
                ...graphStats(graph),
                mark_as_active: activate
              }
            })
            if (activate) {
              yield* repo.setActiveVersion(id, versionId)
              yield* audit.record({
                action: "workflow.version.activate",
                resourceType: "workflow",
                resourceId: id,
                changes: { active_version_id: { from: row.active_version_id, to: versionId }, version }
              })
            }
            return { row, versionId }
          })
        )
        if (activate) yield* invalidate(row, { active: true })
        const created = yield* loadVersion(id, versionId)
        return yield* Option.match(created, { onNone: () => Effect.fail(workflowNotFound(id)), onSome: Effect.succeed })
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.createVersion", { attributes: { "workflow.id": id } }))

    /** Makes `versionId` the production version; a version of another workflow is a 404. */
    const activate = (id: number, versionId: number): Effect.Effect<Workflow, NotFound | Forbidden, CurrentUser> =>
      Effect.gen(function*() {
        const changed = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* policy.require(id, "write", { lock: true })
            const target = yield* repo.findVersion(id, versionId)
            if (Option.isNone(target)) {
              return yield* new NotFound({ detail: `Workflow ${id} has no version ${versionId}` })
            }
            if (row.active_version_id === versionId) return Option.none<WorkflowRow>()
            yield* repo.setActiveVersion(id, versionId)
            yield* audit.record({
              action: "workflow.version.activate",
              resourceType: "workflow",
              resourceId: id,
              changes: {
                active_version_id: { from: row.active_version_id, to: versionId },
                version: target.value.version
              }
            })
            return Option.some(row)
          })
        )
        if (Option.isSome(changed)) yield* invalidate(changed.value, { active: true })
        return yield* detail(id)
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.activate", { attributes: { "workflow.id": id } }))

    const exportVersion = (
      id: number,
      versionId: number
    ): Effect.Effect<WorkflowExport, NotFound | Forbidden, CurrentUser> =>
      Effect.gen(function*() {
        const row = yield* policy.require(id, "read")
        const version = yield* getVersion(id, versionId)
        return {
          format: "chatkit.workflow" as const,
          format_version: 1 as const,
          slug: row.slug,
          display_name: row.display_name,
          description: row.description,
          version: version.version,
          name: version.name,
          graph: version.graph,
          exported_at: DateTime.toDateUtc(yield* DateTime.now)
        }
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.exportVersion", { attributes: { "workflow.id": id } }))

    /**
     * Admin import: a new version of the live workflow with `slug` when there is one (active only
     * with mark_as_active), else a new workflow (owned by the admin) whose version 1 is active.
     */
    const importWorkflow = (
      input: ImportInput
    ): Effect.Effect<Workflow, Conflict | ValidationError | NotFound | Forbidden, CurrentUser> =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        const graph = yield* checkGraph(input.graph)
        if (input.slug === undefined && input.display_name === undefined) {
          return yield* new ValidationError({
            detail: "An import needs a slug or a display_name",
            errors: [{ path: "slug", message: "slug or display_name is required" }]
          })
        }
        const slug = input.slug ?? slugify(input.display_name ?? "")
        const { id, activated } = yield* sql.withTransaction(
          Effect.gen(function*() {
            const existing = yield* sql<
              { readonly id: number }
            >`SELECT id FROM workflows WHERE slug = ${slug} AND deleted_at IS NULL`
            const existingId = existing[0]?.id
            if (existingId !== undefined) {
              const row = yield* policy.require(existingId, "manage", { lock: true })
              const version = yield* repo.nextVersion(existingId)
              const versionId = yield* repo.insertVersion({
                workflowId: existingId,
                version,
                name: null,
                createdBy: user.id,
                graph
              })
              const activate = input.mark_as_active ?? false
              if (activate) yield* repo.setActiveVersion(existingId, versionId)
              yield* audit.record({
                action: "workflow.import",
                resourceType: "workflow",
                resourceId: existingId,
                changes: { slug, version_id: versionId, version, ...graphStats(graph), mark_as_active: activate }
              })
              return { id: existingId, activated: activate ? Option.some(row) : Option.none<WorkflowRow>() }
            }
            const fields = { slug, display_name: input.display_name ?? slug, description: input.description ?? null }
            const created = yield* insertWithGraph({ ...fields, owner_id: user.id, graph, createdBy: user.id })
            yield* audit.record({
              action: "workflow.import",
              resourceType: "workflow",
              resourceId: created.row.id,
              changes: { ...diffChanges({}, fields), version: 1, ...graphStats(graph) }
            })
            return { id: created.row.id, activated: Option.none<WorkflowRow>() }
          })
        )
        if (Option.isSome(activated)) yield* invalidate(activated.value, { active: true })
        return yield* detail(id)
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.import"))

    // -- default workflow -------------------------------------------------------------------

    /** The default workflow's active version with its graph, read through the cache. */
    const current: Effect.Effect<CurrentWorkflow, NotFound> = cache.getOrLoad(
      CURRENT_KEY,
      CachedCurrent,
      Effect.gen(function*() {
        const row = yield* repo.findDefault
        if (Option.isNone(row) || row.value.active_version_id === null) return Option.none<CurrentWorkflow>()
        const version = yield* loadVersion(row.value.id, row.value.active_version_id)
        return Option.map(version, (v): CurrentWorkflow => ({
          workflow_id: row.value.id,
          slug: row.value.slug,
          display_name: row.value.display_name,
          description: row.value.description,
          version: v
        }))
      })
    ).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new NotFound({ detail: "No default workflow is set" })),
        onSome: Effect.succeed
      })),
      orDieOnSqlError,
      Effect.withSpan("WorkflowsService.current")
    )

    /**
     * The default workflow and its active version, none without a default: what each new thread
     * runs, read through the cache (a small entry; `current` holds the graph too).
     */
    const defaultTarget: Effect.Effect<Option.Option<WorkflowTarget>> = cache.getOrLoad(
      DEFAULT_TARGET_KEY,
      CachedTarget,
      Effect.map(repo.findDefault, Option.map((row) => ({ id: row.id, active_version_id: row.active_version_id })))
    ).pipe(orDieOnSqlError)

    /** Makes `workflowId` the default workflow (admin only: the endpoint carries AdminAuthentication). */
    const setDefault = (workflowId: number): Effect.Effect<WorkflowSummary, NotFound> =>
      Effect.gen(function*() {
        const changed = yield* sql.withTransaction(
          Effect.gen(function*() {
            yield* repo.lockDefault
            const target = yield* repo.find(workflowId, { lock: true })
            if (Option.isNone(target)) return yield* workflowNotFound(workflowId)
            if (target.value.is_default) return false
            const previous = yield* repo.findDefault
            yield* repo.setDefault(workflowId)
            yield* audit.record({
              action: "workflow.default.set",
              resourceType: "workflow",
              resourceId: workflowId,
              changes: {
                default_workflow_id: { from: Option.getOrNull(Option.map(previous, (p) => p.id)), to: workflowId }
              }
            })
            return true
          })
        )
        if (changed) yield* cache.invalidatePrefix(CURRENT_KEY)
        return yield* summary(workflowId)
      }).pipe(
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.setDefault", { attributes: { "workflow.id": workflowId } })
      )

    return {
      list,
      get,
      create,
      update,
      delete: remove,
      duplicate,
      listVersions,
      getVersion,
      createVersion,
      activate,
      exportVersion,
      import: importWorkflow,
      current,
      defaultTarget,
      setDefault
    } as const
  }),
  dependencies: [WorkflowsRepo.Default, WorkflowsPolicy.Default, AuditLog.Default]
}) {}
