import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { AuditEntry } from "../domain/Audit.js"
import { DateParam, Page, PageParams } from "./schemas.js"
import { AdminAuthentication } from "./Security.js"

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
          // exact: an optional member's "Expected undefined, actual ..." would echo the value
          since: Schema.optionalWith(DateParam("entries created at or after this instant (inclusive)"), {
            exact: true
          }),
          until: Schema.optionalWith(DateParam("entries created before this instant (exclusive)"), { exact: true })
        })
      )
      .addSuccess(Page(AuditEntry))
      .annotate(OpenApi.Summary, "List audit entries")
      .annotate(
        OpenApi.Description,
        "Newest first (created_at desc, id desc). Secrets in `changes` are masked as \"***\". `since` and `until` " +
          "are ISO 8601 date-times with a year from 0001 to 9999 (a date outside that range is a 400)."
      )
  )
  .middleware(AdminAuthentication)
  .annotate(OpenApi.Title, "Audit log (admin)")
{}
