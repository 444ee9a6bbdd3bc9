import { SqlClient } from "@effect/sql"
import { Effect, Option, Redacted } from "effect"

import type { TokenPair } from "../../api/AuthApi.js"
import { type RateLimited, Unauthorized } from "../../domain/errors.js"
import { CurrentUser } from "../../domain/User.js"
import type { User, UserId } from "../../domain/User.js"
import { AppConfig } from "../../platform/Config.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import { RateLimiter, rateLimitRules } from "../../platform/RateLimiter.js"
import { AuditLog } from "../audit/AuditLog.js"
import { toUser, UsersRepo } from "../users/Repo.js"
import { UserLookup } from "../users/UserLookup.js"
import { AccessTokens, type SignedAccessToken } from "./AccessTokens.js"
import { Passwords } from "./Passwords.js"
import { type IssuedRefreshToken, RefreshTokens } from "./RefreshTokens.js"

/** The same body for an unknown email and a wrong password. */
const badCredentials = () => new Unauthorized({ detail: "The email or password is incorrect" })

const tokenPair = (access: SignedAccessToken, refresh: IssuedRefreshToken, user: User): typeof TokenPair.Type => ({
  access_token: Redacted.value(access.token),
  refresh_token: Redacted.value(refresh.token),
  token_type: "bearer",
  expires_in: access.expiresIn,
  refresh_expires_in: refresh.expiresIn,
  user
})

/** Database failures are not the caller's fault: a defect, answered 503/500 by the platform. */

/**
 * Sign-in and sessions (API.md section 2). Every change and its audit row commit together;
 * no password, token or hash reaches a log line, a span or an audit row.
 */
export class AuthService extends Effect.Service<AuthService>()("chatkit/AuthService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* UsersRepo
    const lookup = yield* UserLookup
    const passwords = yield* Passwords
    const refreshTokens = yield* RefreshTokens
    const accessTokens = yield* AccessTokens
    const audit = yield* AuditLog
    const limiter = yield* RateLimiter
    const rules = rateLimitRules(yield* AppConfig)

    const loginFailed = (email: string, userId: UserId | null, reason: "unknown_email" | "wrong_password") =>
      audit.record({
        action: "auth.login.failed",
        resourceType: "user",
        resourceId: userId,
        userId,
        changes: { email, reason }
      })

    /**
     * `email` is already lower-cased by its schema (and again by the repo). An unknown email costs
     * one dummy argon2 verification and one audit insert, exactly like a wrong password.
     */
    const login = (
      email: string,
      password: Redacted.Redacted<string>
    ): Effect.Effect<typeof TokenPair.Type, Unauthorized | RateLimited> =>
      Effect.gen(function*() {
        // the per-IP limit is counted by the endpoint's LoginRateLimit middleware; both count every
        // attempt (the limiter stores an email only as a digest)
        yield* limiter.consume(rules.loginEmail, email)
        const found = yield* repo.findLiveByEmail(email)
        if (Option.isNone(found)) {
          yield* passwords.verifyDummy(password)
          yield* loginFailed(email, null, "unknown_email")
          return yield* badCredentials()
        }
        const row = found.value
        const check = yield* passwords.verify(password, row.password_hash)
        if (!check.valid) {
          yield* loginFailed(email, row.id, "wrong_password")
          return yield* badCredentials()
        }
        // hashed before the transaction: argon2 takes tens of milliseconds, a connection should not wait on it
        const upgraded = check.needsRehash ? Option.some(yield* passwords.hash(password)) : Option.none<string>()
        const refresh = yield* sql.withTransaction(
          Effect.gen(function*() {
            if (Option.isSome(upgraded)) yield* repo.updatePasswordHash(row.id, upgraded.value)
            const refresh = yield* refreshTokens.issue(row.id)
            yield* audit.record({
              action: "auth.login",
              resourceType: "user",
              resourceId: row.id,
              userId: row.id,
              changes: { email, ...(Option.isSome(upgraded) ? { hash_upgraded: true } : {}) }
            })
            return refresh
          })
        )
        if (Option.isSome(upgraded)) yield* lookup.invalidate(row.id)
        const access = yield* accessTokens.sign(row.id)
        return tokenPair(access, refresh, toUser(row))
      }).pipe(orDieOnSqlError, Effect.withSpan("AuthService.login"))

    /** Consumes the refresh token and answers the next pair of its family. */
    const refresh = (
      presented: Redacted.Redacted<string>
    ): Effect.Effect<typeof TokenPair.Type, Unauthorized | RateLimited> =>
      Effect.gen(function*() {
        // the per-IP limit is counted by the endpoint's RefreshRateLimit middleware
        const next = yield* refreshTokens.rotate(presented)
        const user = yield* lookup.findLive(next.userId)
        if (Option.isNone(user)) {
          return yield* new Unauthorized({ detail: "The refresh token is invalid, expired or revoked" })
        }
        const { deleted_at: _, ...live } = user.value
        const access = yield* accessTokens.sign(next.userId)
        return tokenPair(access, next, live)
      }).pipe(orDieOnSqlError, Effect.withSpan("AuthService.refresh"))

    /** Revokes the token's family; an unknown or already revoked token changes nothing (idempotent). */
    const logout = (presented: Redacted.Redacted<string>): Effect.Effect<void> =>
      sql.withTransaction(
        Effect.gen(function*() {
          const revoked = yield* refreshTokens.revokeFamilyOf(presented)
          if (Option.isNone(revoked)) return
          yield* audit.record({
            action: "auth.logout",
            resourceType: "refresh_token_family",
            resourceId: revoked.value.familyId,
            userId: revoked.value.userId,
            changes: { revoked_count: revoked.value.revoked }
          })
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("AuthService.logout"))

    /** Ends every session of the caller. */
    const logoutAll: Effect.Effect<void, never, CurrentUser> = Effect.gen(function*() {
      const user = yield* CurrentUser
      yield* sql.withTransaction(
        Effect.gen(function*() {
          const revoked = yield* refreshTokens.revokeAllForUser(user.id, "logout_all")
          yield* audit.record({
            action: "auth.logout_all",
            resourceType: "user",
            resourceId: user.id,
            userId: user.id,
            changes: { revoked_count: revoked }
          })
        })
      )
    }).pipe(orDieOnSqlError, Effect.withSpan("AuthService.logoutAll"))

    /**
     * Verifies the current password, stores the new one and ends every session (refresh tokens;
     * access tokens already issued live out their 15 minutes).
     */
    const changePassword = (
      current: Redacted.Redacted<string>,
      next: Redacted.Redacted<string>
    ): Effect.Effect<void, Unauthorized | RateLimited, CurrentUser> =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        const row = yield* repo.findLiveById(user.id)
        if (Option.isNone(row)) {
          return yield* new Unauthorized({ detail: "The access token is missing, invalid or expired" })
        }
        // a stolen access token must not become a password oracle: the account's login limit counts these checks too
        yield* limiter.consume(rules.loginEmail, row.value.email)
        const check = yield* passwords.verify(current, row.value.password_hash)
        if (!check.valid) {
          yield* audit.record({
            action: "auth.password.failed",
            resourceType: "user",
            resourceId: user.id,
            userId: user.id,
            changes: { reason: "wrong_password" }
          })
          return yield* new Unauthorized({ detail: "The current password is incorrect" })
        }
        const hash = yield* passwords.hash(next)
        yield* sql.withTransaction(
          Effect.gen(function*() {
            yield* repo.updatePasswordHash(user.id, hash)
            const revoked = yield* refreshTokens.revokeAllForUser(user.id, "password_change")
            yield* audit.record({
              action: "user.password.change",
              resourceType: "user",
              resourceId: user.id,
              userId: user.id,
              changes: { revoked_count: revoked }
            })
          })
        )
        yield* lookup.invalidate(user.id)
      }).pipe(orDieOnSqlError, Effect.withSpan("AuthService.changePassword"))

    return { login, refresh, logout, logoutAll, changePassword } as const
  }),
  dependencies: [UsersRepo.Default, UserLookup.Default, RefreshTokens.Default, AccessTokens.Default, AuditLog.Default]
}) {}
