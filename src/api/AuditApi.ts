import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { AuditEntry } from "../domain/Audit.js"
import { ForbiddenProblem } from "./errors.js"
import { Page, PageParams } from "./schemas.js"
import { Authentication } from "./Security.js"

/** The audit trail (API.md section 10), admin only. */
export class AuditApi extends HttpApiGroup.make("audit")
  .add(
    HttpApiEndpoint.get("list", "/admin/audit-logs")
      .setUrlParams(
        Schema.Struct({
          ...PageParams,
          user_id: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.positive())),
          action: Schema.optional(Schema.String.pipe(Schema.maxLength(100))),
          resource_type: Schema.optional(Schema.String.pipe(Schema.maxLength(100))),
          resource_id: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
          since: Schema.optional(Schema.Date.annotations({ description: "ISO 8601, inclusive" })),
          until: Schema.optional(Schema.Date.annotations({ description: "ISO 8601, exclusive" }))
        })
      )
      .addSuccess(Page(AuditEntry))
      .addError(ForbiddenProblem)
      .annotate(OpenApi.Summary, "List audit entries")
      .annotate(OpenApi.Description, "Newest first (created_at desc, id desc). Secrets in `changes` are masked as \"***\".")
  )
  .middleware(Authentication)
  .annotate(OpenApi.Title, "Audit log (admin)")
{}
