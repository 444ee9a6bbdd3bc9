import { Clock, Context, Data, Duration, Effect, Layer, Option, Redacted, Runtime, type Scope } from "effect"
import { Redis as IORedis, type RedisOptions } from "ioredis"

import { AppConfig } from "./Config.js"

/**
 * A Redis command failed (server down, timeout, error reply). The message names the operation and
 * a short reason, never the URL or its password.
 */
export class RedisError extends Data.TaggedError("RedisError")<{
  readonly operation: string
  readonly reason: string
}> {
  override get message() {
    return `Redis ${this.operation} failed: ${this.reason}`
  }
}

export interface RedisService {
  /**
   * The process-wide ioredis client. Share it (rate limiter, BullMQ producers) instead of opening
   * new connections; it fails fast (no offline queue, 1 retry, command timeout) while Redis is down.
   */
  readonly client: IORedis
  /** `redis://host:port/db`, without credentials: safe for logs and errors. */
  readonly target: string
  /** Runs `f` on the client; a rejection becomes a `RedisError` whose message holds no secret. */
  readonly run: <A>(f: (client: IORedis) => Promise<A>, operation?: string) => Effect.Effect<A, RedisError>
  /** Round-trip latency of a PING in milliseconds (0.1 ms precision); fails after `timeout` (default 1 s). */
  readonly ping: (timeout?: Duration.DurationInput) => Effect.Effect<number, RedisError>
  /**
   * A second connection to the same server, closed with the scope. For users that cannot share the
   * fail-fast client, e.g. BullMQ workers, which need `{ maxRetriesPerRequest: null }` and no
   * command timeout for their blocking commands.
   */
  readonly duplicate: (overrides?: Partial<RedisOptions>) => Effect.Effect<IORedis, never, Scope.Scope>
}

export interface RedisConnectionOptions {
  /** TCP connect timeout (default 2000 ms). */
  readonly connectTimeoutMs?: number
  /** Per-command reply timeout (default 1000 ms). */
  readonly commandTimeoutMs?: number
}

/** Reconnection backoff: 100 ms doubling, capped at 5 s, ±20 % jitter so instances do not reconnect in step. */
export const reconnectDelayMs = (attempt: number) => {
  const base = Math.min(100 * 2 ** Math.min(Math.max(attempt - 1, 0), 10), 5_000)
  return Math.round(base * (0.8 + Math.random() * 0.4))
}

const clientOptions = (options: RedisConnectionOptions): RedisOptions => ({
  lazyConnect: true,
  // Never gives up (the app must recover when Redis returns) but never faster than the capped backoff.
  retryStrategy: reconnectDelayMs,
  maxRetriesPerRequest: 1,
  // Commands fail at once while disconnected instead of queueing behind a reconnect.
  enableOfflineQueue: false,
  connectTimeout: options.connectTimeoutMs ?? 2_000,
  commandTimeout: options.commandTimeoutMs ?? 1_000,
  connectionName: "chatkit-backend",
  // the commands of concurrent requests issued in one tick go out in one write (fewer syscalls under load)
  enableAutoPipelining: true
})

/** Where the client connects, for log lines: scheme, host, port and database, no credentials. */
export const describeRedisTarget = (url: string) => {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.hostname}:${parsed.port || "6379"}${parsed.pathname || "/0"}`
  } catch {
    return "the configured REDIS_URL"
  }
}

/** The error's code or message with the URL and any credential it might echo replaced by "***". */
const redisReason = (error: unknown, url: string): string => {
  const code = (error as { code?: unknown } | null)?.code
  let text = typeof code === "string" && code !== ""
    ? code
    : error instanceof Error
    ? error.message
    : String(error)
  const secrets = [url]
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") secrets.push(parsed.password, decodeURIComponent(parsed.password))
    if (parsed.username !== "") secrets.push(parsed.username, decodeURIComponent(parsed.username))
  } catch {
    // an unparsable URL is still scrubbed as a whole
  }
  for (const secret of secrets.filter((s) => s.length >= 3)) text = text.split(secret).join("***")
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}

/**
 * QUIT when connected (waits for the server to close, 2 s at most), then disconnect, which also
 * cancels a pending reconnect. A real timer, not Clock: it must also work under TestClock.
 */
const quitClient = (client: IORedis) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      if (client.status !== "ready") {
        client.disconnect()
        return resolve()
      }
      const done = () => {
        clearTimeout(timer)
        client.disconnect()
        resolve()
      }
      const timer = setTimeout(done, 2_000)
      client.once("end", done)
      client.quit().catch(done)
    })
  )

/**
 * One ioredis client for `url`, connected at once. A failed first connection is a warning, not a
 * failure: the client keeps reconnecting in the background and commands fail fast meanwhile.
 * The client is closed (QUIT, then disconnect) when the scope closes.
 */
export const makeRedis = (
  url: Redacted.Redacted,
  options: RedisConnectionOptions = {}
): Effect.Effect<RedisService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const rawUrl = Redacted.value(url)
    const target = describeRedisTarget(rawUrl)
    const baseOptions = clientOptions(options)
    const runtime = yield* Effect.runtime<never>()
    const log = (effect: Effect.Effect<void>) => {
      Runtime.runFork(runtime)(effect.pipe(Effect.annotateLogs({ redis: target })))
    }

    let lastError = "unknown error"
    let up = false
    let closed = false
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new IORedis(rawUrl, baseOptions)
        // Logged on transitions only, so an outage gives one line and not one per reconnect attempt.
        // Without an "error" listener ioredis prints every failure to stderr itself.
        client.on("error", (error: unknown) => {
          lastError = redisReason(error, rawUrl)
        })
        client.on("close", () => {
          if (up && !closed) {
            up = false
            log(
              Effect.logWarning("Redis connection lost; reconnecting in the background").pipe(
                Effect.annotateLogs({ reason: lastError })
              )
            )
          }
        })
        client.on("ready", () => {
          lastError = "connection closed"
          if (!up && !closed) {
            up = true
            log(Effect.logInfo("Redis connection ready"))
          }
        })
        return client
      }),
      (client) =>
        Effect.suspend(() => {
          closed = true
          return quitClient(client)
        })
    )

    const run = <A>(f: (client: IORedis) => Promise<A>, operation = "command") =>
      Effect.tryPromise({
        try: () => f(client),
        catch: (error) =>
          new RedisError({
            operation,
            reason: client.status === "ready"
              ? redisReason(error, rawUrl)
              : `not connected (${client.status}; last error: ${lastError})`
          })
      })

    const ping = (timeout: Duration.DurationInput = "1 second") =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeNanos
        yield* run((c) => c.ping(), "PING").pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new RedisError({ operation: "PING", reason: `no reply within ${Duration.format(timeout)}` })
          })
        )
        const elapsed = Number((yield* Clock.currentTimeNanos) - start) / 1e6
        return Math.round(elapsed * 10) / 10
      })

    const duplicate = (overrides: Partial<RedisOptions> = {}) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const copy = client.duplicate(overrides)
          copy.on("error", () => undefined) // its user reports failures through its own commands
          return copy
        }),
        quitClient
      ).pipe(
        // Connected now, like the main client: a lazy copy without offline queue would fail its first command.
        Effect.tap((copy) => Effect.ignore(Effect.tryPromise(() => copy.connect())))
      )

    // connect() settles on its own (connect timeout, then the ready check's command timeout);
    // the Effect timeout is only a backstop.
    const connectBudget = (baseOptions.connectTimeout ?? 2_000) + (baseOptions.commandTimeout ?? 1_000) + 1_000
    yield* Effect.tryPromise(() => client.connect()).pipe(
      Effect.timeout(connectBudget),
      Effect.tapError(() =>
        Effect.logWarning("Redis unreachable at start; serving without it and reconnecting in the background").pipe(
          Effect.annotateLogs({ redis: target, reason: lastError })
        )
      ),
      Effect.ignore
    )

    return { client, target, run, ping, duplicate } satisfies RedisService
  })

/**
 * `Some(redis)` when REDIS_URL is set, `None` otherwise. Features that can run without Redis
 * (cache, rate limiter, job queue) depend on this and pick their in-memory variant on `None`.
 */
/**
 * The root of every key this deployment writes (cache, rate limits): `chatkit:`, or
 * `chatkit:<namespace>:` when deployments or parallel tests share one Redis.
 */
export const redisKeyRoot = (namespace?: string) => {
  if (namespace === undefined) return "chatkit:"
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(namespace)) {
    throw new Error(`invalid Redis namespace "${namespace}": expected 1-64 of [A-Za-z0-9_.-]`)
  }
  return `chatkit:${namespace}:`
}

export class OptionalRedis extends Context.Tag("chatkit/OptionalRedis")<OptionalRedis, Option.Option<RedisService>>() {}

export class Redis extends Context.Tag("chatkit/Redis")<Redis, RedisService>() {
  /** A client for an explicit URL (tests, tools). */
  static layer(url: Redacted.Redacted, options: RedisConnectionOptions = {}): Layer.Layer<Redis> {
    return Layer.scoped(Redis, makeRedis(url, options))
  }

  /**
   * The one shared client of the process when REDIS_URL is set, else `None`. Provide this layer
   * once (layers are memoized by reference, so every feature built on it shares one client).
   */
  static readonly layerOptional: Layer.Layer<OptionalRedis, never, AppConfig> = Layer.scoped(
    OptionalRedis,
    Effect.flatMap(AppConfig, (config) =>
      Option.match(config.redisUrl, {
        onNone: () => Effect.succeedNone,
        onSome: (url) => Effect.asSome(makeRedis(url))
      }))
  )
}

/**
 * The shared client as a plain `Redis` service, for code that requires Redis (BullMQ producers,
 * the Redis rate-limit store). Built on `Redis.layerOptional`, so it is the same client; fails when
 * REDIS_URL is not set, so only provide it after checking `AppConfig.redisUrl`.
 */
export const RedisLive: Layer.Layer<Redis, RedisError, AppConfig> = Layer.effect(
  Redis,
  Effect.flatMap(OptionalRedis, (redis) =>
    Option.match(redis, {
      onNone: () => Effect.fail(new RedisError({ operation: "configure", reason: "REDIS_URL is not set" })),
      onSome: Effect.succeed
    }))
).pipe(Layer.provide(Redis.layerOptional))
