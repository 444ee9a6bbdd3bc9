import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"

import { Conflict } from "../../domain/errors.js"
import type { AdminUser, User, UserId } from "../../domain/User.js"
import { countedPage, type CountedPageRows, isUniqueViolation, patchColumns } from "../../platform/Database.js"

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

export interface UserListQuery {
  /** case-insensitive substring of email or display name; matched literally (`%`, `_`, `\` included) */
  readonly q?: string | undefined
  readonly includeDeleted: boolean
  readonly limit: number
  readonly offset: number
}

export interface UserChanges {
  readonly display_name?: string | null
  readonly is_admin?: boolean
  readonly password_hash?: string
}

/** `q` as an ILIKE pattern that matches it as a plain substring (backslash is the escape character). */
export const containsPattern = (q: string) => `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** a live user already has this email */
const isEmailTaken = isUniqueViolation("users_email_live_key")

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
      sql<UserRow>`SELECT ${
        sql.literal(COLUMNS)
      } FROM users WHERE email = ${email.toLowerCase()} AND deleted_at IS NULL`
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

    /**
     * One page ordered by id, with the number of matching rows. One statement: the count is taken
     * even when the page is past the end (the lateral join then yields a single row of NULLs).
     */
    const list = (query: UserListQuery) => {
      const filters = [
        ...(query.includeDeleted ? [] : [sql`deleted_at IS NULL`]),
        ...(query.q === undefined || query.q === ""
          ? []
          : [
            sql`(email ILIKE ${containsPattern(query.q)} ESCAPE '\\' OR display_name ILIKE ${
              containsPattern(query.q)
            } ESCAPE '\\')`
          ])
      ]
      const where = sql.and(filters)
      return sql<CountedPageRows<UserRow>[number]>`
        SELECT c.total, u.*
        FROM (SELECT count(*) AS total FROM users WHERE ${where}) c
        LEFT JOIN LATERAL (
          SELECT ${sql.literal(COLUMNS)} FROM users WHERE ${where}
          ORDER BY id LIMIT ${query.limit} OFFSET ${query.offset}
        ) u ON true
        ORDER BY u.id`.pipe(
        Effect.map(countedPage<UserRow>("id")),
        Effect.withSpan("UsersRepo.list")
      )
    }

    /** Applies `changes` (and bumps updated_at) to a user that is not deleted; `None` otherwise. */
    const update = (id: UserId, changes: UserChanges) =>
      sql<UserRow>`UPDATE users SET ${patchColumns(sql, { ...changes, updated_at: sql`now()` })}
        WHERE id = ${id} AND deleted_at IS NULL
        RETURNING ${sql.literal(COLUMNS)}`.pipe(Effect.map(first))

    /** Marks a live user deleted; `None` when absent or already deleted. */
    const softDelete = (id: UserId) =>
      sql<UserRow>`UPDATE users SET deleted_at = now(), updated_at = now()
        WHERE id = ${id} AND deleted_at IS NULL
        RETURNING ${sql.literal(COLUMNS)}`.pipe(Effect.map(first))

    /**
     * Clears deleted_at; `None` when the user is absent or not deleted. Fails with Conflict when a
     * live user has taken the email meanwhile (the partial unique index refuses the row). That
     * failure aborts the surrounding transaction, which must then roll back (it does: it fails).
     */
    const restore = (id: UserId) =>
      sql<UserRow>`UPDATE users SET deleted_at = NULL, updated_at = now()
        WHERE id = ${id} AND deleted_at IS NOT NULL
        RETURNING ${sql.literal(COLUMNS)}`.pipe(
        Effect.map(first),
        Effect.catchIf(isEmailTaken, () =>
          Effect.fail(
            new Conflict({ detail: `The email of user ${id} now belongs to another user; delete that user first` })
          ))
      )

    return {
      findById,
      findLiveById,
      findLiveByEmail,
      lockById,
      insert,
      updatePasswordHash,
      list,
      update,
      softDelete,
      restore
    } as const
  })
}) {}
