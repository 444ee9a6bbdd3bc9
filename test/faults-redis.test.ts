import { describe, expect, layer } from "@effect/vitest"
import { Context, Duration, Effect, Fiber, Layer, Logger, LogLevel, Schedule } from "effect"

import { TestApp } from "./support/app.js"
import { uniqueSchema } from "./support/database.js"
import { hasRedisServer, type PrivateRedis, privateRedis } from "./support/privateRedis.js"
import { emailOf, raw, session } from "./support/session.js"

/*
 * Redis killed while requests flow, then started again on the same port, under an app in process
 * whose REDIS_URL is a redis-server of this file's own (the machine's shared Redis is never
 * stopped): the cache reads from the database and the limiter counts in memory meanwhile, no
 * request fails, readiness says 503; once Redis is back the same instance writes to it again.
 * Needs only `redis-server` on PATH; the database is TEST_DATABASE_URL's or PGlite, as TestApp's.
 */

class Private extends Context.Tag("test/PrivateRedis")<Private, PrivateRedis>() {}

const NAMESPACE = uniqueSchema("faults_redis")

const App = Layer.unwrapScoped(
  Effect.map(privateRedis, (redis) =>
    Layer.merge(
      TestApp("faults_redis", {
        REDIS_URL: redis.url,
        REDIS_NAMESPACE: NAMESPACE,
        TRUST_PROXY: "1",
        RATE_LIMIT_API_PER_MINUTE: "1000000"
      }),
      Layer.succeed(Private, redis)
    ))
).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))) // a line per request would bury the figures

/** One answer of the load: its status and how long it took. */
interface Sample {
  readonly status: number
  readonly ms: number
}

const timed = <E, R>(request: Effect.Effect<{ readonly status: number }, E, R>) =>
  Effect.map(Effect.timed(request), ([duration, response]): Sample => ({
    status: response.status,
    ms: Math.round(Duration.toMillis(duration))
  }))

const histogram = (samples: ReadonlyArray<Sample>) =>
  samples.reduce<Record<number, number>>((counts, s) => ({ ...counts, [s.status]: (counts[s.status] ?? 0) + 1 }), {})

const cacheKeys = (redis: PrivateRedis) => redis.keys(`chatkit:${NAMESPACE}:*appearance*`)
const limitKeys = (redis: PrivateRedis) => redis.keys(`chatkit:${NAMESPACE}:ratelimit:*`)

describe.skipIf(!hasRedisServer)("Redis stopped while requests flow (a private redis-server)", () => {
  layer(App, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.effect("serves every request through the outage, reports it at readiness, and uses Redis again once it returns", () =>
      Effect.gen(function*() {
        const redis = yield* Private
        const { token } = yield* session("redis-outage")
        const ready = raw("GET", "/health/ready")

        expect(yield* ready).toMatchObject({ status: 200, body: { checks: { redis: { status: "ok" } } } })
        expect((yield* raw("GET", "/api/v1/appearance-settings")).status).toBe(200)
        expect(yield* cacheKeys(redis)).toHaveLength(1)

        // authenticated reads (limiter, user lookup) and cached reads, four at a time, until told to stop
        const samples: Array<Sample> = []
        let flowing = true
        const worker = Effect.whileLoop({
          while: () => flowing,
          body: () =>
            Effect.all([
              timed(raw("GET", "/api/v1/auth/me", { token })),
              timed(raw("GET", "/api/v1/appearance-settings"))
            ]).pipe(Effect.zipLeft(Effect.sleep("10 millis"))),
          step: (pair) => samples.push(...pair)
        })
        const load = yield* Effect.fork(Effect.all([worker, worker, worker, worker], { concurrency: "unbounded" }))
        yield* Effect.sleep("300 millis")

        yield* redis.kill
        const downAt = Date.now()
        const beforeOutage = samples.length
        yield* Effect.sleep("200 millis")
        expect(yield* ready).toMatchObject({
          status: 503,
          body: { status: "degraded", checks: { database: { status: "ok" }, redis: { status: "error" } } }
        })
        // the login limit still holds, counted in this instance's memory: 5 attempts, the 6th refused
        const attempts = []
        for (let i = 0; i < 6; i++) {
          attempts.push(
            (yield* raw("POST", "/api/v1/auth/login", {
              ip: "10.9.9.9",
              body: { email: emailOf("nobody"), password: "wrong password, 12+" }
            })).status
          )
        }
        expect(attempts).toEqual([401, 401, 401, 401, 401, 429])
        yield* Effect.sleep("1 second")
        const duringOutage = samples.length - beforeOutage

        yield* redis.start
        const upAt = Date.now()
        // the client reconnects on its own (backoff capped at 5 s): readiness says so without a restart
        yield* ready.pipe(
          Effect.filterOrFail((answer) => answer.status === 200),
          Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("10 seconds")))
        )
        const recoveredMs = Date.now() - upAt
        flowing = false
        yield* Fiber.join(load)

        // the restarted server is empty: these keys were written after it came back
        expect((yield* raw("GET", "/api/v1/appearance-settings")).status).toBe(200)
        expect(yield* cacheKeys(redis)).toHaveLength(1)
        expect((yield* raw("GET", "/api/v1/auth/me", { token })).status).toBe(200)
        expect((yield* limitKeys(redis)).length).toBeGreaterThan(0)

        const slowest = Math.max(...samples.map((s) => s.ms))
        console.log(
          `Redis outage: ${samples.length} requests (${duringOutage} during ${upAt - downAt} ms down), ` +
            `statuses ${JSON.stringify(histogram(samples))}, slowest ${slowest} ms; ` +
            `readiness 200 again ${recoveredMs} ms after Redis restarted`
        )
        expect(histogram(samples)).toEqual({ 200: samples.length })
        expect(duringOutage).toBeGreaterThan(20)
        expect(slowest).toBeLessThan(1_500)
      }))
  })
})
