import { Effect, Schema } from "effect"

import { orDieOnSqlError } from "../../platform/Database.js"
import { JobQueue, PermanentJobFailure } from "../../platform/JobQueue.js"
import { complete } from "../../platform/LlmProvider.js"
import { SettingsService } from "../settings/Service.js"
import { LlmRouter } from "./LlmRouter.js"
import { ThreadsRepo } from "./Repo.js"

/**
 * Thread titles (issue 10, point 6): after a thread's first turn, a `thread.title` job asks the
 * app settings' `thread_title_model` (with `thread_title_prompt`) for a short title and stores it,
 * unless the thread was renamed or deleted meanwhile. The local model derives one from the message.
 */

export const THREAD_TITLE_JOB = "thread.title"

export const MAX_TITLE_LENGTH = 100

const TitleJob = Schema.Struct({ thread_id: Schema.String, message: Schema.String })
type TitleJob = typeof TitleJob.Type

/** A model's answer as a title: one line, no surrounding quotes or "Title:", at most 100 characters. */
export const cleanTitle = (answer: string): string => {
  const line = answer.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== "") ?? ""
  const bare = line.replace(/^title\s*:\s*/i, "").replace(/^["'«“‘`*]+|["'»”’`*.]+$/gu, "").replace(/\s+/g, " ").trim()
  const chars = [...bare]
  return chars.length <= MAX_TITLE_LENGTH ? bare : `${chars.slice(0, MAX_TITLE_LENGTH - 1).join("").trimEnd()}…`
}

/** What the offline model titles a thread: the first message's first words. */
export const localTitle = (message: string): string => {
  const words = message.split(/\s+/).filter((word) => word !== "")
  return cleanTitle(words.length <= 8 ? words.join(" ") : `${words.slice(0, 8).join(" ")}…`)
}

export class ThreadTitles extends Effect.Service<ThreadTitles>()("chatkit/ThreadTitles", {
  effect: Effect.gen(function*() {
    const repo = yield* ThreadsRepo
    const settings = yield* SettingsService
    const router = yield* LlmRouter
    const jobs = yield* JobQueue

    const titleFor = (message: string) =>
      Effect.gen(function*() {
        const app = yield* settings.getAppSettings
        const { model, provider } = yield* router.route(app.thread_title_model)
        // the offline model only echoes: a title from the message itself is more useful
        if (provider.name === "local") return localTitle(message)
        const answer = yield* complete(provider, {
          model,
          messages: [{ role: "system", content: app.thread_title_prompt }, { role: "user", content: message }]
        })
        return cleanTitle(answer)
      })

    /** The job: a title, stored only if the thread still has none (a rename by its owner wins). */
    const run = (job: TitleJob) =>
      Effect.gen(function*() {
        const title = yield* titleFor(job.message)
        if (title === "") return yield* Effect.fail(new Error("the model answered no title"))
        yield* repo.setTitleIfUntitled(job.thread_id, title)
      }).pipe(orDieOnSqlError, Effect.withSpan("ThreadTitles.run"))

    yield* jobs.register(THREAD_TITLE_JOB, (payload) =>
      Effect.flatMap(
        Schema.decodeUnknown(TitleJob)(payload).pipe(
          Effect.mapError(() => new PermanentJobFailure({ reason: "the thread.title job's payload is malformed" }))
        ),
        run
      ))

    /**
     * Queues the title of a thread whose first message is `message` (a system job: no owner, so
     * admins read it). A title is a nicety: a queue that refuses the job leaves the thread untitled
     * and the turn unharmed.
     */
    const request = (threadId: string, message: string) =>
      jobs.enqueue(THREAD_TITLE_JOB, { thread_id: threadId, message } satisfies TitleJob).pipe(
        Effect.asVoid,
        Effect.catchTag(
          "JobQueueUnavailable",
          (error) =>
            Effect.logWarning("thread title not queued", error.message).pipe(
              Effect.annotateLogs({ thread_id: threadId })
            )
        )
      )

    return { request } as const
  }),
  dependencies: [ThreadsRepo.Default, SettingsService.Default, LlmRouter.Default]
}) {}
