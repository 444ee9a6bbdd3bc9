import { Cache as LocalCache, Duration, Effect, Exit, Option, Schema } from "effect"

import { AdminUser, type UserId } from "../../domain/User.js"
import { Cache } from "../../platform/Cache.js"
import { AppConfig } from "../../platform/Config.js"
import { withHotSpan } from "../../platform/Spans.js"
import { toAdminUser, UsersRepo } from "./Repo.js"

/** At most this stale: a deleted or demoted user loses access within it, and at once on this instance. */
const USER_TTL = Duration.seconds(30)
/** Kept in the process too, so most requests need no Redis round trip; another instance's change is seen within it. */
const LOCAL_TTL = Duration.seconds(1)
/** users remembered in the process at most */
const LOCAL_USERS = 10_000

const cacheKey = (id: UserId) => `users:${id}`

const CachedUser = Schema.Option(AdminUser)

/**
 * The user behind an access token, read through the cache. Every write to a user must call
 * `invalidate` after its transaction commits, so the next request sees the change.
 */
export class UserLookup extends Effect.Service<UserLookup>()("chatkit/UserLookup", {
  effect: Effect.gen(function*() {
    const config = yield* AppConfig
    const cache = yield* Cache
    const repo = yield* UsersRepo

    const shared = (id: UserId) =>
      cache.getOrLoad(cacheKey(id), CachedUser, Effect.map(repo.findLiveById(id), Option.map(toAdminUser)), USER_TTL)
    const local = yield* LocalCache.makeWith({
      capacity: LOCAL_USERS,
      lookup: shared,
      timeToLive: (exit) => Exit.isSuccess(exit) ? LOCAL_TTL : Duration.zero
    })

    /** The user if it is live (exists and is not soft-deleted); CACHE_DISABLED=true reads it every time. */
    const findLive = (id: UserId) =>
      (config.cacheDisabled ? shared(id) : local.get(id)).pipe(withHotSpan("UserLookup.findLive"))

    // by prefix: unlike a plain delete, it also stops a read that overlaps the write from caching the old row
    const invalidate = (id: UserId) => Effect.zipRight(cache.invalidatePrefix(cacheKey(id)), local.invalidate(id))

    return { findLive, invalidate } as const
  }),
  dependencies: [UsersRepo.Default]
}) {}
