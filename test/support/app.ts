import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer, Option } from "effect"

import { PrepareToServe, ServedApi } from "../../src/App.js"
import { makeChatkitClient } from "../../src/client/Client.js"
import { Passwords } from "../../src/features/auth/Passwords.js"
import { SweepInterval } from "../../src/features/threads/AbandonedAnswers.js"
import { Cache } from "../../src/platform/Cache.js"
import { type AppConfig, testConfig } from "../../src/platform/Config.js"
import { EmbeddingsLive } from "../../src/platform/EmbeddingsLive.js"
import { InProcessJobQueueLive } from "../../src/platform/JobQueue.js"
import type { LlmProvider } from "../../src/platform/LlmProvider.js"
import { LlmProviderLive } from "../../src/platform/LlmProviderLive.js"
import { OptionalRedis, Redis } from "../../src/platform/Redis.js"
import { BackgroundScheduling } from "../../src/platform/Scheduling.js"
import { LiveClock, testDatabaseLayer, uniqueSchema } from "./database.js"
import { testRedisUrl } from "./redis.js"

export { testRedisUrl } from "./redis.js"

/** With TEST_REDIS_URL set, a Redis that does not answer fails the suite instead of degrading it. */
const RequireTestRedis = Layer.effectDiscard(
  Effect.flatMap(OptionalRedis, (redis) =>
    Option.isSome(testRedisUrl) && Option.isSome(redis)
      ? Effect.orDieWith(redis.value.ping("2 seconds"), (e) =>
        new Error(`TEST_REDIS_URL is set but Redis does not answer: ${e.message}`))
      : Effect.void)
)

/**
 * The whole application in process on 127.0.0.1:0, migrated, over a fresh database (PGlite in
 * memory, or an own schema of TEST_DATABASE_URL) and Redis when TEST_REDIS_URL is set. Provides
 * an `HttpClient` bound to the server, for `makeChatkitClient()` and raw requests, and `Passwords`
 * (cheap argon2 parameters unless `options.passwords` says otherwise) for seeding users.
 */
export const TestApp = (
  name: string,
  env: Record<string, string> = {},
  options: {
    /** argon2 cost: cheap by default; `Passwords.layer()` for the API.md parameters */
    readonly passwords?: Layer.Layer<Passwords>
    /** the language model: LLM_PROVIDER's (local unless `env` says otherwise) by default */
    readonly llm?: Layer.Layer<LlmProvider, never, AppConfig>
  } = {}
) => {
  // its own Redis key space: every file's schema numbers rows from 1, and limits must not add up across files
  const redis = Option.match(testRedisUrl, {
    onNone: () => ({}),
    onSome: (url) => ({ REDIS_URL: url, REDIS_NAMESPACE: uniqueSchema(name) })
  })
  const config = testConfig({ ...redis, ...env })
  return ServedApi.pipe(
    Layer.provide(PrepareToServe),
    Layer.provideMerge(options.passwords ?? Passwords.layerTest),
    Layer.provide(env.REDIS_URL === undefined ? RequireTestRedis : Layer.empty),
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Cache.layer),
    Layer.provideMerge(options.llm ?? LlmProviderLive),
    Layer.provideMerge(EmbeddingsLive),
    // takeovers have tests of their own; here a look every 30 s would only put background statements
    // into the windows of the tests that count a request's statements
    Layer.provideMerge(InProcessJobQueueLive({ stalledInterval: "1 hour" })),
    // the same for the sweep of abandoned answers (its own tests call it): once at start, then hourly
    Layer.provide(Layer.succeed(SweepInterval, Duration.hours(1))),
    Layer.provideMerge(Redis.layerOptional),
    Layer.provideMerge(testDatabaseLayer(name)),
    Layer.provideMerge(config),
    Layer.provide(LiveClock),
    // as main.ts runs it: every fiber in the background but the token relay
    Layer.provide(BackgroundScheduling)
  )
}

export const chatkitClient = makeChatkitClient()
