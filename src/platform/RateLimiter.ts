import { createHash } from "node:crypto"

import { Clock, Context, Duration, Effect, Layer, Metric, Option } from "effect"
import type { Redis as IORedis } from "ioredis"

import { RateLimited } from "../domain/errors.js"
import { AppConfig, type AppConfigShape } from "./Config.js"
import { RequestInfo } from "./Http.js"
import { rateLimitRejectionsTotal } from "./Metrics.js"
import { OptionalRedis, RedisError, redisKeyRoot, type RedisService } from "./Redis.js"
import { withHotSpan } from "./Spans.js"

/**
 * Fixed-window rate limits (API.md section 0), shared by every instance through Redis, per
 * instance in memory in embedded mode.
 *
 * Why not `@effect/experimental`'s RateLimiter (read in its dist/esm/RateLimiter*.js, 0.61.1):
 * - its Redis store (`RateLimiter/Redis.make`) always opens its own client (`new Redis(options)`)
 *   and takes no existing one, so it cannot use the one shared, fail-fast ioredis client;
 * - its "fixed-window" is not a fixed window: every accepted hit extends the key's TTL by
 *   window/limit, so a busy key's reset keeps moving and `RateLimit-Reset` is not "when the window
 *   resets";
 * - its memory store never forgets a key (one entry per client IP / email forever).
 * Plugging our own store into its `RateLimiterStore` would still inherit that TTL-extending
 * contract, so the whole thing is written here: one Lua script over our client and a bounded
 * memory store that reads effect's Clock (TestClock drives it in tests).
 */

export interface RateLimitRule {
  readonly name: string
  readonly limit: number
  readonly window: Duration.DurationInput
}

export interface RateLimiterService {
  /**
   * counts one hit of `key` under `rule`; sets RateLimit-Limit/Remaining/Reset on
   * RequestInfo.responseHeaders (when a RequestInfo is in context); fails RateLimited
   * (retry_after = seconds until the window frees a slot, >= 1) when over the limit
   */
  readonly consume: (rule: RateLimitRule, key: string) => Effect.Effect<void, RateLimited>
}

/** The limits of API.md section 0; `api` follows RATE_LIMIT_API_PER_MINUTE. */
export const rateLimitRules = (config: Pick<AppConfigShape, "rateLimitApiPerMinute">) => ({
  loginIp: { name: "login_ip", limit: 5, window: "1 minute" },
  loginEmail: { name: "login_email", limit: 5, window: "1 minute" },
  refreshIp: { name: "refresh_ip", limit: 30, window: "1 minute" },
  api: { name: "api", limit: config.rateLimitApiPerMinute, window: "1 minute" },
  chatkitStream: { name: "chatkit_stream", limit: 30, window: "1 minute" }
} as const satisfies Record<string, RateLimitRule>)

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/** `chatkit:ratelimit:`, or `chatkit:<REDIS_NAMESPACE>:ratelimit:` for a deployment sharing its Redis. */
const rateLimitKeyRoot = (namespace?: string) => `${redisKeyRoot(namespace)}ratelimit:`

export const RATE_LIMIT_KEY_ROOT = rateLimitKeyRoot()

const SAFE_NAME = /^[A-Za-z0-9_.-]{1,64}$/
/** IPv4/IPv6 addresses, numeric ids and short tokens stay readable in Redis. */
const SAFE_KEY = /^[A-Za-z0-9_.:-]{1,64}$/

/** "~" is in neither safe set, so a digest never equals a value kept as is. */
const digest = (value: string) => `~${createHash("sha256").update(value, "utf8").digest("base64url")}`

/**
 * `chatkit:ratelimit:<name>:<key>`. A name or key that is long, empty or has other characters
 * (emails, IPv6 zones, free text) is replaced by its SHA-256, so the key is at most 147
 * characters and holds no email address. The name never contains ":", so no two (name, key)
 * pairs share a key.
 */
export const rateLimitKey = (name: string, key: string, root = RATE_LIMIT_KEY_ROOT) =>
  `${root}${SAFE_NAME.test(name) ? name : digest(name)}:${SAFE_KEY.test(key) ? key : digest(key)}`

// ---------------------------------------------------------------------------------------------
// Stores: count one hit in the current window of `id`, which starts at its first hit
// ---------------------------------------------------------------------------------------------

interface WindowState {
  /** hits in the current window, this one included (hits over the limit count too) */
  readonly count: number
  /** milliseconds until the window ends, >= 1 */
  readonly resetMs: number
}

interface Store<E> {
  readonly hit: (id: string, windowMs: number) => Effect.Effect<WindowState, E>
}

export interface MemoryRateLimiterOptions {
  /**
   * Most windows kept (default 100 000). When full, ended windows are dropped first, then the
   * oldest tenth: a client whose live window is dropped starts a new one (under memory pressure the
   * limiter stays bounded rather than exact).
   */
  readonly maxEntries?: number
}

const makeMemoryStore = (options: MemoryRateLimiterOptions = {}): Store<never> => {
  const maxEntries = Math.max(1, options.maxEntries ?? 100_000)
  // Insertion order is the order windows started in, close to the order they end in.
  const windows = new Map<string, { count: number; readonly resetAt: number }>()

  const makeRoom = (now: number) => {
    if (windows.size < maxEntries) return
    for (const [id, w] of windows) if (w.resetAt <= now) windows.delete(id)
    if (windows.size < maxEntries) return
    const target = Math.floor(maxEntries * 0.9)
    for (const id of windows.keys()) {
      if (windows.size <= target) break
      windows.delete(id)
    }
  }

  const hit = (id: string, windowMs: number) =>
    Effect.map(Clock.currentTimeMillis, (now): WindowState => {
      let w = windows.get(id)
      if (w === undefined || w.resetAt <= now) {
        windows.delete(id)
        makeRoom(now)
        w = { count: 0, resetAt: now + windowMs }
        windows.set(id, w)
      }
      w.count += 1
      return { count: w.count, resetMs: w.resetAt - now }
    })

  return { hit }
}

/**
 * Atomic: the first hit of a window creates the counter and gives it the window as its TTL; later
 * hits only increment it, so the window ends `window` after its first hit whatever the traffic.
 * `ttl < 0` also repairs a counter that somehow has no TTL (it would otherwise never reset).
 */
const FIXED_WINDOW_LUA = `
local count = redis.call("INCR", KEYS[1])
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }
`
const FIXED_WINDOW_SHA = createHash("sha1").update(FIXED_WINDOW_LUA).digest("hex")

/** EVALSHA, loading the script with EVAL when the server does not know it (restart, SCRIPT FLUSH). */
const runFixedWindow = async (client: IORedis, key: string, windowMs: number): Promise<WindowState> => {
  let reply: unknown
  try {
    reply = await client.evalsha(FIXED_WINDOW_SHA, 1, key, windowMs)
  } catch (error) {
    if (!(error instanceof Error && error.message.startsWith("NOSCRIPT"))) throw error
    reply = await client.eval(FIXED_WINDOW_LUA, 1, key, windowMs)
  }
  if (!Array.isArray(reply) || typeof reply[0] !== "number" || typeof reply[1] !== "number") {
    throw new Error("unexpected reply to the rate-limit script")
  }
  return { count: reply[0], resetMs: Math.max(1, reply[1]) }
}

/** A backstop: the shared client already fails fast (no offline queue, 1 s command timeout). */
const REDIS_BUDGET = Duration.seconds(2)

const makeRedisStore = (redis: RedisService): Store<RedisError> => ({
  hit: (id, windowMs) =>
    redis.run((client) => runFixedWindow(client, id, windowMs), "rate limit").pipe(
      Effect.timeoutFail({
        duration: REDIS_BUDGET,
        onTimeout: () =>
          new RedisError({ operation: "rate limit", reason: `no reply within ${Duration.format(REDIS_BUDGET)}` })
      })
    )
})

/** At most one warning per this interval while Redis fails, not one per request. */
export const FALLBACK_WARNING_INTERVAL = Duration.seconds(30)

/**
 * The Redis store; a call whose Redis command fails is counted by this instance's memory store
 * instead (per-instance limits beat no limits, and a 500 for a rate-limit check would be worse).
 */
const withMemoryFallback = (primary: Store<RedisError>, fallback: Store<never>): Store<never> => {
  const intervalMs = Duration.toMillis(FALLBACK_WARNING_INTERVAL)
  let lastWarningAt = Number.NEGATIVE_INFINITY
  let failuresSinceWarning = 0
  const warn = (error: RedisError) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      failuresSinceWarning += 1
      if (now - lastWarningAt < intervalMs) return Effect.void
      const failures = failuresSinceWarning
      lastWarningAt = now
      failuresSinceWarning = 0
      return Effect.logWarning("rate limiter: Redis unavailable; limiting in memory on this instance").pipe(
        // failures: calls that fell back since the previous warning, this one included
        Effect.annotateLogs({ reason: error.message, failures })
      )
    })
  return {
    hit: (id, windowMs) =>
      primary.hit(id, windowMs).pipe(
        Effect.catchAll((error) => Effect.zipRight(warn(error), fallback.hit(id, windowMs)))
      )
  }
}

// ---------------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------------

const HEADER_LIMIT = "ratelimit-limit"
const HEADER_REMAINING = "ratelimit-remaining"
const HEADER_RESET = "ratelimit-reset"

const checkRule = (rule: RateLimitRule) => {
  const windowMs = Math.ceil(Duration.toMillis(Duration.decode(rule.window)))
  if (!Number.isSafeInteger(rule.limit) || rule.limit < 1 || !Number.isFinite(windowMs) || windowMs < 1) {
    throw new Error(`invalid rate-limit rule "${rule.name}": limit must be an integer >= 1 and window at least 1 ms`)
  }
  return windowMs
}

/**
 * One request may pass several limits (login: per IP and per email). The headers describe the most
 * constrained one: the limit that refused, else the one with the fewest remaining hits.
 */
const writeHeaders = (
  headers: Record<string, string>,
  limit: number,
  remaining: number,
  resetSeconds: number,
  refused: boolean
) => {
  const previousRemaining = headers[HEADER_REMAINING]
  const previousReset = headers[HEADER_RESET]
  if (!refused && previousRemaining !== undefined) {
    const before = Number(previousRemaining)
    if (before < remaining || (before === remaining && Number(previousReset) >= resetSeconds)) return
  }
  headers[HEADER_LIMIT] = String(limit)
  headers[HEADER_REMAINING] = String(remaining)
  headers[HEADER_RESET] = String(resetSeconds)
}

const makeService = (store: Store<never>, root = RATE_LIMIT_KEY_ROOT): RateLimiterService => ({
  consume: (rule, key) =>
    Effect.gen(function*() {
      const windowMs = yield* Effect.sync(() => checkRule(rule)) // a bad rule is a bug: a defect
      const { count, resetMs } = yield* store.hit(rateLimitKey(rule.name, key, root), windowMs)
      const refused = count > rule.limit
      const remaining = Math.max(0, rule.limit - count)
      const resetSeconds = Math.max(1, Math.ceil(resetMs / 1000))
      const info = yield* Effect.serviceOption(RequestInfo)
      if (Option.isSome(info)) writeHeaders(info.value.responseHeaders, rule.limit, remaining, resetSeconds, refused)
      if (!refused) return
      yield* Metric.increment(Metric.tagged(rateLimitRejectionsTotal, "limit", rule.name))
      return yield* new RateLimited({
        detail: `Too many requests (limit "${rule.name}": ${rule.limit} per ${
          Duration.format(Duration.millis(windowMs))
        }); retry in ${resetSeconds} s`,
        retry_after: resetSeconds
      })
    }).pipe(withHotSpan("RateLimiter.consume", { attributes: { limit: rule.name } }))
})

/** A limiter private to this process. */
export const makeMemoryRateLimiter = (options: MemoryRateLimiterOptions = {}): Effect.Effect<RateLimiterService> =>
  Effect.sync(() => makeService(makeMemoryStore(options)))

/** A limiter over an existing Redis client, shared with every instance using the same Redis. */
export const makeRedisRateLimiter = (
  redis: RedisService,
  options: MemoryRateLimiterOptions & { readonly namespace?: string | undefined } = {}
): Effect.Effect<RateLimiterService> =>
  Effect.sync(() =>
    makeService(
      withMemoryFallback(makeRedisStore(redis), makeMemoryStore(options)),
      rateLimitKeyRoot(options.namespace)
    )
  )

export class RateLimiter extends Context.Tag("chatkit/RateLimiter")<RateLimiter, RateLimiterService>() {
  /** Redis store when Some (the ONE shared ioredis client from OptionalRedis), memory otherwise. */
  static readonly layer: Layer.Layer<RateLimiter, never, AppConfig | OptionalRedis> = Layer.effect(
    RateLimiter,
    Effect.flatMap(Effect.all([OptionalRedis, AppConfig]), ([redis, config]) =>
      Option.match(redis, {
        onNone: () =>
          Effect.tap(
            makeMemoryRateLimiter(),
            () => Effect.logInfo("rate limiter: in memory (REDIS_URL not set; limits are per instance)")
          ),
        onSome: (client) =>
          Effect.tap(
            makeRedisRateLimiter(client, { namespace: Option.getOrUndefined(config.redisNamespace) }),
            () => Effect.logInfo("rate limiter: Redis")
          )
      }))
  )

  /** A memory store private to this process (embedded mode, tests). */
  static readonly layerMemory: Layer.Layer<RateLimiter> = Layer.effect(RateLimiter, makeMemoryRateLimiter())
}
