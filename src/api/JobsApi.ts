import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { NotFoundProblem } from "../domain/errors.js"
import { Authentication } from "./Security.js"

/** `job_` and up to 64 of [A-Za-z0-9_-], as the jobs table's check (migration 0008). */
export const JobId = Schema.String.pipe(
  Schema.pattern(/^job_[0-9A-Za-z_-]{1,64}$/, {
    message: () => "must be a job id: job_ followed by 1 to 64 of A-Z, a-z, 0-9, '_' and '-'"
  })
).annotations({ identifier: "JobId", examples: ["job_0190f1c4-7b1e-7c3a-9d2e-5f6a7b8c9d0e"] })

export const JobStatus = Schema.Literal("queued", "running", "completed", "failed")

/** API.md section 9. */
export const Job = Schema.Struct({
  id: Schema.String,
  /** document.ingest, thread.title */
  type: Schema.String,
  status: JobStatus,
  /** attempts started so far (3 at most) */
  attempts: Schema.Int,
  /** 0 to 100 */
  progress: Schema.Int,
  /** what the job answered, once completed */
  result: Schema.optional(Schema.Unknown),
  /** the last attempt's error: final once failed, the reason of the retry while queued again */
  error: Schema.optional(Schema.String),
  created_at: Schema.Date,
  started_at: Schema.optional(Schema.Date),
  finished_at: Schema.optional(Schema.Date)
}).annotations({ identifier: "Job" })
export type Job = typeof Job.Type

/** Background jobs (API.md section 9). */
export class JobsApi extends HttpApiGroup.make("jobs")
  .add(
    HttpApiEndpoint.get("get", "/jobs/:id")
      .setPath(Schema.Struct({ id: JobId }))
      .addSuccess(Job)
      .addError(NotFoundProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "A background job")
      .annotate(
        OpenApi.Description,
        "Its state: queued, running, completed (with result) or failed (with a readable error) after 3 attempts " +
          "with exponential backoff. Read by the user it works for or an administrator; 404 for anyone else, " +
          "as for an unknown id. Jobs without an owner (thread titles) are for administrators."
      )
  )
  .annotate(OpenApi.Title, "Jobs")
{}
