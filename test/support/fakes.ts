import { type Context, Effect, Layer } from "effect"
import type { User, UserId } from "../../src/domain/User.js"

/**
 * A layer for `tag` made of the members a test names. Any other member is a function that dies
 * naming itself, so a fake states only what the test needs and an unexpected call fails loudly.
 */
export const makeTestLayer = <I, S extends object>(tag: Context.Tag<I, S>) => (members: Partial<S>): Layer.Layer<I> =>
  Layer.succeed(
    tag,
    new Proxy({ ...members }, {
      get: (target, property) =>
        property in target || typeof property === "symbol"
          ? target[property as keyof typeof target]
          : () => Effect.die(`${tag.key}.${property} was called, but the test does not provide it`)
    }) as S
  )

/** A user as CurrentUser holds it, for policy tests: `user<id>@example.com`, created at the epoch. */
export const fakeUser = (id: number, is_admin = false): User => ({
  id: id as UserId,
  email: `user${id}@example.com`,
  display_name: null,
  is_admin,
  is_lti: false,
  created_at: new Date(0),
  updated_at: new Date(0)
})
