import { randomBytes } from "node:crypto"

import { describe, expect, layer } from "@effect/vitest"
import {
  Duration,
  Effect,
  Either,
  Layer,
  Logger,
  Metric,
  Option,
  Redacted,
  Ref,
  Schedule,
  Schema,
  type Scope,
  TestClock
} from "effect"

import { Cache, makeMemoryCache, makeRedisCache } from "../src/platform/Cache.js"
import { testConfig } from "../src/platform/Config.js"
import { cacheErrorsTotal, cacheRequestsTotal } from "../src/platform/Metrics.js"
import { redisKeyRoot } from "../src/platform/Redis.js"
import { makeRedis, OptionalRedis, Redis, RedisError, RedisLive, type RedisService } from "../src/platform/Redis.js"
import { captureLogs } from "./support/logs.js"
import { stalledServer } from "./support/network.js"
import { hasRedisServer, privateRedis } from "./support/privateRedis.js"
import { reachableRedis, realRedisUrl, testRedisUrl } from "./support/redis.js"

const unique = (label: string) => `${label}${randomBytes(4).toString("hex")}`

const Profile = Schema.Struct({ name: Schema.String, age: Schema.Number })
const Article = Schema.Struct({ title: Schema.String })
const ada = { name: "Ada", age: 36 }

const requestCount = (cache: string, result: "hit" | "miss") =>
  Effect.map(
    Metric.value(Metric.tagged(Metric.tagged(cacheRequestsTotal, "cache", cache), "result", result)),
    (state) => state.count
  )

const errorCount = (cache: string, operation: "get" | "set" | "delete" | "invalidate") =>
  Effect.map(
    Metric.value(Metric.tagged(Metric.tagged(cacheErrorsTotal, "cache", cache), "operation", operation)),
    (state) => state.count
  )

/** The effect's result and its wall-clock duration in milliseconds. */
const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const result = yield* effect
    return [result, performance.now() - start] as const
  })

type Test = (name: string, self: () => Effect.Effect<void, unknown, Cache>) => void

interface Harness {
  readonly test: Test
  /** Lets `duration` pass: TestClock for the memory cache, real time for Redis. */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
}

/** The contract both implementations must honour. */
const cacheContract = ({ advance, test }: Harness) => {
  test("a set value is read back; an absent key is a miss", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const key = `${unique("profile")}:1`
      expect(yield* cache.get(key, Profile)).toEqual(Option.none())
      yield* cache.set(key, ada, Profile)
      expect(yield* cache.get(key, Profile)).toEqual(Option.some(ada))
      yield* cache.set(key, { ...ada, age: 37 }, Profile)
      expect(yield* cache.get(key, Profile)).toEqual(Option.some({ ...ada, age: 37 }))
    }))

  test("an entry is gone once its TTL has passed", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const key = `${unique("ttl")}:1`
      yield* cache.set(key, ada, Profile, "200 millis")
      expect(yield* cache.get(key, Profile)).toEqual(Option.some(ada))
      yield* advance("350 millis")
      expect(yield* cache.get(key, Profile)).toEqual(Option.none())
    }))

  test("delete removes the given keys only, and accepts absent keys", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const name = unique("del")
      yield* Effect.forEach(["a", "b", "c"], (k) => cache.set(`${name}:${k}`, ada, Profile))
      yield* cache.delete(`${name}:a`, `${name}:b`, `${name}:absent`)
      yield* cache.delete()
      expect(yield* cache.get(`${name}:a`, Profile)).toEqual(Option.none())
      expect(yield* cache.get(`${name}:b`, Profile)).toEqual(Option.none())
      expect(yield* cache.get(`${name}:c`, Profile)).toEqual(Option.some(ada))
    }))

  test("invalidatePrefix removes exactly the keys under that prefix (whole segments)", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const u = unique("user")
      const other = unique("org")
      const keys = [
        `${u}:1`,
        `${u}:1:profile`,
        `${u}:1:settings:theme`,
        `${u}:10`,
        `${u}:10:profile`,
        `${u}:2:profile`,
        `${u}x:1`,
        `${other}:1`
      ]
      yield* Effect.forEach(keys, (k) => cache.set(k, ada, Profile))
      const present = () => Effect.filter(keys, (k) => Effect.map(cache.get(k, Profile), Option.isSome))

      yield* cache.invalidatePrefix(`${u}:1`)
      expect(yield* present()).toEqual([`${u}:10`, `${u}:10:profile`, `${u}:2:profile`, `${u}x:1`, `${other}:1`])

      // a trailing ":" names the same prefix
      yield* cache.invalidatePrefix(`${u}:10:`)
      expect(yield* present()).toEqual([`${u}:2:profile`, `${u}x:1`, `${other}:1`])

      // the invalidated keys are usable again at once
      yield* cache.set(`${u}:1:profile`, { ...ada, age: 1 }, Profile)
      expect(yield* cache.get(`${u}:1:profile`, Profile)).toEqual(Option.some({ ...ada, age: 1 }))

      yield* cache.invalidatePrefix(u)
      expect(yield* present()).toEqual([`${u}x:1`, `${other}:1`])
    }))

  test("invalidatePrefix(\"\") invalidates everything", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const a = `${unique("all")}:1`
      const b = `${unique("all")}:2:x`
      yield* cache.set(a, ada, Profile)
      yield* cache.set(b, ada, Profile)
      yield* cache.invalidatePrefix("")
      expect(yield* cache.get(a, Profile)).toEqual(Option.none())
      expect(yield* cache.get(b, Profile)).toEqual(Option.none())
    }))

  test("an entry its schema rejects is a miss; a value its schema rejects is not stored and does not fail", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const name = unique("garbled")
      const key = `${name}:1`
      yield* cache.set(key, ada, Profile)
      const misses = yield* requestCount(name, "miss")
      expect(yield* cache.get(key, Article)).toEqual(Option.none())
      expect((yield* requestCount(name, "miss")) - misses).toBe(1)
      // getOrLoad overwrites the unreadable entry
      expect(yield* cache.getOrLoad(key, Article, Effect.succeed({ title: "fresh" }))).toEqual({ title: "fresh" })
      expect(yield* cache.get(key, Article)).toEqual(Option.some({ title: "fresh" }))

      const bad = `${name}:2`
      yield* cache.set(bad, 1.5, Schema.Int)
      expect(yield* cache.get(bad, Schema.Number)).toEqual(Option.none())
      expect(yield* errorCount(name, "set")).toBe(1)
    }))

  test("getOrLoad loads once, then hits; a failed load is not cached", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const key = `${unique("load")}:1`
      const loads = yield* Ref.make(0)
      const load = Effect.map(Ref.updateAndGet(loads, (n) => n + 1), (n) => ({ name: "loaded", age: n }))
      expect(yield* cache.getOrLoad(key, Profile, load)).toEqual({ name: "loaded", age: 1 })
      expect(yield* cache.getOrLoad(key, Profile, load)).toEqual({ name: "loaded", age: 1 })
      expect(yield* Ref.get(loads)).toBe(1)

      const failing = `${unique("load")}:2`
      const result = yield* Effect.either(cache.getOrLoad(failing, Profile, Effect.fail("source down" as const)))
      expect(result).toEqual(Either.left("source down"))
      expect(yield* cache.get(failing, Profile)).toEqual(Option.none())
      expect(yield* cache.getOrLoad(failing, Profile, load)).toEqual({ name: "loaded", age: 2 })
    }))

  test("a read-through that overlaps an invalidation does not write its stale value back", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const prefix = `${unique("race")}:7`
      const key = `${prefix}:profile`
      // the load reads the old row, then another writer changes the row and invalidates
      const stale = Effect.as(cache.invalidatePrefix(prefix), { name: "stale", age: 0 })
      expect(yield* cache.getOrLoad(key, Profile, stale)).toEqual({ name: "stale", age: 0 })
      expect(yield* cache.get(key, Profile)).toEqual(Option.none())
    }))

  test("cache_requests_total counts hits and misses by cache name", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const name = unique("metric")
      const hits = yield* requestCount(name, "hit")
      const misses = yield* requestCount(name, "miss")
      yield* cache.get(`${name}:1`, Profile)
      yield* cache.set(`${name}:1`, ada, Profile)
      yield* cache.get(`${name}:1`, Profile)
      yield* cache.getOrLoad(`${name}:1`, Profile, Effect.die("not called"))
      yield* cache.getOrLoad(`${name}:2`, Profile, Effect.succeed(ada))
      expect((yield* requestCount(name, "hit")) - hits).toBe(2)
      expect((yield* requestCount(name, "miss")) - misses).toBe(2)
    }))
}

// ---------------------------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------------------------

layer(Cache.layerMemory().pipe(Layer.provide(testConfig())))("Cache in memory", (it) => {
  cacheContract({ test: (name, self) => it.effect(name, self), advance: (d) => TestClock.adjust(d) })

  it.effect("expires exactly at the TTL, defaults to CACHE_TTL_SECONDS and caps TTLs at 24 h", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const name = unique("clock")
      yield* cache.set(`${name}:exact`, ada, Profile, "10 seconds")
      yield* cache.set(`${name}:default`, ada, Profile)
      yield* cache.set(`${name}:long`, ada, Profile, "30 days")
      yield* TestClock.adjust("9999 millis")
      expect(yield* cache.get(`${name}:exact`, Profile)).toEqual(Option.some(ada))
      yield* TestClock.adjust("1 millis")
      expect(yield* cache.get(`${name}:exact`, Profile)).toEqual(Option.none())
      yield* TestClock.adjust("290 seconds") // 300 s since the set
      expect(yield* cache.get(`${name}:default`, Profile)).toEqual(Option.none())
      expect(yield* cache.get(`${name}:long`, Profile)).toEqual(Option.some(ada))
      yield* TestClock.adjust("24 hours")
      expect(yield* cache.get(`${name}:long`, Profile)).toEqual(Option.none())
    }))

  it.effect("a delete during a read-through also stops its write-back", () =>
    Effect.gen(function*() {
      const cache = yield* Cache
      const key = `${unique("race")}:1`
      expect(yield* cache.getOrLoad(key, Profile, Effect.as(cache.delete(key), ada))).toEqual(ada)
      expect(yield* cache.get(key, Profile)).toEqual(Option.none())
    }))

  it.effect("keeps at most maxEntries, evicting the least recently used", () =>
    Effect.gen(function*() {
      const cache = yield* makeMemoryCache({ maxEntries: 3 })
      const name = unique("lru")
      yield* Effect.forEach(["a", "b", "c"], (k) => cache.set(`${name}:${k}`, ada, Profile))
      yield* cache.get(`${name}:a`, Profile) // a is now more recent than b
      yield* cache.set(`${name}:d`, ada, Profile)
      const present = yield* Effect.filter(["a", "b", "c", "d"], (k) =>
        Effect.map(cache.get(`${name}:${k}`, Profile), Option.isSome))
      expect(present).toEqual(["a", "c", "d"])
    }).pipe(Effect.provide(testConfig())))

  it.effect("without REDIS_URL: no Redis client, Cache.layer is the memory cache, RedisLive refuses", () =>
    Effect.gen(function*() {
      expect(Option.isNone(yield* OptionalRedis)).toBe(true)
      const cache = yield* Cache
      const key = `${unique("embedded")}:1`
      yield* cache.set(key, ada, Profile)
      expect(yield* cache.get(key, Profile)).toEqual(Option.some(ada))
      const live = yield* Effect.either(Effect.scoped(Layer.build(RedisLive.pipe(Layer.provide(testConfig())))))
      expect(Either.isLeft(live) && live.left.message).toBe("Redis configure failed: REDIS_URL is not set")
    }).pipe(
      Effect.provide(Cache.layer.pipe(Layer.provideMerge(Redis.layerOptional), Layer.provideMerge(testConfig())))
    ))
})

// ---------------------------------------------------------------------------------------------
// Redis unreachable or stalled while serving: misses, loads from the source, never fails, never hangs
// ---------------------------------------------------------------------------------------------

const PASSWORD = "s3cret-Pa55word"

const outageContract = (label: string, url: Effect.Effect<string, never, Scope.Scope>) => {
  const logs = captureLogs()
  const namespace = unique("t-down-")
  const outage = Layer.unwrapScoped(Effect.map(url, (u) => Redis.layer(Redacted.make(u)))).pipe(
    Layer.provideMerge(logs.layer)
  )
  const env = Cache.layerRedis({ namespace }).pipe(Layer.provideMerge(outage), Layer.provideMerge(testConfig()))

  layer(env, { excludeTestServices: true, timeout: "20 seconds" })(label, (it) => {
    it.effect("the layer starts anyway, with one warning that names no secret", () =>
      Effect.sync(() => {
        const startup = logs.lines.filter((l) => l.includes("Redis unreachable at start"))
        expect(startup).toHaveLength(1)
        expect(startup[0]).toMatch(/level=WARN/)
        expect(logs.lines.join("\n")).not.toContain(PASSWORD)
      }))

    it.effect("get is a miss, getOrLoad returns the source's value, writes do not fail; all fast", () =>
      Effect.gen(function*() {
        const cache = yield* Cache
        const name = unique("outage")
        const key = `${name}:1`
        const loads = yield* Ref.make(0)
        const load = Effect.as(Ref.update(loads, (n) => n + 1), ada)

        const durations: Array<number> = []
        const [got, t1] = yield* timed(cache.get(key, Profile))
        expect(got).toEqual(Option.none())
        durations.push(t1)
        for (let i = 0; i < 3; i++) {
          const [loaded, t] = yield* timed(cache.getOrLoad(key, Profile, load))
          expect(loaded).toEqual(ada)
          durations.push(t)
        }
        expect(yield* Ref.get(loads)).toBe(3)
        for (
          const op of [
            cache.set(key, ada, Profile),
            cache.delete(key, `${name}:2`),
            cache.invalidatePrefix(name)
          ]
        ) {
          const [result, t] = yield* timed(Effect.exit(op))
          expect(result._tag).toBe("Success")
          durations.push(t)
        }
        expect(Math.max(...durations)).toBeLessThan(1_000)

        expect(yield* requestCount(name, "miss")).toBe(4)
        expect(yield* errorCount(name, "get")).toBe(4)
        expect(yield* errorCount(name, "set")).toBe(1)
        expect(yield* errorCount(name, "delete")).toBe(1)
        expect(yield* errorCount(name, "invalidate")).toBe(1)
        const warnings = logs.lines.filter((l) => l.includes("cache set failed") || l.includes("cache delete failed"))
        expect(warnings.length).toBeGreaterThanOrEqual(2)
        expect(warnings.every((l) => l.includes("level=WARN") && !l.includes(key))).toBe(true)
        expect(logs.lines.join("\n")).not.toContain(PASSWORD)
      }))

    it.effect("ping fails fast with a RedisError that names no secret", () =>
      Effect.gen(function*() {
        const redis = yield* Redis
        const [result, t] = yield* timed(Effect.either(redis.ping("1 second")))
        expect(t).toBeLessThan(1_500)
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) {
          expect(result.left).toBeInstanceOf(RedisError)
          expect(result.left.message).toMatch(/^Redis PING failed: /)
          expect(result.left.message).not.toContain(PASSWORD)
          expect(result.left.message).not.toContain("redis://")
        }
      }))
  })
}

outageContract("Cache while Redis refuses connections", Effect.succeed(`redis://:${PASSWORD}@127.0.0.1:1`))
outageContract(
  "Cache while Redis accepts connections but never answers",
  Effect.map(stalledServer, ({ port }) => `redis://:${PASSWORD}@127.0.0.1:${port}/0`)
)

// ---------------------------------------------------------------------------------------------
// Real Redis (TEST_REDIS_URL)
// ---------------------------------------------------------------------------------------------

/** Deletes every key of a namespace, so test runs leave nothing behind. */
const deleteNamespace = (redis: RedisService, namespace: string) =>
  redis.run(async (client) => {
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `${redisKeyRoot(namespace)}*`, "COUNT", 500)
      if (keys.length > 0) await client.del(...keys)
      cursor = next
    } while (cursor !== "0")
  }, "cleanup").pipe(Effect.ignore)

/** The physical keys holding `key` in `namespace` (any generation). */
const physicalKeys = (redis: RedisService, namespace: string, key: string) =>
  redis.run((client) => client.keys(`${redisKeyRoot(namespace)}d:${key}#*`))

describe.skipIf(Option.isNone(testRedisUrl))("Cache on Redis (TEST_REDIS_URL)", () => {
  const namespace = unique("t-cache-")
  const cleanup = Layer.scopedDiscard(
    Effect.flatMap(Redis, (redis) => Effect.addFinalizer(() => deleteNamespace(redis, namespace)))
  )
  const env = Layer.mergeAll(Cache.layerRedis({ namespace }), cleanup).pipe(
    Layer.provideMerge(reachableRedis),
    Layer.provideMerge(testConfig())
  )

  layer(env, { excludeTestServices: true, timeout: "20 seconds" })((it) => {
    cacheContract({
      test: (name, self) => it.effect(name, self),
      advance: (d) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(d))))
    })

    it.effect("every key lives under chatkit:<namespace>: and carries the default TTL, capped at 24 h", () =>
      Effect.gen(function*() {
        const cache = yield* Cache
        const redis = yield* Redis
        const marker = unique("keys")
        yield* cache.set(`${marker}:default`, ada, Profile)
        yield* cache.set(`${marker}:long`, ada, Profile, "30 days")
        yield* cache.invalidatePrefix(`${marker}:gone`)
        const all = yield* redis.run((c) => c.keys(`*${marker}*`))
        expect(all.length).toBe(3)
        expect(all.every((k) => k.startsWith(`chatkit:${namespace}:`))).toBe(true)
        const [defaultKey] = yield* physicalKeys(redis, namespace, `${marker}:default`)
        const [longKey] = yield* physicalKeys(redis, namespace, `${marker}:long`)
        const defaultTtl = yield* redis.run((c) => c.pttl(defaultKey ?? ""))
        const longTtl = yield* redis.run((c) => c.pttl(longKey ?? ""))
        expect(defaultTtl).toBeGreaterThan(299_000)
        expect(defaultTtl).toBeLessThanOrEqual(300_000)
        expect(longTtl).toBeGreaterThan(86_399_000)
        expect(longTtl).toBeLessThanOrEqual(86_400_000)
      }))

    it.effect("garbage stored under a key is a miss", () =>
      Effect.gen(function*() {
        const cache = yield* Cache
        const redis = yield* Redis
        const key = `${unique("raw")}:1`
        yield* cache.set(key, ada, Profile)
        const [physical] = yield* physicalKeys(redis, namespace, key)
        yield* redis.run((c) => c.set(physical ?? "", "{not json", "PX", 60_000))
        expect(yield* cache.get(key, Profile)).toEqual(Option.none())
      }))

    it.effect("instances sharing a namespace see each other's writes and invalidations; other namespaces do not", () =>
      Effect.gen(function*() {
        const a = yield* Cache
        const redis = yield* Redis
        const b = yield* makeRedisCache(redis, { namespace })
        const elsewhere = yield* makeRedisCache(redis, { namespace: `${namespace}-other` })
        const name = unique("shared")
        yield* a.set(`${name}:1:profile`, ada, Profile)
        yield* a.set(`${name}:2`, ada, Profile)
        expect(yield* b.get(`${name}:1:profile`, Profile)).toEqual(Option.some(ada))
        expect(yield* elsewhere.get(`${name}:1:profile`, Profile)).toEqual(Option.none())
        yield* b.invalidatePrefix(`${name}:1`)
        yield* b.delete(`${name}:2`)
        expect(yield* a.get(`${name}:1:profile`, Profile)).toEqual(Option.none())
        expect(yield* a.get(`${name}:2`, Profile)).toEqual(Option.none())
        yield* deleteNamespace(redis, `${namespace}-other`)
      }))

    it.effect("Redis.ping measures a round trip", () =>
      Effect.gen(function*() {
        const redis = yield* Redis
        const latency = yield* redis.ping()
        expect(latency).toBeGreaterThanOrEqual(0)
        expect(latency).toBeLessThan(1_000)
        expect(redis.target).not.toMatch(/@/)
      }))

    it.effect("with REDIS_URL: Redis.layerOptional, RedisLive and Cache.layer share one client", () =>
      Effect.gen(function*() {
        const optional = yield* OptionalRedis
        const live = yield* Redis
        expect(Option.isSome(optional) && optional.value.client).toBe(live.client)
        expect(live.client.status).toBe("ready")
        const cache = yield* Cache
        const key = `${unique("layer")}:1`
        yield* cache.set(key, ada, Profile)
        expect(yield* live.run((c) => c.keys(`chatkit:d:${key}#*`))).toHaveLength(1)
        yield* cache.delete(key)
        expect(yield* live.run((c) => c.keys(`chatkit:d:${key}#*`))).toHaveLength(0)
      }).pipe(
        Effect.provide(
          Layer.mergeAll(Cache.layer, RedisLive).pipe(
            Layer.provideMerge(Redis.layerOptional),
            Layer.provideMerge(testConfig({ REDIS_URL: realRedisUrl })),
            Layer.provide(Logger.remove(Logger.defaultLogger))
          )
        )
      ))

    it.effect("duplicate opens a second, connected client with its own options, closed with its scope", () =>
      Effect.gen(function*() {
        const redis = yield* Redis
        const copy = yield* Effect.scoped(Effect.gen(function*() {
          const copy = yield* redis.duplicate({ maxRetriesPerRequest: null })
          expect(copy).not.toBe(redis.client)
          expect(copy.options.maxRetriesPerRequest).toBeNull()
          expect(yield* Effect.promise(() => copy.ping())).toBe("PONG")
          return copy
        }))
        expect(copy.status).toBe("end")
        expect(redis.client.status).toBe("ready")
      }))

    it.effect("the client is closed when its scope ends", () =>
      Effect.gen(function*() {
        const redis = yield* Effect.scoped(
          Effect.tap(makeRedis(Redacted.make(realRedisUrl)), (r) =>
            Effect.sync(() => expect(r.client.status).toBe("ready")))
        )
        expect(redis.client.status).toBe("end")
      }).pipe(Effect.provide(Logger.remove(Logger.defaultLogger))))
  })
})

// ---------------------------------------------------------------------------------------------
// Recovery: a Redis that starts after the app, then goes away again (needs redis-server on PATH)
// ---------------------------------------------------------------------------------------------

describe.skipIf(!hasRedisServer)("Cache across a Redis outage (local redis-server)", () => {
  layer(testConfig(), { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    const logs = captureLogs()
    it.effect(
      "misses while Redis is absent, serves from Redis once it is up, degrades again when it stops",
      () =>
        Effect.gen(function*() {
          // its port reserved, its server down until the app has started
          const server = yield* privateRedis
          yield* server.kill
          const redis = yield* makeRedis(Redacted.make(server.url))
          const cache = yield* makeRedisCache(redis, { namespace: unique("t-recovery-") })
          const key = `${unique("recover")}:1`

          const [before, t0] = yield* timed(cache.getOrLoad(key, Profile, Effect.succeed(ada)))
          expect(before).toEqual(ada)
          expect(t0).toBeLessThan(1_000)
          expect(yield* cache.get(key, Profile)).toEqual(Option.none())

          yield* server.start
          // reconnection backoff is capped at 5 s (+20 % jitter)
          yield* redis.ping().pipe(Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("10 seconds"))))
          yield* cache.set(key, ada, Profile)
          expect(yield* cache.get(key, Profile)).toEqual(Option.some(ada))

          yield* server.kill
          const [after, t1] = yield* timed(cache.get(key, Profile))
          expect(after).toEqual(Option.none())
          const [written, t2] = yield* timed(Effect.exit(cache.set(key, ada, Profile)))
          expect(written._tag).toBe("Success")
          expect(Math.max(t1, t2)).toBeLessThan(1_500)

          // one line per transition, not one per reconnect attempt (the last one comes with the socket's close)
          const transitions = () =>
            logs.lines.filter((l) => l.includes("message=\"Redis ")).map((l) => /message="([^"]+)"/.exec(l)?.[1])
          yield* Effect.sync(transitions).pipe(
            Effect.filterOrFail((t) => t.length >= 3),
            Effect.retry(Schedule.spaced("50 millis").pipe(Schedule.upTo("3 seconds"))),
            Effect.ignore
          )
          yield* Effect.sleep("300 millis") // a reconnect attempt or two, which must not log
          expect(transitions()).toEqual([
            "Redis unreachable at start; serving without it and reconnecting in the background",
            "Redis connection ready",
            "Redis connection lost; reconnecting in the background"
          ])
        }).pipe(Effect.scoped, Effect.provide(logs.layer)),
      30_000
    )
  })
})
