import type { SqlError } from "@effect/sql/SqlError"
import { Data } from "effect"

/** What the migration runner and the migration files can fail with, each with a message a human can act on. */

/** `7` -> `0007`: how a version is written in file names and messages. */
export const formatVersion = (version: number) => String(version).padStart(4, "0")

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
