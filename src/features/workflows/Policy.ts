import { type SqlError } from "@effect/sql/SqlError"
import { Effect, Option } from "effect"

import { Forbidden, NotFound } from "../../domain/errors.js"
import { CurrentUser } from "../../domain/User.js"
import type { User } from "../../domain/User.js"
import { type LockOptions, WorkflowsRepo, type WorkflowWithShareRow } from "./Repo.js"

/**
 * What a user may do with a workflow: `manage` (owner or admin: everything, deleting it and
 * managing its shares included), `write` (a write share: edit it, create and activate versions),
 * `read` (a read share).
 */
export type Access = "read" | "write" | "manage"

const rank: Record<Access, number> = { read: 1, write: 2, manage: 3 }

/** The access `user` holds on `row`; `undefined`: none, the workflow is invisible to them. */
export const accessOf = (row: WorkflowWithShareRow, user: Pick<User, "id" | "is_admin">): Access | undefined =>
  user.is_admin || (row.owner_id !== null && row.owner_id === user.id)
    ? "manage"
    : row.share_permission ?? undefined

/** The 404 of a workflow that does not exist, or that the current user cannot see. */
export const workflowNotFound = (id: number) => new NotFound({ detail: `Workflow ${id} does not exist` })

/**
 * Who may do what with a workflow, in one place (after Effect-TS/examples `Groups/Policy.ts`). The
 * user is the request's `CurrentUser`. A workflow the user cannot see is a 404, never a 403, so a
 * private workflow's existence is not revealed; one they see but may not change is a 403.
 */
export class WorkflowsPolicy extends Effect.Service<WorkflowsPolicy>()("chatkit/WorkflowsPolicy", {
  effect: Effect.gen(function*() {
    const repo = yield* WorkflowsRepo

    /**
     * The live workflow `id` when the current user holds at least `need` on it. Inside a
     * transaction, `{ lock: true }` keeps its row locked until the commit, so the check still holds
     * for the write that follows.
     */
    const require = (
      id: number,
      need: Access,
      options?: LockOptions
    ): Effect.Effect<WorkflowWithShareRow, NotFound | Forbidden | SqlError, CurrentUser> =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        const found = yield* repo.findWithShare(id, user.id, options)
        const access = Option.flatMapNullable(found, (row) => accessOf(row, user))
        if (Option.isNone(found) || Option.isNone(access)) return yield* workflowNotFound(id)
        if (rank[access.value] < rank[need]) {
          return yield* new Forbidden({
            detail: `This needs ${need} access to workflow ${id}; you have ${access.value} access`
          })
        }
        return found.value
      })

    return { require } as const
  }),
  dependencies: [WorkflowsRepo.Default]
}) {}
