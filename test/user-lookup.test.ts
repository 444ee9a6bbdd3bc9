import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Option, Ref, TestClock } from "effect"

import type { UserId } from "../src/domain/User.js"
import { type UserRow, UsersRepo } from "../src/features/users/Repo.js"
import { UserLookup } from "../src/features/users/UserLookup.js"
import { Cache, passThroughCache } from "../src/platform/Cache.js"
import { testConfig } from "../src/platform/Config.js"
import { fakeUser, makeTestLayer } from "./support/fakes.js"

/*
 * The user behind each request is kept in the process for a second, in front of the shared cache
 * (here a pass-through one, so every shared read reaches the repository): most requests need no
 * Redis round trip, another instance's change is seen within the second, this instance's at once.
 */

const loads = Ref.unsafeMake(0)
let current: UserRow = { ...fakeUser(7), deleted_at: null, password_hash: "x" }

const lookupWith = (env: Record<string, string>) =>
  UserLookup.DefaultWithoutDependencies.pipe(
    Layer.provide(
      makeTestLayer(UsersRepo)({
        findLiveById: () => Effect.as(Ref.update(loads, (n) => n + 1), Option.some(current))
      })
    ),
    Layer.provide(Layer.succeed(Cache, passThroughCache)),
    Layer.provide(testConfig(env))
  )

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
