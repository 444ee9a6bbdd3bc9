import { Effect, Option } from "effect"

import type { Job } from "../../api/JobsApi.js"
import { NotFound } from "../../domain/errors.js"
import type { User } from "../../domain/User.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import type { JobRow } from "../../platform/JobRecords.js"
import { JobsRepo } from "./Repo.js"

/** API.md section 9's shape: the optional fields only when they have a value. */
export const toJob = (row: JobRow): Job => ({
  id: row.id,
  type: row.type,
  status: row.status,
  attempts: row.attempts,
  progress: row.progress,
  ...(row.result === null ? {} : { result: row.result }),
  ...(row.error === null ? {} : { error: row.error }),
  created_at: row.created_at,
  ...(row.started_at === null ? {} : { started_at: row.started_at }),
  ...(row.finished_at === null ? {} : { finished_at: row.finished_at })
})

/**
 * Background jobs as their owner sees them (API.md section 9): a job is read by the user it works
 * for, or an administrator; anyone else is told it does not exist (404, not 403), and system jobs
 * (no owner, e.g. thread titles) are for administrators only.
 */
export class JobsService extends Effect.Service<JobsService>()("chatkit/JobsService", {
  effect: Effect.gen(function*() {
    const repo = yield* JobsRepo

    const get = (id: string, caller: User): Effect.Effect<Job, NotFound> =>
      repo.findById(id).pipe(
        Effect.map(Option.filter((row) => caller.is_admin || (row.owner_id !== null && row.owner_id === caller.id))),
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new NotFound({ detail: `Job ${id} does not exist` })),
          onSome: (row) => Effect.succeed(toJob(row))
        })),
        orDieOnSqlError,
        Effect.withSpan("JobsService.get")
      )

    return { get } as const
  }),
  dependencies: [JobsRepo.Default]
}) {}
