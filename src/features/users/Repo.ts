import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import type { AdminUser, User, UserId } from "../../domain/User.js"

/** A users row as stored; `password_hash` never leaves the server (see `toUser`). */
export interface UserRow extends AdminUser {
  readonly password_hash: string
}

const COLUMNS = "id, email, display_name, password_hash, is_admin, is_lti, created_at, updated_at, deleted_at"

export const toUser = (row: UserRow): User => ({
  id: row.id,
  email: row.email,
  display_name: row.display_name,
  is_admin: row.is_admin,
  is_lti: row.is_lti,
  created_at: row.created_at,
  updated_at: row.updated_at
})

export const toAdminUser = (row: UserRow): AdminUser => ({ ...toUser(row), deleted_at: row.deleted_at })

/** SQL of the users table. Writes join the caller's transaction when there is one. */
export class UsersRepo extends Effect.Service<UsersRepo>()("chatkit/UsersRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const first = <A>(rows: ReadonlyArray<A>) => Option.fromNullable(rows[0])

    /** A user whether deleted or not (admin reads). */
    const findById = (id: UserId) =>
      sql<UserRow>`SELECT ${sql.literal(COLUMNS)} FROM users WHERE id = ${id}`.pipe(Effect.map(first))

    /** A user that is not deleted: what authentication sees. */
    const findLiveById = (id: UserId) =>
      sql<UserRow>`SELECT ${sql.literal(COLUMNS)} FROM users WHERE id = ${id} AND deleted_at IS NULL`.pipe(
        Effect.map(first)
      )

    const findLiveByEmail = (email: string) =>
      sql<UserRow>`SELECT ${sql.literal(COLUMNS)} FROM users WHERE email = ${email.toLowerCase()} AND deleted_at IS NULL`
        .pipe(Effect.map(first))

    /** Locks the row until the transaction ends (self-demotion and delete checks). */
    const lockById = (id: UserId) =>
      sql<UserRow>`SELECT ${sql.literal(COLUMNS)} FROM users WHERE id = ${id} FOR UPDATE`.pipe(Effect.map(first))

    /** Inserts a user; `None` when a live user already has the email (unique index). */
    const insert = (user: {
      readonly email: string
      readonly password_hash: string
      readonly display_name: string | null
      readonly is_admin: boolean
    }) =>
      sql<UserRow>`INSERT INTO users (email, password_hash, display_name, is_admin)
        VALUES (${user.email.toLowerCase()}, ${user.password_hash}, ${user.display_name}, ${user.is_admin})
        ON CONFLICT (email) WHERE deleted_at IS NULL DO NOTHING
        RETURNING ${sql.literal(COLUMNS)}`.pipe(Effect.map(first))

    const updatePasswordHash = (id: UserId, passwordHash: string) =>
      sql`UPDATE users SET password_hash = ${passwordHash}, updated_at = now() WHERE id = ${id}`.pipe(Effect.asVoid)

    return { findById, findLiveById, findLiveByEmail, lockById, insert, updatePasswordHash } as const
  })
}) {}
