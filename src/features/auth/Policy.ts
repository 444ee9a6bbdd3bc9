import { Effect } from "effect"

import { Forbidden } from "../../api/errors.js"
import { CurrentUser } from "../../api/Security.js"

/** Admin-only endpoints: 403 for any other authenticated user. */
export const requireAdmin = Effect.flatMap(
  CurrentUser,
  (user) => user.is_admin ? Effect.void : Effect.fail(new Forbidden({ detail: "This endpoint is for administrators" }))
)

/** Runs `effect` only for an admin caller. */
export const adminOnly = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.zipRight(requireAdmin, effect)
