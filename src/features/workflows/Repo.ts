import { PgClient } from "@effect/sql-pg"
import { Effect, Option } from "effect"

import { Conflict } from "../../domain/errors.js"
import type { Graph, GraphEdge, GraphNode, SharePermission, WorkflowShareRef } from "../../domain/Workflow.js"
import { countedPage, type CountedPageRows, isUniqueViolation, patchColumns } from "../../platform/Database.js"

/** A workflows row as stored. */
export interface WorkflowRow {
  readonly id: number
  readonly slug: string
  readonly display_name: string
  readonly description: string | null
  readonly owner_id: number | null
  readonly active_version_id: number | null
  readonly is_default: boolean
  readonly created_at: Date
  readonly updated_at: Date
  readonly deleted_at: Date | null
}

/** A workflow with what a summary adds: owner, number of versions, shares. */
export interface SummaryRow extends WorkflowRow {
  readonly owner_email: string | null
  readonly owner_display_name: string | null
  readonly versions_count: number
  readonly shared_with: ReadonlyArray<WorkflowShareRef>
}

/**
 * A workflow with the share one user holds on it (`null`: none), what `WorkflowsPolicy` decides
 * access from.
 */
export interface WorkflowWithShareRow extends WorkflowRow {
  readonly share_permission: SharePermission | null
}

/** A version of a workflow as stored (a `workflow_definitions` row), without its graph. */
export interface VersionRow {
  readonly id: number
  readonly workflow_id: number
  readonly version: number
  readonly name: string | null
  readonly created_by: number | null
  readonly created_at: Date
  readonly is_active: boolean
}

export interface ShareRow {
  readonly workflow_id: number
  readonly user_id: number
  readonly email: string
  readonly display_name: string | null
  readonly permission: SharePermission
  readonly created_at: Date
  readonly updated_at: Date
}

export interface WorkflowChanges {
  readonly slug?: string
  readonly display_name?: string
  readonly description?: string | null
}

/** `lock: true` takes the workflow's row lock until the transaction ends, which serializes every write to it. */
export interface LockOptions {
  readonly lock?: boolean
}

const COLUMNS =
  "id, slug, display_name, description, owner_id, active_version_id, is_default, created_at, updated_at, deleted_at"
const W_COLUMNS = COLUMNS.split(", ").map((c) => `w.${c}`).join(", ")
const VERSION_COLUMNS =
  "d.id, d.workflow_id, d.version, d.name, d.created_by, d.created_at, (w.active_version_id = d.id) AS is_active"

/** a live workflow already has this slug */
const isSlugTaken = isUniqueViolation("workflows_slug_live_key")

/** Serializes the writers of the default flag (set-default, bootstrap) across every instance. */
const DEFAULT_LOCK_KEY = 0x7766_0001

/** SQL of the workflow tables. Writes join the caller's transaction when there is one. */
export class WorkflowsRepo extends Effect.Service<WorkflowsRepo>()("chatkit/WorkflowsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const first = <A>(rows: ReadonlyArray<A>) => Option.fromNullable(rows[0])

    /** Who may see what: admins everything, others what they own or what is shared with them. */
    const visibleTo = (viewer: { readonly id: number; readonly is_admin: boolean }) =>
      viewer.is_admin
        ? sql`w.deleted_at IS NULL`
        : sql`w.deleted_at IS NULL AND (w.owner_id = ${viewer.id}
            OR EXISTS (SELECT 1 FROM workflow_shares s WHERE s.workflow_id = w.id AND s.user_id = ${viewer.id}))`

    /** The summary columns of `w`: one statement whatever the number of rows (no N+1). */
    const summaryColumns = sql`${sql.literal(W_COLUMNS)},
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
      sql<CountedPageRows<SummaryRow>[number]>`
        SELECT c.total, p.*
        FROM (SELECT count(*)::int AS total FROM workflows w WHERE ${visibleTo(viewer)}) c
        LEFT JOIN LATERAL (
          SELECT ${summaryColumns}
          FROM workflows w LEFT JOIN users o ON o.id = w.owner_id
          WHERE ${visibleTo(viewer)}
          ORDER BY w.id LIMIT ${limit} OFFSET ${offset}
        ) p ON true
        ORDER BY p.id`.pipe(
        Effect.map(countedPage<SummaryRow>("id")),
        Effect.withSpan("WorkflowsRepo.listSummaries")
      )

    const findSummary = (id: number) =>
      sql<SummaryRow>`SELECT ${summaryColumns}
        FROM workflows w LEFT JOIN users o ON o.id = w.owner_id
        WHERE w.id = ${id} AND w.deleted_at IS NULL`.pipe(Effect.map(first))

    const forUpdate = (options: LockOptions | undefined) => sql.literal(options?.lock === true ? "FOR UPDATE OF w" : "")

    /** A live workflow, whoever asks. */
    const find = (id: number, options?: LockOptions) =>
      sql<WorkflowRow>`SELECT ${sql.literal(W_COLUMNS)}
        FROM workflows w WHERE w.id = ${id} AND w.deleted_at IS NULL
        ${forUpdate(options)}`.pipe(Effect.map(first))

    /** A live workflow with the share `userId` holds on it (if any). */
    const findWithShare = (id: number, userId: number, options?: LockOptions) =>
      sql<WorkflowWithShareRow>`
        SELECT ${sql.literal(W_COLUMNS)},
          (SELECT s.permission FROM workflow_shares s WHERE s.workflow_id = w.id AND s.user_id = ${userId}) AS share_permission
        FROM workflows w WHERE w.id = ${id} AND w.deleted_at IS NULL
        ${forUpdate(options)}`.pipe(Effect.map(first))

    /** Inserts a workflow; `None` when a live workflow has the slug. */
    const insert = (row: {
      readonly slug: string
      readonly display_name: string
      readonly description: string | null
      readonly owner_id: number | null
      readonly is_default?: boolean
    }) =>
      sql<WorkflowRow>`INSERT INTO workflows (slug, display_name, description, owner_id, is_default)
        VALUES (${row.slug}, ${row.display_name}, ${row.description}, ${row.owner_id}, ${row.is_default ?? false})
        ON CONFLICT (slug) WHERE deleted_at IS NULL DO NOTHING
        RETURNING ${sql.literal(COLUMNS)}`.pipe(Effect.map(first))

    /** Applies `changes` to a live workflow; Conflict when the new slug is taken. */
    const update = (id: number, changes: WorkflowChanges) =>
      sql<WorkflowRow>`UPDATE workflows SET ${patchColumns(sql, { ...changes, updated_at: sql`now()` })}
        WHERE id = ${id} AND deleted_at IS NULL
        RETURNING ${sql.literal(COLUMNS)}`.pipe(
        Effect.map(first),
        Effect.catchIf(
          isSlugTaken,
          () => Effect.fail(new Conflict({ detail: `A workflow with slug ${changes.slug} already exists` }))
        )
      )

    /** Soft delete; the default flag goes with it. */
    const softDelete = (id: number) =>
      sql<WorkflowRow>`UPDATE workflows SET deleted_at = now(), updated_at = now(), is_default = false
        WHERE id = ${id} AND deleted_at IS NULL
        RETURNING ${sql.literal(COLUMNS)}`.pipe(Effect.map(first))

    const setActiveVersion = (id: number, versionId: number) =>
      sql`UPDATE workflows SET active_version_id = ${versionId}, updated_at = now() WHERE id = ${id}`.pipe(
        Effect.asVoid
      )

    /** The next version number; call with the workflow row locked, so concurrent callers get n+1, n+2. */
    const nextVersion = (workflowId: number) =>
      sql<{ readonly next: number }>`SELECT COALESCE(max(version), 0) + 1 AS next
        FROM workflow_definitions WHERE workflow_id = ${workflowId}`.pipe(Effect.map((rows) => rows[0]?.next ?? 1))

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
        const rows = yield* sql<
          { readonly id: number }
        >`INSERT INTO workflow_definitions (workflow_id, version, name, created_by)
          VALUES (${input.workflowId}, ${input.version}, ${input.name}, ${input.createdBy}) RETURNING id`
        const id = rows[0]?.id
        if (id === undefined) return yield* Effect.dieMessage("INSERT ... RETURNING returned no row")
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

    /** The graph of a version in one statement. */
    const loadGraph = (versionId: number) =>
      sql<{ readonly nodes: ReadonlyArray<GraphNode>; readonly edges: ReadonlyArray<GraphEdge> }>`SELECT
        COALESCE((SELECT json_agg(json_build_object('slug', slug, 'kind', kind, 'display_name', display_name,
            'agent_key', agent_key, 'parent_slug', parent_slug, 'is_enabled', is_enabled,
            'parameters', parameters, 'metadata', metadata) ORDER BY position)
          FROM workflow_steps WHERE definition_id = ${versionId}), '[]'::json) AS nodes,
        COALESCE((SELECT json_agg(json_build_object('source', source_slug, 'target', target_slug,
            'condition', condition, 'metadata', metadata) ORDER BY position)
          FROM workflow_transitions WHERE definition_id = ${versionId}), '[]'::json) AS edges`.pipe(
        Effect.map((rows): Graph => ({ nodes: rows[0]?.nodes ?? [], edges: rows[0]?.edges ?? [] }))
      )

    const findVersion = (workflowId: number, versionId: number) =>
      sql<VersionRow>`SELECT ${sql.literal(VERSION_COLUMNS)}
        FROM workflow_definitions d JOIN workflows w ON w.id = d.workflow_id
        WHERE d.id = ${versionId} AND d.workflow_id = ${workflowId}`.pipe(Effect.map(first))

    const listVersions = (workflowId: number, limit: number, offset: number) =>
      sql<CountedPageRows<VersionRow>[number]>`
        SELECT c.total, p.*
        FROM (SELECT count(*)::int AS total FROM workflow_definitions WHERE workflow_id = ${workflowId}) c
        LEFT JOIN LATERAL (
          SELECT ${sql.literal(VERSION_COLUMNS)}
          FROM workflow_definitions d JOIN workflows w ON w.id = d.workflow_id
          WHERE d.workflow_id = ${workflowId}
          ORDER BY d.version DESC LIMIT ${limit} OFFSET ${offset}
        ) p ON true
        ORDER BY p.version DESC`.pipe(
        Effect.map(countedPage<VersionRow>("id"))
      )

    /** Slugs of live workflows equal to `base` or `base-<n>` (to pick a free one for a copy). */
    const slugsLike = (base: string) =>
      sql<{ readonly slug: string }>`SELECT slug FROM workflows
        WHERE deleted_at IS NULL AND (slug = ${base} OR slug LIKE ${`${
        base.replace(/[\\%_]/g, (c) => `\\${c}`)
      }-%`} ESCAPE '\\')`
        .pipe(Effect.map((rows) => new Set(rows.map((row) => row.slug))))

    // -- default workflow -------------------------------------------------------------------

    /** Transaction-scoped lock taken by every writer of the default flag. */
    const lockDefault = sql`SELECT pg_advisory_xact_lock(${DEFAULT_LOCK_KEY})`.pipe(Effect.asVoid)

    const findDefault = sql<WorkflowRow>`SELECT ${sql.literal(COLUMNS)} FROM workflows
      WHERE is_default AND deleted_at IS NULL`.pipe(Effect.map(first))

    /** Moves the default flag to `id` (two statements: the unique index allows one live default at a time). */
    const setDefault = (id: number) =>
      Effect.zipRight(
        sql`UPDATE workflows SET is_default = false, updated_at = now() WHERE is_default AND id <> ${id}`,
        sql`UPDATE workflows SET is_default = true, updated_at = now() WHERE id = ${id} AND deleted_at IS NULL`
      ).pipe(Effect.asVoid)

    const countLive = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM workflows WHERE deleted_at IS NULL`
      .pipe(
        Effect.map((rows) => rows[0]?.n ?? 0)
      )

    // -- shares -----------------------------------------------------------------------------

    const SHARE_COLUMNS = sql.literal(
      "s.workflow_id, s.user_id, u.email, u.display_name, s.permission, s.created_at, s.updated_at"
    )

    const listShares = (workflowId: number, limit: number, offset: number) =>
      sql<CountedPageRows<ShareRow>[number]>`
        SELECT c.total, p.*
        FROM (SELECT count(*)::int AS total FROM workflow_shares s JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL
              WHERE s.workflow_id = ${workflowId}) c
        LEFT JOIN LATERAL (
          SELECT ${SHARE_COLUMNS} FROM workflow_shares s JOIN users u ON u.id = s.user_id AND u.deleted_at IS NULL
          WHERE s.workflow_id = ${workflowId} ORDER BY s.user_id LIMIT ${limit} OFFSET ${offset}
        ) p ON true
        ORDER BY p.user_id`.pipe(
        Effect.map(countedPage<ShareRow>("user_id"))
      )

    const findShare = (workflowId: number, userId: number) =>
      sql<ShareRow>`SELECT ${SHARE_COLUMNS} FROM workflow_shares s JOIN users u ON u.id = s.user_id
        WHERE s.workflow_id = ${workflowId} AND s.user_id = ${userId} AND u.deleted_at IS NULL`.pipe(Effect.map(first))

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
