import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

import type { AuditEntry } from "../../domain/Audit.js"
import type { PageRequest } from "../../domain/Page.js"
import { countedPage, countedPageQuery } from "../../platform/Database.js"

const COLUMNS = "id, user_id, action, resource_type, resource_id, changes, request_id, ip, created_at"

/** The filters of GET /admin/audit-logs; absent ones do not filter. */
export interface AuditFilters {
  readonly user_id?: number | undefined
  readonly action?: string | undefined
  readonly resource_type?: string | undefined
  readonly resource_id?: string | undefined
  /** inclusive */
  readonly since?: Date | undefined
  /** exclusive */
  readonly until?: Date | undefined
}

/** Reads of audit_logs (rows are written by `AuditLog.record`, inside the mutation's transaction). */
export class AuditRepo extends Effect.Service<AuditRepo>()("chatkit/AuditRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const where = (filters: AuditFilters) =>
      sql.and([
        ...(filters.user_id === undefined ? [] : [sql`user_id = ${filters.user_id}`]),
        ...(filters.action === undefined ? [] : [sql`action = ${filters.action}`]),
        ...(filters.resource_type === undefined ? [] : [sql`resource_type = ${filters.resource_type}`]),
        ...(filters.resource_id === undefined ? [] : [sql`resource_id = ${filters.resource_id}`]),
        ...(filters.since === undefined ? [] : [sql`created_at >= ${filters.since}`]),
        ...(filters.until === undefined ? [] : [sql`created_at < ${filters.until}`])
      ])

    /**
     * One page, newest first (created_at desc, id desc: the order of every audit_logs index), and
     * the total matching rows: one statement whatever the filters (the lateral join yields one row
     * of NULLs past the end, so a page past the end is empty with the true total).
     */
    const list = (filters: AuditFilters, page: PageRequest) =>
      countedPageQuery<AuditEntry>(sql, {
        columns: sql.literal(COLUMNS),
        from: sql`FROM audit_logs WHERE ${where(filters)}`,
        orderBy: "created_at DESC, id DESC",
        limit: page.pageSize,
        offset: page.offset
      }).pipe(
        Effect.map(countedPage<AuditEntry>("id")),
        Effect.withSpan("AuditRepo.list")
      )

    return { list } as const
  })
}) {}
