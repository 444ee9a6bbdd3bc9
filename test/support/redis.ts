import { Context, Effect, Layer, Logger, Option, Redacted } from "effect"

import { Redis } from "../../src/platform/Redis.js"

/** CI's real Redis when TEST_REDIS_URL is set; the suites then must not skip. */
export const testRedisUrl = Option.fromNullable(process.env.TEST_REDIS_URL).pipe(Option.filter((url) => url !== ""))

/** TEST_REDIS_URL, or a local default for the suites that only run when it is set. */
export const realRedisUrl = Option.getOrElse(testRedisUrl, () => "redis://127.0.0.1:6379")

/** Fails the whole suite (instead of letting it pass without Redis) when TEST_REDIS_URL does not answer. */
export const reachableRedis = Redis.layer(Redacted.make(realRedisUrl)).pipe(
  Layer.tap((context) =>
    Context.get(context, Redis).ping("2 seconds").pipe(
      Effect.mapError((e) => new Error(`TEST_REDIS_URL is set but Redis does not answer: ${e.message}`))
    )
  ),
  Layer.provide(Logger.remove(Logger.defaultLogger))
)
