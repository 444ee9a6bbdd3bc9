import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"

import { Conflict } from "../../domain/errors.js"
import { AdminUser, type User, UserId } from "../../domain/User.js"
import {
  columnsOf,
  countedPage,
  countedPageQuery,
  findOneRow,
  isUniqueViolation,
  patchColumns
} from "../../platform/Database.js"

/** A users row as stored (migration 0002); `password_hash` never leaves the server (see `toUser`). */
export const UserRow = Schema.Struct({
  ...AdminUser.fields,
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  deleted_at: Schema.NullOr(Schema.DateFromSelf),
  password_hash: Schema.String
})
export type UserRow = typeof UserRow.Type

const COLUMNS = columnsOf(UserRow)

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

export const UserChanges = Schema.Struct({
  display_name: Schema.optionalWith(Schema.NullOr(Schema.String), { exact: true }),
  is_admin: Schema.optionalWith(Schema.Boolean, { exact: true }),
  password_hash: Schema.optionalWith(Schema.String, { exact: true })
})
export type UserChanges = typeof UserChanges.Type

const NewUser = Schema.Struct({
  email: Schema.String,
  password_hash: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  is_admin: Schema.Boolean
})

/** `q` as an ILIKE pattern that matches it as a plain substring (backslash is the escape character). */
export const containsPattern = (q: string) => `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** a live user already has this email */
const isEmailTaken = isUniqueViolation("users_email_live_key")

/** SQL of the users table. Writes join the caller's transaction when there is one. */
export class UsersRepo extends Effect.Service<UsersRepo>()("chatkit/UsersRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.literal(COLUMNS)

    /** A user whether deleted or not (admin reads). */
    const findById = findOneRow({
      Request: UserId,
      Result: UserRow,
      execute: (id) => sql`SELECT ${columns} FROM users WHERE id = ${id}`
    })

    /** A user that is not deleted: what authentication sees. */
    const findLiveById = findOneRow({
      Request: UserId,
      Result: UserRow,
      execute: (id) => sql`SELECT ${columns} FROM users WHERE id = ${id} AND deleted_at IS NULL`
    })

    const findLiveByEmail = findOneRow({
      Request: Schema.String,
      Result: UserRow,
      execute: (email) => sql`SELECT ${columns} FROM users WHERE email = ${email.toLowerCase()} AND deleted_at IS NULL`
    })

    /** Locks the row until the transaction ends (self-demotion and delete checks). */
    const lockById = findOneRow({
      Request: UserId,
      Result: UserRow,
      execute: (id) => sql`SELECT ${columns} FROM users WHERE id = ${id} FOR UPDATE`
    })

    /** Inserts a user; `None` when a live user already has the email (unique index). */
    const insert = findOneRow({
      Request: NewUser,
      Result: UserRow,
      execute: (user) =>
        sql`INSERT INTO users (email, password_hash, display_name, is_admin)
          VALUES (${user.email.toLowerCase()}, ${user.password_hash}, ${user.display_name}, ${user.is_admin})
          ON CONFLICT (email) WHERE deleted_at IS NULL DO NOTHING
          RETURNING ${columns}`
    })

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
      return countedPageQuery<UserRow>(sql, {
        columns,
        from: sql`FROM users WHERE ${sql.and(filters)}`,
        orderBy: "id",
        limit: query.limit,
        offset: query.offset
      }).pipe(
        Effect.map(countedPage<UserRow>("id")),
        Effect.withSpan("UsersRepo.list")
      )
    }

    const updateRow = findOneRow({
      Request: Schema.Struct({ id: UserId, changes: UserChanges }),
      Result: UserRow,
      execute: ({ changes, id }) =>
        sql`UPDATE users SET ${patchColumns(sql, { ...changes, updated_at: sql`now()` })}
          WHERE id = ${id} AND deleted_at IS NULL
          RETURNING ${columns}`
    })

    /** Applies `changes` (and bumps updated_at) to a user that is not deleted; `None` otherwise. */
    const update = (id: UserId, changes: UserChanges) => updateRow({ id, changes })

    /** Marks a live user deleted; `None` when absent or already deleted. */
    const softDelete = findOneRow({
      Request: UserId,
      Result: UserRow,
      execute: (id) =>
        sql`UPDATE users SET deleted_at = now(), updated_at = now()
          WHERE id = ${id} AND deleted_at IS NULL
          RETURNING ${columns}`
    })

    const restoreRow = findOneRow({
      Request: UserId,
      Result: UserRow,
      execute: (id) =>
        sql`UPDATE users SET deleted_at = NULL, updated_at = now()
          WHERE id = ${id} AND deleted_at IS NOT NULL
          RETURNING ${columns}`
    })

    /**
     * Clears deleted_at; `None` when the user is absent or not deleted. Fails with Conflict when a
     * live user has taken the email meanwhile (the partial unique index refuses the row). That
     * failure aborts the surrounding transaction, which must then roll back (it does: it fails).
     */
    const restore = (id: UserId) =>
      restoreRow(id).pipe(
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
