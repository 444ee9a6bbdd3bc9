import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { CurrentUser } from "../../domain/User.js"
import { JobsService } from "./Service.js"

/** Background jobs (API.md section 9): a job's state for its owner or an administrator. */
export const JobsHandlers = HttpApiBuilder.group(ChatkitApi, "jobs", (handlers) =>
  Effect.gen(function*() {
    const jobs = yield* JobsService
    return handlers.handle("get", ({ path }) => Effect.flatMap(CurrentUser, (caller) => jobs.get(path.id, caller)))
  }))
