import { type SqlError } from "@effect/sql/SqlError"
import { Effect, Option, Schema } from "effect"

import { NotFound } from "../../domain/errors.js"
import { ThreadId, ThreadNotWritable } from "../../domain/Thread.js"
import { CurrentUser } from "../../domain/User.js"
import type { User } from "../../domain/User.js"
import { type LockOptions, type ThreadRow, ThreadsRepo } from "./Repo.js"

/**
 * What a user may do with a thread through the ChatKit endpoint: `read` it (get it, list its
 * items) or `write` to it (new turns, retry, rename, delete, feedback).
 */
export type Access = "read" | "write"

/** The access `user` holds on `row`: the owner's only; `undefined`: the thread is invisible to them. */
export const accessOf = (row: ThreadRow, user: Pick<User, "id">): Access | undefined =>
  row.owner_id === user.id ? (row.status.type === "active" ? "write" : "read") : undefined

/** The 404 of a thread that does not exist, is deleted, or is not the current user's. */
export const threadNotFound = (id: string) => new NotFound({ detail: `Thread ${id} does not exist` })

const isThreadId = Schema.is(ThreadId)

/**
 * Who may do what with a thread, in one place (shaped like `WorkflowsPolicy`). The user is the
 * request's `CurrentUser`. Only the owner sees a thread: anyone else, administrators included
 * (they review conversations through the admin endpoints), gets the same 404 as for a missing or
 * deleted thread, so its existence is never revealed. A locked or closed thread stays readable;
 * writing to it fails with `ThreadNotWritable`, which the stream turns into an `error` event.
 */
export class ThreadsPolicy extends Effect.Service<ThreadsPolicy>()("chatkit/ThreadsPolicy", {
  effect: Effect.gen(function*() {
    const repo = yield* ThreadsRepo

    /**
     * The live thread `id` when the current user holds `need` on it. Inside a transaction,
     * `{ lock: true }` keeps its row locked until the commit, so the check still holds for the
     * write that follows. An id that is not a thread id at all is the same 404, without a query.
     */
    const require = (
      id: string,
      need: Access,
      options?: LockOptions
    ): Effect.Effect<ThreadRow, NotFound | ThreadNotWritable | SqlError, CurrentUser> =>
      Effect.gen(function*() {
        if (!isThreadId(id)) return yield* threadNotFound(id)
        const user = yield* CurrentUser
        const found = yield* repo.find(id, options)
        const access = Option.flatMapNullable(found, (row) => accessOf(row, user))
        if (Option.isNone(found) || Option.isNone(access)) return yield* threadNotFound(id)
        if (need === "write" && access.value !== "write") {
          return yield* new ThreadNotWritable({
            thread_id: found.value.id,
            status: found.value.status,
            detail: `Thread ${id} is ${found.value.status.type} and takes no new messages`
          })
        }
        return found.value
      })

    return { require } as const
  }),
  dependencies: [ThreadsRepo.Default]
}) {}
