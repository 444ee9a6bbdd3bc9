import { resolve } from "node:path"

import { Args, Command, Options } from "@effect/cli"
import type { SqlClient } from "@effect/sql"
import { Console, Effect, Option } from "effect"

import { AppConfig, AppConfigLive, type AppConfigShape } from "../platform/Config.js"
import { DatabaseLive } from "../platform/Database.js"
import { createMigration } from "../platform/MigrationFiles.js"
import { migrateDown, migrateUp, type MigrationStatus, migrationStatus } from "../platform/Migrations.js"
import { makeLoggerLayer } from "../platform/Telemetry.js"
import { runCli } from "./run.js"

/**
 * `migrate up [--to N] | down [--steps N] | status | create <name>`; `--dir` picks another
 * migrations directory. Results go to stdout, log lines and errors to stderr; any failure exits
 * with code 1 after printing its message (no stack trace).
 */

/** JSON log lines on stderr so stdout holds only the command's result. */
const loggerFor = (config: AppConfigShape) =>
  makeLoggerLayer({ logFormat: "json", logLevel: config.logLevel, write: (line) => process.stderr.write(`${line}\n`) })

/** PostgreSQL when DATABASE_URL is set, embedded PGlite in CHATKIT_DATA_DIR otherwise. */
const withDatabase = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    // The logger is provided outside the database layer so its start-up lines use it too.
    return yield* effect.pipe(Effect.provide(DatabaseLive), Effect.provide(loggerFor(config)))
  }).pipe(Effect.provide(AppConfigLive))

const dir = Options.text("dir").pipe(
  Options.withDescription("Migrations directory (default: the repository's migrations/ folder)"),
  Options.optional
)

const dirField = (value: Option.Option<string>) =>
  Option.match(value, { onNone: () => ({}), onSome: (d) => ({ dir: resolve(d) }) })

const label = (m: { readonly version: number; readonly name: string }) =>
  `${String(m.version).padStart(4, "0")}_${m.name}`

const up = Command.make(
  "up",
  {
    to: Options.integer("to").pipe(
      Options.withDescription("Apply pending migrations up to this version, inclusive (default: all)"),
      Options.optional
    ),
    dir
  },
  ({ dir, to }) =>
    withDatabase(
      Effect.gen(function*() {
        const applied = yield* migrateUp({
          ...dirField(dir),
          ...Option.match(to, { onNone: () => ({}), onSome: (n) => ({ to: n }) })
        })
        if (applied.length === 0) return yield* Console.log("Nothing to apply: the database schema is up to date.")
        for (const m of applied) yield* Console.log(`Applied ${label(m)} (${m.executionMs} ms)`)
      })
    )
).pipe(Command.withDescription("Apply pending migrations in order, each in its own transaction"))

const down = Command.make(
  "down",
  {
    steps: Options.integer("steps").pipe(
      Options.withDescription("How many of the newest applied migrations to undo"),
      Options.withDefault(1)
    ),
    dir
  },
  ({ dir, steps }) =>
    withDatabase(
      Effect.gen(function*() {
        const reverted = yield* migrateDown({ ...dirField(dir), steps })
        if (reverted.length === 0) return yield* Console.log("Nothing to undo: no migration is applied.")
        for (const m of reverted) yield* Console.log(`Reverted ${label(m)} (${m.executionMs} ms)`)
      })
    )
).pipe(Command.withDescription("Undo the newest applied migrations with their down files"))

const renderStatus = (rows: ReadonlyArray<MigrationStatus>) => {
  if (rows.length === 0) return "No migrations."
  const table = [
    ["VERSION", "NAME", "STATE", "APPLIED AT"],
    ...rows.map((r) => [
      String(r.version).padStart(4, "0"),
      r.name,
      r.state,
      r.appliedAt === null ? "-" : r.appliedAt.toISOString()
    ])
  ]
  const widths = [0, 1, 2].map((i) => Math.max(...table.map((row) => row[i]?.length ?? 0)))
  const lines = table.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd())
  const counts = new Map<string, number>()
  for (const r of rows) counts.set(r.state, (counts.get(r.state) ?? 0) + 1)
  lines.push("", [...counts].map(([state, n]) => `${n} ${state}`).join(", "))
  if (rows.some((r) => r.state === "checksum_mismatch" || r.state === "out_of_order")) {
    lines.push("migrate up refuses to run until the checksum_mismatch / out_of_order migrations are fixed.")
  }
  return lines.join("\n")
}

const status = Command.make("status", { dir }, ({ dir }) =>
  withDatabase(
    Effect.flatMap(
      migrationStatus(Option.getOrUndefined(Option.map(dir, (d) => resolve(d)))),
      (rows) => Console.log(renderStatus(rows))
    )
  )).pipe(Command.withDescription("List every migration with its state and when it was applied"))

const create = Command.make(
  "create",
  {
    name: Args.text({ name: "name" }).pipe(
      Args.withDescription("What the migration does, e.g. add_users_table (spaces and dashes become _)"),
      Args.atLeast(1)
    ),
    dir
  },
  ({ dir, name }) =>
    Effect.gen(function*() {
      const created = yield* createMigration(
        name.join(" "),
        Option.getOrUndefined(Option.map(dir, (d) => resolve(d)))
      )
      yield* Console.log(`Created migration ${label(created)}:\n  ${created.upPath}\n  ${created.downPath}`)
    })
).pipe(Command.withDescription("Write the next-numbered pair of empty up/down files (no database needed)"))

const migrate = Command.make(
  "migrate",
  {},
  () => Console.log("Usage: migrate up [--to N] | down [--steps N] | status | create <name>   (--help for details)")
).pipe(
  Command.withSubcommands([up, down, status, create])
)

const cli = Command.run(migrate, { name: "chatkit migrate", version: "0.1.0" })

runCli(cli(process.argv))
