import { Cache as LocalCache, Duration, Effect, Exit, Option, Runtime, Schema } from "effect"

import { AdminUser, UserId } from "../../domain/User.js"
import { Cache } from "../../platform/Cache.js"
import { AppConfig } from "../../platform/Config.js"
import { OptionalRedis, redisKeyRoot } from "../../platform/Redis.js"
import { withHotSpan } from "../../platform/Spans.js"
import { toAdminUser, UsersRepo } from "./Repo.js"

/** At most this stale: a deleted or demoted user loses access within it, and at once on this instance. */
const USER_TTL = Duration.seconds(30)
/**
 * Kept in the process too, so most requests need no Redis round trip. Another instance's change
 * reaches this one at once through Redis pub/sub; a message lost meanwhile (Redis down) is made up
 * for within this.
 */
const LOCAL_TTL = Duration.seconds(1)
/** users remembered in the process at most */
const LOCAL_USERS = 10_000

const cacheKey = (id: UserId) => `users:${id}`

const CachedUser = Schema.Option(AdminUser)

const decodeUserId = Schema.decodeUnknownOption(Schema.compose(Schema.NumberFromString, UserId))

/**
 * The user behind an access token, read through the cache. Every write to a user must call
 * `invalidate` after its transaction commits, so the next request sees the change, on every instance.
 */
export class UserLookup extends Effect.Service<UserLookup>()("chatkit/UserLookup", {
  scoped: Effect.gen(function*() {
    const config = yield* AppConfig
    const cache = yield* Cache
    const repo = yield* UsersRepo
    const redis = yield* OptionalRedis

    const shared = (id: UserId) =>
      cache.getOrLoad(cacheKey(id), CachedUser, Effect.map(repo.findLiveById(id), Option.map(toAdminUser)), USER_TTL)
    const local = yield* LocalCache.makeWith({
      capacity: LOCAL_USERS,
      lookup: shared,
      timeToLive: (exit) => Exit.isSuccess(exit) ? LOCAL_TTL : Duration.zero
    })

    // the ids of changed users, published by the instance that changed them
    const channel = `${redisKeyRoot(Option.getOrUndefined(config.redisNamespace))}users:changed`
    if (Option.isSome(redis)) {
      // a connection of its own: a subscribed one can run no other command
      const subscriber = yield* redis.value.duplicate({ autoResubscribe: false })
      const runtime = yield* Effect.runtime<never>()
      subscriber.on(
        "message",
        (_channel: string, message: string) =>
          Option.map(decodeUserId(message), (id) => Runtime.runFork(runtime)(local.invalidate(id)))
      )
      // (re)subscribed on every connection, the first included; one that fails waits for the next "ready"
      const subscribe = () => subscriber.subscribe(channel).catch(() => undefined)
      subscriber.on("ready", subscribe)
      if (subscriber.status === "ready") yield* Effect.promise(subscribe)
    }
    const announce = (id: UserId) =>
      Option.match(redis, {
        onNone: () => Effect.void,
        // unheard (Redis down), the other instances see the change within LOCAL_TTL
        onSome: (client) => Effect.ignore(client.run((c) => c.publish(channel, String(id)), "PUBLISH"))
      })

    /** The user if it is live (exists and is not soft-deleted); CACHE_DISABLED=true reads it every time. */
    const findLive = (id: UserId) =>
      (config.cacheDisabled ? shared(id) : local.get(id)).pipe(withHotSpan("UserLookup.findLive"))

    // by prefix: unlike a plain delete, it also stops a read that overlaps the write from caching the old row
    const invalidate = (id: UserId) =>
      Effect.all([cache.invalidatePrefix(cacheKey(id)), local.invalidate(id), announce(id)], { discard: true })

    return { findLive, invalidate } as const
  }),
  dependencies: [UsersRepo.Default]
}) {}
