import { randomUUID } from "node:crypto"

import { Cache, Clock, Data, Duration, Effect, Exit, Redacted, Schema } from "effect"
import { jwtVerify, SignJWT } from "jose"

import { Unauthorized } from "../../domain/errors.js"
import { UserId } from "../../domain/User.js"
import { AppConfig } from "../../platform/Config.js"
import { withHotSpan } from "../../platform/Spans.js"

export const ACCESS_TOKEN_ISSUER = "chatkit-backend"
export const ACCESS_TOKEN_AUDIENCE = "chatkit-api"
const ALGORITHM = "HS256"
/** verified tokens remembered at most (about 0.5 KB each) */
const VERIFIED_TOKENS = 10_000

/**
 * An access token was refused. `reason` is for debug logs only; callers see the generic
 * `Unauthorized` of `toUnauthorized`, which tells an attacker nothing about what failed.
 */
export class InvalidAccessToken extends Data.TaggedError("InvalidAccessToken")<{ readonly reason: string }> {}

export const toUnauthorized = (_: InvalidAccessToken) =>
  new Unauthorized({ detail: "The access token is missing, invalid or expired" })

export interface SignedAccessToken {
  readonly token: Redacted.Redacted<string>
  /** seconds until it expires */
  readonly expiresIn: number
}

const decodeUserId = Schema.decodeUnknownOption(Schema.NumberFromString.pipe(Schema.compose(UserId)))

/** jose's error codes are stable, short and hold no part of the token. */
const reasonOf = (error: unknown) =>
  typeof (error as { code?: unknown })?.code === "string" ? (error as { code: string }).code : "malformed"

/**
 * Access tokens (API.md section 0): JWT HS256 signed with AUTH_SECRET_KEY, claims `sub` (user id),
 * `iat`, `exp`, `iss`, `aud`, `jti`, `type: "access"`. Verification pins the algorithm, so `none`
 * and every other algorithm are refused, and takes the time from `Clock`.
 */
export class AccessTokens extends Effect.Service<AccessTokens>()("chatkit/AccessTokens", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    // imported once: jose would import a raw key into WebCrypto again on every sign and verify
    const key = yield* Effect.promise(() =>
      crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(Redacted.value(config.authSecretKey)),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["sign", "verify"]
      )
    )
    const ttlSeconds = config.accessTokenTtlMinutes * 60

    const sign = (userId: UserId): Effect.Effect<SignedAccessToken> =>
      Effect.gen(function*() {
        const now = Math.floor((yield* Clock.currentTimeMillis) / 1000)
        const token = yield* Effect.promise(() =>
          new SignJWT({ type: "access" })
            .setProtectedHeader({ alg: ALGORITHM, typ: "JWT" })
            .setSubject(String(userId))
            .setIssuer(ACCESS_TOKEN_ISSUER)
            .setAudience(ACCESS_TOKEN_AUDIENCE)
            .setIssuedAt(now)
            .setExpirationTime(now + ttlSeconds)
            .setJti(randomUUID())
            .sign(key)
        )
        return { token: Redacted.make(token), expiresIn: ttlSeconds }
      }).pipe(Effect.withSpan("AccessTokens.sign"))

    /** What a token's signature and claims say, checked at `now`: its user and when it expires. */
    const check = (token: string, now: number) =>
      Effect.gen(function*() {
        const { payload } = yield* Effect.tryPromise({
          try: () =>
            jwtVerify(token, key, {
              algorithms: [ALGORITHM],
              issuer: ACCESS_TOKEN_ISSUER,
              audience: ACCESS_TOKEN_AUDIENCE,
              requiredClaims: ["sub", "iat", "exp", "jti"],
              currentDate: new Date(now)
            }),
          catch: (error) => new InvalidAccessToken({ reason: reasonOf(error) })
        })
        if (payload["type"] !== "access") return yield* new InvalidAccessToken({ reason: "not an access token" })
        const userId = decodeUserId(payload.sub)
        if (userId._tag === "None") return yield* new InvalidAccessToken({ reason: "bad subject" })
        return { userId: userId.value, expiresAtMs: (payload.exp ?? 0) * 1000 }
      })

    // A client sends its token with every request: its signature is checked once a minute, not each
    // time (an HMAC through WebCrypto per request). Refusals are not kept; expiry is checked every time.
    const checked = yield* Cache.makeWith({
      capacity: VERIFIED_TOKENS,
      lookup: (token: string) => Effect.flatMap(Clock.currentTimeMillis, (now) => check(token, now)),
      timeToLive: (exit) => (Exit.isSuccess(exit) ? Duration.minutes(1) : Duration.zero)
    })

    /** The user id of a valid access token. */
    const verify = (token: Redacted.Redacted<string>): Effect.Effect<UserId, InvalidAccessToken> =>
      Effect.gen(function*() {
        const { expiresAtMs, userId } = yield* checked.get(Redacted.value(token))
        if ((yield* Clock.currentTimeMillis) >= expiresAtMs) {
          return yield* new InvalidAccessToken({ reason: "ERR_JWT_EXPIRED" })
        }
        return userId
      }).pipe(withHotSpan("AccessTokens.verify"))

    return { sign, verify } as const
  })
}) {}
