import { Context, Schema } from "effect"

export const UserId = Schema.Int.pipe(Schema.positive(), Schema.brand("UserId"))
export type UserId = typeof UserId.Type

/** Stored lower-case; compared lower-case. */
export const Email = Schema.Trim.pipe(
  Schema.maxLength(254),
  Schema.pattern(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, { message: () => "must be an email address" }),
  Schema.transform(Schema.String, { strict: true, decode: (s) => s.toLowerCase(), encode: (s) => s })
).annotations({ identifier: "Email", examples: ["ada@example.com"] })

/** API.md section 2: 12-256 characters. */
export const Password = Schema.Redacted(
  Schema.String.pipe(
    Schema.minLength(12, { message: () => "must be at least 12 characters" }),
    Schema.maxLength(256, { message: () => "must be at most 256 characters" })
  )
).annotations({ identifier: "Password" })

export const DisplayName = Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(200))

/** `User` of API.md section 2, as every endpoint returns it. */
export const User = Schema.Struct({
  id: UserId,
  email: Schema.String,
  display_name: Schema.NullOr(Schema.String),
  is_admin: Schema.Boolean,
  is_lti: Schema.Boolean,
  created_at: Schema.Date,
  updated_at: Schema.Date
}).annotations({
  identifier: "User",
  examples: [{
    id: 1 as UserId,
    email: "ada@example.com",
    display_name: "Ada",
    is_admin: false,
    is_lti: false,
    created_at: new Date("2026-11-29T10:00:00.000Z"),
    updated_at: new Date("2026-11-29T10:00:00.000Z")
  }]
})
export type User = typeof User.Type

/** What admins see: a user with its soft-delete marker. */
export const AdminUser = Schema.Struct({
  ...User.fields,
  deleted_at: Schema.NullOr(Schema.Date)
}).annotations({ identifier: "AdminUser" })
export type AdminUser = typeof AdminUser.Type

/** The authenticated caller, re-read from the database on every request (short cache). */
export class CurrentUser extends Context.Tag("chatkit/CurrentUser")<CurrentUser, User>() {}
