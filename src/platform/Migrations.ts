import { createHash } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Clock, Data, DateTime, Effect, Option } from "effect"

/**
 * Versioned SQL migrations with rollback. `@effect/sql`'s Migrator is forward only, runs every
 * pending migration in one transaction and silently skips one numbered below the newest applied,
 * so this runner adds: down files, one transaction per migration, checksums of applied files and
 * a refusal to run out of order.
 */

/** The repository's `migrations/` folder (src/platform/ -> ../../migrations). */
export const defaultMigrationsDir = resolve(fileURLToPath(new URL("../../migrations", import.meta.url)))

const FILE_PATTERN = /^(\d{4,9})_([a-z0-9_]+)\.(up|down)\.sql$/

/** Any number fits: the fixed key every runner of every instance locks on (see `lockMigrations`). */
const LOCK_KEY = 7_326_414_001

export interface MigrationFile {
  readonly version: number
  /** The part after the number: `audit_and_idempotency` for `0001_audit_and_idempotency.up.sql`. */
  readonly name: string
  readonly upFile: string
  readonly downFile: string
  readonly upSql: string
  readonly downSql: string
  /** sha256 (hex) of the up file's bytes, recorded when it is applied. */
  readonly checksum: string
}

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

export interface CreatedMigration {
  readonly version: number
  readonly name: string
  readonly upPath: string
  readonly downPath: string
}

/** A migration named in an error: enough for a human to find the file. */
export interface MigrationRef {
  readonly version: number
  readonly name: string
  readonly file: string
}

// ---------------------------------------------------------------------------------------------
// Errors

export class MigrationDirectoryError extends Data.TaggedError("MigrationDirectoryError")<{
  readonly dir: string
  readonly operation: "read" | "write"
  readonly reason: string
}> {
  override get message() {
    return `Cannot ${this.operation} the migrations directory ${this.dir}: ${this.reason}. ` +
      (this.operation === "read"
        ? "Check that the directory exists and is readable (or pass another directory)."
        : "Check that the directory is writable.")
  }
}

export interface MigrationFileProblem {
  readonly file: string
  readonly kind: "bad_name" | "duplicate_version" | "missing_down" | "missing_up"
  readonly detail: string
}

export class InvalidMigrationFiles extends Data.TaggedError("InvalidMigrationFiles")<{
  readonly dir: string
  readonly problems: ReadonlyArray<MigrationFileProblem>
}> {
  override get message() {
    return `The migrations directory ${this.dir} has ${this.problems.length} problem${
      this.problems.length === 1 ? "" : "s"
    } (it may only hold NNNN_name.up.sql / NNNN_name.down.sql pairs, one pair per number):\n` +
      this.problems.map((p) => `  - ${p.detail}`).join("\n")
  }
}

export class MigrationChecksumMismatch extends Data.TaggedError("MigrationChecksumMismatch")<{
  readonly migrations: ReadonlyArray<MigrationRef>
}> {
  override get message() {
    const files = this.migrations.map((m) => m.file)
    return files.length === 1
      ? `Migration ${files[0]} was edited after being applied (checksum differs). ` +
        "Restore the file or add a new migration."
      : `Migrations ${files.join(", ")} were edited after being applied (checksums differ). ` +
        "Restore the files or add new migrations."
  }
}

export class MigrationOutOfOrder extends Data.TaggedError("MigrationOutOfOrder")<{
  readonly pending: ReadonlyArray<MigrationRef>
  readonly newestApplied: { readonly version: number; readonly name: string }
}> {
  override get message() {
    const newest = `${formatVersion(this.newestApplied.version)}_${this.newestApplied.name}`
    const files = this.pending.map((m) => m.file)
    return `Migration${files.length === 1 ? "" : "s"} ${files.join(", ")} ${files.length === 1 ? "is" : "are"} ` +
      `pending but numbered below the newest applied migration ${newest}, so applying ` +
      `${files.length === 1 ? "it" : "them"} now would run migrations out of order. Renumber ` +
      `${files.length === 1 ? "it" : "them"} above ${formatVersion(this.newestApplied.version)} ` +
      "(rename both the up and down files) and run migrate up again."
  }
}

export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly version: number
  readonly name: string
  readonly file: string
  readonly direction: "up" | "down"
  readonly reason: string
  readonly cause: unknown
}> {
  override get message() {
    return this.direction === "up"
      ? `Migration ${this.file} failed and was rolled back (nothing of it was applied, later migrations ` +
        `were not run): ${this.reason}. Fix the file and run migrate up again.`
      : `Undoing migration ${formatVersion(this.version)}_${this.name} with ${this.file} failed and was rolled ` +
        `back (the migration is still applied): ${this.reason}. Fix the down file and run migrate down again.`
  }
}

export class MigrationFileMissing extends Data.TaggedError("MigrationFileMissing")<{
  readonly version: number
  readonly name: string
  readonly dir: string
}> {
  override get message() {
    const id = `${formatVersion(this.version)}_${this.name}`
    return `Cannot undo migration ${id}: ${id}.down.sql is not in ${this.dir} (was it applied by another ` +
      "version of the code?). Restore its files, or run migrate down from the version that added it."
  }
}

export class UnknownMigrationVersion extends Data.TaggedError("UnknownMigrationVersion")<{
  readonly version: number
  readonly dir: string
}> {
  override get message() {
    return `There is no migration numbered ${formatVersion(this.version)} in ${this.dir}. ` +
      "Run migrate status to list the migrations and pick one of their numbers."
  }
}

export class InvalidMigrationArgument extends Data.TaggedError("InvalidMigrationArgument")<{
  readonly argument: string
  readonly value: unknown
  readonly expected: string
}> {
  override get message() {
    return `Invalid ${this.argument}: ${String(this.value)}; expected ${this.expected}.`
  }
}

export class InvalidMigrationName extends Data.TaggedError("InvalidMigrationName")<{
  readonly input: string
}> {
  override get message() {
    return `"${this.input}" is not a valid migration name: use letters, digits, spaces, dashes or ` +
      "underscores (at most 100), e.g. add_users_table."
  }
}

export type MigrationFilesError = MigrationDirectoryError | InvalidMigrationFiles

export type MigrateUpError =
  | MigrationFilesError
  | MigrationChecksumMismatch
  | MigrationOutOfOrder
  | MigrationFailed
  | UnknownMigrationVersion
  | InvalidMigrationArgument
  | SqlError

export type MigrateDownError =
  | MigrationFilesError
  | MigrationChecksumMismatch
  | MigrationFileMissing
  | MigrationFailed
  | InvalidMigrationArgument
  | SqlError

export type MigrationError =
  | MigrateUpError
  | MigrateDownError
  | InvalidMigrationName

// ---------------------------------------------------------------------------------------------
// Files

const formatVersion = (version: number) => String(version).padStart(4, "0")

const errorText = (error: unknown) => {
  const code = (error as { code?: unknown })?.code
  const message = error instanceof Error ? error.message : String(error)
  return typeof code === "string" && !message.includes(code) ? `${code}: ${message}` : message
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/**
 * The migrations of `dir`, sorted by version, with their contents and checksums. Every problem
 * of the directory (bad name, number used twice, up without down or the reverse) is reported
 * at once. Hidden files (.gitkeep) are ignored.
 */
export const loadMigrationFiles = (dir: string): Effect.Effect<ReadonlyArray<MigrationFile>, MigrationFilesError> =>
  Effect.gen(function*() {
    const entries = yield* Effect.try({
      try: () => readdirSync(dir, { withFileTypes: true }),
      catch: (error) => new MigrationDirectoryError({ dir, operation: "read", reason: errorText(error) })
    })
    const problems: Array<MigrationFileProblem> = []
    const byVersion = new Map<number, Map<string, { up?: string; down?: string }>>()
    for (const entry of entries) {
      if (!entry.isFile() || entry.name.startsWith(".")) continue
      const match = FILE_PATTERN.exec(entry.name)
      if (match === null) {
        problems.push({
          file: entry.name,
          kind: "bad_name",
          detail: `${entry.name}: name does not match NNNN_name.up.sql or NNNN_name.down.sql (name in [a-z0-9_])`
        })
        continue
      }
      const [, digits = "", name = "", direction] = match
      const version = Number(digits)
      const base = `${digits}_${name}`
      const bases = byVersion.get(version) ?? new Map<string, { up?: string; down?: string }>()
      byVersion.set(version, bases)
      const pair = bases.get(base) ?? {}
      bases.set(base, direction === "up" ? { ...pair, up: entry.name } : { ...pair, down: entry.name })
    }
    const pairs: Array<{ version: number; name: string; up: string; down: string }> = []
    for (const [version, bases] of [...byVersion].sort(([a], [b]) => a - b)) {
      if (bases.size > 1) {
        const names = [...bases.keys()].sort()
        problems.push({
          file: names.join(", "),
          kind: "duplicate_version",
          detail: `number ${formatVersion(version)} is used by ${names.join(" and ")}; give all but one of them ` +
            "a new number above the newest migration"
        })
        continue
      }
      for (const [base, pair] of bases) {
        if (pair.up === undefined) {
          problems.push({
            file: `${base}.down.sql`,
            kind: "missing_up",
            detail: `${base}.down.sql has no ${base}.up.sql`
          })
        } else if (pair.down === undefined) {
          problems.push({ file: pair.up, kind: "missing_down", detail: `${pair.up} has no ${base}.down.sql` })
        } else {
          pairs.push({ version, name: base.slice(base.indexOf("_") + 1), up: pair.up, down: pair.down })
        }
      }
    }
    if (problems.length > 0) return yield* new InvalidMigrationFiles({ dir, problems })
    return yield* Effect.try({
      try: () =>
        pairs.map((pair): MigrationFile => {
          const up = readFileSync(join(dir, pair.up))
          return {
            version: pair.version,
            name: pair.name,
            upFile: pair.up,
            downFile: pair.down,
            upSql: up.toString("utf8"),
            downSql: readFileSync(join(dir, pair.down), "utf8"),
            checksum: sha256(up)
          }
        }),
      catch: (error) => new MigrationDirectoryError({ dir, operation: "read", reason: errorText(error) })
    })
  })

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

/** `Add users-table` -> `add_users_table`; None when something else than [a-z0-9_] remains. */
export const normalizeMigrationName = (input: string): Option.Option<string> => {
  const name = input.trim().toLowerCase().replace(/[\s-]+/g, "_")
  return /^[a-z0-9_]{1,100}$/.test(name) ? Option.some(name) : Option.none()
}

/**
 * Writes `NNNN_name.up.sql` and `NNNN_name.down.sql`, numbered after the highest number in `dir`
 * (created when missing), each starting with a header comment. Returns their paths.
 */
export const createMigration = (
  name: string,
  dir: string = defaultMigrationsDir
): Effect.Effect<CreatedMigration, InvalidMigrationName | MigrationDirectoryError> =>
  Effect.gen(function*() {
    const normalized = yield* Option.match(normalizeMigrationName(name), {
      onNone: () => Effect.fail(new InvalidMigrationName({ input: name })),
      onSome: Effect.succeed
    })
    const now = DateTime.formatIso(yield* DateTime.now)
    return yield* Effect.try({
      try: () => {
        mkdirSync(dir, { recursive: true })
        const highest = Math.max(
          0,
          ...readdirSync(dir).map((file) => /^(\d+)_/.exec(file)?.[1]).filter((d) => d !== undefined).map(Number)
        )
        const version = highest + 1
        const base = `${formatVersion(version)}_${normalized}`
        const upPath = join(dir, `${base}.up.sql`)
        const downPath = join(dir, `${base}.down.sql`)
        writeFileSync(
          upPath,
          `-- ${base} (up), created ${now}\n` +
            "-- Runs inside one transaction together with its schema_migrations row: no BEGIN/COMMIT, and\n" +
            "-- nothing that cannot run in a transaction (CREATE INDEX CONCURRENTLY, VACUUM).\n" +
            "-- Never edit this file once it has been applied anywhere: add a new migration instead.\n\n",
          { flag: "wx" }
        )
        try {
          writeFileSync(
            downPath,
            `-- ${base} (down), created ${now}\n` +
              `-- Undoes ${base}.up.sql (drop what it creates, in reverse order); runs inside one\n` +
              "-- transaction together with the removal of its schema_migrations row.\n\n",
            { flag: "wx" }
          )
        } catch (error) {
          rmSync(upPath, { force: true })
          throw error
        }
        return { version, name: normalized, upPath, downPath }
      },
      catch: (error) => new MigrationDirectoryError({ dir, operation: "write", reason: errorText(error) })
    })
  }).pipe(Effect.withSpan("Migrations.create", { attributes: { "migrations.dir": dir } }))
