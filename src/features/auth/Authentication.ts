import { createHash, timingSafeEqual } from "node:crypto"

import { Effect, Layer, Option, Redacted } from "effect"

import {
  AdminAuthentication,
  Authentication,
  LoginRateLimit,
  MetricsAuthentication,
  RefreshRateLimit
} from "../../api/Security.js"
import { Forbidden, type RateLimited, Unauthorized } from "../../domain/errors.js"
import type { User } from "../../domain/User.js"
import { AppConfig } from "../../platform/Config.js"
import { RequestInfo } from "../../platform/Http.js"
import { RateLimiter, type RateLimitRule, rateLimitRules } from "../../platform/RateLimiter.js"
import { withHotSpan } from "../../platform/Spans.js"
import { UserLookup } from "../users/UserLookup.js"
import { AccessTokens, InvalidAccessToken, toUnauthorized } from "./AccessTokens.js"

/**
 * The user behind a bearer access token: a valid token of a user that still exists (re-read
 * through the 30 s cache, so deletion takes effect at once), within the per-user API limit. Every
 * refusal is the same generic 401. Shared by `Authentication` and `AdminAuthentication`.
 */
const bearerUser = Effect.gen(function*() {
  const config = yield* AppConfig
  const tokens = yield* AccessTokens
  const users = yield* UserLookup
  const limiter = yield* RateLimiter
  const apiRule = rateLimitRules(config).api
  return (token: Redacted.Redacted): Effect.Effect<User, Unauthorized | RateLimited> =>
    Effect.gen(function*() {
      const userId = yield* tokens.verify(token).pipe(
        Effect.tapError((e) => Effect.logDebug("access token refused").pipe(Effect.annotateLogs({ reason: e.reason }))),
        Effect.mapError(toUnauthorized)
      )
      const found = yield* users.findLive(userId).pipe(
        // a database outage is the platform's 503 (a defect classified there), never a 401
        Effect.orDie
      )
      if (Option.isNone(found)) return yield* toUnauthorized(new InvalidAccessToken({ reason: "user deleted" }))
      const info = yield* Effect.serviceOption(RequestInfo)
      if (Option.isSome(info)) info.value.userId = String(userId)
      yield* limiter.consume(apiRule, String(userId))
      const { deleted_at: _, ...user } = found.value
      return user
    })
})

/** The bearer middleware of every authenticated endpoint (`bearerUser`). */
export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.map(bearerUser, (user) => ({
    bearer: (token) => user(token).pipe(withHotSpan("Authentication.bearer"))
  }))
)

/** The bearer middleware of admin endpoints: `bearerUser`, then 403 unless the user is an administrator. */
export const AdminAuthenticationLive = Layer.effect(
  AdminAuthentication,
  Effect.map(bearerUser, (user) => ({
    bearer: (token) =>
      user(token).pipe(
        Effect.filterOrFail(
          (caller) => caller.is_admin,
          () => new Forbidden({ detail: "This endpoint is for administrators" })
        ),
        withHotSpan("AdminAuthentication.bearer")
      )
  }))
)

const digest = (value: string) => createHash("sha256").update(value).digest()

/**
 * GET /metrics: passes when METRICS_TOKEN is not set; otherwise the bearer must be that token,
 * compared through fixed-length digests in constant time, so timing reveals nothing of it.
 */
export const MetricsAuthenticationLive = Layer.effect(
  MetricsAuthentication,
  Effect.map(AppConfig, (config) => ({
    metricsToken: (token) =>
      Option.match(config.metricsToken, {
        onNone: () => Effect.void,
        onSome: (expected) =>
          timingSafeEqual(digest(Redacted.value(token)), digest(Redacted.value(expected)))
            ? Effect.void
            : Effect.fail(new Unauthorized({ detail: "This endpoint requires the metrics bearer token" }))
      })
  }))
)

/** The caller's address as the platform resolved it (TRUST_PROXY aware). */
export const currentClientIp = Effect.map(
  Effect.serviceOption(RequestInfo),
  Option.match({ onNone: () => "unknown", onSome: (info) => info.ip })
)

/**
 * The per-client-IP limits of login and refresh, counted before the body is decoded: a flood of
 * malformed bodies is limited like any other attempt.
 */
export const ClientIpLimitsLive = Layer.unwrapEffect(
  Effect.gen(function*() {
    const limiter = yield* RateLimiter
    const rules = rateLimitRules(yield* AppConfig)
    const perClientIp = (rule: RateLimitRule) => Effect.flatMap(currentClientIp, (ip) => limiter.consume(rule, ip))
    return Layer.mergeAll(
      Layer.succeed(LoginRateLimit, perClientIp(rules.loginIp)),
      Layer.succeed(RefreshRateLimit, perClientIp(rules.refreshIp))
    )
  })
)
