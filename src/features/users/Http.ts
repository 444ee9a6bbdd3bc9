import { createHash } from "node:crypto"

import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Redacted } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { pageRequest } from "../../domain/Page.js"
import { AdminUser } from "../../domain/User.js"
import { idempotentCreate } from "../../platform/Idempotency.js"
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
        users.create(payload).pipe(
          idempotentCreate("POST /admin/users", headers, createFingerprint(payload), AdminUser)
        ))
      .handle("get", ({ path }) => users.get(path.id))
      .handle("update", ({ path, payload }) => users.update(path.id, payload))
      .handle("delete", ({ path }) => users.delete(path.id))
      .handle("restore", ({ path }) => users.restore(path.id))
  }))
