import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { ModelName } from "../domain/Model.js"
import {
  AccentColor,
  AppearanceSettings,
  AppSettings,
  ColorScheme,
  Disclaimer,
  Greeting,
  ModelProviderInput,
  Placeholder,
  RadiusStyle,
  ThreadTitlePrompt
} from "../domain/Settings.js"
import { Payload } from "./schemas.js"
import { AdminAuthentication } from "./Security.js"

/** Application and appearance settings (API.md section 4). */
export class SettingsApi extends HttpApiGroup.make("settings")
  .add(
    HttpApiEndpoint.get("getAppSettings", "/admin/app-settings")
      .addSuccess(AppSettings)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Application settings (admin)")
      .annotate(
        OpenApi.Description,
        "API keys are never returned, only `api_key_hint` (`••••` and the last 4 characters of keys of 16 characters or more)."
      )
  )
  .add(
    HttpApiEndpoint.patch("updateAppSettings", "/admin/app-settings")
      .setPayload(
        Payload({
          thread_title_prompt: Schema.optional(ThreadTitlePrompt),
          thread_title_model: Schema.optional(ModelName),
          default_model: Schema.optional(ModelName),
          model_providers: Schema.optional(Schema.Array(ModelProviderInput).pipe(Schema.maxItems(20)))
        })
      )
      .addSuccess(AppSettings)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Update application settings (admin)")
      .annotate(
        OpenApi.Description,
        "Absent fields stay as they are. `model_providers` (at most 20) replaces the stored list: an entry with the " +
          "`id` of a stored provider keeps its API key unless `api_key` (a new key) or `delete_api_key: true` is given; an " +
          "entry without `id` is a new provider; stored providers not listed are removed. At most one entry may be " +
          "`is_default`; `openai_compatible` needs `api_base`. API keys are encrypted at rest (AES-256-GCM) and never returned."
      )
  )
  .add(
    HttpApiEndpoint.get("getAdminAppearance", "/admin/appearance-settings")
      .addSuccess(AppearanceSettings)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Appearance settings (admin)")
      .annotate(
        OpenApi.Description,
        "The same document as the public GET /api/v1/appearance-settings, for the admin editor. Read through the cache."
      )
  )
  .add(
    HttpApiEndpoint.patch("updateAppearance", "/admin/appearance-settings")
      .setPayload(
        Payload({
          color_scheme: Schema.optional(ColorScheme),
          accent_color: Schema.optional(AccentColor),
          radius_style: Schema.optional(RadiusStyle),
          greeting: Schema.optional(Greeting),
          placeholder: Schema.optional(Placeholder),
          disclaimer: Schema.optional(Disclaimer)
        })
      )
      .addSuccess(AppearanceSettings)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Update appearance settings (admin)")
      .annotate(
        OpenApi.Description,
        "Absent fields stay as they are. color_scheme: system|light|dark; accent_color: #RRGGBB; radius_style: " +
          "none|small|medium|large|full (square to pill-shaped corners); greeting and placeholder: at most 200 " +
          "characters; disclaimer: at most 1000."
      )
  )
  .add(
    HttpApiEndpoint.get("getAppearance", "/appearance-settings")
      .addSuccess(AppearanceSettings)
      .annotate(OpenApi.Summary, "Appearance settings (public)")
      .annotate(OpenApi.Description, "No authentication: the chat UI reads it before login.")
  )
  .annotate(OpenApi.Title, "Settings")
{}
