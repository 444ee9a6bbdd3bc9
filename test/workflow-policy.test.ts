import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"

import { Forbidden, NotFound } from "../src/domain/errors.js"
import { CurrentUser } from "../src/domain/User.js"
import type { User } from "../src/domain/User.js"
import { type Access, WorkflowsPolicy } from "../src/features/workflows/Policy.js"
import { type LockOptions, WorkflowsRepo, type WorkflowWithShareRow } from "../src/features/workflows/Repo.js"
import { fakeUser, makeTestLayer } from "./support/fakes.js"

/** WorkflowsPolicy alone, on a fake repo: no database, so every branch of the rules is cheap to check. */

const OWNER = 1
const OTHER = 2
const ADMIN = 3

const workflow = (fields: Partial<WorkflowWithShareRow> = {}): WorkflowWithShareRow => ({
  id: 7,
  slug: "w",
  display_name: "W",
  description: null,
  owner_id: OWNER,
  active_version_id: null,
  is_default: false,
  created_at: new Date(0),
  updated_at: new Date(0),
  deleted_at: null,
  share_permission: null,
  ...fields
})

/** What the policy asked the repo, and the row the repo answers (None: no live workflow). */
const setup = (found: Option.Option<WorkflowWithShareRow>) => {
  const calls: Array<{ readonly id: number; readonly userId: number; readonly options: LockOptions | undefined }> = []
  const repo = makeTestLayer(WorkflowsRepo)({
    findWithShare: (id, userId, options) =>
      Effect.sync(() => {
        calls.push({ id, userId, options })
        return found
      })
  })
  const layer = WorkflowsPolicy.DefaultWithoutDependencies.pipe(Layer.provide(repo))
  return { calls, layer }
}

const decide = (
  found: Option.Option<WorkflowWithShareRow>,
  user: User,
  need: Access,
  options?: LockOptions
) => {
  const { layer } = setup(found)
  return Effect.flatMap(WorkflowsPolicy, (policy) => policy.require(7, need, options)).pipe(
    Effect.provide(layer),
    Effect.provideService(CurrentUser, user),
    Effect.either
  )
}

const grants = (found: Option.Option<WorkflowWithShareRow>, user: User) =>
  Effect.forEach(
    ["read", "write", "manage"] as const,
    (need) => Effect.map(decide(found, user, need), (result) => result._tag === "Right" ? "ok" : result.left._tag)
  )

describe("WorkflowsPolicy", () => {
  it.effect("the owner and administrators manage; shares read or write; anyone else gets a 404", () =>
    Effect.gen(function*() {
      const owned = Option.some(workflow())
      expect(yield* grants(owned, fakeUser(OWNER))).toEqual(["ok", "ok", "ok"])
      expect(yield* grants(owned, fakeUser(ADMIN, true))).toEqual(["ok", "ok", "ok"])
      expect(yield* grants(Option.some(workflow({ share_permission: "write" })), fakeUser(OTHER))).toEqual([
        "ok",
        "ok",
        "Forbidden"
      ])
      expect(yield* grants(Option.some(workflow({ share_permission: "read" })), fakeUser(OTHER))).toEqual([
        "ok",
        "Forbidden",
        "Forbidden"
      ])
      expect(yield* grants(owned, fakeUser(OTHER))).toEqual(["NotFound", "NotFound", "NotFound"])
      // a workflow nobody owns (the bootstrap default) is the administrators'
      const unowned = Option.some(workflow({ owner_id: null }))
      expect(yield* grants(unowned, fakeUser(OTHER))).toEqual(["NotFound", "NotFound", "NotFound"])
      expect(yield* grants(unowned, fakeUser(ADMIN, true))).toEqual(["ok", "ok", "ok"])
      expect(yield* grants(Option.none(), fakeUser(ADMIN, true))).toEqual(["NotFound", "NotFound", "NotFound"])
    }))

  it.effect("a 404 does not reveal the workflow, a 403 says what is missing", () =>
    Effect.gen(function*() {
      const invisible = yield* decide(Option.some(workflow()), fakeUser(OTHER), "read")
      const missing = yield* decide(Option.none(), fakeUser(OTHER), "read")
      expect(invisible).toEqual(missing)
      expect(invisible._tag === "Left" && invisible.left).toBeInstanceOf(NotFound)
      const reader = yield* decide(Option.some(workflow({ share_permission: "read" })), fakeUser(OTHER), "write")
      expect(reader._tag === "Left" && reader.left).toBeInstanceOf(Forbidden)
      expect(reader._tag === "Left" && reader.left instanceof Forbidden && reader.left.detail).toBe(
        "This needs write access to workflow 7; you have read access"
      )
    }))

  it.effect("asks the repo for the current user's share, and locks the row only when told to", () =>
    Effect.gen(function*() {
      const { calls, layer } = setup(Option.some(workflow()))
      const policy = yield* Effect.provide(WorkflowsPolicy, layer)
      const row = yield* policy.require(7, "read").pipe(Effect.provideService(CurrentUser, fakeUser(OWNER)))
      yield* policy.require(7, "write", { lock: true }).pipe(Effect.provideService(CurrentUser, fakeUser(OTHER, true)))
      expect(row).toEqual(workflow())
      expect(calls).toEqual([
        { id: 7, userId: OWNER, options: undefined },
        { id: 7, userId: OTHER, options: { lock: true } }
      ])
    }))
})
