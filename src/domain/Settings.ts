import { Schema } from "effect"

/** API.md section 4. */

export const ProviderKind = Schema.Literal("openai", "openai_compatible").annotations({ identifier: "ProviderKind" })
export type ProviderKind = typeof ProviderKind.Type

export const ProviderId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_-]{1,64}$/, { message: () => "must be 1-64 of [A-Za-z0-9_-]" })
)

/** http(s) URL of an OpenAI-style API, up to 2048 characters. */
export const ApiBase = Schema.Trim.pipe(
  Schema.maxLength(2048),
  Schema.pattern(/^https?:\/\/[^\s/?#]+[^\s]*$/, { message: () => "must be an http(s) URL" })
)

/** A model provider as every response shows it: never the key, only its hint. */
export const ModelProvider = Schema.Struct({
  id: Schema.String,
  provider: ProviderKind,
  api_base: Schema.NullOr(Schema.String),
  api_key_hint: Schema.NullOr(Schema.String).annotations({
    description:
      "`••••` and the key's last 4 characters (keys under 16 characters show none); null when no key is stored"
  }),
  is_default: Schema.Boolean
}).annotations({ identifier: "ModelProvider" })
export type ModelProvider = typeof ModelProvider.Type

export const AppSettings = Schema.Struct({
  thread_title_prompt: Schema.String,
  thread_title_model: Schema.String,
  default_model: Schema.String,
  model_providers: Schema.Array(ModelProvider),
  updated_at: Schema.Date
}).annotations({ identifier: "AppSettings" })
export type AppSettings = typeof AppSettings.Type

export const ThreadTitlePrompt = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(4000))

/** One entry of a PATCH's `model_providers`. */
export const ModelProviderInput = Schema.Struct({
  id: Schema.optional(ProviderId).annotations({
    description: "an existing provider's id: keeps its stored key unless api_key or delete_api_key is given"
  }),
  provider: ProviderKind,
  api_base: Schema.optional(Schema.NullOr(ApiBase)).annotations({ description: "required for openai_compatible" }),
  api_key: Schema.optional(Schema.Redacted(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(1000)))),
  delete_api_key: Schema.optional(Schema.Boolean),
  is_default: Schema.optional(Schema.Boolean)
}).annotations({
  identifier: "ModelProviderInput",
  parseOptions: { errors: "all", onExcessProperty: "error" }
})
export type ModelProviderInput = typeof ModelProviderInput.Type

export const ColorScheme = Schema.Literal("system", "light", "dark")
export const AccentColor = Schema.String.pipe(
  Schema.pattern(/^#[0-9A-Fa-f]{6}$/, { message: () => "must be a colour #RRGGBB" })
).annotations({ examples: ["#2563EB"] })
/** Corner rounding of the chat UI, from square to pill-shaped. */
export const RadiusStyle = Schema.Literal("none", "small", "medium", "large", "full")
export const Greeting = Schema.String.pipe(Schema.maxLength(200))
export const Placeholder = Schema.String.pipe(Schema.maxLength(200))
export const Disclaimer = Schema.String.pipe(Schema.maxLength(1000))

export const AppearanceSettings = Schema.Struct({
  color_scheme: ColorScheme,
  accent_color: Schema.String,
  radius_style: RadiusStyle,
  greeting: Schema.String,
  placeholder: Schema.String,
  disclaimer: Schema.String
}).annotations({ identifier: "AppearanceSettings" })
export type AppearanceSettings = typeof AppearanceSettings.Type
