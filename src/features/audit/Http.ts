import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { pageRequest, toPage } from "../../domain/Page.js"
import { adminOnly } from "../auth/Policy.js"
import { AuditRepo } from "./Repo.js"

export const AuditLive = HttpApiBuilder.group(ChatkitApi, "audit", (handlers) =>
  Effect.gen(function*() {
    const repo = yield* AuditRepo
    return handlers.handle("list", ({ urlParams: { page, page_size, ...filters } }) =>
      adminOnly(
        Effect.gen(function*() {
          const request = pageRequest({ page, page_size })
          // a database failure is the platform's 503/500 (a defect classified there)
          const { items, total } = yield* Effect.orDie(repo.list(filters, request))
          return toPage(request, items, total)
        })
      ))
  }))
