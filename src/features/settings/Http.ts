import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { SettingsService } from "./Service.js"

/**
 * Application and appearance settings (API.md section 4); only getAppearance is public, the rest
 * are admin only through AdminAuthentication (api/SettingsApi.ts).
 */
export const SettingsHandlers = HttpApiBuilder.group(ChatkitApi, "settings", (handlers) =>
  Effect.gen(function*() {
    const settings = yield* SettingsService
    return handlers
      .handle("getAppSettings", () => settings.getAppSettings)
      .handle("updateAppSettings", ({ payload }) => settings.updateAppSettings(payload))
      .handle("getAdminAppearance", () => settings.getAppearance)
      .handle("updateAppearance", ({ payload }) => settings.updateAppearance(payload))
      .handle("getAppearance", () => settings.getAppearance)
  }))
