import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Option, Schema } from "effect"

/**
 * The `jobs` table (migration 0008): one row per job, written by the queue in both modes (BullMQ
 * and in-process), so a job's state survives the queue and `GET /jobs/{id}` reads it from the
 * database (features/jobs reads it). Every transition is one guarded statement: only a `queued` or `running` job starts,
 * completes or fails, so a job retaken from a dead worker is never completed twice.
 */

export const JobStatus = Schema.Literal("queued", "running", "completed", "failed")
export type JobStatus = typeof JobStatus.Type

export const JobRow = Schema.Struct({
  id: Schema.String,
  type: Schema.String,
  status: JobStatus,
  attempts: Schema.Int,
  progress: Schema.Int,
  result: Schema.NullOr(Schema.Unknown),
  error: Schema.NullOr(Schema.String),
  owner_id: Schema.NullOr(Schema.Int),
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  started_at: Schema.NullOr(Schema.DateFromSelf),
  finished_at: Schema.NullOr(Schema.DateFromSelf)
})
export type JobRow = typeof JobRow.Type

/** Job errors are stored for people to read: one bounded line of text. */
export const MAX_JOB_ERROR_LENGTH = 2000

const boundedError = (error: string) =>
  error.length <= MAX_JOB_ERROR_LENGTH ? error : `${error.slice(0, MAX_JOB_ERROR_LENGTH - 1)}…`

export interface JobRecordsService {
  /** `payload` is kept only by the in-process queue, for a takeover after a crash (`takeOverStale`) */
  readonly insert: (
    job: { readonly id: string; readonly type: string; readonly ownerId: number | null; readonly payload?: unknown }
  ) => Effect.Effect<void, SqlError>
  /** Marks these unfinished jobs alive (their `updated_at`): a live in-process queue's, not to be taken over. */
  readonly touch: (ids: ReadonlyArray<string>) => Effect.Effect<void, SqlError>
  /**
   * Claims up to `batch` unfinished in-process jobs (those with a payload) unmarked for `staleSeconds`:
   * their queue died with its process. Each is marked alive in the same statement, so one claimer
   * gets it; answered oldest first.
   */
  readonly takeOverStale: (
    staleSeconds: number,
    batch: number
  ) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly type: string; readonly payload: unknown }>, SqlError>
  /** Marks the job running and counts the attempt; `None` when it is already completed or failed (or unknown). */
  readonly start: (id: string) => Effect.Effect<Option.Option<{ readonly attempts: number }>, SqlError>
  readonly setProgress: (id: string, percent: number) => Effect.Effect<void, SqlError>
  /** Locks the job's row until the transaction ends; false when it is already completed or failed. */
  readonly lockUnfinished: (id: string) => Effect.Effect<boolean, SqlError>
  /** `completed` with its result; false (nothing written) when it was already completed or failed. */
  readonly complete: (id: string, result: unknown) => Effect.Effect<boolean, SqlError>
  /** Back to `queued` with the attempt's error, for a retry. */
  readonly retryLater: (id: string, error: string) => Effect.Effect<void, SqlError>
  /** `failed` with a readable error; false when it was already completed or failed. */
  readonly fail: (id: string, error: string) => Effect.Effect<boolean, SqlError>
  /** Deletes up to `batch` records of jobs finished more than `days` days ago, oldest first; how many went. */
  readonly deleteFinished: (days: number, batch: number) => Effect.Effect<number, SqlError>
}

export const makeJobRecords = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const unfinished = sql.literal("status IN ('queued', 'running')")
  /** `result` as jsonb; `undefined` (a handler that answers nothing) is stored as NULL. */
  const jsonOrNull = (value: unknown) => value === undefined ? sql`NULL::jsonb` : sql`${JSON.stringify(value)}::jsonb`

  const service: JobRecordsService = {
    insert: ({ id, ownerId, payload, type }) =>
      sql`INSERT INTO jobs (id, type, owner_id, payload)
        VALUES (${id}, ${type}, ${ownerId}, ${jsonOrNull(payload)})`.pipe(
        Effect.asVoid,
        Effect.withSpan("JobRecords.insert")
      ),
    touch: (ids) =>
      ids.length === 0 ? Effect.void : sql`UPDATE jobs SET updated_at = now()
        WHERE id IN ${sql.in(ids)} AND ${unfinished}`.pipe(Effect.asVoid),
    takeOverStale: (staleSeconds, batch) =>
      sql<{ id: string; type: string; payload: unknown }>`
        WITH claimed AS (
          UPDATE jobs SET updated_at = now()
          WHERE id IN (
            SELECT id FROM jobs
            WHERE payload IS NOT NULL AND ${unfinished} AND updated_at < now() - make_interval(secs => ${staleSeconds})
            ORDER BY updated_at LIMIT ${batch}
            FOR UPDATE SKIP LOCKED
          )
          RETURNING id, type, payload, created_at
        )
        SELECT id, type, payload FROM claimed ORDER BY created_at`.pipe(Effect.withSpan("JobRecords.takeOverStale")),
    start: (id) =>
      sql<{ attempts: number }>`
        UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, now()),
          updated_at = now()
        WHERE id = ${id} AND ${unfinished}
        RETURNING attempts`.pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => ({ attempts: Number(row.attempts) }))),
        Effect.withSpan("JobRecords.start")
      ),
    setProgress: (id, percent) =>
      sql`UPDATE jobs SET progress = ${Math.max(0, Math.min(100, Math.round(percent)))}, updated_at = now()
        WHERE id = ${id} AND status = 'running'`.pipe(Effect.asVoid),
    lockUnfinished: (id) =>
      sql`SELECT 1 FROM jobs WHERE id = ${id} AND ${unfinished} FOR UPDATE`.pipe(Effect.map((rows) => rows.length > 0)),
    complete: (id, result) =>
      sql`
        UPDATE jobs SET status = 'completed', result = ${jsonOrNull(result)}, error = NULL, progress = 100,
          finished_at = now(), updated_at = now()
        WHERE id = ${id} AND ${unfinished}
        RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), Effect.withSpan("JobRecords.complete")),
    retryLater: (id, error) =>
      sql`UPDATE jobs SET status = 'queued', error = ${boundedError(error)}, updated_at = now()
        WHERE id = ${id} AND ${unfinished}`.pipe(Effect.asVoid, Effect.withSpan("JobRecords.retryLater")),
    fail: (id, error) =>
      sql`
        UPDATE jobs SET status = 'failed', error = ${boundedError(error)}, finished_at = now(), updated_at = now()
        WHERE id = ${id} AND ${unfinished}
        RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), Effect.withSpan("JobRecords.fail")),
    deleteFinished: (days, batch) =>
      sql`
        DELETE FROM jobs WHERE id IN (
          SELECT id FROM jobs WHERE finished_at < now() - make_interval(days => ${days})
          ORDER BY finished_at LIMIT ${batch}
        )
        RETURNING 1`.pipe(Effect.map((rows) => rows.length), Effect.withSpan("JobRecords.deleteFinished"))
  }
  return service
})

export class JobRecords extends Context.Tag("chatkit/JobRecords")<JobRecords, JobRecordsService>() {
  static readonly layer: Layer.Layer<JobRecords, never, SqlClient.SqlClient> = Layer.effect(JobRecords, makeJobRecords)
}
