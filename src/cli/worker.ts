import { Command } from "@effect/cli"
import { Data, Effect, Layer, Option } from "effect"

import { JobHandlers, MigrateOnStart } from "../App.js"
import { Cache } from "../platform/Cache.js"
import { AppConfig, AppConfigLive } from "../platform/Config.js"
import { DatabaseLive } from "../platform/Database.js"
import { EmbeddingsLive } from "../platform/EmbeddingsLive.js"
import { JobQueueLive } from "../platform/JobQueue.js"
import { LlmProviderLive } from "../platform/LlmProviderLive.js"
import { Redis } from "../platform/Redis.js"
import { LoggerLive, TracingLive } from "../platform/Telemetry.js"

/**
 * `chatkit worker`: job consumers only, no HTTP. It runs the same handlers as the server
 * (thread.title, document.ingest) on the shared Redis (BullMQ) and database, whatever WORKER_MODE
 * says (that setting is the server's), and stops on SIGTERM or SIGINT: running jobs get
 * SHUTDOWN_GRACE_MS to finish, after which BullMQ gives them to another worker.
 */

class WorkerError extends Data.TaggedError("WorkerError")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** What the handlers use, as in main.ts, with the queue consuming in this process. */
const Infrastructure = Layer.mergeAll(Cache.layer, LlmProviderLive, EmbeddingsLive, JobQueueLive({ consume: true }))
  .pipe(
    Layer.provideMerge(Layer.mergeAll(DatabaseLive, Redis.layerOptional))
  )

const Consumers = Layer.effectDiscard(
  Effect.logInfo("worker ready: consuming jobs (SIGTERM stops it)")
).pipe(
  Layer.provide(JobHandlers),
  Layer.provide(MigrateOnStart),
  Layer.provide(Infrastructure),
  Layer.provide(TracingLive),
  Layer.provide(LoggerLive)
)

const runWorker = Effect.gen(function*() {
  const config = yield* AppConfig
  if (Option.isNone(config.redisUrl)) {
    return yield* new WorkerError({
      reason: "chatkit worker needs REDIS_URL: without Redis, jobs run inside the server process (in-process queue)"
    })
  }
  yield* Layer.launch(Consumers).pipe(
    Effect.ensuring(
      Effect.logInfo("worker stopped").pipe(Effect.provide(LoggerLive), Effect.provideService(AppConfig, config))
    )
  )
}).pipe(Effect.provide(AppConfigLive))

export const worker = Command.make("worker", {}, () => runWorker).pipe(
  Command.withDescription(
    "Run job consumers only (no HTTP server) on the shared Redis and database; stops cleanly on SIGTERM"
  )
)
