import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { ForbiddenProblem, RateLimitedProblem, UnauthorizedProblem } from "../domain/errors.js"
import { CurrentUser } from "../domain/User.js"

/** The access token scheme, shared by `Authentication` and `AdminAuthentication` (one OpenAPI scheme). */
const accessToken = HttpApiSecurity.bearer.pipe(
  HttpApiSecurity.annotate(OpenApi.Description, "Access token from POST /api/v1/auth/login (15 minutes)")
)

/**
 * Bearer access token (JWT HS256) on every endpoint of a group that uses it; also enforces the
 * per-user API rate limit, hence the 429.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("Authentication", {
  provides: CurrentUser,
  failure: Schema.Union(UnauthorizedProblem, RateLimitedProblem),
  security: { bearer: accessToken }
}) {}

/**
 * `Authentication` for administrators only: the same token check and rate limit, then 403 for
 * any other user. Security middleware runs before the path, body and query are decoded, so a
 * non-admin gets the 403 whatever they send.
 */
export class AdminAuthentication extends HttpApiMiddleware.Tag<AdminAuthentication>()("AdminAuthentication", {
  provides: CurrentUser,
  failure: Schema.Union(UnauthorizedProblem, RateLimitedProblem, ForbiddenProblem),
  security: { bearer: accessToken }
}) {}

/**
 * The `METRICS_TOKEN` of GET /metrics: when it is set, `Authorization: Bearer <METRICS_TOKEN>` is
 * required (401 otherwise); when it is not, anyone may scrape. Not a user: provides nothing.
 */
export class MetricsAuthentication extends HttpApiMiddleware.Tag<MetricsAuthentication>()("MetricsAuthentication", {
  failure: UnauthorizedProblem,
  security: {
    metricsToken: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(
        OpenApi.Description,
        "The METRICS_TOKEN of the deployment; required only when METRICS_TOKEN is set"
      )
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
