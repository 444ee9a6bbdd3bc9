import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { pageRequest } from "../../domain/Page.js"
import { renderedJsonResponse } from "../../platform/Http.js"
import { ModelsService } from "./Service.js"

/**
 * The model catalog (API.md section 5): the list for every user, the rest admin only through
 * AdminAuthentication (api/ModelsApi.ts).
 */
export const ModelsHandlers = HttpApiBuilder.group(ChatkitApi, "models", (handlers) =>
  Effect.gen(function*() {
    const models = yield* ModelsService
    return handlers
      // pages are served as their cached rendering; the client still decodes them with Page(Model)
      .handle("list", ({ urlParams }) => models.listJson(pageRequest(urlParams)).pipe(Effect.map(renderedJsonResponse)))
      .handle("adminList", ({ urlParams }) =>
        models.listJson(pageRequest(urlParams)).pipe(Effect.map(renderedJsonResponse)))
      .handle("create", ({ payload }) =>
        models.create(payload))
      .handle("update", ({ path, payload }) => models.update(path.id, payload))
      .handle("delete", ({ path }) => models.delete(path.id))
  }))
