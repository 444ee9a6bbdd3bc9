import { type Context, Effect, Layer } from "effect"

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
