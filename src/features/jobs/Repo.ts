import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"

import { columnsOf, findOneRow } from "../../platform/Database.js"
import { JobRow } from "../../platform/JobRecords.js"

/** Reads of the `jobs` table (migration 0008); the queue writes it (platform/JobRecords.ts). */
export class JobsRepo extends Effect.Service<JobsRepo>()("chatkit/JobsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.literal(columnsOf(JobRow))

    const findRow = findOneRow({
      Request: Schema.String,
      Result: JobRow,
      execute: (id) => sql`SELECT ${columns} FROM jobs WHERE id = ${id}`
    })

    /** A job by id; `None` when there is none. */
    const findById = (id: string) => findRow(id).pipe(Effect.withSpan("JobsRepo.findById"))

    return { findById } as const
  })
}) {}
