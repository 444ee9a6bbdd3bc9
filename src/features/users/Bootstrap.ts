import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Data, Effect, Layer, Option, Redacted, Schema } from "effect"

import { Email, Password } from "../../domain/User.js"
import { AppConfig } from "../../platform/Config.js"
import { AuditLog, diffChanges } from "../audit/AuditLog.js"
import { Passwords } from "../auth/Passwords.js"
import { type UserRow, UsersRepo } from "./Repo.js"

/** The bootstrap admin cannot be created as configured; the message names no secret. */
export class AdminBootstrapError extends Data.TaggedError("AdminBootstrapError")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

export type AdminSource = "bootstrap" | "cli"

/** 42P01: the users table is missing, i.e. the migrations were not applied. */
const isMissingTable = (error: SqlError) => (error.cause as { code?: unknown } | undefined)?.code === "42P01"

const decodeEmail = Schema.decodeUnknownEither(Email)
const decodePassword = Schema.decodeUnknownEither(Password)

/** The email and password checked against the API's own rules (email shape, 12-256 characters). */
export const validateAdminCredentials = (email: string, password: string) =>
  Effect.gen(function*() {
    const problems: Array<string> = []
    const decodedEmail = decodeEmail(email)
    if (decodedEmail._tag === "Left") problems.push("the email is not an email address (at most 254 characters)")
    if (decodePassword(password)._tag === "Left") {
      problems.push(`the password must be 12 to 256 characters long (it has ${password.length})`)
    }
    if (decodedEmail._tag === "Left" || problems.length > 0) {
      return yield* new AdminBootstrapError({ reason: problems.join("; ") })
    }
    return { email: decodedEmail.right, password: Redacted.make(password) }
  })

/**
 * Creates an administrator unless a live user already has the email: `Some(row)` when this call
 * created it, `None` otherwise. Safe when several processes run it at once: the insert is
 * `ON CONFLICT DO NOTHING` on the partial unique index, so exactly one of them creates the row,
 * and only that one writes the `user.create` audit row (in the same transaction).
 */
export const createAdminIfAbsent = (input: {
  readonly email: string
  readonly password: Redacted.Redacted<string>
  readonly source: AdminSource
}): Effect.Effect<
  Option.Option<UserRow>,
  AdminBootstrapError | SqlError,
  UsersRepo | AuditLog | Passwords | SqlClient.SqlClient
> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* UsersRepo
    const audit = yield* AuditLog
    const passwords = yield* Passwords
    const email = input.email.trim().toLowerCase()
    // the common case (every start after the first) costs one indexed read and no hashing
    if (Option.isSome(yield* repo.findLiveByEmail(email))) return Option.none<UserRow>()
    const password_hash = yield* passwords.hash(input.password)
    return yield* sql.withTransaction(
      Effect.gen(function*() {
        const fields = { email, display_name: null, is_admin: true }
        const created = yield* repo.insert({ ...fields, password_hash })
        if (Option.isSome(created)) {
          yield* audit.record({
            action: "user.create",
            resourceType: "user",
            resourceId: created.value.id,
            userId: null,
            changes: { ...diffChanges({}, fields), password: "***", source: input.source }
          })
        }
        return created
      })
    )
  }).pipe(
    Effect.catchIf(
      (error): error is SqlError => error instanceof SqlError && isMissingTable(error),
      () =>
        Effect.fail(
          new AdminBootstrapError({ reason: "The users table does not exist: run npm run migrate -- up first" })
        )
    ),
    Effect.withSpan("Users.createAdminIfAbsent", { attributes: { source: input.source } })
  )

/**
 * At start, after the migrations: when ADMIN_EMAIL and ADMIN_PASSWORD are both set and no live
 * user has that email, creates it as an administrator (API.md section 2). A bad value stops the
 * start with a message that does not echo the password.
 */
export const BootstrapAdmin = Layer.effectDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    if (Option.isNone(config.adminEmail) && Option.isNone(config.adminPassword)) return
    if (Option.isNone(config.adminEmail) || Option.isNone(config.adminPassword)) {
      return yield* Effect.logWarning("ADMIN_EMAIL and ADMIN_PASSWORD must be set together; no admin was bootstrapped")
    }
    const credentials = yield* validateAdminCredentials(
      config.adminEmail.value,
      Redacted.value(config.adminPassword.value)
    )
      .pipe(Effect.mapError((e) => new AdminBootstrapError({ reason: `ADMIN_EMAIL / ADMIN_PASSWORD: ${e.reason}` })))
    const created = yield* createAdminIfAbsent({ ...credentials, source: "bootstrap" })
    yield* Option.match(created, {
      onNone: () => Effect.logDebug("bootstrap admin already exists"),
      onSome: (row) => Effect.logInfo("bootstrap admin created").pipe(Effect.annotateLogs({ user_id: row.id }))
    })
  })
).pipe(Layer.provide(Layer.mergeAll(UsersRepo.Default, AuditLog.Default)))
