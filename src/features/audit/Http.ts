import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { pageRequest, toPage } from "../../domain/Page.js"
import { AuditRepo } from "./Repo.js"

/** The audit trail (API.md section 10), admin only through AdminAuthentication (api/AuditApi.ts). */
export const AuditHandlers = HttpApiBuilder.group(ChatkitApi, "audit", (handlers) =>
  Effect.gen(function*() {
    const repo = yield* AuditRepo
    return handlers.handle("list", ({ urlParams: { page, page_size, ...filters } }) => {
      const request = pageRequest({ page, page_size })
      // a database failure is the platform's 503/500 (a defect classified there)
      return repo.list(filters, request).pipe(
        Effect.orDie,
        Effect.map(({ items, total }) => toPage(request, items, total))
      )
    })
  }))
