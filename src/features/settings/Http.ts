import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { adminOnly } from "../auth/Policy.js"
import { SettingsService } from "./Service.js"

/** Application and appearance settings (API.md section 4); only getAppearance is public. */
export const SettingsLive = HttpApiBuilder.group(ChatkitApi, "settings", (handlers) =>
  Effect.gen(function*() {
    const settings = yield* SettingsService
    return handlers
      .handle("getAppSettings", () => settings.getAppSettings.pipe(adminOnly))
      .handle("updateAppSettings", ({ payload }) => settings.updateAppSettings(payload).pipe(adminOnly))
      .handle("getAdminAppearance", () => settings.getAppearance.pipe(adminOnly))
      .handle("updateAppearance", ({ payload }) => settings.updateAppearance(payload).pipe(adminOnly))
      .handle("getAppearance", () => settings.getAppearance)
  }))
