import { SqlClient } from "@effect/sql"
import { type SqlError } from "@effect/sql/SqlError"
import { Effect, Option, Schema } from "effect"

import { Conflict, Forbidden, NotFound, ValidationError } from "../../domain/errors.js"
import { type PageRequest, toPage } from "../../domain/Page.js"
import type { User } from "../../domain/User.js"
import {
  CurrentWorkflow,
  type Graph,
  type GraphInput,
  normalizeGraph,
  type Share,
  type SharePermission,
  type Workflow,
  type WorkflowExport,
  type WorkflowSummary,
  WorkflowVersion,
  type WorkflowVersionSummary
} from "../../domain/Workflow.js"
import { Cache } from "../../platform/Cache.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import { AuditLog, diffChanges } from "../audit/AuditLog.js"
import { UsersRepo } from "../users/Repo.js"
import { validateGraph } from "./Graph.js"
import { type DefinitionRow, type SummaryRow, type WorkflowRow, WorkflowsRepo } from "./Repo.js"

/** The caller of every operation. */
export type Caller = Pick<User, "id" | "is_admin">

/**
 * What a caller may do with a workflow: `manage` (owner or admin: everything), `write` (a write
 * share: edit, create and activate versions), `read` (a read share). No access is a 404, never a
 * 403, so a private workflow's existence is not revealed.
 */
export type Access = "read" | "write" | "manage"
type AuthorizedRow = WorkflowRow & { readonly share_permission: SharePermission | null }
const rank: Record<Access, number> = { read: 1, write: 2, manage: 3 }

export const accessOf = (row: WorkflowRow & { readonly share_permission: SharePermission | null }, caller: Caller) =>
  caller.is_admin || (row.owner_id !== null && row.owner_id === caller.id)
    ? "manage" as const
    : row.share_permission ?? undefined

/** Cache keys: the default workflow, and each workflow's active version. */
export const CURRENT_KEY = "workflows:current"
export const activeKey = (workflowId: number) => `workflows:active:${workflowId}`

const CachedCurrent = Schema.Option(CurrentWorkflow)
const CachedVersion = Schema.Option(WorkflowVersion)

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

/** The graph of a new workflow created without one, and of the bootstrap default workflow. */
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

const notFound = (id: number) => new NotFound({ detail: `Workflow ${id} does not exist` })

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

const toVersionSummary = (row: DefinitionRow): WorkflowVersionSummary => ({
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
 * Workflows (API.md section 6). Every mutation runs in one transaction with its audit row, the
 * workflow row locked `FOR UPDATE` (so concurrent version creations number n+1, n+2); the cached
 * default workflow and active versions are invalidated after the commit of every write that
 * changes them.
 */
export class WorkflowsService extends Effect.Service<WorkflowsService>()("chatkit/WorkflowsService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* WorkflowsRepo
    const users = yield* UsersRepo
    const audit = yield* AuditLog
    const cache = yield* Cache

    /** The workflow if `caller` holds at least `need` on it: 404 without any access, 403 with too little. */
    const authorize = (
      id: number,
      caller: Caller,
      need: Access,
      lock: boolean
    ): Effect.Effect<AuthorizedRow, NotFound | Forbidden | SqlError> =>
      Effect.flatMap(
        repo.findWithShare(id, caller.id, lock),
        (found): Effect.Effect<AuthorizedRow, NotFound | Forbidden> => {
          if (Option.isNone(found)) return Effect.fail(notFound(id))
          const access = accessOf(found.value, caller)
          if (access === undefined) return Effect.fail(notFound(id))
          if (rank[access] < rank[need]) {
            return Effect.fail(
              new Forbidden({ detail: `This needs ${need} access to workflow ${id}; you have ${access} access` })
            )
          }
          return Effect.succeed(found.value)
        }
      )

    /** Drops what a write to `row` made stale, after its commit. */
    const invalidate = (row: Pick<WorkflowRow, "id" | "is_default">, what: { readonly active: boolean }) =>
      Effect.zipRight(
        what.active ? cache.invalidatePrefix(activeKey(row.id)) : Effect.void,
        row.is_default ? cache.invalidatePrefix(CURRENT_KEY) : Effect.void
      )

    const loadVersion = (workflowId: number, definitionId: number) =>
      Effect.flatMap(repo.findDefinition(workflowId, definitionId), (found) =>
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
        Effect.flatMap(repo.findWithShare(workflowId, 0, false), (row) =>
          Option.isNone(row) || row.value.active_version_id === null
            ? Effect.succeedNone
            : loadVersion(workflowId, row.value.active_version_id))
      )

    const summary = (id: number) =>
      Effect.flatMap(
        repo.findSummary(id),
        Option.match({ onNone: () => Effect.fail(notFound(id)), onSome: (row) => Effect.succeed(toSummary(row)) })
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
        const definitionId = yield* repo.insertDefinition({
          workflowId: inserted.value.id,
          version: 1,
          name: null,
          createdBy: input.createdBy,
          graph: input.graph
        })
        yield* repo.setActiveVersion(inserted.value.id, definitionId)
        return { row: inserted.value, definitionId }
      })

    const graphStats = (graph: Graph) => ({ nodes: graph.nodes.length, edges: graph.edges.length })

    // -- workflows --------------------------------------------------------------------------

    const list = (caller: Caller, page: PageRequest) =>
      repo.listSummaries(caller, page.pageSize, page.offset).pipe(
        Effect.map(({ items, total }) => toPage(page, items.map(toSummary), total)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.list")
      )

    const get = (id: number, caller: Caller): Effect.Effect<Workflow, NotFound | Forbidden> =>
      authorize(id, caller, "read", false).pipe(
        Effect.zipRight(detail(id)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.get", { attributes: { "workflow.id": id } })
      )

    const create = (input: CreateWorkflowInput, caller: Caller): Effect.Effect<Workflow, Conflict | ValidationError> =>
      Effect.gen(function*() {
        const graph = input.graph === undefined ? DEFAULT_GRAPH : yield* checkGraph(input.graph)
        const fields = { slug: input.slug, display_name: input.display_name, description: input.description ?? null }
        const { row } = yield* sql.withTransaction(
          Effect.gen(function*() {
            const created = yield* insertWithGraph({ ...fields, owner_id: caller.id, graph, createdBy: caller.id })
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
    const update = (id: number, input: UpdateWorkflowInput, caller: Caller) =>
      Effect.gen(function*() {
        const before = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* authorize(id, caller, "write", true)
            const requested = {
              ...(input.slug === undefined ? {} : { slug: input.slug }),
              ...(input.display_name === undefined ? {} : { display_name: input.display_name }),
              ...(input.description === undefined ? {} : { description: input.description })
            }
            const diff = diffChanges(
              { slug: row.slug, display_name: row.display_name, description: row.description },
              requested
            )
            if (Object.keys(diff).length === 0) return Option.none<WorkflowRow>()
            yield* repo.update(id, Object.fromEntries(Object.entries(requested).filter(([key]) => key in diff)))
            yield* audit.record({ action: "workflow.update", resourceType: "workflow", resourceId: id, changes: diff })
            return Option.some(row)
          })
        )
        // the default workflow's slug and names are part of the cached current workflow
        if (Option.isSome(before)) yield* invalidate(before.value, { active: false })
        return yield* detail(id)
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.update", { attributes: { "workflow.id": id } }))

    /** Soft delete (owner or admin). The default workflow cannot be deleted: make another one the default first. */
    const remove = (id: number, caller: Caller): Effect.Effect<void, NotFound | Forbidden | Conflict> =>
      Effect.gen(function*() {
        const row = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* authorize(id, caller, "manage", true)
            if (row.is_default) {
              return yield* new Conflict({
                detail: `Workflow ${id} is the default workflow; make another one the default first`
              })
            }
            const deleted = yield* repo.softDelete(id)
            if (Option.isNone(deleted)) return yield* notFound(id)
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
      input: { readonly display_name: string; readonly slug?: string | undefined },
      caller: Caller
    ): Effect.Effect<Workflow, NotFound | Forbidden | Conflict> =>
      Effect.gen(function*() {
        const source = yield* authorize(id, caller, "read", false)
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
            const created = yield* insertWithGraph({ ...fields, owner_id: caller.id, graph, createdBy: caller.id })
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

    const listVersions = (id: number, caller: Caller, page: PageRequest) =>
      authorize(id, caller, "read", false).pipe(
        Effect.zipRight(repo.listDefinitions(id, page.pageSize, page.offset)),
        Effect.map(({ items, total }) => toPage(page, items.map(toVersionSummary), total)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.listVersions", { attributes: { "workflow.id": id } })
      )

    const getVersion = (
      id: number,
      versionId: number,
      caller: Caller
    ): Effect.Effect<WorkflowVersion, NotFound | Forbidden> =>
      authorize(id, caller, "read", false).pipe(
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
    const createVersion = (id: number, input: CreateVersionInput, caller: Caller) =>
      Effect.gen(function*() {
        const graph = yield* checkGraph(input.graph)
        const activate = input.mark_as_active ?? false
        const { definitionId, row } = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* authorize(id, caller, "write", true)
            const version = yield* repo.nextVersion(id)
            const definitionId = yield* repo.insertDefinition({
              workflowId: id,
              version,
              name: input.name ?? null,
              createdBy: caller.id,
              graph
            })
            yield* audit.record({
              action: "workflow.version.create",
              resourceType: "workflow",
              resourceId: id,
              changes: {
                version_id: definitionId,
                version,
                name: input.name ?? null,
                ...graphStats(graph),
                mark_as_active: activate
              }
            })
            if (activate) {
              yield* repo.setActiveVersion(id, definitionId)
              yield* audit.record({
                action: "workflow.version.activate",
                resourceType: "workflow",
                resourceId: id,
                changes: { active_version_id: { from: row.active_version_id, to: definitionId }, version }
              })
            }
            return { definitionId, row }
          })
        )
        if (activate) yield* invalidate(row, { active: true })
        const created = yield* loadVersion(id, definitionId)
        return yield* Option.match(created, { onNone: () => Effect.fail(notFound(id)), onSome: Effect.succeed })
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.createVersion", { attributes: { "workflow.id": id } }))

    /** Makes `versionId` the production version; a version of another workflow is a 404. */
    const activate = (id: number, versionId: number, caller: Caller): Effect.Effect<Workflow, NotFound | Forbidden> =>
      Effect.gen(function*() {
        const changed = yield* sql.withTransaction(
          Effect.gen(function*() {
            const row = yield* authorize(id, caller, "write", true)
            const definition = yield* repo.findDefinition(id, versionId)
            if (Option.isNone(definition)) {
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
                version: definition.value.version
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
      versionId: number,
      caller: Caller
    ): Effect.Effect<WorkflowExport, NotFound | Forbidden> =>
      Effect.gen(function*() {
        const row = yield* authorize(id, caller, "read", false)
        const version = yield* getVersion(id, versionId, caller)
        return {
          format: "chatkit.workflow" as const,
          format_version: 1 as const,
          slug: row.slug,
          display_name: row.display_name,
          description: row.description,
          version: version.version,
          name: version.name,
          graph: version.graph,
          exported_at: new Date()
        }
      }).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.exportVersion", { attributes: { "workflow.id": id } }))

    /**
     * Admin import: a new version of the live workflow with `slug` when there is one (active only
     * with mark_as_active), else a new workflow (owned by the admin) whose version 1 is active.
     */
    const importWorkflow = (
      input: ImportInput,
      caller: Caller
    ): Effect.Effect<Workflow, Conflict | ValidationError | NotFound | Forbidden> =>
      Effect.gen(function*() {
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
              const row = yield* authorize(existingId, caller, "manage", true)
              const version = yield* repo.nextVersion(existingId)
              const definitionId = yield* repo.insertDefinition({
                workflowId: existingId,
                version,
                name: null,
                createdBy: caller.id,
                graph
              })
              const activate = input.mark_as_active ?? false
              if (activate) yield* repo.setActiveVersion(existingId, definitionId)
              yield* audit.record({
                action: "workflow.import",
                resourceType: "workflow",
                resourceId: existingId,
                changes: { slug, version_id: definitionId, version, ...graphStats(graph), mark_as_active: activate }
              })
              return { id: existingId, activated: activate ? Option.some(row) : Option.none<WorkflowRow>() }
            }
            const fields = { slug, display_name: input.display_name ?? slug, description: input.description ?? null }
            const created = yield* insertWithGraph({ ...fields, owner_id: caller.id, graph, createdBy: caller.id })
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

    // -- shares -----------------------------------------------------------------------------

    const listShares = (id: number, caller: Caller, page: PageRequest) =>
      authorize(id, caller, "read", false).pipe(
        Effect.zipRight(repo.listShares(id, page.pageSize, page.offset)),
        Effect.map(({ items, total }) => toPage(page, items as ReadonlyArray<Share>, total)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowsService.listShares", { attributes: { "workflow.id": id } })
      )

    const readShare = (id: number, userId: number) =>
      Effect.flatMap(
        repo.findShare(id, userId),
        Option.match({
          onNone: () => Effect.fail(new NotFound({ detail: `Workflow ${id} is not shared with user ${userId}` })),
          onSome: (share) => Effect.succeed<Share>(share)
        })
      )

    /** Shares with the live user who has `email`: unknown email 404, the owner or an existing share 409. */
    const createShare = (
      id: number,
      input: { readonly user_email: string; readonly permission: SharePermission },
      caller: Caller
    ): Effect.Effect<Share, NotFound | Forbidden | Conflict> =>
      sql.withTransaction(
        Effect.gen(function*() {
          const row = yield* authorize(id, caller, "manage", true)
          const user = yield* users.findLiveByEmail(input.user_email)
          if (Option.isNone(user)) return yield* new NotFound({ detail: `No user has the email ${input.user_email}` })
          if (user.value.id === row.owner_id) {
            return yield* new Conflict({ detail: "The owner already has every access" })
          }
          const inserted = yield* repo.insertShare(id, user.value.id, input.permission)
          if (!inserted) {
            return yield* new Conflict({
              detail: `Workflow ${id} is already shared with that user; PATCH the share instead`
            })
          }
          yield* audit.record({
            action: "workflow.share.create",
            resourceType: "workflow",
            resourceId: id,
            changes: { user_id: user.value.id, permission: input.permission }
          })
          return yield* readShare(id, user.value.id)
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.createShare", { attributes: { "workflow.id": id } }))

    const updateShare = (id: number, userId: number, permission: SharePermission, caller: Caller) =>
      sql.withTransaction(
        Effect.gen(function*() {
          yield* authorize(id, caller, "manage", true)
          const before = yield* readShare(id, userId)
          if (before.permission === permission) return before
          yield* repo.updateShare(id, userId, permission)
          yield* audit.record({
            action: "workflow.share.update",
            resourceType: "workflow",
            resourceId: id,
            changes: { user_id: userId, permission: { from: before.permission, to: permission } }
          })
          return yield* readShare(id, userId)
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.updateShare", { attributes: { "workflow.id": id } }))

    const deleteShare = (id: number, userId: number, caller: Caller): Effect.Effect<void, NotFound | Forbidden> =>
      sql.withTransaction(
        Effect.gen(function*() {
          yield* authorize(id, caller, "manage", true)
          const before = yield* readShare(id, userId)
          yield* repo.deleteShare(id, userId)
          yield* audit.record({
            action: "workflow.share.delete",
            resourceType: "workflow",
            resourceId: id,
            changes: { user_id: userId, permission: { from: before.permission, to: null } }
          })
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("WorkflowsService.deleteShare", { attributes: { "workflow.id": id } }))

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

    /** Admin: makes `workflowId` the default workflow. */
    const setDefault = (workflowId: number, caller: Caller): Effect.Effect<WorkflowSummary, NotFound> =>
      Effect.gen(function*() {
        const changed = yield* sql.withTransaction(
          Effect.gen(function*() {
            yield* repo.lockDefault
            const target = yield* repo.findWithShare(workflowId, caller.id, true)
            if (Option.isNone(target)) return yield* notFound(workflowId)
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
      listShares,
      createShare,
      updateShare,
      deleteShare,
      current,
      setDefault
    } as const
  }),
  dependencies: [WorkflowsRepo.Default, UsersRepo.Default, AuditLog.Default]
}) {}
