import { SqlClient } from "@effect/sql"
import { Effect, Option, type Redacted } from "effect"

import { Conflict, NotFound } from "../../domain/errors.js"
import { type PageRequest, toPage } from "../../domain/Page.js"
import { type AdminUser, CurrentUser, type UserId } from "../../domain/User.js"
import { commitThen, orDieOnSqlError } from "../../platform/Database.js"
import { AuditLog, changedFields, diffChanges } from "../audit/AuditLog.js"
import { Passwords } from "../auth/Passwords.js"
import { RefreshTokens } from "../auth/RefreshTokens.js"
import { toAdminUser, type UserRow, UsersRepo } from "./Repo.js"
import { UserLookup } from "./UserLookup.js"

export interface CreateUserInput {
  /** already trimmed and lower-cased by the `Email` schema */
  readonly email: string
  readonly password: Redacted.Redacted<string>
  readonly is_admin?: boolean | undefined
  readonly display_name?: string | null | undefined
}

export interface UpdateUserInput {
  readonly password?: Redacted.Redacted<string> | undefined
  readonly is_admin?: boolean | undefined
  readonly display_name?: string | null | undefined
}

export interface ListUsersInput {
  readonly page: PageRequest
  readonly q?: string | undefined
  readonly includeDeleted: boolean
}

/** The audit trail's `changes` for a password: never the value, only that it changed. */
const PASSWORD_CHANGED = { password: "***" } as const

const notFound = (id: UserId) => new NotFound({ detail: `User ${id} does not exist` })

/** What an admin may edit, as the diff sees it. */
const editable = (row: UserRow) => ({ display_name: row.display_name, is_admin: row.is_admin })

/**
 * Admin user management (API.md section 3). Every mutation commits together with its audit row;
 * the user's cached authentication record is invalidated after the commit, so a deleted or
 * demoted user loses access on their next request.
 */
export class UsersService extends Effect.Service<UsersService>()("chatkit/UsersService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* UsersRepo
    const audit = yield* AuditLog
    const passwords = yield* Passwords
    const lookup = yield* UserLookup
    const refreshTokens = yield* RefreshTokens

    /** Runs a write in a transaction; once it has committed, the user's cached record is dropped. */
    const mutate = commitThen(sql, (row: UserRow) => lookup.invalidate(row.id))

    const list = (input: ListUsersInput) =>
      repo.list({
        q: input.q,
        includeDeleted: input.includeDeleted,
        limit: input.page.pageSize,
        offset: input.page.offset
      })
        .pipe(
          Effect.map(({ items, total }) => toPage(input.page, items.map(toAdminUser), total)),
          orDieOnSqlError,
          Effect.withSpan("UsersService.list", { attributes: { include_deleted: input.includeDeleted } })
        )

    const get = (id: UserId): Effect.Effect<AdminUser, NotFound> =>
      repo.findById(id).pipe(
        orDieOnSqlError,
        Effect.flatMap(
          Option.match({ onNone: () => Effect.fail(notFound(id)), onSome: (row) => Effect.succeed(toAdminUser(row)) })
        ),
        Effect.withSpan("UsersService.get", { attributes: { "user.id": id } })
      )

    const create = (input: CreateUserInput): Effect.Effect<AdminUser, Conflict> =>
      Effect.gen(function*() {
        const fields = {
          email: input.email,
          display_name: input.display_name ?? null,
          is_admin: input.is_admin ?? false
        }
        const password_hash = yield* passwords.hash(input.password)
        const row = yield* mutate(
          Effect.gen(function*() {
            const inserted = yield* repo.insert({ ...fields, password_hash })
            if (Option.isNone(inserted)) {
              return yield* new Conflict({ detail: `A user with email ${input.email} already exists` })
            }
            yield* audit.record({
              action: "user.create",
              resourceType: "user",
              resourceId: inserted.value.id,
              changes: { ...diffChanges({}, fields), ...PASSWORD_CHANGED }
            })
            return inserted.value
          })
        )
        return toAdminUser(row)
      }).pipe(orDieOnSqlError, Effect.withSpan("UsersService.create"))

    /**
     * PATCH semantics: absent fields stay as they are. A new password revokes every refresh token
     * of the user. A request that changes nothing writes nothing (and no audit row).
     */
    const update = (id: UserId, input: UpdateUserInput): Effect.Effect<AdminUser, NotFound | Conflict, CurrentUser> =>
      Effect.gen(function*() {
        const actor = yield* CurrentUser
        if (id === actor.id && input.is_admin === false) {
          return yield* new Conflict({ detail: "You cannot remove your own administrator rights" })
        }
        const password_hash = input.password === undefined ? undefined : yield* passwords.hash(input.password)
        const row = yield* mutate(
          Effect.gen(function*() {
            const before = yield* repo.lockById(id)
            if (Option.isNone(before) || before.value.deleted_at !== null) return yield* notFound(id)
            const { changes, diff } = changedFields(editable(before.value), input)
            if (Object.keys(diff).length === 0 && password_hash === undefined) return before.value
            const after = yield* repo.update(id, {
              ...changes,
              ...(password_hash === undefined ? {} : { password_hash })
            })
            if (Option.isNone(after)) return yield* notFound(id)
            if (Object.keys(diff).length > 0) {
              yield* audit.record({ action: "user.update", resourceType: "user", resourceId: id, changes: diff })
            }
            if (password_hash !== undefined) {
              const revoked = yield* refreshTokens.revokeAllForUser(id, "admin password change")
              yield* audit.record({
                action: "user.password.change",
                resourceType: "user",
                resourceId: id,
                changes: { ...PASSWORD_CHANGED, sessions_revoked: revoked }
              })
            }
            return after.value
          })
        )
        return toAdminUser(row)
      }).pipe(orDieOnSqlError, Effect.withSpan("UsersService.update", { attributes: { "user.id": id } }))

    /** Soft delete: the row stays (restorable), every refresh token of the user is revoked. */
    const remove = (id: UserId): Effect.Effect<void, NotFound | Conflict, CurrentUser> =>
      Effect.gen(function*() {
        const actor = yield* CurrentUser
        if (id === actor.id) return yield* new Conflict({ detail: "You cannot delete your own account" })
        yield* mutate(
          Effect.gen(function*() {
            const deleted = yield* repo.softDelete(id)
            if (Option.isNone(deleted)) return yield* notFound(id)
            const revoked = yield* refreshTokens.revokeAllForUser(id, "user deleted")
            yield* audit.record({
              action: "user.delete",
              resourceType: "user",
              resourceId: id,
              changes: {
                ...diffChanges({ deleted_at: null }, { deleted_at: deleted.value.deleted_at }),
                sessions_revoked: revoked
              }
            })
            return deleted.value
          })
        )
      }).pipe(orDieOnSqlError, Effect.withSpan("UsersService.delete", { attributes: { "user.id": id } }))

    /**
     * Brings a soft-deleted user back. Restoring a user that is not deleted returns it unchanged;
     * 409 when a live user has taken the email meanwhile.
     */
    const restore = (id: UserId): Effect.Effect<AdminUser, NotFound | Conflict> =>
      mutate(
        Effect.gen(function*() {
          const before = yield* repo.lockById(id)
          if (Option.isNone(before)) return yield* notFound(id)
          if (before.value.deleted_at === null) return before.value
          const restored = yield* repo.restore(id)
          if (Option.isNone(restored)) return yield* notFound(id)
          yield* audit.record({
            action: "user.restore",
            resourceType: "user",
            resourceId: id,
            changes: diffChanges({ deleted_at: before.value.deleted_at }, { deleted_at: null })
          })
          return restored.value
        })
      ).pipe(
        Effect.map(toAdminUser),
        orDieOnSqlError,
        Effect.withSpan("UsersService.restore", { attributes: { "user.id": id } })
      )

    return { list, get, create, update, delete: remove, restore } as const
  }),
  dependencies: [UsersRepo.Default, AuditLog.Default, UserLookup.Default, RefreshTokens.Default]
}) {}
