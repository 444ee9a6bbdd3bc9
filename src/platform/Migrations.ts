import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Effect, Option } from "effect"

import {
  InvalidMigrationArgument,
  type MigrateDownError,
  type MigrateUpError,
  MigrationChecksumMismatch,
  MigrationFailed,
  MigrationFileMissing,
  type MigrationFilesError,
  MigrationOutOfOrder,
  type MigrationRef,
  UnknownMigrationVersion
} from "./MigrationErrors.js"
import { defaultMigrationsDir, loadMigrationFiles, type MigrationFile } from "./MigrationFiles.js"

/**
 * Versioned SQL migrations with rollback. `@effect/sql`'s Migrator is forward only, runs every
 * pending migration in one transaction and silently skips one numbered below the newest applied,
 * so this runner adds: down files, one transaction per migration, checksums of applied files and
 * a refusal to run out of order. The files are read by MigrationFiles.ts, its errors are in
 * MigrationErrors.ts.
 */

/** Any number fits: the fixed key every runner of every instance locks on (see `lockMigrations`). */
const LOCK_KEY = 7_326_414_001

export type MigrationState = "applied" | "pending" | "checksum_mismatch" | "out_of_order" | "missing_file"

export interface MigrationStatus {
  readonly version: number
  readonly name: string
  readonly state: MigrationState
  readonly appliedAt: Date | null
  readonly executionMs: number | null
}

export interface AppliedMigration {
  readonly version: number
  readonly name: string
  readonly executionMs: number
}

export interface RevertedMigration {
  readonly version: number
  readonly name: string
  readonly executionMs: number
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping

interface AppliedRow {
  readonly version: number
  readonly name: string
  readonly checksum: string
  readonly applied_at: Date
  readonly execution_ms: number
}

/** Looks in the first schema of the search_path only: the one CREATE TABLE writes to. */
const migrationsTableExists = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ found: number }>`SELECT 1 AS found FROM pg_catalog.pg_tables
      WHERE schemaname = current_schema() AND tablename = 'schema_migrations'`,
    (rows) => rows.length > 0
  )

const readApplied = (sql: SqlClient.SqlClient) =>
  sql<AppliedRow>`SELECT version, name, checksum, applied_at, execution_ms
    FROM schema_migrations ORDER BY version`

/**
 * Serializes runners. Must be called first inside the transaction it protects.
 *
 * Why a transaction-level lock rather than one `pg_advisory_lock` around the whole run: a
 * session lock has to be taken and released on one connection, so it needs a reserved
 * connection. On PostgreSQL the migrations would then run on other connections of the pool, and
 * with the embedded database (PGlite behind a socket, one session, pool max 1) the reserved
 * connection is the only one, so the migrations' own queries would wait for it forever. The xact
 * lock is released by COMMIT or ROLLBACK whatever happens, and every step re-reads
 * schema_migrations after taking it, so two instances starting at once interleave at migration
 * granularity and each step sees the state the previous one left: the same outcome as
 * serialized runs, with no migration applied twice.
 *
 * The statement timeout is lifted for the transaction: migrations may rewrite big tables, and
 * waiting for another instance's migration to finish is the point of the lock.
 */
const lockMigrations = (sql: SqlClient.SqlClient) =>
  Effect.zipRight(
    sql`SET LOCAL statement_timeout = 0`,
    sql`SELECT pg_advisory_xact_lock(${LOCK_KEY}::bigint)`
  )

const ensureMigrationsTable = (sql: SqlClient.SqlClient) =>
  sql.withTransaction(
    Effect.gen(function*() {
      yield* lockMigrations(sql)
      if (yield* migrationsTableExists(sql)) return
      yield* sql`CREATE TABLE schema_migrations (
        version      int         PRIMARY KEY,
        name         text        NOT NULL,
        checksum     text        NOT NULL,
        applied_at   timestamptz NOT NULL DEFAULT now(),
        execution_ms int         NOT NULL
      )`
    })
  )

const computeStatus = (
  files: ReadonlyArray<MigrationFile>,
  rows: ReadonlyArray<AppliedRow>
): ReadonlyArray<MigrationStatus> => {
  const applied = new Map(rows.map((row) => [row.version, row]))
  const known = new Set(files.map((file) => file.version))
  const newestApplied = Math.max(-1, ...rows.map((row) => row.version))
  const entries: Array<MigrationStatus> = files.map((file) => {
    const row = applied.get(file.version)
    if (row !== undefined) {
      return {
        version: file.version,
        name: file.name,
        state: row.checksum === file.checksum ? "applied" : "checksum_mismatch",
        appliedAt: row.applied_at,
        executionMs: row.execution_ms
      }
    }
    return {
      version: file.version,
      name: file.name,
      state: file.version < newestApplied ? "out_of_order" : "pending",
      appliedAt: null,
      executionMs: null
    }
  })
  for (const row of rows) {
    if (!known.has(row.version)) {
      entries.push({
        version: row.version,
        name: row.name,
        state: "missing_file",
        appliedAt: row.applied_at,
        executionMs: row.execution_ms
      })
    }
  }
  return entries.sort((a, b) => a.version - b.version)
}

const refFor = (file: MigrationFile): MigrationRef => ({ version: file.version, name: file.name, file: file.upFile })

/** Fails when an applied file changed or a pending one is numbered below the newest applied. */
const refuseUnsafeUp = (files: ReadonlyArray<MigrationFile>, rows: ReadonlyArray<AppliedRow>) => {
  const status = computeStatus(files, rows)
  const inState = (state: MigrationState) =>
    files.filter((file) => status.some((s) => s.version === file.version && s.state === state)).map(refFor)
  const edited = inState("checksum_mismatch")
  if (edited.length > 0) return Effect.fail(new MigrationChecksumMismatch({ migrations: edited }))
  const outOfOrder = inState("out_of_order")
  const newest = rows[rows.length - 1]
  if (outOfOrder.length > 0 && newest !== undefined) {
    return Effect.fail(
      new MigrationOutOfOrder({ pending: outOfOrder, newestApplied: { version: newest.version, name: newest.name } })
    )
  }
  return Effect.void
}

/** Fails when a migration about to be undone has no file any more or its up file changed. */
const refuseUnsafeDown = (files: ReadonlyArray<MigrationFile>, rows: ReadonlyArray<AppliedRow>, dir: string) => {
  const missing = rows.find((row) => !files.some((file) => file.version === row.version))
  if (missing !== undefined) {
    return Effect.fail(new MigrationFileMissing({ version: missing.version, name: missing.name, dir }))
  }
  const edited = files
    .filter((file) => rows.some((row) => row.version === file.version && row.checksum !== file.checksum))
    .map(refFor)
  return edited.length > 0 ? Effect.fail(new MigrationChecksumMismatch({ migrations: edited })) : Effect.void
}

/** The database's words, with the line of the file they point at when PostgreSQL gives a position. */
const describeSqlFailure = (error: SqlError, text: string) => {
  const cause = error.cause as
    | { message?: unknown; position?: unknown; detail?: unknown; hint?: unknown }
    | undefined
  const parts = [typeof cause?.message === "string" ? cause.message : error.message]
  const position = Number(cause?.position)
  if (Number.isInteger(position) && position > 0) {
    parts[0] += ` (line ${text.slice(0, position - 1).split("\n").length})`
  }
  if (typeof cause?.detail === "string" && cause.detail !== "") parts.push(cause.detail)
  if (typeof cause?.hint === "string" && cause.hint !== "") parts.push(`hint: ${cause.hint}`)
  return parts.join("; ")
}

const runScript = (sql: SqlClient.SqlClient, file: MigrationFile, direction: "up" | "down") => {
  const text = direction === "up" ? file.upSql : file.downSql
  return Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    // No parameters: the pg driver sends it with the simple protocol, so a file may hold many statements.
    yield* sql.unsafe(text).pipe(
      Effect.mapError((error) =>
        new MigrationFailed({
          version: file.version,
          name: file.name,
          file: direction === "up" ? file.upFile : file.downFile,
          direction,
          reason: describeSqlFailure(error, text),
          cause: error
        })
      )
    )
    return Math.max(0, Math.round((yield* Clock.currentTimeMillis) - started))
  })
}

// ---------------------------------------------------------------------------------------------
// Operations

const checkWholeNumber = (argument: string, value: number, min: number) =>
  Number.isSafeInteger(value) && value >= min
    ? Effect.void
    : Effect.fail(new InvalidMigrationArgument({ argument, value, expected: `an integer >= ${min}` }))

/** Every migration of `dir` and every applied one whose file is gone, by version. Reads only. */
export const migrationStatus = (
  dir: string = defaultMigrationsDir
): Effect.Effect<ReadonlyArray<MigrationStatus>, MigrationFilesError | SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const files = yield* loadMigrationFiles(dir)
    const rows = (yield* migrationsTableExists(sql)) ? yield* readApplied(sql) : []
    return computeStatus(files, rows)
  }).pipe(Effect.withSpan("Migrations.status", { attributes: { "migrations.dir": dir } }))

export interface MigrateUpOptions {
  /** Apply pending migrations up to this version, inclusive (default: all). */
  readonly to?: number
  readonly dir?: string
}

/**
 * Applies the pending migrations in order, each in its own transaction with its bookkeeping row.
 * Refuses, applying nothing, when an applied file was edited or a pending migration is numbered
 * below the newest applied one. Stops at the first failing migration, which is rolled back.
 * An applied migration whose file is missing (a newer version of the code applied it) is not an
 * error here, so older instances keep starting during a rolling deploy; `migrationStatus` shows it.
 */
export const migrateUp = (
  options: MigrateUpOptions = {}
): Effect.Effect<ReadonlyArray<AppliedMigration>, MigrateUpError, SqlClient.SqlClient> => {
  const dir = options.dir ?? defaultMigrationsDir
  return Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const files = yield* loadMigrationFiles(dir)
    const to = options.to
    if (to !== undefined) {
      yield* checkWholeNumber("target version (--to)", to, 0)
      if (!files.some((file) => file.version === to)) return yield* new UnknownMigrationVersion({ version: to, dir })
    }
    yield* ensureMigrationsTable(sql)

    const step = sql.withTransaction(
      Effect.gen(function*() {
        yield* lockMigrations(sql)
        const rows = yield* readApplied(sql)
        yield* refuseUnsafeUp(files, rows)
        const applied = new Set(rows.map((row) => row.version))
        const next = files.find((file) => !applied.has(file.version) && (to === undefined || file.version <= to))
        if (next === undefined) return Option.none<AppliedMigration>()
        const executionMs = yield* runScript(sql, next, "up").pipe(
          Effect.withSpan("Migrations.apply", {
            attributes: { "migration.version": next.version, "migration.name": next.name }
          })
        )
        yield* sql`INSERT INTO schema_migrations (version, name, checksum, execution_ms)
          VALUES (${next.version}, ${next.name}, ${next.checksum}, ${executionMs})`
        return Option.some<AppliedMigration>({ version: next.version, name: next.name, executionMs })
      })
    )

    const done: Array<AppliedMigration> = []
    for (;;) {
      const applied = yield* step
      if (Option.isNone(applied)) break
      done.push(applied.value)
      yield* Effect.logInfo("migration applied").pipe(
        Effect.annotateLogs({
          version: applied.value.version,
          name: applied.value.name,
          duration_ms: applied.value.executionMs
        })
      )
    }
    yield* Effect.logInfo(done.length === 0 ? "database schema already up to date" : "database schema migrated").pipe(
      Effect.annotateLogs({ applied: done.length })
    )
    return done
  }).pipe(
    Effect.withSpan("Migrations.up", {
      attributes: { "migrations.dir": dir, ...(options.to === undefined ? {} : { "migrations.to": options.to }) }
    })
  )
}

export interface MigrateDownOptions {
  /** How many of the newest applied migrations to undo (default 1). */
  readonly steps?: number
  readonly dir?: string
}

/**
 * Undoes the newest applied migrations, newest first, each in its own transaction with the
 * removal of its row. Refuses, undoing nothing, when one of them has no file or its up file
 * changed since it was applied.
 */
export const migrateDown = (
  options: MigrateDownOptions = {}
): Effect.Effect<ReadonlyArray<RevertedMigration>, MigrateDownError, SqlClient.SqlClient> => {
  const dir = options.dir ?? defaultMigrationsDir
  const steps = options.steps ?? 1
  return Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* checkWholeNumber("number of steps (--steps)", steps, 1)
    const files = yield* loadMigrationFiles(dir)
    if (!(yield* migrationsTableExists(sql))) return []
    // Checked up front so a refusal undoes nothing; checked again under the lock at each step.
    const planned = (yield* readApplied(sql)).slice(-steps)
    yield* refuseUnsafeDown(files, planned, dir)

    const step = sql.withTransaction(
      Effect.gen(function*() {
        yield* lockMigrations(sql)
        const newest = (yield* readApplied(sql)).at(-1)
        if (newest === undefined) return Option.none<RevertedMigration>()
        yield* refuseUnsafeDown(files, [newest], dir)
        const file = files.find((f) => f.version === newest.version)
        if (file === undefined) return Option.none<RevertedMigration>() // refused just above
        const executionMs = yield* runScript(sql, file, "down").pipe(
          Effect.withSpan("Migrations.revert", {
            attributes: { "migration.version": file.version, "migration.name": file.name }
          })
        )
        yield* sql`DELETE FROM schema_migrations WHERE version = ${file.version}`
        return Option.some<RevertedMigration>({ version: file.version, name: file.name, executionMs })
      })
    )

    const done: Array<RevertedMigration> = []
    while (done.length < steps) {
      const reverted = yield* step
      if (Option.isNone(reverted)) break
      done.push(reverted.value)
      yield* Effect.logInfo("migration reverted").pipe(
        Effect.annotateLogs({
          version: reverted.value.version,
          name: reverted.value.name,
          duration_ms: reverted.value.executionMs
        })
      )
    }
    return done
  }).pipe(Effect.withSpan("Migrations.down", { attributes: { "migrations.dir": dir, "migrations.steps": steps } }))
}
