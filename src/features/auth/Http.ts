import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { CurrentUser } from "../../domain/User.js"
import { AuthService } from "./Service.js"

export const AuthHandlers = HttpApiBuilder.group(ChatkitApi, "auth", (handlers) =>
  Effect.gen(function*() {
    const auth = yield* AuthService
    return handlers
      .handle("login", ({ payload }) => auth.login(payload.email, payload.password))
      .handle("refresh", ({ payload }) => auth.refresh(payload.refresh_token))
      .handle("logout", ({ payload }) => auth.logout(payload.refresh_token))
      .handle("logoutAll", () => auth.logoutAll)
      .handle("me", () => CurrentUser)
      .handle("usersMe", () => CurrentUser)
      .handle("changePassword", ({ payload }) => auth.changePassword(payload.current_password, payload.new_password))
  }))
