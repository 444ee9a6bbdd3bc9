import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option, Ref, Schedule, TestClock } from "effect"

import type { UserId } from "../src/domain/User.js"
import { type UserRow, UsersRepo } from "../src/features/users/Repo.js"
import { UserLookup } from "../src/features/users/UserLookup.js"
import { Cache, passThroughCache } from "../src/platform/Cache.js"
import { testConfig } from "../src/platform/Config.js"
import { OptionalRedis, Redis } from "../src/platform/Redis.js"
import { uniqueSchema } from "./support/database.js"
import { fakeUser, makeTestLayer } from "./support/fakes.js"
import { reachableRedis, testRedisUrl } from "./support/redis.js"

/*
 * The user behind each request is kept in the process for a second, in front of the shared cache
 * (here a pass-through one, so every shared read reaches the repository): most requests need no
 * Redis round trip. This instance's change is seen at once, another instance's too (Redis pub/sub),
 * and without Redis within the second.
 */

const loads = Ref.unsafeMake(0)
let current: UserRow = { ...fakeUser(7), deleted_at: null, password_hash: "x" }

const lookupOn = (redis: Layer.Layer<OptionalRedis, Error>, env: Record<string, string>) =>
  UserLookup.DefaultWithoutDependencies.pipe(
    Layer.provide(
      makeTestLayer(UsersRepo)({
        findLiveById: () => Effect.as(Ref.update(loads, (n) => n + 1), Option.some(current))
      })
    ),
    Layer.provide(Layer.succeed(Cache, passThroughCache)),
    Layer.provide(redis),
    Layer.provide(testConfig(env))
  )

const lookupWith = (env: Record<string, string>) => lookupOn(Layer.succeed(OptionalRedis, Option.none()), env)

const id = 7 as UserId

layer(lookupWith({}))("UserLookup", (it) => {
  it.effect("reads a user once for the requests of one second", () =>
    Effect.gen(function*() {
      const lookup = yield* UserLookup
      const before = yield* Ref.get(loads)
      for (let i = 0; i < 5; i++) yield* lookup.findLive(id)
      expect((yield* Ref.get(loads)) - before).toBe(1)
    }))

  it.effect("sees a change made elsewhere within the second, and its own at once", () =>
    Effect.gen(function*() {
      const lookup = yield* UserLookup
      yield* lookup.findLive(id)
      current = { ...current, display_name: "renamed elsewhere" }
      expect(Option.getOrThrow(yield* lookup.findLive(id)).display_name).toBeNull()
      yield* TestClock.adjust("1001 millis")
      expect(Option.getOrThrow(yield* lookup.findLive(id)).display_name).toBe("renamed elsewhere")
      current = { ...current, is_admin: true }
      yield* lookup.invalidate(id)
      expect(Option.getOrThrow(yield* lookup.findLive(id)).is_admin).toBe(true)
    }))
})

layer(lookupWith({ CACHE_DISABLED: "true" }))("UserLookup with CACHE_DISABLED=true", (it) => {
  it.effect("reads the user for every request", () =>
    Effect.gen(function*() {
      const lookup = yield* UserLookup
      const before = yield* Ref.get(loads)
      for (let i = 0; i < 3; i++) yield* lookup.findLive(id)
      expect((yield* Ref.get(loads)) - before).toBe(3)
    }))
})

describe.runIf(Option.isSome(testRedisUrl))("UserLookup of two instances on one Redis (TEST_REDIS_URL)", () => {
  const onRedis = Layer.map(
    reachableRedis,
    (context) => Context.make(OptionalRedis, Option.some(Context.get(context, Redis)))
  )

  it.scopedLive("a user invalidated on one instance leaves the other's process cache at once, not a second later", () =>
    Effect.gen(function*() {
      const instance = lookupOn(onRedis, { REDIS_NAMESPACE: uniqueSchema("user_lookup") })
      const [one, other] = yield* Effect.all([Layer.build(instance), Layer.build(instance)]).pipe(
        Effect.map((contexts) => contexts.map(Context.get(UserLookup)))
      )
      current = { ...current, display_name: "before" }
      const nameOnOther = Effect.map(other!.findLive(id), (user) => Option.getOrThrow(user).display_name)
      expect(yield* nameOnOther).toBe("before")
      current = { ...current, display_name: "after" }
      expect(yield* nameOnOther).toBe("before") // kept in the process

      yield* one!.invalidate(id)
      // the message arrives asynchronously, in milliseconds: well before the second would end
      const seen = yield* nameOnOther.pipe(
        Effect.filterOrFail((name) => name === "after"),
        Effect.retry(Schedule.spaced("2 millis")),
        Effect.timeout("200 millis")
      )
      expect(seen).toBe("after")
    }))
})
