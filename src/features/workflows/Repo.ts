import { PgClient } from "@effect/sql-pg"
import { Effect, Schema, Struct } from "effect"

import { Conflict } from "../../domain/errors.js"
import {
  Graph,
  SharePermission,
  WorkflowShare,
  WorkflowShareRef,
  WorkflowSummary,
  WorkflowVersionSummary
} from "../../domain/Workflow.js"
import {
  columnsOf,
  countedPageQuery,
  decodedCountedPage,
  findAllRows,
  findOneRow,
  isUniqueViolation,
  patchColumns,
  singleRow
} from "../../platform/Database.js"

/** A workflows row as stored (migration 0005). */
const WorkflowRow = Schema.Struct({
  ...Struct.pick(
    WorkflowSummary.fields,
    "id",
    "slug",
    "display_name",
    "description",
    "owner_id",
    "active_version_id",
    "is_default"
  ),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  deleted_at: Schema.NullOr(Schema.DateFromSelf)
})
export type WorkflowRow = typeof WorkflowRow.Type

/** A workflow with what a summary adds: owner, number of versions, shares (`json_agg`, decoded too). */
const SummaryRow = Schema.Struct({
  ...WorkflowRow.fields,
  owner_email: Schema.NullOr(Schema.String),
  owner_display_name: Schema.NullOr(Schema.String),
  versions_count: Schema.Int,
  shared_with: Schema.Array(WorkflowShareRef)
})
export type SummaryRow = typeof SummaryRow.Type

/**
 * A workflow with the share one user holds on it (`null`: none), what `WorkflowsPolicy` decides
 * access from.
 */
const WorkflowWithShareRow = Schema.Struct({
  ...WorkflowRow.fields,
  share_permission: Schema.NullOr(SharePermission)
})
export type WorkflowWithShareRow = typeof WorkflowWithShareRow.Type

/** A version of a workflow as stored (a `workflow_definitions` row), without its graph. */
const VersionRow = Schema.Struct({
  ...WorkflowVersionSummary.fields,
  created_at: Schema.DateFromSelf
})
export type VersionRow = typeof VersionRow.Type

/** A workflow_shares row with its user's email and display name. */
const ShareRow = Schema.Struct({
  ...WorkflowShare.fields,
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf
})
export type ShareRow = typeof ShareRow.Type

const WorkflowChanges = Schema.partialWith(
  Schema.Struct({ slug: Schema.String, display_name: Schema.String, description: Schema.NullOr(Schema.String) }),
  { exact: true }
)
export type WorkflowChanges = typeof WorkflowChanges.Type

const NewWorkflow = Schema.Struct({
  slug: Schema.String,
  display_name: Schema.String,
  description: Schema.NullOr(Schema.String),
  owner_id: Schema.NullOr(Schema.Int),
  is_default: Schema.optionalWith(Schema.Boolean, { exact: true })
})

/** `lock: true` takes the workflow's row lock until the transaction ends, which serializes every write to it. */
export interface LockOptions {
  readonly lock?: boolean
}

/** A workflow id with whether to lock its row (`LockOptions`). */
const LockedId = Schema.Struct({ id: Schema.Int, lock: Schema.Boolean })

const COLUMNS = columnsOf(WorkflowRow)
const W_COLUMNS = COLUMNS.split(", ").map((c) => `w.${c}`).join(", ")
/** `is_active` is false, not NULL, while a new workflow has no active version yet (inside its creation). */
const VERSION_COLUMNS = "d.id, d.workflow_id, d.version, d.name, d.created_by, d.created_at, " +
  "COALESCE(w.active_version_id = d.id, false) AS is_active"

/** a live workflow already has this slug */
const isSlugTaken = isUniqueViolation("workflows_slug_live_key")

/** Serializes the writers of the default flag (set-default, bootstrap) across every instance. */
const DEFAULT_LOCK_KEY = 0x7766_0001

/** SQL of the workflow tables. Writes join the caller's transaction when there is one. */
export class WorkflowsRepo extends Effect.Service<WorkflowsRepo>()("chatkit/WorkflowsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const columns = sql.literal(COLUMNS)
    const wColumns = sql.literal(W_COLUMNS)

    /** Who may see what: admins everything, others what they own or what is shared with them. */
    const visibleTo = (viewer: { readonly id: number; readonly is_admin: boolean }) =>
      viewer.is_admin
        ? sql`w.deleted_at IS NULL`
        : sql`w.deleted_at IS NULL AND (w.owner_id = ${viewer.id}
            OR EXISTS (SELECT 1 FROM workflow_shares s WHERE s.workflow_id = w.id AND s.user_id = ${viewer.id}))`

    /** The summary columns of `w`: one statement whatever the number of rows (no N+1). */
    const summaryColumns = sql`${wColumns},
      o.email AS owner_email, o.display_name AS owner_display_name,
      (SELECT count(*)::int FROM workflow_definitions d WHERE d.workflow_id = w.id) AS versions_count,
      COALESCE((SELECT json_agg(json_build_object('user_id', s.user_id, 'email', su.email, 'permission', s.permission)
                                ORDER BY s.user_id)
                FROM workflow_shares s JOIN users su ON su.id = s.user_id AND su.deleted_at IS NULL
                WHERE s.workflow_id = w.id), '[]'::json) AS shared_with`

    /** One page ordered by id with the total, in one statement (the total even past the end). */
    const listSummaries = (
      viewer: { readonly id: number; readonly is_admin: boolean },
      limit: number,
      offset: number
    ) =>
      countedPageQuery(sql, {
        columns: summaryColumns,
        from: sql`FROM workflows w LEFT JOIN users o ON o.id = w.owner_id WHERE ${visibleTo(viewer)}`,
        orderBy: "id",
        limit,
        offset
      }).pipe(
        Effect.flatMap(decodedCountedPage(SummaryRow, "id")),
        Effect.withSpan("WorkflowsRepo.listSummaries")
      )

    const findSummary = findOneRow({
      Request: Schema.Int,
      Result: SummaryRow,
      execute: (id) =>
        sql`SELECT ${summaryColumns}
          FROM workflows w LEFT JOIN users o ON o.id = w.owner_id
          WHERE w.id = ${id} AND w.deleted_at IS NULL`
    })

    const forUpdate = (lock: boolean) => sql.literal(lock ? "FOR UPDATE OF w" : "")

    const findRow = findOneRow({
      Request: LockedId,
      Result: WorkflowRow,
      execute: ({ id, lock }) =>
        sql`SELECT ${wColumns}
          FROM workflows w WHERE w.id = ${id} AND w.deleted_at IS NULL
          ${forUpdate(lock)}`
    })

    /** A live workflow, whoever asks. */
    const find = (id: number, options?: LockOptions) => findRow({ id, lock: options?.lock === true })

    const findWithShareRow = findOneRow({
      Request: Schema.Struct({ ...LockedId.fields, userId: Schema.Int }),
      Result: WorkflowWithShareRow,
      execute: ({ id, lock, userId }) =>
        sql`
          SELECT ${wColumns},
            (SELECT s.permission FROM workflow_shares s WHERE s.workflow_id = w.id AND s.user_id = ${userId}) AS share_permission
          FROM workflows w WHERE w.id = ${id} AND w.deleted_at IS NULL
          ${forUpdate(lock)}`
    })

    /** A live workflow with the share `userId` holds on it (if any). */
    const findWithShare = (id: number, userId: number, options?: LockOptions) =>
      findWithShareRow({ id, userId, lock: options?.lock === true })

    /** Inserts a workflow; `None` when a live workflow has the slug. */
    const insert = findOneRow({
      Request: NewWorkflow,
      Result: WorkflowRow,
      execute: (row) =>
        sql`INSERT INTO workflows (slug, display_name, description, owner_id, is_default)
          VALUES (${row.slug}, ${row.display_name}, ${row.description}, ${row.owner_id}, ${row.is_default ?? false})
          ON CONFLICT (slug) WHERE deleted_at IS NULL DO NOTHING
          RETURNING ${columns}`
    })

    const updateRow = findOneRow({
      Request: Schema.Struct({ id: Schema.Int, changes: WorkflowChanges }),
      Result: WorkflowRow,
      execute: ({ changes, id }) =>
        sql`UPDATE workflows SET ${patchColumns(sql, { ...changes, updated_at: sql`now()` })}
          WHERE id = ${id} AND deleted_at IS NULL
          RETURNING ${columns}`
    })

    /** Applies `changes` to a live workflow; Conflict when the new slug is taken. */
    const update = (id: number, changes: WorkflowChanges) =>
      updateRow({ id, changes }).pipe(
        Effect.catchIf(
          isSlugTaken,
          () => Effect.fail(new Conflict({ detail: `A workflow with slug ${changes.slug} already exists` }))
        )
      )

    /** Soft delete; the default flag goes with it. */
    const softDelete = findOneRow({
      Request: Schema.Int,
      Result: WorkflowRow,
      execute: (id) =>
        sql`UPDATE workflows SET deleted_at = now(), updated_at = now(), is_default = false
          WHERE id = ${id} AND deleted_at IS NULL
          RETURNING ${columns}`
    })

    const setActiveVersion = (id: number, versionId: number) =>
      sql`UPDATE workflows SET active_version_id = ${versionId}, updated_at = now() WHERE id = ${id}`.pipe(
        Effect.asVoid
      )

    /** The next version number; call with the workflow row locked, so concurrent callers get n+1, n+2. */
    const nextVersionRow = singleRow({
      Request: Schema.Int,
      Result: Schema.Struct({ next: Schema.Int }),
      execute: (workflowId) =>
        sql`SELECT COALESCE(max(version), 0) + 1 AS next
          FROM workflow_definitions WHERE workflow_id = ${workflowId}`
    })
    const nextVersion = (workflowId: number) => Effect.map(nextVersionRow(workflowId), (row) => row.next)

    const insertVersionRow = singleRow({
      Request: Schema.Struct({
        workflowId: Schema.Int,
        version: Schema.Int,
        name: Schema.NullOr(Schema.String),
        createdBy: Schema.NullOr(Schema.Int)
      }),
      Result: Schema.Struct({ id: Schema.Int }),
      execute: (input) =>
        sql`INSERT INTO workflow_definitions (workflow_id, version, name, created_by)
          VALUES (${input.workflowId}, ${input.version}, ${input.name}, ${input.createdBy}) RETURNING id`
    })

    /**
     * A version with its steps and transitions: three statements however big the graph (the rows
     * travel as one JSON text parameter: no per-node statement, no parameter-count limit).
     * `JSON.stringify` here is safe: a client's graph reaches this only through `checkGraph`, whose
     * `JsonObject` fields hold plain JSON nested at most 8 levels with text PostgreSQL accepts, and
     * whose `validateGraph` has serialised the whole graph once already (at most 512 KiB); the other
     * graphs are the built-in default and copies of stored versions.
     */
    const insertVersion = (input: {
      readonly workflowId: number
      readonly version: number
      readonly name: string | null
      readonly createdBy: number | null
      readonly graph: Graph
    }) =>
      Effect.gen(function*() {
        const { id } = yield* insertVersionRow(input)
        if (input.graph.nodes.length > 0) {
          const nodes = input.graph.nodes.map((node, pos) => ({ ...node, pos }))
          yield* sql`INSERT INTO workflow_steps
              (definition_id, slug, kind, display_name, agent_key, parent_slug, is_enabled, parameters, metadata, position)
            SELECT ${id}, x.slug, x.kind, x.display_name, x.agent_key, x.parent_slug, x.is_enabled, x.parameters, x.metadata, x.pos
            FROM jsonb_to_recordset(${
            JSON.stringify(nodes)
          }::jsonb) AS x(slug text, kind text, display_name text, agent_key text,
              parent_slug text, is_enabled boolean, parameters jsonb, metadata jsonb, pos int)`
        }
        if (input.graph.edges.length > 0) {
          const edges = input.graph.edges.map((edge, pos) => ({ ...edge, pos }))
          yield* sql`INSERT INTO workflow_transitions (definition_id, source_slug, target_slug, condition, metadata, position)
            SELECT ${id}, x.source, x.target, x.cond, x.metadata, x.pos
            FROM jsonb_to_recordset(${
            JSON.stringify(edges.map(({ condition, ...rest }) => ({ ...rest, cond: condition })))
          }::jsonb)
              AS x(source text, target text, cond text, metadata jsonb, pos int)`
        }
        return id
      }).pipe(Effect.withSpan("WorkflowsRepo.insertVersion", { attributes: { nodes: input.graph.nodes.length } }))

    /** The graph of a version in one statement (one row of two `json_agg` columns, decoded as a `Graph`). */
    const loadGraph = singleRow({
      Request: Schema.Int,
      Result: Graph,
      execute: (versionId) =>
        sql`SELECT
          COALESCE((SELECT json_agg(json_build_object('slug', slug, 'kind', kind, 'display_name', display_name,
              'agent_key', agent_key, 'parent_slug', parent_slug, 'is_enabled', is_enabled,
              'parameters', parameters, 'metadata', metadata) ORDER BY position)
            FROM workflow_steps WHERE definition_id = ${versionId}), '[]'::json) AS nodes,
          COALESCE((SELECT json_agg(json_build_object('source', source_slug, 'target', target_slug,
              'condition', condition, 'metadata', metadata) ORDER BY position)
            FROM workflow_transitions WHERE definition_id = ${versionId}), '[]'::json) AS edges`
    })

    const findVersionRow = findOneRow({
      Request: Schema.Struct({ workflowId: Schema.Int, versionId: Schema.Int }),
      Result: VersionRow,
      execute: ({ versionId, workflowId }) =>
        sql`SELECT ${sql.literal(VERSION_COLUMNS)}
          FROM workflow_definitions d JOIN workflows w ON w.id = d.workflow_id
          WHERE d.id = ${versionId} AND d.workflow_id = ${workflowId}`
    })
    const findVersion = (workflowId: number, versionId: number) => findVersionRow({ workflowId, versionId })

    const listVersions = (workflowId: number, limit: number, offset: number) =>
      countedPageQuery(sql, {
        columns: sql.literal(VERSION_COLUMNS),
        from:
          sql`FROM workflow_definitions d JOIN workflows w ON w.id = d.workflow_id WHERE d.workflow_id = ${workflowId}`,
        orderBy: "version DESC",
        limit,
        offset
      }).pipe(
        Effect.flatMap(decodedCountedPage(VersionRow, "id"))
      )

    /** Slugs of live workflows equal to `base` or `base-<n>` (to pick a free one for a copy). */
    const slugRows = findAllRows({
      Request: Schema.String,
      Result: Schema.Struct({ slug: Schema.String }),
      execute: (base) =>
        sql`SELECT slug FROM workflows
          WHERE deleted_at IS NULL AND (slug = ${base} OR slug LIKE ${`${
          base.replace(/[\\%_]/g, (c) => `\\${c}`)
        }-%`} ESCAPE '\\')`
    })
    const slugsLike = (base: string) => Effect.map(slugRows(base), (rows) => new Set(rows.map((row) => row.slug)))

    // -- default workflow -------------------------------------------------------------------

    /** Transaction-scoped lock taken by every writer of the default flag. */
    const lockDefault = sql`SELECT pg_advisory_xact_lock(${DEFAULT_LOCK_KEY})`.pipe(Effect.asVoid)

    const findDefault = findOneRow({
      Request: Schema.Void,
      Result: WorkflowRow,
      execute: () => sql`SELECT ${columns} FROM workflows WHERE is_default AND deleted_at IS NULL`
    })(undefined)

    /** Moves the default flag to `id` (two statements: the unique index allows one live default at a time). */
    const setDefault = (id: number) =>
      Effect.zipRight(
        sql`UPDATE workflows SET is_default = false, updated_at = now() WHERE is_default AND id <> ${id}`,
        sql`UPDATE workflows SET is_default = true, updated_at = now() WHERE id = ${id} AND deleted_at IS NULL`
      ).pipe(Effect.asVoid)

    const countLive = singleRow({
      Request: Schema.Void,
      Result: Schema.Struct({ n: Schema.Int }),
      execute: () => sql`SELECT count(*)::int AS n FROM workflows WHERE deleted_at IS NULL`
    })(undefined).pipe(Effect.map((row) => row.n))

    // -- shares -----------------------------------------------------------------------------

    const SHARE_COLUMNS = sql.literal(
      "s.workflow_id, s.user_id, u.email, u.display_name, s.permission, s.created_at, s.updated_at"
    )

    const listShares = (workflowId: number, limit: number, offset: number) =>
      countedPageQuery(sql, {
        columns: SHARE_COLUMNS,
        from: sql`FROM workflow_shares s JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL
          WHERE s.workflow_id = ${workflowId}`,
        orderBy: "user_id",
        limit,
        offset
      }).pipe(
        Effect.flatMap(decodedCountedPage(ShareRow, "user_id"))
      )

    const findShareRow = findOneRow({
      Request: Schema.Struct({ workflowId: Schema.Int, userId: Schema.Int }),
      Result: ShareRow,
      execute: ({ userId, workflowId }) =>
        sql`SELECT ${SHARE_COLUMNS} FROM workflow_shares s JOIN users u ON u.id = s.user_id
          WHERE s.workflow_id = ${workflowId} AND s.user_id = ${userId} AND u.deleted_at IS NULL`
    })
    const findShare = (workflowId: number, userId: number) => findShareRow({ workflowId, userId })

    // The three writes below read only whether a row came back (`RETURNING 1`), never a value of it,
    // so there is no row to decode: they stay plain statements.

    /** `false` when the pair already exists. */
    const insertShare = (workflowId: number, userId: number, permission: SharePermission) =>
      sql`INSERT INTO workflow_shares (workflow_id, user_id, permission) VALUES (${workflowId}, ${userId}, ${permission})
        ON CONFLICT (workflow_id, user_id) DO NOTHING RETURNING 1 AS inserted`.pipe(
        Effect.map((rows) => rows.length > 0)
      )

    const updateShare = (workflowId: number, userId: number, permission: SharePermission) =>
      sql`UPDATE workflow_shares SET permission = ${permission}, updated_at = now()
        WHERE workflow_id = ${workflowId} AND user_id = ${userId} RETURNING 1 AS updated`.pipe(
        Effect.map((rows) => rows.length > 0)
      )

    const deleteShare = (workflowId: number, userId: number) =>
      sql`DELETE FROM workflow_shares WHERE workflow_id = ${workflowId} AND user_id = ${userId} RETURNING 1 AS deleted`
        .pipe(
          Effect.map((rows) => rows.length > 0)
        )

    return {
      listSummaries,
      findSummary,
      find,
      findWithShare,
      insert,
      update,
      softDelete,
      setActiveVersion,
      nextVersion,
      insertVersion,
      loadGraph,
      findVersion,
      listVersions,
      slugsLike,
      lockDefault,
      findDefault,
      setDefault,
      countLive,
      listShares,
      findShare,
      insertShare,
      updateShare,
      deleteShare
    } as const
  })
}) {}
