import { HttpApiMiddleware, HttpApiSecurity, OpenApi } from "@effect/platform"
import { Context, Schema } from "effect"

import { RateLimitedProblem, UnauthorizedProblem } from "../domain/errors.js"
import type { User } from "../domain/User.js"

/** The authenticated caller, re-read from the database on every request (short cache). */
export class CurrentUser extends Context.Tag("chatkit/CurrentUser")<CurrentUser, User>() {}

/**
 * Bearer access token (JWT HS256) on every endpoint of a group that uses it; also enforces the
 * per-user API rate limit, hence the 429.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("Authentication", {
  provides: CurrentUser,
  failure: Schema.Union(UnauthorizedProblem, RateLimitedProblem),
  security: {
    bearer: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(OpenApi.Description, "Access token from POST /api/v1/auth/login (15 minutes)")
    )
  }
}) {}

/** Counts a login attempt against its client IP's limit before the body is even decoded. */
export class LoginRateLimit extends HttpApiMiddleware.Tag<LoginRateLimit>()("LoginRateLimit", {
  failure: RateLimitedProblem
}) {}

/** Counts a refresh against its client IP's limit before the body is even decoded. */
export class RefreshRateLimit extends HttpApiMiddleware.Tag<RefreshRateLimit>()("RefreshRateLimit", {
  failure: RateLimitedProblem
}) {}
