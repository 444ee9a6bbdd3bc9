import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"

import { Conflict, NotFound } from "../../domain/errors.js"
import { type PageRequest, toPage } from "../../domain/Page.js"
import type { SharePermission, WorkflowShare } from "../../domain/Workflow.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import { AuditLog } from "../audit/AuditLog.js"
import { UsersRepo } from "../users/Repo.js"
import { WorkflowsPolicy } from "./Policy.js"
import { WorkflowsRepo } from "./Repo.js"

export interface CreateShareInput {
  readonly user_email: string
  readonly permission: SharePermission
}

/**
 * A workflow's shares (API.md section 6): who else may read or write it. Anyone who sees the
 * workflow sees its shares; only its owner and administrators (`manage`) change them. Each change
 * commits with its audit row, the workflow row locked.
 */
export class WorkflowShares extends Effect.Service<WorkflowShares>()("chatkit/WorkflowShares", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* WorkflowsRepo
    const policy = yield* WorkflowsPolicy
    const users = yield* UsersRepo
    const audit = yield* AuditLog

    const read = (id: number, userId: number) =>
      Effect.flatMap(
        repo.findShare(id, userId),
        Option.match({
          onNone: () => Effect.fail(new NotFound({ detail: `Workflow ${id} is not shared with user ${userId}` })),
          onSome: (share) => Effect.succeed<WorkflowShare>(share)
        })
      )

    const list = (id: number, page: PageRequest) =>
      policy.require(id, "read").pipe(
        Effect.zipRight(repo.listShares(id, page.pageSize, page.offset)),
        Effect.map(({ items, total }) => toPage(page, items as ReadonlyArray<WorkflowShare>, total)),
        orDieOnSqlError,
        Effect.withSpan("WorkflowShares.list", { attributes: { "workflow.id": id } })
      )

    /** Shares with the live user who has `user_email`: unknown email 404, the owner or an existing share 409. */
    const create = (id: number, input: CreateShareInput) =>
      sql.withTransaction(
        Effect.gen(function*() {
          const row = yield* policy.require(id, "manage", { lock: true })
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
          return yield* read(id, user.value.id)
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("WorkflowShares.create", { attributes: { "workflow.id": id } }))

    /** A share that already has `permission` is returned as is: nothing written, nothing audited. */
    const update = (id: number, userId: number, permission: SharePermission) =>
      sql.withTransaction(
        Effect.gen(function*() {
          yield* policy.require(id, "manage", { lock: true })
          const before = yield* read(id, userId)
          if (before.permission === permission) return before
          yield* repo.updateShare(id, userId, permission)
          yield* audit.record({
            action: "workflow.share.update",
            resourceType: "workflow",
            resourceId: id,
            changes: { user_id: userId, permission: { from: before.permission, to: permission } }
          })
          return yield* read(id, userId)
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("WorkflowShares.update", { attributes: { "workflow.id": id } }))

    const remove = (id: number, userId: number) =>
      sql.withTransaction(
        Effect.gen(function*() {
          yield* policy.require(id, "manage", { lock: true })
          const before = yield* read(id, userId)
          yield* repo.deleteShare(id, userId)
          yield* audit.record({
            action: "workflow.share.delete",
            resourceType: "workflow",
            resourceId: id,
            changes: { user_id: userId, permission: { from: before.permission, to: null } }
          })
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("WorkflowShares.delete", { attributes: { "workflow.id": id } }))

    return { list, create, update, delete: remove } as const
  }),
  dependencies: [WorkflowsRepo.Default, WorkflowsPolicy.Default, UsersRepo.Default, AuditLog.Default]
}) {}
