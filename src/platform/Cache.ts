import { randomBytes } from "node:crypto"

import { Clock, Context, Duration, Effect, Layer, Metric, Option, Schema } from "effect"

import { AppConfig } from "./Config.js"
import { cacheErrorsTotal, cacheRequestsTotalKey, labelled } from "./Metrics.js"
import { OptionalRedis, Redis, type RedisError, redisKeyRoot, type RedisService } from "./Redis.js"
import { withHotSpan } from "./Spans.js"

/**
 * Read-through cache of JSON values. Keys are `:`-separated segments, the first naming the cache
 * in metrics (`user:42:profile` counts under `cache="user"`).
 *
 * The cache is an optimisation, never a source of truth: every failure of the backend (Redis
 * down, timeout, garbled entry) degrades to a miss or a skipped write, logged and counted in
 * `cache_errors_total`, and never fails the caller.
 */
export interface CacheService {
  /** The decoded value, or `None` on a miss, an expired entry, an entry `schema` rejects, or a backend failure. */
  readonly get: <A, I>(key: string, schema: Schema.Schema<A, I>) => Effect.Effect<Option.Option<A>>
  /** Stores `value` for `ttl` (default `CACHE_TTL_SECONDS`, at most 24 h). */
  readonly set: <A, I>(
    key: string,
    value: A,
    schema: Schema.Schema<A, I>,
    ttl?: Duration.DurationInput
  ) => Effect.Effect<void>
  /**
   * Removes the keys. A delete that fails (Redis down) leaves the entry stale until its TTL ends,
   * which is why TTLs are bounded; it also does not stop a read-through that loaded the old value
   * before the delete from writing it back after. Use `invalidatePrefix(key)` where that matters:
   * it is exact for concurrent read-throughs (it also covers `key:*`).
   */
  readonly delete: (...keys: ReadonlyArray<string>) => Effect.Effect<void>
  /**
   * Invalidates every key equal to `prefix` or starting with `prefix:` (whole segments:
   * `user:1` covers `user:1` and `user:1:profile`, not `user:10`). A trailing `:` is ignored;
   * `""` invalidates everything. Read-throughs that started before the invalidation do not write
   * their (possibly stale) result back where later reads would see it.
   */
  readonly invalidatePrefix: (prefix: string) => Effect.Effect<void>
  /** The cached value, or the result of `load`, stored for `ttl`. Failures of `load` are not cached. */
  readonly getOrLoad: <A, I, E, R>(
    key: string,
    schema: Schema.Schema<A, I>,
    load: Effect.Effect<A, E, R>,
    ttl?: Duration.DurationInput
  ) => Effect.Effect<A, E, R>
}

export interface RedisCacheOptions {
  /** Extra key segment after `chatkit:` (see `redisKeyRoot`) so deployments or parallel tests sharing one Redis never collide. */
  readonly namespace?: string
}

export interface MemoryCacheOptions {
  /** Entries kept at most; the least recently used goes first (default 10 000). */
  readonly maxEntries?: number
}

/** Upper bound of every TTL, so a missed invalidation or failed delete is stale for a bounded time. */
export const MAX_CACHE_TTL = Duration.hours(24)
const MAX_TTL_MS = Duration.toMillis(MAX_CACHE_TTL)

/**
 * The storage behind the service. `lookup` returns a `slot` alongside the value: `getOrLoad`
 * writes its loaded value to that slot, so a write racing an invalidation lands where no read
 * will look (Redis: the old generation; memory: dropped).
 */
interface Store<Slot> {
  readonly lookup: (
    key: string
  ) => Effect.Effect<{ readonly raw: Option.Option<string>; readonly slot: Slot }, RedisError>
  readonly slotFor: (key: string) => Effect.Effect<Slot, RedisError>
  readonly write: (slot: Slot, raw: string, ttlMs: number) => Effect.Effect<void, RedisError>
  readonly remove: (keys: ReadonlyArray<string>) => Effect.Effect<void, RedisError>
  readonly invalidate: (prefix: string) => Effect.Effect<void, RedisError>
}

type Operation = "get" | "set" | "delete" | "invalidate"

const cacheName = (key: string) => key.split(":", 1)[0] || "default"

/** `user:1:` and `user:1` name the same segment prefix. */
const normalizePrefix = (prefix: string) => prefix.endsWith(":") ? prefix.slice(0, -1) : prefix

/** Whole-segment prefix match, shared by both stores' semantics. */
const coveredBy = (key: string, prefix: string) => prefix === "" || key === prefix || key.startsWith(`${prefix}:`)

const cacheRequest = labelled(cacheRequestsTotalKey)
const countRequest = (cache: string, result: "hit" | "miss") => Metric.increment(cacheRequest({ cache, result }))

/** Counted and logged; the key itself is not logged (it may hold an email or another identifier). */
const reportFailure = (cache: string, operation: Operation, reason: string) =>
  Metric.increment(Metric.tagged(Metric.tagged(cacheErrorsTotal, "cache", cache), "operation", operation)).pipe(
    Effect.zipRight(
      // A read failure is a miss that the caller absorbs; a warning per read would flood the log
      // during an outage, when every write already warns.
      (operation === "get" ? Effect.logDebug : Effect.logWarning)(
        `cache ${operation} failed; continuing without the cache`
      ).pipe(Effect.annotateLogs({ cache, operation, reason }))
    )
  )

const jsonSchemas = new WeakMap<Schema.Schema.Any, Schema.Schema.Any>()
/** `schema` as JSON text; memoized per schema object since every call site passes a constant. */
const asJson = <A, I>(schema: Schema.Schema<A, I>): Schema.Schema<A, string> => {
  const known = jsonSchemas.get(schema)
  if (known !== undefined) return known as unknown as Schema.Schema<A, string>
  const json = Schema.parseJson(schema)
  jsonSchemas.set(schema, json)
  return json
}

const ttlMillis = (ttl: Duration.DurationInput) =>
  Math.min(MAX_TTL_MS, Math.max(1, Math.ceil(Duration.toMillis(Duration.decode(ttl)))))

const makeService = <Slot>(store: Store<Slot>, defaultTtl: Duration.Duration): CacheService => {
  const decode = <A, I>(cache: string, raw: Option.Option<string>, schema: Schema.Schema<A, I>) =>
    Option.match(raw, {
      onNone: () => Effect.succeedNone,
      // An entry written by an older version of the code, or garbled, is a miss to be overwritten.
      onSome: (text) =>
        Schema.decodeUnknown(asJson(schema))(text).pipe(
          Effect.asSome,
          Effect.catchAll(() =>
            Effect.as(reportFailure(cache, "get", "entry does not match its schema"), Option.none<A>())
          )
        )
    })

  const lookup = <A, I>(key: string, schema: Schema.Schema<A, I>) => {
    const cache = cacheName(key)
    return store.lookup(key).pipe(
      Effect.flatMap(({ raw, slot }) =>
        Effect.map(decode(cache, raw, schema), (value) => ({ value, slot: Option.some(slot) }))
      ),
      Effect.catchAll((error) =>
        Effect.as(reportFailure(cache, "get", error.message), { value: Option.none<A>(), slot: Option.none<Slot>() })
      ),
      Effect.tap(({ value }) => countRequest(cache, Option.isSome(value) ? "hit" : "miss"))
    )
  }

  const writeTo = <A, I>(
    key: string,
    slot: Effect.Effect<Slot, RedisError>,
    value: A,
    schema: Schema.Schema<A, I>,
    ttl: Duration.DurationInput | undefined
  ) => {
    const cache = cacheName(key)
    return Effect.flatMap(
      Effect.option(Schema.encode(asJson(schema))(value)),
      Option.match({
        // The parse error would quote the value, which may be secret: only say that it did not encode.
        onNone: () => reportFailure(cache, "set", "value does not match its schema"),
        onSome: (raw) =>
          Effect.flatMap(slot, (s) => store.write(s, raw, ttlMillis(ttl ?? defaultTtl))).pipe(
            Effect.catchAll((error) => reportFailure(cache, "set", error.message))
          )
      })
    )
  }

  return {
    get: (key, schema) =>
      Effect.map(lookup(key, schema), ({ value }) => value).pipe(
        withHotSpan("Cache.get", { attributes: { cache: cacheName(key) } })
      ),

    set: (key, value, schema, ttl) =>
      writeTo(key, store.slotFor(key), value, schema, ttl).pipe(
        Effect.withSpan("Cache.set", { attributes: { cache: cacheName(key) } })
      ),

    delete: (...keys) =>
      keys.length === 0
        ? Effect.void
        : store.remove(keys).pipe(
          Effect.catchAll((error) =>
            Effect.forEach(new Set(keys.map(cacheName)), (cache) => reportFailure(cache, "delete", error.message), {
              discard: true
            })
          ),
          Effect.withSpan("Cache.delete")
        ),

    invalidatePrefix: (prefix) => {
      const normalized = normalizePrefix(prefix)
      const cache = normalized === "" ? "all" : cacheName(normalized)
      return store.invalidate(normalized).pipe(
        Effect.catchAll((error) => reportFailure(cache, "invalidate", error.message)),
        Effect.withSpan("Cache.invalidatePrefix", { attributes: { cache } })
      )
    },

    getOrLoad: (key, schema, load, ttl) =>
      Effect.flatMap(lookup(key, schema), ({ slot, value }) =>
        Option.match(value, {
          onSome: Effect.succeed,
          onNone: () =>
            Effect.tap(load, (loaded) =>
              Option.match(slot, {
                // The lookup itself failed (Redis down): skip a write that would only fail too.
                onNone: () => Effect.void,
                onSome: (s) => writeTo(key, Effect.succeed(s), loaded, schema, ttl)
              }))
        })).pipe(withHotSpan("Cache.getOrLoad", { attributes: { cache: cacheName(key) } }))
  }
}

// ---------------------------------------------------------------------------------------------
// Redis store
//
// invalidatePrefix uses generations, not SCAN + UNLINK. Every segment prefix of a key ("" , "user",
// "user:1", "user:1:profile") has a generation key; a value lives under its key plus the current
// generations of all its prefixes. Invalidating a prefix gives it a new generation: one SET,
// O(1) whatever the keyspace size, atomic for every instance at once, and exact (whole segments).
// SCAN + UNLINK walks the whole keyspace per call and races with other instances: a read-through
// that loaded before the invalidation can write its stale value after the scan passed. With
// generations that late write lands under the old generation, which no read will look at again.
// Orphaned entries simply expire with their (bounded) TTL.
//
// A new generation is a random token, not an INCR counter: generation keys carry a TTL
// (2 x MAX_CACHE_TTL) so they do not pile up, and a counter that expired would restart at 1 and
// resurrect entries written under its earlier life. A missing generation reads as "0"; entries
// under "0" from before the first invalidation are older than the generation key's TTL, so gone.
// Redis must not evict generation keys early: run it with maxmemory-policy noeviction (BullMQ
// needs that anyway) or volatile-ttl (generation keys have the longest TTL, so go last).
// ---------------------------------------------------------------------------------------------

const GENERATION_TTL_MS = 2 * MAX_TTL_MS

/** Every whole-segment prefix of `key`, shortest first, including "" and `key` itself. */
const segmentPrefixes = (key: string) => {
  const segments = key.split(":")
  return ["", ...segments.map((_, i) => segments.slice(0, i + 1).join(":"))]
}

/**
 * A lookup in one round trip: the generations of the key's prefixes (KEYS, shortest first), the
 * physical key they make (ARGV[1] is its stem, `...d:<key>#`) and its value, as `resolve` does in two.
 */
const LOOKUP_SCRIPT = `
local generations = redis.call("MGET", unpack(KEYS))
for i = 1, #KEYS do
  if not generations[i] then generations[i] = "0" end
end
local slot = ARGV[1] .. table.concat(generations, ".")
return { slot, redis.call("GET", slot) }
`

type LookupClient = RedisService["client"] & {
  readonly chatkitCacheLookup: (keyCount: number, ...keysThenStem: Array<string>) => Promise<[string, string | null]>
}

const makeRedisStore = (redis: RedisService, options: RedisCacheOptions): Store<string> => {
  const root = redisKeyRoot(options.namespace)
  const generationKey = (prefix: string) => `${root}v:${prefix}`
  // EVALSHA, loading the script on first use (and again after a Redis restart)
  redis.client.defineCommand("chatkitCacheLookup", { lua: LOOKUP_SCRIPT })

  /** The physical keys of `keys` under the current generations: one MGET for all of them. */
  const resolve = async (keys: ReadonlyArray<string>) => {
    const prefixesOf = keys.map(segmentPrefixes)
    const unique = [...new Set(prefixesOf.flat())]
    const generations = await redis.client.mget(unique.map(generationKey))
    const byPrefix = new Map(unique.map((prefix, i) => [prefix, generations[i] ?? "0"]))
    // Generations never contain "#", so the last "#" separates them from the key: no collisions.
    return keys.map((key, i) => `${root}d:${key}#${(prefixesOf[i] ?? []).map((p) => byPrefix.get(p) ?? "0").join(".")}`)
  }

  const resolveOne = async (key: string) => (await resolve([key]))[0] ?? key

  return {
    lookup: (key) =>
      redis.run(async (client) => {
        const prefixes = segmentPrefixes(key).map(generationKey)
        const [slot, raw] = await (client as LookupClient).chatkitCacheLookup(
          prefixes.length,
          ...prefixes,
          `${root}d:${key}#`
        )
        return { raw: Option.fromNullable(raw), slot }
      }, "GET"),
    slotFor: (key) => redis.run(() => resolveOne(key), "SET"),
    write: (slot, raw, ttlMs) => Effect.asVoid(redis.run((client) => client.set(slot, raw, "PX", ttlMs), "SET")),
    remove: (keys) => Effect.asVoid(redis.run(async (client) => client.del(...await resolve(keys)), "DEL")),
    invalidate: (prefix) =>
      Effect.asVoid(
        redis.run(
          (client) => client.set(generationKey(prefix), randomBytes(9).toString("base64url"), "PX", GENERATION_TTL_MS),
          "SET"
        )
      )
  }
}

// ---------------------------------------------------------------------------------------------
// In-memory store (embedded mode and tests): one process only. Time comes from Clock, so
// TestClock drives expiry. A read-through whose load overlapped any delete or invalidation does
// not write back (conservative: at worst one extra miss).
// ---------------------------------------------------------------------------------------------

interface MemorySlot {
  readonly key: string
  readonly epoch: number
}

const makeMemoryStore = (options: MemoryCacheOptions): Store<MemorySlot> => {
  const maxEntries = Math.max(1, options.maxEntries ?? 10_000)
  // Map iteration order is insertion order: re-inserting on every hit makes the first key the LRU.
  const entries = new Map<string, { readonly raw: string; readonly expiresAt: number }>()
  let epoch = 0

  const makeRoom = (now: number) => {
    if (entries.size < maxEntries) return
    for (const [key, entry] of entries) if (entry.expiresAt <= now) entries.delete(key)
    for (const key of entries.keys()) {
      if (entries.size < maxEntries) break
      entries.delete(key)
    }
  }

  return {
    lookup: (key) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const slot = { key, epoch }
        const entry = entries.get(key)
        if (entry === undefined) return { raw: Option.none(), slot }
        entries.delete(key)
        if (entry.expiresAt <= now) return { raw: Option.none(), slot }
        entries.set(key, entry)
        return { raw: Option.some(entry.raw), slot }
      }),
    slotFor: (key) => Effect.sync(() => ({ key, epoch })),
    write: (slot, raw, ttlMs) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        if (slot.epoch !== epoch) return
        entries.delete(slot.key)
        makeRoom(now)
        entries.set(slot.key, { raw, expiresAt: now + ttlMs })
      }),
    remove: (keys) =>
      Effect.sync(() => {
        epoch++
        for (const key of keys) entries.delete(key)
      }),
    invalidate: (prefix) =>
      Effect.sync(() => {
        epoch++
        for (const key of entries.keys()) if (coveredBy(key, prefix)) entries.delete(key)
      })
  }
}

const defaultTtl = Effect.map(AppConfig, (config) => Duration.seconds(config.cacheTtlSeconds))

/** A Redis-backed cache over an existing client. */
export const makeRedisCache = (redis: RedisService, options: RedisCacheOptions = {}) =>
  Effect.map(defaultTtl, (ttl) => makeService(makeRedisStore(redis, options), ttl))

/** An in-memory cache private to this process. */
export const makeMemoryCache = (options: MemoryCacheOptions = {}) =>
  Effect.map(defaultTtl, (ttl) => makeService(makeMemoryStore(options), ttl))

/** CACHE_DISABLED=true: stores nothing, every `getOrLoad` loads (to measure what the cache saves). */
export const passThroughCache: CacheService = {
  get: () => Effect.succeedNone,
  set: () => Effect.void,
  delete: () => Effect.void,
  invalidatePrefix: () => Effect.void,
  getOrLoad: (_key, _schema, load) => load
}

/**
 * Read-through caching of a value's JSON rendering: a hit returns the stored text as is, skipping
 * the schema decode and the response encode (tens of microseconds per list item on each request).
 * For responses served verbatim; `schema` is the one the endpoint declares.
 */
export const getOrRenderJson = <A, I, E, R>(
  cache: CacheService,
  key: string,
  schema: Schema.Schema<A, I>,
  load: Effect.Effect<A, E, R>,
  ttl?: Duration.DurationInput
): Effect.Effect<string, E, R> =>
  cache.getOrLoad(
    key,
    Schema.String,
    Effect.flatMap(load, (value) =>
      Effect.map(Effect.orDie(Schema.encode(schema)(value)), (encoded) => JSON.stringify(encoded))),
    ttl
  )

export class Cache extends Context.Tag("chatkit/Cache")<Cache, CacheService>() {
  /**
   * Redis (the shared client) when REDIS_URL is set, memory otherwise. A value, not a function, so
   * every feature that provides it gets the same cache. CACHE_DISABLED=true gives `passThroughCache`.
   */
  static readonly layer: Layer.Layer<Cache, never, AppConfig | OptionalRedis> = Layer.effect(
    Cache,
    Effect.flatMap(
      Effect.all([OptionalRedis, AppConfig]),
      ([redis, config]) =>
        config.cacheDisabled ?
          Effect.as(Effect.logWarning("cache: disabled (CACHE_DISABLED=true)"), passThroughCache) :
          Option.match(redis, {
            onNone: () => Effect.tap(makeMemoryCache(), () => Effect.logInfo("cache: in memory (REDIS_URL not set)")),
            onSome: (client) =>
              Effect.tap(
                makeRedisCache(
                  client,
                  Option.match(config.redisNamespace, { onNone: () => ({}), onSome: (namespace) => ({ namespace }) })
                ),
                () => Effect.logInfo("cache: Redis")
              )
          })
    )
  )

  static layerMemory(options: MemoryCacheOptions = {}): Layer.Layer<Cache, never, AppConfig> {
    return Layer.effect(Cache, makeMemoryCache(options))
  }

  static layerRedis(options: RedisCacheOptions = {}): Layer.Layer<Cache, never, AppConfig | Redis> {
    return Layer.effect(Cache, Effect.flatMap(Redis, (redis) => makeRedisCache(redis, options)))
  }
}
