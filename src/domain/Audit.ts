import { Schema } from "effect"

/** One audit_logs row (API.md section 0, "Audit"). */
export const AuditEntry = Schema.Struct({
  id: Schema.Int,
  user_id: Schema.NullOr(Schema.Int),
  action: Schema.String,
  resource_type: Schema.String,
  resource_id: Schema.NullOr(Schema.String),
  changes: Schema.Unknown,
  request_id: Schema.NullOr(Schema.String),
  ip: Schema.NullOr(Schema.String),
  created_at: Schema.Date
}).annotations({ identifier: "AuditEntry" })
export type AuditEntry = typeof AuditEntry.Type
