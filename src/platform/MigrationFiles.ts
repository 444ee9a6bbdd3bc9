import { createHash } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

import { DateTime, Effect, Option } from "effect"

import {
  formatVersion,
  InvalidMigrationFiles,
  InvalidMigrationName,
  MigrationDirectoryError,
  type MigrationFileProblem,
  type MigrationFilesError
} from "./MigrationErrors.js"

/** Migration files: `NNNN_name.up.sql` and `NNNN_name.down.sql` pairs, read, checked and created. */

/** The repository's `migrations/` folder (src/platform/ -> ../../migrations). */
export const defaultMigrationsDir = resolve(fileURLToPath(new URL("../../migrations", import.meta.url)))

const FILE_PATTERN = /^(\d{4,9})_([a-z0-9_]+)\.(up|down)\.sql$/

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

export interface CreatedMigration {
  readonly version: number
  readonly name: string
  readonly upPath: string
  readonly downPath: string
}

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
