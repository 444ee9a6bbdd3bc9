import { PgClient } from "@effect/sql-pg"
import { Effect, Option } from "effect"

import { CurrentUser } from "../../domain/User.js"
import { RequestInfo } from "../../platform/Http.js"
import { redact } from "../../platform/Redaction.js"

export interface AuditEvent {
  /** e.g. "user.create", "auth.login.failed" */
  readonly action: string
  readonly resourceType: string
  readonly resourceId?: string | number | null
  /** a diff or event details; secret-like keys are masked before storage */
  readonly changes?: unknown
  /** the actor; defaults to the authenticated caller, if any */
  readonly userId?: number | null
}

/** The `changes` of an audit row for an edit: `{ field: { from, to } }`. */
export type FieldDiff = Record<string, { readonly from: unknown; readonly to: unknown }>

/** `{ field: { from, to } }` for the fields of `after` whose value differs from `before`. */
export const diffChanges = (before: Record<string, unknown>, after: Record<string, unknown>): FieldDiff =>
  Object.fromEntries(
    Object.entries(after)
      .filter(([key, value]) => value !== undefined && JSON.stringify(value) !== JSON.stringify(before[key]))
      .map(([key, value]) => [key, { from: before[key] ?? null, to: value }])
  )

/**
 * What a PATCH changes: the fields of `input` that `before` has, whose value is defined and differs
 * (as JSON) from the stored one. `changes` holds their new values (what to write), `diff` their
 * `{ from, to }` (the audit row); both are empty when the request changes nothing. Fields of
 * `input` that `before` lacks (a password, say) are left to the caller.
 */
export const changedFields = <T extends object>(
  before: T,
  input: { readonly [K in keyof T]?: T[K] | undefined }
): { readonly changes: Partial<T>; readonly diff: FieldDiff } => {
  const requested = Object.fromEntries(Object.entries(input).filter(([key]) => Object.hasOwn(before, key)))
  const diff = diffChanges(before as Record<string, unknown>, requested)
  const changes = Object.fromEntries(Object.entries(requested).filter(([key]) => key in diff)) as Partial<T>
  return { changes, diff }
}

/**
 * Writes one audit_logs row per mutation or auth event. It uses the ambient SqlClient, so called
 * inside `sql.withTransaction` the row commits or rolls back with the change it records.
 */
export class AuditLog extends Effect.Service<AuditLog>()("chatkit/AuditLog", {
  effect: Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const record = (event: AuditEvent) =>
      Effect.gen(function*() {
        const info = yield* Effect.serviceOption(RequestInfo)
        const caller = yield* Effect.serviceOption(CurrentUser)
        const userId = event.userId !== undefined ? event.userId : Option.getOrNull(Option.map(caller, (u) => u.id))
        const changes = redact(event.changes ?? {}) as Record<string, unknown>
        yield* sql`INSERT INTO audit_logs (user_id, action, resource_type, resource_id, changes, request_id, ip)
          VALUES (${userId}, ${event.action}, ${event.resourceType},
                  ${event.resourceId === undefined || event.resourceId === null ? null : String(event.resourceId)},
                  ${sql.json(changes)},
                  ${Option.getOrNull(Option.map(info, (i) => i.requestId))},
                  ${Option.getOrNull(Option.map(info, (i) => i.ip))})`
      }).pipe(Effect.withSpan("AuditLog.record", { attributes: { action: event.action } }))
    return { record } as const
  })
}) {}
