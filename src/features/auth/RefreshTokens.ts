import { createHash, randomBytes, randomUUID } from "node:crypto"

import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Option, Redacted, Schema } from "effect"

import { Unauthorized } from "../../domain/errors.js"
import { UserId } from "../../domain/User.js"
import { AppConfig } from "../../platform/Config.js"
import { findAllRows, findOneRow, singleRow } from "../../platform/Database.js"
import { RequestInfo } from "../../platform/Http.js"
import { AuditLog } from "../audit/AuditLog.js"

/** 256 bits, base64url: 43 characters. */
const TOKEN_BYTES = 32

/** The only form in which a refresh token is stored or compared. */
const hashOf = (token: Redacted.Redacted<string>) => createHash("sha256").update(Redacted.value(token)).digest("hex")

export interface IssuedRefreshToken {
  /** the opaque token, handed to the client once and never stored */
  readonly token: Redacted.Redacted<string>
  readonly familyId: string
  /** seconds until it expires */
  readonly expiresIn: number
}

export interface RotatedRefreshToken extends IssuedRefreshToken {
  readonly userId: UserId
}

/** A presented token as `rotate` sees it under its row lock (migration 0002, joined to its user). */
const PresentedToken = Schema.Struct({
  id: Schema.Int,
  user_id: UserId,
  family_id: Schema.String,
  used: Schema.Boolean,
  revoked: Schema.Boolean,
  expired: Schema.Boolean,
  user_live: Schema.Boolean
})

const NewToken = Schema.Struct({
  user_id: UserId,
  family_id: Schema.String,
  token_hash: Schema.String,
  ip: Schema.NullOr(Schema.String),
  user_agent: Schema.NullOr(Schema.String)
})

/** What a presented token turned out to be, decided under the row lock. */
type Rotation =
  | { readonly _tag: "Rotated"; readonly next: RotatedRefreshToken }
  | { readonly _tag: "Invalid" }
  | { readonly _tag: "Reused"; readonly userId: UserId; readonly familyId: string; readonly revoked: number }

/** Deliberately vague: a caller learns nothing about why its token was refused. */
const invalidRefreshToken = () => new Unauthorized({ detail: "The refresh token is invalid, expired or revoked" })

/**
 * Opaque, single-use, rotating refresh tokens (API.md section 2), stored only as SHA-256 hex in
 * `refresh_tokens`. Tokens issued from one login form a family; presenting a token that was
 * already used or revoked revokes its whole family (reuse detection, RFC 9700 §4.14.2).
 *
 * Expiry is decided by the database clock (`now()`), the same clock that stamps the rows, so
 * several instances with skewed clocks agree.
 */
export class RefreshTokens extends Effect.Service<RefreshTokens>()("chatkit/RefreshTokens", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const config = yield* AppConfig
    const audit = yield* AuditLog
    const ttlDays = config.refreshTokenTtlDays
    const expiresIn = ttlDays * 86_400

    const insertRow = singleRow({
      Request: NewToken,
      Result: Schema.Struct({ id: Schema.Int }),
      execute: (row) =>
        sql`INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at, ip, user_agent)
          VALUES (${row.user_id}, ${row.family_id}, ${row.token_hash}, now() + make_interval(days => ${ttlDays}),
                  ${row.ip}, ${row.user_agent})
          RETURNING id`
    })

    /** Inserts a new token row; its id is for `replaced_by`, never for the caller. */
    const insert = (userId: UserId, familyId: string) =>
      Effect.gen(function*() {
        const info = yield* Effect.serviceOption(RequestInfo)
        const token = Redacted.make(randomBytes(TOKEN_BYTES).toString("base64url"))
        const { id } = yield* insertRow({
          user_id: userId,
          family_id: familyId,
          token_hash: hashOf(token),
          ip: Option.getOrNull(Option.map(info, (i) => i.ip)),
          user_agent: Option.getOrNull(Option.flatMap(info, (i) => Option.fromNullable(i.userAgent)))
        })
        const issued: IssuedRefreshToken = { token, familyId, expiresIn }
        return { id, issued }
      })

    /**
     * A new token for `userId`, in `familyId` (a new family when absent). Joins the caller's
     * transaction when there is one.
     */
    const issue = (userId: UserId, familyId?: string): Effect.Effect<IssuedRefreshToken, SqlError> =>
      insert(userId, familyId ?? randomUUID()).pipe(
        Effect.map(({ issued }) => issued),
        Effect.withSpan("RefreshTokens.issue")
      )

    /** Sets revoked_at on every live row of the family; the number of rows it changed. */
    const revokeFamily = (familyId: string) =>
      sql`UPDATE refresh_tokens SET revoked_at = now()
        WHERE family_id = ${familyId} AND revoked_at IS NULL RETURNING id`.pipe(Effect.map((rows) => rows.length))

    /** The presented token, locked until the transaction ends. */
    const lockPresented = findOneRow({
      Request: Schema.String,
      Result: PresentedToken,
      execute: (tokenHash) =>
        sql`SELECT t.id, t.user_id, t.family_id,
            t.used_at IS NOT NULL AS used, t.revoked_at IS NOT NULL AS revoked,
            t.expires_at <= now() AS expired, u.deleted_at IS NULL AS user_live
          FROM refresh_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = ${tokenHash}
          FOR UPDATE OF t`
    })

    const findFamilyOf = findOneRow({
      Request: Schema.String,
      Result: Schema.Struct({ user_id: UserId, family_id: Schema.String }),
      execute: (tokenHash) => sql`SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = ${tokenHash}`
    })

    /** Whether each token it revoked could still have been used (not used, not expired). */
    const revokeAllRows = findAllRows({
      Request: UserId,
      Result: Schema.Struct({ live: Schema.Boolean }),
      execute: (userId) =>
        sql`UPDATE refresh_tokens SET revoked_at = now()
          WHERE user_id = ${userId} AND revoked_at IS NULL
          RETURNING (used_at IS NULL AND expires_at > now()) AS live`
    })

    /**
     * Consumes `presented` and issues its successor in the same family. One transaction: the row
     * is locked (`FOR UPDATE`), so of two concurrent uses of one token the second waits, then sees
     * it used. A used or revoked token revokes its family and records `auth.refresh.reused`; that
     * transaction commits before the 401 is returned. Do not call this inside another transaction:
     * the failure of the outer one would roll the revocation back.
     */
    const rotate = (
      presented: Redacted.Redacted<string>
    ): Effect.Effect<RotatedRefreshToken, Unauthorized | SqlError> =>
      Effect.gen(function*() {
        const tokenHash = hashOf(presented)
        const outcome = yield* sql.withTransaction(
          Effect.gen(function*() {
            const found = yield* lockPresented(tokenHash)
            if (Option.isNone(found)) return { _tag: "Invalid" } as Rotation
            const row = found.value
            if (row.used || row.revoked) {
              const revoked = yield* revokeFamily(row.family_id)
              yield* audit.record({
                action: "auth.refresh.reused",
                resourceType: "refresh_token_family",
                resourceId: row.family_id,
                userId: row.user_id,
                changes: {
                  family_id: row.family_id,
                  revoked_count: revoked,
                  was_used: row.used,
                  was_revoked: row.revoked
                }
              })
              return { _tag: "Reused", userId: row.user_id, familyId: row.family_id, revoked } as Rotation
            }
            if (row.expired || !row.user_live) return { _tag: "Invalid" } as Rotation
            const next = yield* insert(row.user_id, row.family_id)
            yield* sql`UPDATE refresh_tokens SET used_at = now(), replaced_by = ${next.id} WHERE id = ${row.id}`
            return { _tag: "Rotated", next: { ...next.issued, userId: row.user_id } } as Rotation
          })
        )
        switch (outcome._tag) {
          case "Rotated":
            return outcome.next
          case "Reused":
            yield* Effect.logWarning("refresh token reuse detected; family revoked").pipe(
              Effect.annotateLogs({
                user_id: outcome.userId,
                family_id: outcome.familyId,
                revoked_count: outcome.revoked
              })
            )
            return yield* invalidRefreshToken()
          case "Invalid":
            return yield* invalidRefreshToken()
        }
      }).pipe(Effect.withSpan("RefreshTokens.rotate"))

    /**
     * Logout: revokes the family of `presented`. Idempotent; an unknown token is not an error.
     * The token's owner and family when it was known and something was revoked.
     */
    const revokeFamilyOf = (
      presented: Redacted.Redacted<string>
    ): Effect.Effect<
      Option.Option<{ readonly userId: UserId; readonly familyId: string; readonly revoked: number }>,
      SqlError
    > =>
      Effect.gen(function*() {
        const found = yield* findFamilyOf(hashOf(presented))
        if (Option.isNone(found)) return Option.none()
        const revoked = yield* revokeFamily(found.value.family_id)
        return revoked === 0
          ? Option.none()
          : Option.some({ userId: found.value.user_id, familyId: found.value.family_id, revoked })
      }).pipe(Effect.withSpan("RefreshTokens.revokeFamilyOf"))

    /**
     * Revokes every refresh token of `userId` (password change, logout-all, admin delete). The
     * number of sessions it ended: tokens that were still usable. Joins the caller's transaction.
     */
    const revokeAllForUser = (userId: UserId, reason: string): Effect.Effect<number, SqlError> =>
      revokeAllRows(userId).pipe(
        Effect.map((rows) => rows.filter((row) => row.live).length),
        Effect.tap((count) =>
          Effect.logInfo("refresh tokens revoked").pipe(
            Effect.annotateLogs({ user_id: userId, reason, revoked_count: count })
          )
        ),
        Effect.withSpan("RefreshTokens.revokeAllForUser", { attributes: { reason } })
      )

    return { issue, rotate, revokeFamilyOf, revokeAllForUser } as const
  }),
  dependencies: [AuditLog.Default]
}) {}
