import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { ConflictProblem, NotFoundProblem } from "../domain/errors.js"
import { AdminUser, DisplayName, Email, Password, UserId } from "../domain/User.js"
import { IdempotencyHeaders, Page, PageParams, Payload } from "./schemas.js"
import { AdminAuthentication } from "./Security.js"

const UserIdParam = Schema.Struct({ id: Schema.NumberFromString.pipe(Schema.compose(UserId)) })

/** Admin user management (API.md section 3). Every endpoint: admin only (AdminAuthentication: 403 otherwise). */
export class UsersApi extends HttpApiGroup.make("users")
  .add(
    HttpApiEndpoint.get("list", "/admin/users")
      .setUrlParams(
        Schema.Struct({
          ...PageParams,
          q: Schema.optional(Schema.String.pipe(Schema.maxLength(200))).annotations({
            description: "matches email or display name (case-insensitive substring)"
          }),
          include_deleted: Schema.optional(Schema.BooleanFromString)
        })
      )
      .addSuccess(Page(AdminUser))
      .annotate(OpenApi.Summary, "List users")
      .annotate(OpenApi.Description, "Ordered by id ascending. Soft-deleted users only with include_deleted=true.")
  )
  .add(
    HttpApiEndpoint.post("create", "/admin/users")
      .setPayload(
        Payload({
          email: Email,
          password: Password,
          is_admin: Schema.optional(Schema.Boolean),
          display_name: Schema.optional(Schema.NullOr(DisplayName))
        })
      )
      .setHeaders(IdempotencyHeaders)
      .addSuccess(AdminUser, { status: 201 })
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Create a user")
      .annotate(
        OpenApi.Description,
        "409 when the email is taken by a user that is not deleted. Accepts Idempotency-Key: a repeat with the same " +
          "key and body within 24 h returns the stored response; the same key with another body is a 409."
      )
  )
  .add(
    HttpApiEndpoint.get("get", "/admin/users/:id")
      .setPath(UserIdParam)
      .addSuccess(AdminUser)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "Get a user (deleted users included)")
      .annotate(
        OpenApi.Description,
        "`deleted_at` tells whether the user is soft-deleted. 404 when no user has this id."
      )
  )
  .add(
    HttpApiEndpoint.patch("update", "/admin/users/:id")
      .setPath(UserIdParam)
      .setPayload(
        Payload({
          password: Schema.optional(Password),
          is_admin: Schema.optional(Schema.Boolean),
          display_name: Schema.optional(Schema.NullOr(DisplayName))
        })
      )
      .addSuccess(AdminUser)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Update a user")
      .annotate(
        OpenApi.Description,
        "A password change revokes the user's refresh tokens. An admin cannot remove their own admin rights (409)."
      )
  )
  .add(
    HttpApiEndpoint.del("delete", "/admin/users/:id")
      .setPath(UserIdParam)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Soft-delete a user")
      .annotate(
        OpenApi.Description,
        "Revokes the user's refresh tokens; they lose access at once. Deleting yourself is a 409."
      )
  )
  .add(
    HttpApiEndpoint.post("restore", "/admin/users/:id/restore")
      .setPath(UserIdParam)
      .addSuccess(AdminUser)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Restore a soft-deleted user")
      .annotate(OpenApi.Description, "409 when another user took the email meanwhile.")
  )
  .middleware(AdminAuthentication)
  .annotate(OpenApi.Title, "Users (admin)")
{}
