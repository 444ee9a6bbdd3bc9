import { randomBytes } from "node:crypto"

import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, layer } from "@effect/vitest"
import {
  Cause,
  Chunk,
  Context,
  Duration,
  Effect,
  Either,
  Exit,
  Layer,
  Logger,
  Metric,
  Option,
  Redacted,
  Schema,
  type Scope,
  TestClock
} from "effect"

import { RateLimited, RateLimitedProblem } from "../src/domain/errors.js"
import { AppConfig, loadConfigFromEnv, testConfig } from "../src/platform/Config.js"
import { ProblemResponsesLive, RequestInfo, requestPipeline } from "../src/platform/Http.js"
import { rateLimitRejectionsTotal } from "../src/platform/Metrics.js"
import {
  FALLBACK_WARNING_INTERVAL,
  makeMemoryRateLimiter,
  makeRedisRateLimiter,
  RATE_LIMIT_KEY_ROOT,
  RateLimiter,
  type RateLimiterService,
  rateLimitKey,
  type RateLimitRule,
  rateLimitRules
} from "../src/platform/RateLimiter.js"
import { makeRedis, OptionalRedis, Redis, type RedisService } from "../src/platform/Redis.js"
import { DEFAULT_BODY_LIMITS } from "../src/platform/RequestInput.js"
import { captureLogs } from "./support/logs.js"
import { stalledServer } from "./support/network.js"
import { reachableRedis, realRedisUrl, testRedisUrl } from "./support/redis.js"

/** Every rule name of this run starts with it, so runs never share counters and cleanup is exact. */
const RUN = `trl${randomBytes(4).toString("hex")}`
let counter = 0
const rule = (label: string, limit: number, window: Duration.DurationInput = "1 minute"): RateLimitRule => ({
  name: `${RUN}-${label}-${++counter}`,
  limit,
  window
})

interface Hit {
  readonly exit: Exit.Exit<void, RateLimited>
  readonly headers: Record<string, string>
}

const newInfo = (): Context.Tag.Service<RequestInfo> => ({
  requestId: "test",
  ip: "127.0.0.1",
  userAgent: undefined,
  userId: undefined,
  bodyLimits: DEFAULT_BODY_LIMITS,
  responseHeaders: {}
})

/** One consume as part of a request: the exit and the headers it left on the request's RequestInfo. */
const hitWith = (limiter: RateLimiterService, r: RateLimitRule, key: string, info = newInfo()) =>
  Effect.map(
    Effect.exit(limiter.consume(r, key).pipe(Effect.provideService(RequestInfo, info))),
    (exit): Hit => ({ exit, headers: info.responseHeaders })
  )

/** The same, with the RateLimiter of the context. */
const hit = (r: RateLimitRule, key: string, info = newInfo()) =>
  Effect.flatMap(RateLimiter, (limiter) => hitWith(limiter, r, key, info))

const expectPassed = (h: Hit, limit: number, remaining: number) => {
  expect(Exit.isSuccess(h.exit)).toBe(true)
  expect(h.headers["ratelimit-limit"]).toBe(String(limit))
  expect(h.headers["ratelimit-remaining"]).toBe(String(remaining))
  const reset = Number(h.headers["ratelimit-reset"])
  expect(Number.isInteger(reset) && reset >= 1).toBe(true)
}

/** The RateLimited of a refused hit; anything else (a defect, another error) fails the test. */
const expectRefused = (h: Hit, limit: number): RateLimited => {
  expect(Exit.isFailure(h.exit)).toBe(true)
  if (Exit.isSuccess(h.exit)) throw new Error("not refused")
  const failure = Cause.failureOption(h.exit.cause)
  expect(Chunk.isEmpty(Cause.defects(h.exit.cause))).toBe(true)
  if (Option.isNone(failure)) throw new Error(`not a failure: ${Cause.pretty(h.exit.cause)}`)
  const error = failure.value
  expect(error).toBeInstanceOf(RateLimited)
  expect(error.retry_after).toBeGreaterThanOrEqual(1)
  expect(Number.isInteger(error.retry_after)).toBe(true)
  expect(h.headers["ratelimit-limit"]).toBe(String(limit))
  expect(h.headers["ratelimit-remaining"]).toBe("0")
  expect(h.headers["ratelimit-reset"]).toBe(String(error.retry_after))
  return error
}

const rejections = (name: string) =>
  Effect.map(Metric.value(Metric.tagged(rateLimitRejectionsTotal, "limit", name)), (state) => state.count)

const outcomes = (hits: ReadonlyArray<Hit>) => ({
  passed: hits.filter((h) => Exit.isSuccess(h.exit)).length,
  refused: hits.filter((h) => Exit.isFailure(h.exit) && Option.isSome(Cause.failureOption(h.exit.cause))).length
})

type Test = (name: string, self: () => Effect.Effect<void, unknown, RateLimiter>) => void

interface Harness {
  readonly test: Test
  /** A window short enough to wait out: TestClock for memory, real time for Redis. */
  readonly shortWindow: Duration.DurationInput
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
}

/** The contract both stores honour. */
const limiterContract = ({ advance, shortWindow, test }: Harness) => {
  test("hits 1..L pass with Remaining L-1..0; hit L+1 is RateLimited with retry_after >= 1 and headers", () =>
    Effect.gen(function*() {
      const r = rule("basic", 3)
      const key = "ada@example.com"
      for (let i = 1; i <= 3; i++) expectPassed(yield* hit(r, key), 3, 3 - i)
      const refused = yield* hit(r, key)
      const error = expectRefused(refused, 3)
      expect(error.retry_after).toBeLessThanOrEqual(60)
      expect(error.detail).toContain(r.name)
      expect(error.detail).not.toContain(key)
      // still refused, still not a different error
      expectRefused(yield* hit(r, key), 3)
    }))

  test("the window resets: the full limit is available again once it has passed", () =>
    Effect.gen(function*() {
      const r = rule("reset", 2, shortWindow)
      expectPassed(yield* hit(r, "k"), 2, 1)
      expectPassed(yield* hit(r, "k"), 2, 0)
      expectRefused(yield* hit(r, "k"), 2)
      yield* advance(Duration.sum(Duration.decode(shortWindow), Duration.millis(150)))
      expectPassed(yield* hit(r, "k"), 2, 1)
      expectPassed(yield* hit(r, "k"), 2, 0)
      expectRefused(yield* hit(r, "k"), 2)
    }))

  test("different keys and different rules are independent", () =>
    Effect.gen(function*() {
      const a = rule("indep", 1)
      const b = { ...rule("indep", 1), window: a.window }
      const long1 = `${"x".repeat(500)}1`
      const long2 = `${"x".repeat(500)}2`
      for (const key of ["10.0.0.1", "10.0.0.2", "bob@example.com", long1, long2, ""]) {
        expectPassed(yield* hit(a, key), 1, 0)
      }
      expectRefused(yield* hit(a, "10.0.0.1"), 1)
      expectRefused(yield* hit(a, long1), 1)
      expectRefused(yield* hit(a, long2), 1)
      expectPassed(yield* hit(b, "10.0.0.1"), 1, 0)
      expectPassed(yield* hit(b, long1), 1, 0)
    }))

  test("concurrent hits: exactly L pass", () =>
    Effect.gen(function*() {
      const r = rule("concurrent", 7)
      const hits = yield* Effect.all(Array.from({ length: 20 }, () => hit(r, "same")), { concurrency: "unbounded" })
      expect(outcomes(hits)).toEqual({ passed: 7, refused: 13 })
    }))

  test("rate_limit_rejections_total counts refusals by limit name", () =>
    Effect.gen(function*() {
      const r = rule("metric", 2)
      const other = rule("metric-other", 5)
      for (let i = 0; i < 5; i++) yield* hit(r, "m")
      yield* hit(other, "m")
      expect(yield* rejections(r.name)).toBe(3)
      expect(yield* rejections(other.name)).toBe(0)
    }))

  test("without a RequestInfo it still limits (no headers to write)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      const r = rule("noinfo", 1)
      yield* limiter.consume(r, "k")
      const refused = yield* Effect.either(limiter.consume(r, "k"))
      expect(Either.isLeft(refused) && refused.left).toBeInstanceOf(RateLimited)
    }))

  test("two limits in one request: the headers describe the most constrained one, or the one that refused", () =>
    Effect.gen(function*() {
      const ip = rule("login-ip", 5)
      const email = rule("login-email", 2)
      const info = newInfo()
      yield* hit(ip, "10.1.1.1", info)
      yield* hit(email, "eve@example.com", info)
      expect(info.responseHeaders).toMatchObject({ "ratelimit-limit": "2", "ratelimit-remaining": "1" })

      const next = newInfo()
      yield* hit(email, "eve@example.com", next)
      yield* hit(ip, "10.1.1.1", next)
      expect(next.responseHeaders).toMatchObject({ "ratelimit-limit": "2", "ratelimit-remaining": "0" })

      const refused = newInfo()
      yield* hit(ip, "10.1.1.1", refused)
      expectRefused(yield* hit(email, "eve@example.com", refused), 2)
    }))
}

// ---------------------------------------------------------------------------------------------
// Keys, rules, configuration
// ---------------------------------------------------------------------------------------------

// @effect/vitest's `layer` rebinds the module-wide `it.effect` to its own runtime, so every
// effect test of this file runs inside a `layer` block (Layer.empty: just the test services).
layer(Layer.empty)("rate-limit keys and rules", (it) => {
  it("keeps short safe keys readable and hashes long or odd ones, so keys are bounded and hold no email", () => {
    expect(rateLimitKey("login_ip", "203.0.113.7")).toBe("chatkit:ratelimit:login_ip:203.0.113.7")
    expect(rateLimitKey("login_ip", "2001:db8::1")).toBe("chatkit:ratelimit:login_ip:2001:db8::1")
    expect(rateLimitKey("api", "42")).toBe("chatkit:ratelimit:api:42")
    const email = rateLimitKey("login_email", "ada@example.com")
    expect(email).toMatch(/^chatkit:ratelimit:login_email:~[A-Za-z0-9_-]{43}$/)
    expect(email).not.toContain("ada")
    const inputs = ["x".repeat(10_000), `${"x".repeat(9_999)}y`, "", "a b", "ünïcode", "fe80::1%eth0", "x".repeat(65)]
    const keys = inputs.map((k) => rateLimitKey("n", k))
    expect(new Set(keys).size).toBe(inputs.length)
    for (const k of keys) expect(k.length).toBeLessThanOrEqual(147)
    // a name with ":" cannot make two (name, key) pairs collide
    expect(rateLimitKey("a:b", "c")).not.toBe(rateLimitKey("a", "b:c"))
    expect(rateLimitKey("n".repeat(300), "k".repeat(300)).length).toBeLessThanOrEqual(147)
    expect(rateLimitKey("n".repeat(64), "k".repeat(64)).length).toBe(RATE_LIMIT_KEY_ROOT.length + 64 + 1 + 64)
  })

  it.effect("RATE_LIMIT_API_PER_MINUTE: default 300, an integer 1..10000000, used by the api rule", () =>
    Effect.gen(function*() {
      const load = (value?: string) =>
        Effect.either(
          loadConfigFromEnv({
            NODE_ENV: "test",
            ...(value === undefined ? {} : { RATE_LIMIT_API_PER_MINUTE: value })
          })
        )
      const byDefault = yield* load()
      expect(Either.isRight(byDefault) && byDefault.right.rateLimitApiPerMinute).toBe(300)
      const set = yield* load("1200")
      expect(Either.isRight(set) && rateLimitRules(set.right).api).toEqual({
        name: "api",
        limit: 1200,
        window: "1 minute"
      })
      for (const bad of ["0", "10000001", "1.5", "many"]) {
        const result = yield* load(bad)
        expect(Either.isLeft(result) && result.left.problems.join("\n")).toContain("RATE_LIMIT_API_PER_MINUTE")
      }
    }))
})

// ---------------------------------------------------------------------------------------------
// In memory (TestClock)
// ---------------------------------------------------------------------------------------------

layer(RateLimiter.layerMemory)("RateLimiter in memory", (it) => {
  limiterContract({ test: (name, self) => it.effect(name, self), shortWindow: "10 seconds", advance: TestClock.adjust })

  it.effect("the window is fixed: it ends `window` after its first hit, and retry_after counts down to it", () =>
    Effect.gen(function*() {
      const r = rule("fixed", 2)
      expectPassed(yield* hit(r, "k"), 2, 1)
      yield* TestClock.adjust("20 seconds")
      const second = yield* hit(r, "k")
      expectPassed(second, 2, 0)
      expect(second.headers["ratelimit-reset"]).toBe("40")
      yield* TestClock.adjust("19500 millis")
      expect(expectRefused(yield* hit(r, "k"), 2).retry_after).toBe(21) // 20.5 s, rounded up
      yield* TestClock.adjust("20499 millis")
      expect(expectRefused(yield* hit(r, "k"), 2).retry_after).toBe(1)
      yield* TestClock.adjust("1 millis")
      const fresh = yield* hit(r, "k")
      expectPassed(fresh, 2, 1)
      expect(fresh.headers["ratelimit-reset"]).toBe("60")
    }))

  it.effect("stays bounded: with maxEntries reached, ended windows go first, then the oldest", () =>
    Effect.gen(function*() {
      const limiter = yield* makeMemoryRateLimiter({ maxEntries: 10 })
      const short = rule("bounded-short", 1, "1 second")
      const long = rule("bounded-long", 1, "1 hour")
      yield* hitWith(limiter, long, "first")
      for (let i = 0; i < 8; i++) yield* hitWith(limiter, short, `s${i}`)
      yield* TestClock.adjust("2 seconds") // the 8 short windows have ended
      for (let i = 0; i < 8; i++) yield* hitWith(limiter, long, `l${i}`)
      // the ended windows made room: "first" is still counted
      expectRefused(yield* hitWith(limiter, long, "first"), 1)
      for (let i = 8; i < 20; i++) yield* hitWith(limiter, long, `l${i}`)
      // now only live windows: the oldest ("first") was dropped to stay within 10
      expectPassed(yield* hitWith(limiter, long, "first"), 1, 0)
      expectRefused(yield* hitWith(limiter, long, "l19"), 1)
    }))

  it.effect("a rule with a limit below 1 or an empty window is a bug (a defect, not a 429)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter
      for (
        const bad of [
          { name: "zero", limit: 0, window: "1 minute" },
          { name: "frac", limit: 1.5, window: "1 minute" },
          {
            name: "nowindow",
            limit: 1,
            window: Duration.zero
          }
        ] satisfies Array<RateLimitRule>
      ) {
        const exit = yield* Effect.exit(limiter.consume(bad, "k"))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      }
    }))

  it.effect("RateLimiter.layer without REDIS_URL is the memory limiter", () =>
    Effect.gen(function*() {
      expect(Option.isNone(yield* OptionalRedis)).toBe(true)
      const r = rule("layer-memory", 1)
      expectPassed(yield* hit(r, "k"), 1, 0)
      expectRefused(yield* hit(r, "k"), 1)
    }).pipe(
      Effect.provide(RateLimiter.layer.pipe(Layer.provideMerge(Redis.layerOptional), Layer.provideMerge(testConfig())))
    ))
})

// ---------------------------------------------------------------------------------------------
// Redis unreachable or stalled: limits in memory, fails with nothing but RateLimited, warns once
// ---------------------------------------------------------------------------------------------

const PASSWORD = "s3cret-Pa55word"

const fallbackWarnings = (lines: ReadonlyArray<string>) =>
  lines.filter((l) => l.includes("rate limiter: Redis unavailable; limiting in memory on this instance"))

const limiterOver = <E>(redis: Layer.Layer<Redis, E>) =>
  Layer.effect(RateLimiter, Effect.flatMap(Redis, (r) => makeRedisRateLimiter(r))).pipe(Layer.provideMerge(redis))

const outageContract = (label: string, url: Effect.Effect<string, never, Scope.Scope>) => {
  const logs = captureLogs()
  const redis = Layer.unwrapScoped(Effect.map(url, (u) => Redis.layer(Redacted.make(u))))
  const env = limiterOver(redis).pipe(Layer.provideMerge(logs.layer))

  layer(env, { excludeTestServices: true, timeout: "20 seconds" })(label, (it) => {
    it.effect("still limits (in memory), fails only with RateLimited, answers fast, and warns once", () =>
      Effect.gen(function*() {
        const a = rule("down", 3)
        const b = rule("down-other", 1)
        const hits: Array<Hit> = []
        for (let i = 0; i < 5; i++) {
          const start = performance.now()
          hits.push(yield* hit(a, "ada@example.com"))
          hits.push(yield* hit(b, "10.0.0.9"))
          expect(performance.now() - start).toBeLessThan(1_000)
        }
        const ofA = hits.filter((_, i) => i % 2 === 0)
        const ofB = hits.filter((_, i) => i % 2 === 1)
        for (let i = 1; i <= 3; i++) expectPassed(ofA[i - 1]!, 3, 3 - i)
        expectRefused(ofA[3]!, 3)
        expectRefused(ofA[4]!, 3)
        expectPassed(ofB[0]!, 1, 0)
        for (const h of ofB.slice(1)) expectRefused(h, 1)
        expect(outcomes(hits)).toEqual({ passed: 4, refused: 6 })
        expect(yield* rejections(a.name)).toBe(2)

        const warnings = fallbackWarnings(logs.lines)
        expect(warnings).toHaveLength(1)
        expect(warnings[0]).toContain("level=WARN")
        expect(warnings[0]).toContain("reason=")
        const all = logs.lines.join("\n")
        expect(all).not.toContain(PASSWORD)
        expect(all).not.toContain("ada@example.com")
      }))
  })
}

outageContract("RateLimiter while Redis refuses connections", Effect.succeed(`redis://:${PASSWORD}@127.0.0.1:1`))
outageContract(
  "RateLimiter while Redis accepts connections but never answers",
  Effect.map(stalledServer, ({ port }) => `redis://:${PASSWORD}@127.0.0.1:${port}/0`)
)

layer(Layer.empty)("RateLimiter fallback warning", (it) => {
  it.effect("repeats at most once per 30 s while Redis stays down, with the number of failed calls", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const warnings = () => fallbackWarnings(logs.lines)
      yield* Effect.gen(function*() {
        const redis = yield* makeRedis(Redacted.make("redis://127.0.0.1:1"))
        const limiter = yield* makeRedisRateLimiter(redis)
        const r = rule("warn", 1_000)
        for (let i = 0; i < 5; i++) yield* hitWith(limiter, r, "k")
        expect(warnings()).toHaveLength(1)
        yield* TestClock.adjust(Duration.subtract(FALLBACK_WARNING_INTERVAL, Duration.millis(1)))
        yield* hitWith(limiter, r, "k")
        expect(warnings()).toHaveLength(1)
        yield* TestClock.adjust("1 millis")
        yield* hitWith(limiter, r, "k")
        expect(warnings()).toHaveLength(2)
        expect(warnings()[1]).toContain("failures=6") // failed calls since the previous warning
        // counted in memory all along: 8 hits of the same window
        const info = newInfo()
        yield* hitWith(limiter, r, "k", info)
        expect(info.responseHeaders["ratelimit-remaining"]).toBe(String(1_000 - 8))
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
    }))
})

// ---------------------------------------------------------------------------------------------
// Real Redis (TEST_REDIS_URL)
// ---------------------------------------------------------------------------------------------

/** Deletes every counter of this run. */
const deleteRunKeys = (redis: RedisService) =>
  redis.run(async (client) => {
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `${RATE_LIMIT_KEY_ROOT}${RUN}-*`, "COUNT", 500)
      if (keys.length > 0) await client.del(...keys)
      cursor = next
    } while (cursor !== "0")
  }, "cleanup").pipe(Effect.ignore)

/** One app instance: its own config, its own shared client, its own limiter (RateLimiter.layer). */
const appInstance = () =>
  RateLimiter.layer.pipe(
    Layer.provideMerge(Redis.layerOptional),
    Layer.provide(testConfig({ REDIS_URL: realRedisUrl })),
    Layer.provide(Logger.remove(Logger.defaultLogger))
  )

const buildInstance = Effect.map(Layer.build(appInstance()), (context) => ({
  limiter: Context.get(context, RateLimiter),
  redis: Context.get(context, OptionalRedis)
}))

describe.skipIf(Option.isNone(testRedisUrl))("RateLimiter on Redis (TEST_REDIS_URL)", () => {
  const cleanup = Layer.scopedDiscard(Effect.flatMap(Redis, (redis) => Effect.addFinalizer(() => deleteRunKeys(redis))))
  const env = Layer.mergeAll(limiterOver(reachableRedis), cleanup.pipe(Layer.provide(reachableRedis)))

  layer(env, { excludeTestServices: true, timeout: "20 seconds" })((it) => {
    limiterContract({
      test: (name, self) => it.effect(name, self),
      shortWindow: "700 millis",
      advance: (d) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Duration.toMillis(d))))
    })

    it.effect("two app instances (two layers, two clients) sharing one Redis share one limit", () =>
      Effect.gen(function*() {
        const one = yield* buildInstance
        const two = yield* buildInstance
        expect(Option.isSome(one.redis) && Option.isSome(two.redis)).toBe(true)
        if (Option.isSome(one.redis) && Option.isSome(two.redis)) {
          expect(one.redis.value.client).not.toBe(two.redis.value.client)
        }
        const r = rule("shared", 3)
        expectPassed(yield* hitWith(one.limiter, r, "ada@example.com"), 3, 2)
        expectPassed(yield* hitWith(two.limiter, r, "ada@example.com"), 3, 1)
        expectPassed(yield* hitWith(one.limiter, r, "ada@example.com"), 3, 0)
        expectRefused(yield* hitWith(two.limiter, r, "ada@example.com"), 3)
        expectRefused(yield* hitWith(one.limiter, r, "ada@example.com"), 3)

        const burst = rule("shared-burst", 5)
        const hits = yield* Effect.all(
          Array.from({ length: 24 }, (_, i) => hitWith(i % 2 === 0 ? one.limiter : two.limiter, burst, "k")),
          { concurrency: "unbounded" }
        )
        expect(outcomes(hits)).toEqual({ passed: 5, refused: 19 })
      }).pipe(Effect.scoped))

    it.effect("counters live under chatkit:ratelimit:<name>:<key> with the window as TTL; emails and long keys are hashed", () =>
      Effect.gen(function*() {
        const redis = yield* Redis
        const r = rule("keys", 5, "30 seconds")
        yield* hit(r, "203.0.113.7")
        yield* hit(r, "ada@example.com")
        yield* hit(r, "y".repeat(5_000))
        const keys = yield* redis.run((c) => c.keys(`${RATE_LIMIT_KEY_ROOT}${r.name}:*`))
        expect(keys.sort()).toEqual(
          [
            rateLimitKey(r.name, "203.0.113.7"),
            rateLimitKey(r.name, "ada@example.com"),
            rateLimitKey(r.name, "y".repeat(5_000))
          ]
            .sort()
        )
        expect(keys).toContain(`chatkit:ratelimit:${r.name}:203.0.113.7`)
        for (const key of keys) {
          expect(key.length).toBeLessThanOrEqual(147)
          expect(key).not.toContain("@")
          const ttl = yield* redis.run((c) => c.pttl(key))
          expect(ttl).toBeGreaterThan(25_000)
          expect(ttl).toBeLessThanOrEqual(30_000)
          expect(yield* redis.run((c) => c.get(key))).toBe("1")
        }
        // a later hit does not extend the window
        yield* Effect.sleep("50 millis")
        const before = yield* redis.run((c) => c.pttl(rateLimitKey(r.name, "203.0.113.7")))
        yield* hit(r, "203.0.113.7")
        const after = yield* redis.run((c) => c.pttl(rateLimitKey(r.name, "203.0.113.7")))
        expect(after).toBeLessThanOrEqual(before)
      }))

    it.effect("keeps counting after the server forgot the script (SCRIPT FLUSH, restart)", () =>
      Effect.gen(function*() {
        const redis = yield* Redis
        const r = rule("noscript", 3)
        expectPassed(yield* hit(r, "k"), 3, 2)
        yield* redis.run((c) => c.script("FLUSH"))
        expectPassed(yield* hit(r, "k"), 3, 1)
      }))

    it.effect("a counter left without a TTL gets one (it would never reset otherwise)", () =>
      Effect.gen(function*() {
        const redis = yield* Redis
        const r = rule("nottl", 3, "10 seconds")
        const key = rateLimitKey(r.name, "k")
        yield* redis.run((c) => c.set(key, "1"))
        expectPassed(yield* hit(r, "k"), 3, 1)
        const ttl = yield* redis.run((c) => c.pttl(key))
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(10_000)
      }))
  })
})

// ---------------------------------------------------------------------------------------------
// Over HTTP: headers on 200s, Retry-After and a rate_limited problem on the 429
// ---------------------------------------------------------------------------------------------

const httpRule = rule("http", 2)

class LimitedGroup extends HttpApiGroup.make("limited")
  .add(
    HttpApiEndpoint.get("limited", "/limited")
      .addSuccess(Schema.Struct({ ok: Schema.Boolean }))
      .addError(RateLimitedProblem)
  )
{}
class LimitedApi extends HttpApi.make("rate-limit-test").add(LimitedGroup) {}

const LimitedLive = HttpApiBuilder.group(LimitedApi, "limited", (handlers) =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter
    return handlers.handle("limited", () =>
      Effect.gen(function*() {
        const info = yield* Effect.serviceOption(RequestInfo)
        yield* limiter.consume(httpRule, Option.match(info, { onNone: () => "unknown", onSome: (i) => i.ip }))
        return { ok: true }
      }))
  }))

const serveLimited = Layer.unwrapEffect(Effect.map(AppConfig, (c) => HttpApiBuilder.serve(requestPipeline(c)))).pipe(
  Layer.provide(ProblemResponsesLive),
  Layer.provide(
    HttpApiBuilder.api(LimitedApi).pipe(Layer.provide(LimitedLive), Layer.provide(RateLimiter.layerMemory))
  ),
  Layer.provideMerge(NodeHttpServer.layerTest),
  Layer.provide(testConfig({ ALLOWED_ORIGINS: "https://app.example.com" })),
  Layer.provide(Logger.remove(Logger.defaultLogger))
)

layer(serveLimited)("RateLimiter over HTTP", (it) => {
  it.effect("RateLimit-* on every 200; the 429 has Retry-After, RateLimit-* and a rate_limited problem body", () =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const get = client.execute(
        HttpClientRequest.get("/limited").pipe(HttpClientRequest.setHeader("origin", "https://app.example.com"))
      )
      for (const remaining of ["1", "0"]) {
        const ok = yield* get
        expect(ok.status).toBe(200)
        expect(yield* ok.json).toEqual({ ok: true })
        expect(ok.headers["ratelimit-limit"]).toBe("2")
        expect(ok.headers["ratelimit-remaining"]).toBe(remaining)
        expect(Number(ok.headers["ratelimit-reset"])).toBeGreaterThanOrEqual(1)
        expect(Number(ok.headers["ratelimit-reset"])).toBeLessThanOrEqual(60)
      }
      const refused = yield* get
      expect(refused.status).toBe(429)
      expect(refused.headers["content-type"]).toContain("application/problem+json")
      const retryAfter = Number(refused.headers["retry-after"])
      expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true)
      expect(refused.headers["ratelimit-limit"]).toBe("2")
      expect(refused.headers["ratelimit-remaining"]).toBe("0")
      expect(refused.headers["ratelimit-reset"]).toBe(String(retryAfter))
      expect(refused.headers["x-request-id"]).toBeDefined()
      expect(refused.headers["access-control-expose-headers"]).toContain("RateLimit-Remaining")
      const body = (yield* refused.json) as Record<string, unknown>
      expect(body).toMatchObject({ type: "urn:chatkit:error:rate_limited", status: 429, error: "rate_limited" })
      expect(body.request_id).toBe(refused.headers["x-request-id"])
      expect(String(body.detail)).toContain(httpRule.name)
      expect(yield* rejections(httpRule.name)).toBe(1)
    }))
})
