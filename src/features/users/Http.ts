import { createHash } from "node:crypto"

import { HttpApiBuilder } from "@effect/platform"
import { Effect, Redacted } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { CurrentUser } from "../../api/Security.js"
import { pageRequest } from "../../domain/Page.js"
import { AdminUser } from "../../domain/User.js"
import { withIdempotency } from "../../platform/Idempotency.js"
import { type CreateUserInput, UsersService } from "./Service.js"

/**
 * What an Idempotency-Key repeat must match: the decoded body with the password replaced by its
 * SHA-256, so the fingerprint never depends on, nor stores, a plain password.
 */
const createFingerprint = (payload: CreateUserInput) => ({
  ...payload,
  password: createHash("sha256").update(Redacted.value(payload.password)).digest("hex")
})

/** Admin user management (API.md section 3); every endpoint is admin only through AdminAuthentication. */
export const UsersHandlers = HttpApiBuilder.group(ChatkitApi, "users", (handlers) =>
  Effect.gen(function*() {
    const users = yield* UsersService
    return handlers
      .handle("list", ({ urlParams }) =>
        users.list({
          page: pageRequest(urlParams),
          q: urlParams.q,
          includeDeleted: urlParams.include_deleted ?? false
        }))
      .handle("create", ({ headers, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          withIdempotency(
            {
              key: headers["idempotency-key"],
              scope: `user:${caller.id}:POST /admin/users`,
              request: createFingerprint(payload),
              success: AdminUser,
              status: 201
            },
            users.create(payload)
          )))
      .handle("get", ({ path }) => users.get(path.id))
      .handle(
        "update",
        ({ path, payload }) => Effect.flatMap(CurrentUser, (caller) => users.update(path.id, payload, caller))
      )
      .handle("delete", ({ path }) => Effect.flatMap(CurrentUser, (caller) => users.delete(path.id, caller)))
      .handle("restore", ({ path }) => users.restore(path.id))
  }))
