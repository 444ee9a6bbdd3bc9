import { Effect } from "effect"

import { CurrentUser } from "../../api/Security.js"
import { Forbidden } from "../../domain/errors.js"

/** Admin-only endpoints: 403 for any other authenticated user. */
export const requireAdmin = Effect.flatMap(
  CurrentUser,
  (user) => user.is_admin ? Effect.void : Effect.fail(new Forbidden({ detail: "This endpoint is for administrators" }))
)

/** Runs `effect` only for an admin caller. */
export const adminOnly = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.zipRight(requireAdmin, effect)
