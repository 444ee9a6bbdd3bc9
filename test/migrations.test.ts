import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { createMigration, defaultMigrationsDir, loadMigrationFiles } from "../src/platform/MigrationFiles.js"
import { migrateDown, migrateUp, migrationStatus } from "../src/platform/Migrations.js"
import { testDatabaseLayer } from "./support/database.js"

const repoRoot = fileURLToPath(new URL("..", import.meta.url))

/** A temporary directory removed when the test's scope closes. */
const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), `chatkit-${prefix}-`))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** A migrations directory holding `files` (file name -> SQL). */
const migrationsDir = (files: Record<string, string>) =>
  Effect.tap(tempDir("migrations"), (dir) =>
    Effect.sync(() => {
      for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
    }))

/** The up/down pair of a migration that creates one table. */
const tablePair = (base: string, table: string): Record<string, string> => ({
  [`${base}.up.sql`]: `CREATE TABLE ${table} (id int PRIMARY KEY);\nINSERT INTO ${table} VALUES (1);\n`,
  [`${base}.down.sql`]: `DROP TABLE ${table};\n`
})

const threeTables = {
  ...tablePair("0001_create_alpha", "alpha"),
  ...tablePair("0002_create_beta", "beta"),
  ...tablePair("0003_create_gamma", "gamma")
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex")

/** Tables of the schema the tests write to (public on PGlite, the file's own schema on PostgreSQL). */
const tables = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql<{ tablename: string }>`SELECT tablename FROM pg_catalog.pg_tables
      WHERE schemaname = current_schema() ORDER BY tablename`,
    (rows) => rows.map((r) => r.tablename)
  ))

/** Every test starts from an empty schema: the layer (one database start) is shared by the file. */
const resetDatabase = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const existing = yield* tables
  if (existing.length > 0) yield* sql.unsafe(`DROP TABLE ${existing.map((t) => `"${t}"`).join(", ")} CASCADE`)
})

const appliedRows = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql<{ version: number; name: string; checksum: string; applied_at: Date; execution_ms: number }>`
    SELECT version, name, checksum, applied_at, execution_ms FROM schema_migrations ORDER BY version`
)

const states = (dir: string) =>
  Effect.map(migrationStatus(dir), (rows) => rows.map((r) => `${r.version}:${r.name}:${r.state}`))

layer(testDatabaseLayer("migrations"), { excludeTestServices: true })("Migrations", (it) => {
  it.scoped("loadMigrationFiles sorts the pairs and rejects bad names, reused numbers and unpaired files", () =>
    Effect.gen(function*() {
      const good = yield* migrationsDir({
        ...tablePair("0002_second", "b"),
        ...tablePair("0001_first", "a"),
        ".gitkeep": ""
      })
      const files = yield* loadMigrationFiles(good)
      expect(files.map((f) => [f.version, f.name])).toEqual([[1, "first"], [2, "second"]])
      expect(files[0]?.checksum).toBe(sha256(join(good, "0001_first.up.sql")))
      expect(files[0]?.downSql).toBe("DROP TABLE a;\n")

      const bad = yield* migrationsDir({
        ...tablePair("0001_first", "a"),
        ...tablePair("0002_one", "b"),
        ...tablePair("0002_other", "c"),
        "0003_lonely.up.sql": "SELECT 1;",
        "0004_orphan.down.sql": "SELECT 1;",
        "5_short.up.sql": "SELECT 1;",
        "0006_Upper.up.sql": "SELECT 1;"
      })
      const error = yield* Effect.flip(loadMigrationFiles(bad))
      expect(error._tag).toBe("InvalidMigrationFiles")
      if (error._tag !== "InvalidMigrationFiles") return
      expect(error.problems.map((p) => p.kind).sort()).toEqual(
        ["bad_name", "bad_name", "duplicate_version", "missing_down", "missing_up"]
      )
      expect(error.message).toContain("0003_lonely.up.sql has no 0003_lonely.down.sql")
      expect(error.message).toContain("0002_one and 0002_other")

      const missing = yield* Effect.flip(loadMigrationFiles(join(good, "nope")))
      expect(missing._tag).toBe("MigrationDirectoryError")
    }))

  it.scoped("up applies every pending migration in order and records name, checksum and duration", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir(threeTables)
      const applied = yield* migrateUp({ dir })
      expect(applied.map((m) => m.version)).toEqual([1, 2, 3])
      expect(yield* tables).toEqual(["alpha", "beta", "gamma", "schema_migrations"])
      const rows = yield* appliedRows
      expect(rows.map((r) => [r.version, r.name])).toEqual([[1, "create_alpha"], [2, "create_beta"], [
        3,
        "create_gamma"
      ]])
      expect(rows.map((r) => r.checksum)).toEqual(
        ["0001_create_alpha", "0002_create_beta", "0003_create_gamma"].map((b) => sha256(join(dir, `${b}.up.sql`)))
      )
      for (const row of rows) {
        expect(row.applied_at).toBeInstanceOf(Date)
        expect(row.execution_ms).toBeGreaterThanOrEqual(0)
      }
      expect(yield* migrateUp({ dir })).toEqual([])
    }))

  it.scoped("up --to stops at the given version, inclusive; status reports applied and pending", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir(threeTables)
      expect(yield* states(dir)).toEqual(["1:create_alpha:pending", "2:create_beta:pending", "3:create_gamma:pending"])
      expect((yield* migrateUp({ dir, to: 2 })).map((m) => m.version)).toEqual([1, 2])
      expect(yield* tables).not.toContain("gamma")
      const status = yield* migrationStatus(dir)
      expect(status.map((s) => s.state)).toEqual(["applied", "applied", "pending"])
      expect(status[0]?.appliedAt).toBeInstanceOf(Date)
      expect(status[2]?.appliedAt).toBeNull()

      const unknown = yield* Effect.flip(migrateUp({ dir, to: 7 }))
      expect(unknown._tag).toBe("UnknownMigrationVersion")
      expect((yield* migrateUp({ dir })).map((m) => m.version)).toEqual([3])
    }))

  it.scoped("down undoes the newest migrations in reverse order and their tables are gone", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir(threeTables)
      yield* migrateUp({ dir })
      const reverted = yield* migrateDown({ dir, steps: 2 })
      expect(reverted.map((m) => m.version)).toEqual([3, 2])
      expect(yield* tables).toEqual(["alpha", "schema_migrations"])
      expect((yield* appliedRows).map((r) => r.version)).toEqual([1])

      expect((yield* migrateDown({ dir })).map((m) => m.version)).toEqual([1])
      expect(yield* tables).toEqual(["schema_migrations"])
      expect(yield* migrateDown({ dir })).toEqual([])
      expect(yield* states(dir)).toEqual(["1:create_alpha:pending", "2:create_beta:pending", "3:create_gamma:pending"])

      const invalid = yield* Effect.flip(migrateDown({ dir, steps: 0 }))
      expect(invalid._tag).toBe("InvalidMigrationArgument")
    }))

  it.scoped("a failing migration is rolled back entirely and the run stops, naming the file", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir({
        ...tablePair("0001_create_alpha", "alpha"),
        "0002_broken.up.sql":
          "CREATE TABLE broken (id int);\nINSERT INTO broken VALUES (1);\nSELECT * FROM no_such_table;\n",
        "0002_broken.down.sql": "DROP TABLE broken;\n",
        ...tablePair("0003_create_gamma", "gamma")
      })
      const error = yield* Effect.flip(migrateUp({ dir }))
      expect(error._tag).toBe("MigrationFailed")
      expect(error.message).toContain("0002_broken.up.sql")
      expect(error.message).toContain("no_such_table")
      expect(error.message).toContain("line 3")
      expect(yield* tables).toEqual(["alpha", "schema_migrations"])
      expect((yield* appliedRows).map((r) => r.version)).toEqual([1])
      expect(yield* states(dir)).toEqual(["1:create_alpha:applied", "2:broken:pending", "3:create_gamma:pending"])
    }))

  it.scoped("up refuses, applying nothing, when an applied migration's file was edited", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir(threeTables)
      yield* migrateUp({ dir, to: 2 })
      appendFileSync(join(dir, "0001_create_alpha.up.sql"), "-- a harmless looking edit\n")
      const error = yield* Effect.flip(migrateUp({ dir }))
      expect(error._tag).toBe("MigrationChecksumMismatch")
      expect(error.message).toBe(
        "Migration 0001_create_alpha.up.sql was edited after being applied (checksum differs). " +
          "Restore the file or add a new migration."
      )
      expect(yield* tables).not.toContain("gamma")
      expect((yield* appliedRows).map((r) => r.version)).toEqual([1, 2])
      expect(yield* states(dir)).toEqual([
        "1:create_alpha:checksum_mismatch",
        "2:create_beta:applied",
        "3:create_gamma:pending"
      ])

      // Undoing it is refused as well: its down file may not match what was applied.
      expect((yield* Effect.flip(migrateDown({ dir, steps: 2 })))._tag).toBe("MigrationChecksumMismatch")
      expect((yield* appliedRows).map((r) => r.version)).toEqual([1, 2])
    }))

  it.scoped("up refuses, applying nothing, when a pending migration is numbered below the newest applied", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir({
        ...tablePair("0001_create_alpha", "alpha"),
        ...tablePair("0003_create_gamma", "gamma")
      })
      yield* migrateUp({ dir })
      for (
        const [name, text] of Object.entries({
          ...tablePair("0002_create_beta", "beta"),
          ...tablePair("0004_create_delta", "delta")
        })
      ) {
        writeFileSync(join(dir, name), text)
      }
      expect(yield* states(dir)).toEqual([
        "1:create_alpha:applied",
        "2:create_beta:out_of_order",
        "3:create_gamma:applied",
        "4:create_delta:pending"
      ])
      const error = yield* Effect.flip(migrateUp({ dir }))
      expect(error._tag).toBe("MigrationOutOfOrder")
      expect(error.message).toContain("0002_create_beta.up.sql")
      expect(error.message).toContain("0003_create_gamma")
      expect(yield* tables).toEqual(["alpha", "gamma", "schema_migrations"])
    }))

  it.scoped("an applied migration whose file is gone is reported and cannot be undone", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir(threeTables)
      yield* migrateUp({ dir })
      rmSync(join(dir, "0003_create_gamma.up.sql"))
      rmSync(join(dir, "0003_create_gamma.down.sql"))
      expect(yield* states(dir)).toEqual([
        "1:create_alpha:applied",
        "2:create_beta:applied",
        "3:create_gamma:missing_file"
      ])
      const error = yield* Effect.flip(migrateDown({ dir }))
      expect(error._tag).toBe("MigrationFileMissing")
      expect(error.message).toContain("0003_create_gamma")
      // An older copy of the code keeps starting: nothing is pending, nothing is refused.
      expect(yield* migrateUp({ dir })).toEqual([])
    }))

  it.scoped("two runners started at once apply each migration exactly once", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir(threeTables)
      const [first, second] = yield* Effect.all([migrateUp({ dir }), migrateUp({ dir })], { concurrency: 2 })
      expect([...first, ...second].map((m) => m.version).sort()).toEqual([1, 2, 3])
      expect((yield* appliedRows).map((r) => r.version)).toEqual([1, 2, 3])
    }))

  it.scoped("create writes the next-numbered pair with a header, and the empty pair goes up and down", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const dir = yield* migrationsDir(tablePair("0007_existing", "existing"))
      const created = yield* createMigration("Add users-table", dir)
      expect(created.version).toBe(8)
      expect(created.name).toBe("add_users_table")
      expect(created.upPath).toBe(join(dir, "0008_add_users_table.up.sql"))
      expect(created.downPath).toBe(join(dir, "0008_add_users_table.down.sql"))
      expect(readFileSync(created.upPath, "utf8")).toMatch(/^-- 0008_add_users_table \(up\), created \d{4}-/)
      expect(readFileSync(created.downPath, "utf8")).toMatch(/^-- 0008_add_users_table \(down\)/)
      expect((yield* createMigration("second one", dir)).version).toBe(9)
      expect(readdirSync(dir).sort()).toHaveLength(6)

      expect((yield* Effect.flip(createMigration("drop; table", dir)))._tag).toBe("InvalidMigrationName")
      expect((yield* Effect.flip(createMigration("  ", dir)))._tag).toBe("InvalidMigrationName")

      const fresh = join(yield* tempDir("create"), "new-folder")
      expect((yield* createMigration("first", fresh)).upPath).toBe(join(fresh, "0001_first.up.sql"))

      // A pair holding only comments is valid SQL for both drivers.
      expect((yield* migrateUp({ dir })).map((m) => m.version)).toEqual([7, 8, 9])
      expect((yield* migrateDown({ dir, steps: 3 })).map((m) => m.version)).toEqual([9, 8, 7])
    }))

  it.scoped("the repository's migrations go up, all the way down and up again", () =>
    Effect.gen(function*() {
      yield* resetDatabase
      const sql = yield* SqlClient.SqlClient
      const files = yield* loadMigrationFiles(defaultMigrationsDir)
      expect(files.length).toBeGreaterThan(0)

      expect((yield* migrateUp()).map((m) => m.version)).toEqual(files.map((f) => f.version))
      expect(yield* tables).toEqual(expect.arrayContaining(["audit_logs", "idempotency_keys"]))
      const [entry] = yield* sql<{ id: string; changes: unknown }>`
        INSERT INTO audit_logs (action, resource_type) VALUES ('user.create', 'user') RETURNING id, changes`
      expect(entry?.changes).toEqual({})
      yield* sql`INSERT INTO idempotency_keys (key, scope, request_hash, expires_at)
        VALUES ('k', 'user:1 POST /workflows', 'h', now() + interval '1 day')`
      const duplicate = yield* Effect.flip(sql`INSERT INTO idempotency_keys (key, scope, request_hash, expires_at)
        VALUES ('k', 'user:1 POST /workflows', 'h', now())`)
      expect(duplicate._tag).toBe("SqlError")

      expect((yield* migrateDown({ steps: files.length })).map((m) => m.version)).toEqual(
        files.map((f) => f.version).reverse()
      )
      expect(yield* tables).toEqual(["schema_migrations"])
      expect((yield* migrateUp()).map((m) => m.version)).toEqual(files.map((f) => f.version))
      expect((yield* migrationStatus()).every((s) => s.state === "applied")).toBe(true)
      yield* resetDatabase
    }))

  it.scoped(
    "the CLI prints status, applies migrations and refuses with a message and exit code 1",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* tempDir("cli-data")
        const dir = yield* migrationsDir(tablePair("0001_create_widgets", "widgets"))
        const status = yield* runCli(["status", "--dir", dir], dataDir)
        expect(status.code).toBe(0)
        expect(status.stdout).toMatch(/^0001\s+create_widgets\s+pending\s+-$/m)

        const up = yield* runCli(["up", "--dir", dir], dataDir)
        expect(up.code).toBe(0)
        expect(up.stdout).toContain("Applied 0001_create_widgets")

        appendFileSync(join(dir, "0001_create_widgets.up.sql"), "-- edited\n")
        const refused = yield* runCli(["up", "--dir", dir], dataDir)
        expect(refused.code).toBe(1)
        expect(refused.stderr).toContain("Migration 0001_create_widgets.up.sql was edited after being applied")
        expect(refused.stderr).not.toMatch(/^\s+at /m)
        expect(refused.stdout).toBe("")

        const created = yield* runCli(["create", "add gadgets", "--dir", dir], dataDir)
        expect(created.code).toBe(0)
        expect(existsSync(join(dir, "0002_add_gadgets.up.sql"))).toBe(true)
      }),
    { timeout: 180_000 }
  )
})

/** Runs `src/cli/migrate.ts args` (node with tsx's loader: one process, where `npx tsx` starts three) on the embedded database in `dataDir`. */
const runCli = (args: ReadonlyArray<string>, dataDir: string) =>
  Effect.async<{ code: number; stdout: string; stderr: string }>((resume) => {
    // No DATABASE_URL (embedded database) and no *_FILE variable the configuration would try to read.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([key]) => !key.endsWith("_FILE") && key !== "DATABASE_URL")
    )
    execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/migrate.ts", ...args],
      { cwd: repoRoot, env: { ...env, NODE_ENV: "test", CHATKIT_DATA_DIR: dataDir, LOG_FORMAT: "json" } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resume(Effect.succeed({ code, stdout, stderr }))
      }
    )
  })
