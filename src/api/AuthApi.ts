import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { RateLimitedProblem, UnauthorizedProblem } from "../domain/errors.js"
import { Email, Password, User } from "../domain/User.js"
import { Payload } from "./schemas.js"
import { Authentication, LoginRateLimit, RefreshRateLimit } from "./Security.js"

/** Any stored password may log in (legacy ones can be short); the 12-256 policy applies to new ones. */
const LoginPassword = Schema.Redacted(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)))

const RefreshToken = Schema.Redacted(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(512)))

export const TokenPair = Schema.Struct({
  access_token: Schema.String,
  refresh_token: Schema.String,
  token_type: Schema.Literal("bearer"),
  expires_in: Schema.Int.annotations({ description: "seconds until the access token expires" }),
  refresh_expires_in: Schema.Int.annotations({ description: "seconds until the refresh token expires" }),
  user: User
}).annotations({ identifier: "TokenPair" })

/** Sign-in and session endpoints (API.md section 2). */
export class AuthApi extends HttpApiGroup.make("auth")
  .add(
    HttpApiEndpoint.post("login", "/auth/login")
      .setPayload(Payload({ email: Email, password: LoginPassword }))
      .addSuccess(TokenPair)
      .addError(UnauthorizedProblem)
      .addError(RateLimitedProblem)
      .middleware(LoginRateLimit)
      .annotate(OpenApi.Summary, "Log in with email and password")
      .annotate(
        OpenApi.Description,
        "Returns a 15-minute access token and a 7-day single-use refresh token. Unknown email and wrong " +
          "password get the same 401 in the same time. Limited to 5 attempts per minute per client IP and per email."
      )
  )
  .add(
    HttpApiEndpoint.post("refresh", "/auth/refresh")
      .setPayload(Payload({ refresh_token: RefreshToken }))
      .addSuccess(TokenPair)
      .addError(UnauthorizedProblem)
      .addError(RateLimitedProblem)
      .middleware(RefreshRateLimit)
      .annotate(OpenApi.Summary, "Exchange a refresh token for a new token pair")
      .annotate(
        OpenApi.Description,
        "Each refresh token works once. Presenting a used or revoked token revokes its whole family " +
          "(reuse detection) and answers 401. Limited to 30 per minute per client IP."
      )
  )
  .add(
    HttpApiEndpoint.post("logout", "/auth/logout")
      .setPayload(Payload({ refresh_token: RefreshToken }))
      .addSuccess(HttpApiSchema.NoContent)
      .annotate(OpenApi.Summary, "Log out one session")
      .annotate(OpenApi.Description, "Revokes the refresh token's family. Idempotent: an unknown token is also 204.")
  )
  .add(
    HttpApiEndpoint.post("logoutAll", "/auth/logout-all")
      .addSuccess(HttpApiSchema.NoContent)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "Log out every session of the caller")
      .annotate(
        OpenApi.Description,
        "Revokes every refresh token of the caller. Access tokens already issued expire within 15 minutes."
      )
  )
  .add(
    HttpApiEndpoint.get("me", "/auth/me")
      .addSuccess(User)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "The authenticated user")
      .annotate(
        OpenApi.Description,
        "The caller as the server sees it now: a deleted user gets 401, a demoted admin is no longer `is_admin`."
      )
  )
  .add(
    HttpApiEndpoint.get("usersMe", "/users/me")
      .addSuccess(User)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "The authenticated user (alias of /auth/me)")
      .annotate(
        OpenApi.Description,
        "Same answer as GET /api/v1/auth/me, kept under the path test-chatkit clients use."
      )
  )
  .add(
    HttpApiEndpoint.post("changePassword", "/auth/password")
      .setPayload(Payload({ current_password: LoginPassword, new_password: Password }))
      .addSuccess(HttpApiSchema.NoContent)
      .addError(UnauthorizedProblem)
      .addError(RateLimitedProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "Change the caller's password")
      .annotate(
        OpenApi.Description,
        "New password: 12-256 characters. Revokes every refresh token of the caller. Each check of the current password " +
          "counts against the account's login limit (5 per minute), and a wrong one is audited."
      )
  )
  .annotate(OpenApi.Title, "Authentication")
{}
