import { createHash } from "node:crypto"

import { HttpApiBuilder } from "@effect/platform"
import { Effect, Redacted } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { CurrentUser } from "../../api/Security.js"
import { pageRequest } from "../../domain/Page.js"
import { AdminUser } from "../../domain/User.js"
import { withIdempotency } from "../../platform/Idempotency.js"
import { adminOnly } from "../auth/Policy.js"
import { type CreateUserInput, UsersService } from "./Service.js"

/**
 * What an Idempotency-Key repeat must match: the decoded body with the password replaced by its
 * SHA-256, so the fingerprint never depends on, nor stores, a plain password.
 */
const createFingerprint = (payload: CreateUserInput) => ({
  ...payload,
  password: createHash("sha256").update(Redacted.value(payload.password)).digest("hex")
})

/** Admin user management (API.md section 3); every handler is admin only. */
export const UsersLive = HttpApiBuilder.group(ChatkitApi, "users", (handlers) =>
  Effect.gen(function*() {
    const users = yield* UsersService
    return handlers
      .handle("list", ({ urlParams }) =>
        users.list({ page: pageRequest(urlParams), q: urlParams.q, includeDeleted: urlParams.include_deleted ?? false })
          .pipe(
            adminOnly
          ))
      .handle("create", ({ headers, payload }) =>
        CurrentUser.pipe(
          Effect.flatMap((caller) =>
            withIdempotency(
              {
                key: headers["idempotency-key"],
                scope: `user:${caller.id}:POST /admin/users`,
                request: createFingerprint(payload),
                success: AdminUser,
                status: 201
              },
              users.create(payload)
            )
          ),
          adminOnly
        ))
      .handle("get", ({ path }) =>
        users.get(path.id).pipe(adminOnly))
      .handle("update", ({ path, payload }) =>
        CurrentUser.pipe(
          Effect.flatMap((caller) =>
            users.update(path.id, payload, caller)
          ),
          adminOnly
        ))
      .handle("delete", ({ path }) =>
        CurrentUser.pipe(
          Effect.flatMap((caller) => users.delete(path.id, caller)),
          adminOnly
        ))
      .handle("restore", ({ path }) => users.restore(path.id).pipe(adminOnly))
  }))
