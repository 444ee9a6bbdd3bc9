import { readFile } from "node:fs/promises"
import { createInterface } from "node:readline"

import { Command, Options } from "@effect/cli"
import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { SqlError } from "@effect/sql/SqlError"
import { Console, Data, Effect, Layer, Option } from "effect"

import { pageRequest, toPage } from "../domain/Page.js"
import { AuditLog } from "../features/audit/AuditLog.js"
import { Passwords } from "../features/auth/Passwords.js"
import { createAdminIfAbsent, validateAdminCredentials } from "../features/users/Bootstrap.js"
import { type UserRow, UsersRepo } from "../features/users/Repo.js"
import { AppConfig, AppConfigLive, type AppConfigShape } from "../platform/Config.js"
import { DatabaseLive } from "../platform/Database.js"
import { makeLoggerLayer } from "../platform/Telemetry.js"
import { runCli } from "./run.js"
import { worker } from "./worker.js"

/**
 * `chatkit users create-admin --email E [--password-file F] | users list [--page N] [--page-size N] [--q Q] | worker`
 * (worker.ts: job consumers only).
 * Results go to stdout, log lines and errors to stderr; any failure exits with code 1 after
 * printing its message (no stack trace). The database is DATABASE_URL's, or the embedded one in
 * CHATKIT_DATA_DIR; its migrations must already be applied.
 */

/** A failure whose message is meant for the person at the terminal. */
class CliError extends Data.TaggedError("CliError")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** JSON log lines on stderr so stdout holds only the command's result. */
const loggerFor = (config: AppConfigShape) =>
  makeLoggerLayer({ logFormat: "json", logLevel: config.logLevel, write: (line) => process.stderr.write(`${line}\n`) })

/** 42P01: a table is missing, i.e. the migrations were not applied. */
const isMissingTable = (error: SqlError) => (error.cause as { code?: unknown } | undefined)?.code === "42P01"

type UsersContext = SqlClient.SqlClient | PgClient.PgClient | UsersRepo | AuditLog | Passwords

/** The users' SQL over PostgreSQL (DATABASE_URL) or the embedded database in CHATKIT_DATA_DIR. */
const withUsers = <A, E>(effect: Effect.Effect<A, E, UsersContext>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const services = Layer.mergeAll(UsersRepo.Default, AuditLog.Default, Passwords.layer()).pipe(
      Layer.provideMerge(DatabaseLive)
    )
    // The logger is provided outside the database layer so its start-up lines use it too.
    return yield* effect.pipe(
      Effect.catchIf(
        (error): error is E & SqlError => error instanceof SqlError && isMissingTable(error),
        () => new CliError({ reason: "The users table does not exist: run npm run migrate -- up first" })
      ),
      Effect.provide(services),
      Effect.provide(loggerFor(config))
    )
  }).pipe(Effect.provide(AppConfigLive))

const firstLine = (text: string) => text.split(/\r?\n/, 1)[0] ?? ""

/** Reads a line from a terminal without echoing it. */
const readHiddenLine = (prompt: string) =>
  new Promise<string>((resolve, reject) => {
    const stdin = process.stdin
    process.stderr.write(prompt)
    stdin.setRawMode(true)
    stdin.setEncoding("utf8")
    let value = ""
    const finish = (error?: Error) => {
      stdin.setRawMode(false)
      stdin.removeListener("data", onData)
      stdin.pause()
      process.stderr.write("\n")
      if (error === undefined) resolve(value)
      else reject(error)
    }
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return finish()
        if (ch === "\u0003") return finish(new Error("Interrupted."))
        value = ch === "\u007f" || ch === "\b" ? value.slice(0, -1) : value + ch
      }
    }
    stdin.on("data", onData)
    stdin.resume()
  })

/** The first line of a piped stdin. */
const readPipedLine = () =>
  new Promise<string>((resolve) => {
    const lines = createInterface({ input: process.stdin, terminal: false })
    let line: string | undefined
    lines.once("line", (first) => {
      line = first
      lines.close()
    })
    lines.once("close", () => {
      // without this a piped stdin would keep the process alive after the command is done
      process.stdin.destroy()
      resolve(line ?? "")
    })
  })

/** The password from the first line of `file`, or of stdin when no file is given. */
const readPassword = (file: Option.Option<string>) =>
  Option.match(file, {
    onSome: (path) =>
      Effect.tryPromise({
        try: () => readFile(path, "utf8").then(firstLine),
        catch: () => new CliError({ reason: `Cannot read the password file ${path}` })
      }),
    onNone: () =>
      Effect.tryPromise({
        try: () => (process.stdin.isTTY ? readHiddenLine("Password: ") : readPipedLine()),
        catch: (error) =>
          new CliError({ reason: error instanceof Error ? error.message : "Cannot read the password from stdin" })
      })
  })

const createAdmin = Command.make(
  "create-admin",
  {
    email: Options.text("email").pipe(Options.withDescription("Email address of the new administrator")),
    passwordFile: Options.text("password-file").pipe(
      Options.withDescription(
        "File whose first line is the password (12-256 characters); default: the first line of stdin"
      ),
      Options.optional
    )
  },
  ({ email, passwordFile }) =>
    Effect.gen(function*() {
      const password = yield* readPassword(passwordFile)
      const credentials = yield* validateAdminCredentials(email, password)
      const created = yield* withUsers(createAdminIfAbsent({ ...credentials, source: "cli" }))
      if (Option.isNone(created)) {
        return yield* new CliError({
          reason: `A user with email ${credentials.email} already exists; nothing was changed.`
        })
      }
      yield* Console.log(`Created administrator ${created.value.email} (id ${created.value.id}).`)
    })
).pipe(
  Command.withDescription(
    "Create an administrator (the password is read from --password-file or stdin, never from an argument)"
  )
)

const renderUsers = (page: ReturnType<typeof toPage<UserRow>>) => {
  if (page.items.length === 0) {
    return page.total === 0
      ? "No users."
      : `No users on page ${page.page} (${page.total} in ${page.total_pages} pages).`
  }
  const table = [
    ["ID", "EMAIL", "DISPLAY NAME", "ADMIN", "CREATED AT", "DELETED AT"],
    ...page.items.map((u) => [
      String(u.id),
      u.email,
      u.display_name ?? "-",
      u.is_admin ? "yes" : "no",
      u.created_at.toISOString(),
      u.deleted_at === null ? "-" : u.deleted_at.toISOString()
    ])
  ]
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]?.length ?? 0)))
  const lines = table.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd())
  lines.push("", `Page ${page.page} of ${page.total_pages}, ${page.total} user${page.total === 1 ? "" : "s"}.`)
  return lines.join("\n")
}

const list = Command.make(
  "list",
  {
    page: Options.integer("page").pipe(Options.withDescription("Page number, from 1"), Options.withDefault(1)),
    pageSize: Options.integer("page-size").pipe(
      Options.withDescription("Users per page, 1 to 100"),
      Options.withDefault(20)
    ),
    q: Options.text("query").pipe(
      Options.withAlias("q"),
      Options.withDescription("Case-insensitive substring of the email or display name (also --q, -q)"),
      Options.optional
    ),
    includeDeleted: Options.boolean("include-deleted").pipe(Options.withDescription("Also list soft-deleted users"))
  },
  ({ includeDeleted, page, pageSize, q }) =>
    Effect.gen(function*() {
      if (page < 1) return yield* new CliError({ reason: "--page must be at least 1" })
      if (pageSize < 1 || pageSize > 100) {
        return yield* new CliError({ reason: "--page-size must be between 1 and 100" })
      }
      const request = pageRequest({ page, page_size: pageSize })
      const result = yield* withUsers(
        Effect.flatMap(
          UsersRepo,
          (repo) =>
            repo.list({ q: Option.getOrUndefined(q), includeDeleted, limit: request.pageSize, offset: request.offset })
        )
      )
      yield* Console.log(renderUsers(toPage(request, result.items, result.total)))
    })
).pipe(Command.withDescription("List users ordered by id (soft-deleted ones with --include-deleted)"))

const users = Command.make("users", {}, () =>
  Console.log(
    "Usage: chatkit users create-admin --email E [--password-file F] | list [--page N] [--page-size N] [--q Q] [--include-deleted]"
  )).pipe(
    Command.withDescription("Manage users"),
    Command.withSubcommands([createAdmin, list])
  )

const chatkit = Command.make(
  "chatkit",
  {},
  () => Console.log("Usage: chatkit users ... | worker   (--help for details)")
).pipe(
  Command.withSubcommands([users, worker])
)

const cli = Command.run(chatkit, { name: "chatkit", version: "0.1.0" })

/** @effect/cli spells one-letter options `-q`; `--q` (as documented) is accepted as `--query`. */
const argv = process.argv.map((
  arg
) => (arg === "--q" ? "--query" : arg.startsWith("--q=") ? `--query=${arg.slice(4)}` : arg))

runCli(cli(argv))
