import { Schema } from "effect"

/**
 * A request body schema that reports every bad field at once and refuses unknown fields,
 * so a typo in a PATCH is a 400 instead of a silent no-op.
 */
export const Payload = <Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(fields).annotations({ parseOptions: { errors: "all", onExcessProperty: "error" } })
