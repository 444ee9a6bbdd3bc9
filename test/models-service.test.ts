import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, identity, Layer, Option } from "effect"

import type { Model, ModelId } from "../src/domain/Model.js"
import { type AuditEvent, AuditLog } from "../src/features/audit/AuditLog.js"
import { type ModelChanges, ModelsRepo } from "../src/features/models/Repo.js"
import { MODELS_CACHE_PREFIX, ModelsService } from "../src/features/models/Service.js"
import { Cache } from "../src/platform/Cache.js"
import { makeTestLayer } from "./support/fakes.js"

// ModelsService alone, over fakes: no database, no HTTP. The end-to-end suite is test/models.test.ts.

const existing: Model = {
  id: 7 as ModelId,
  name: "gpt-4o-mini",
  display_name: "GPT-4o mini",
  description: null,
  provider_id: null,
  provider_slug: null,
  supports_reasoning: false,
  supports_streaming: true,
  created_at: new Date("2026-01-01T00:00:00.000Z"),
  updated_at: new Date("2026-01-01T00:00:00.000Z")
}

/** A transaction that is just the effect: the fakes have nothing to commit. */
const SqlTest = makeTestLayer(SqlClient.SqlClient)({ withTransaction: identity })

const serviceWith = (fakes: {
  readonly repo: Partial<ModelsRepo>
  readonly audit?: Partial<AuditLog>
  readonly cache?: Partial<Cache["Type"]>
}) =>
  ModelsService.DefaultWithoutDependencies.pipe(
    Layer.provide([
      makeTestLayer(ModelsRepo)(fakes.repo),
      makeTestLayer(AuditLog)(fakes.audit ?? {}),
      makeTestLayer(Cache)(fakes.cache ?? {}),
      SqlTest
    ])
  )

describe("ModelsService with fakes", () => {
  it.effect("a PATCH of a model that changes nothing writes nothing, audits nothing, invalidates nothing", () =>
    Effect.gen(function*() {
      const service = yield* ModelsService
      const model = yield* service.update(existing.id, {
        name: existing.name,
        display_name: existing.display_name,
        description: null,
        supports_streaming: true
      })
      expect(model).toEqual(existing)
    }).pipe(
      // update, audit.record and cache.invalidatePrefix are not provided: calling one dies
      Effect.provide(serviceWith({ repo: { lock: () => Effect.succeedSome(existing) } }))
    ))

  it.effect("a PATCH writes only the changed fields, audits their diff, then drops the cached pages", () => {
    const written: Array<ModelChanges> = []
    const audited: Array<AuditEvent> = []
    const invalidated: Array<string> = []
    return Effect.gen(function*() {
      const service = yield* ModelsService
      const model = yield* service.update(existing.id, {
        name: existing.name,
        display_name: "GPT-4o mini (fast)",
        description: undefined
      })
      expect(model.display_name).toBe("GPT-4o mini (fast)")
      expect(written).toEqual([{ display_name: "GPT-4o mini (fast)" }])
      expect(audited).toEqual([{
        action: "model.update",
        resourceType: "model",
        resourceId: existing.id,
        changes: { display_name: { from: "GPT-4o mini", to: "GPT-4o mini (fast)" } }
      }])
      expect(invalidated).toEqual([MODELS_CACHE_PREFIX])
    }).pipe(
      Effect.provide(serviceWith({
        repo: {
          lock: () => Effect.succeedSome(existing),
          update: (_, changes) =>
            Effect.sync(() => {
              written.push(changes)
              return Option.some({ ...existing, ...changes })
            })
        },
        audit: { record: (event) => Effect.sync(() => void audited.push(event)) },
        cache: { invalidatePrefix: (prefix) => Effect.sync(() => void invalidated.push(prefix)) }
      }))
    )
  })

  it.effect("a PATCH of a model that does not exist is a NotFound, and writes nothing", () =>
    Effect.gen(function*() {
      const service = yield* ModelsService
      const error = yield* Effect.flip(service.update(existing.id, { display_name: "x" }))
      expect(error._tag).toBe("NotFound")
    }).pipe(Effect.provide(serviceWith({ repo: { lock: () => Effect.succeedNone } }))))
})
