import { Schema } from "effect"

/** API.md section 5. */

export const ModelId = Schema.Int.pipe(Schema.positive(), Schema.brand("ModelId"))
export type ModelId = typeof ModelId.Type

/** The identifier sent to the provider, e.g. `gpt-4o-mini` or `meta-llama/Llama-3.1-70B`. */
export const ModelName = Schema.Trim.pipe(
  Schema.minLength(1),
  Schema.maxLength(200),
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/, {
    message: () => "must start with a letter or digit and hold only letters, digits and . _ : / @ + -"
  })
)
export const ModelDisplayName = Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(200))
export const ModelDescription = Schema.String.pipe(Schema.maxLength(2000))
export const ModelProviderRef = Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(100))

export const Model = Schema.Struct({
  id: ModelId,
  name: Schema.String,
  display_name: Schema.String,
  description: Schema.NullOr(Schema.String),
  provider_id: Schema.NullOr(Schema.String),
  provider_slug: Schema.NullOr(Schema.String),
  supports_reasoning: Schema.Boolean,
  supports_streaming: Schema.Boolean,
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({ identifier: "Model" })
export type Model = typeof Model.Type
