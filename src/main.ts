import { setFlagsFromString } from "node:v8"

import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"

import { PrepareToServe, ServedApi } from "./App.js"
import { Passwords } from "./features/auth/Passwords.js"
import { Cache } from "./platform/Cache.js"
import { AppConfig, AppConfigLive } from "./platform/Config.js"
import { DatabaseLive } from "./platform/Database.js"
import { EmbeddingsLive } from "./platform/EmbeddingsLive.js"
import { GcMetricsLive } from "./platform/GcMetrics.js"
import { JobQueueLive } from "./platform/JobQueue.js"
import { LlmProviderLive } from "./platform/LlmProviderLive.js"
import { Redis } from "./platform/Redis.js"
import { BackgroundScheduling } from "./platform/Scheduling.js"
import { makeServer } from "./platform/Server.js"
import { LoggerLive, TracingLive } from "./platform/Telemetry.js"
import { HelperThreadsLowered } from "./platform/ThreadPriority.js"

const WarnOnGeneratedSecret = Layer.effectDiscard(
  Effect.flatMap(AppConfig, (config) =>
    config.authSecretKeyGenerated
      ? Effect.logWarning(
        "AUTH_SECRET_KEY is not set: using a random key for this run; tokens will not survive a restart"
      )
      : Effect.void)
)

/**
 * Infrastructure every feature may use: one database pool, one Redis client, the cache, argon2id
 * at API.md's cost, the language model and the embeddings of the environment, the background jobs
 * (BullMQ on Redis or in-process; this process consumes them unless WORKER_MODE=off), and the
 * garbage collector's pauses on /metrics.
 */
const Infrastructure = Layer.mergeAll(
  Cache.layer,
  GcMetricsLive,
  Passwords.layer(),
  LlmProviderLive,
  EmbeddingsLive,
  JobQueueLive()
).pipe(
  Layer.provideMerge(Layer.mergeAll(DatabaseLive, Redis.layerOptional))
)

const Application = Layer.unwrapEffect(
  Effect.map(makeServer, ({ GracefulShutdown, LogAddress, ServerLive, ShutdownLive }) =>
    // Built outermost first: migrations and bootstrap, then the port opens, then the Api serves;
    // GracefulShutdown is built last so that, at shutdown, it drains requests first; the helper
    // threads are lowered once they all exist.
    Layer.mergeAll(GracefulShutdown, LogAddress, HelperThreadsLowered).pipe(
      Layer.provide(ServedApi),
      Layer.provide(ServerLive),
      Layer.provide(PrepareToServe),
      Layer.provide(ShutdownLive)
    ))
).pipe(
  Layer.provide(WarnOnGeneratedSecret),
  Layer.provide(Infrastructure),
  Layer.provide(TracingLive),
  Layer.provide(LoggerLive),
  Layer.provide(AppConfigLive),
  // built first: every fiber of the server runs in the background but the token relay (inForeground),
  // so that a token waits behind a slice of other work at most
  Layer.provide(BackgroundScheduling)
)

/** Start-up failures (bad configuration, unreachable database) print one clear message and exit 1. */
const program = Layer.launch(Application).pipe(
  Effect.catchAll((error) =>
    Effect.sync(() => {
      process.stderr.write(`chatkit-backend failed to start: ${error.message}\n`)
      process.exitCode = 1
    })
  )
)

// After each full GC V8 lets the old space grow to up to 4x what survived; under load that is
// 100+ MB of garbage kept as RSS. Growing by 30 % holds RSS near its idle size for the same
// throughput (bench/http.ts, issue 11's note).
setFlagsFromString("--heap-growing-percent=30")

NodeRuntime.runMain(program, { disablePrettyLogger: true })
