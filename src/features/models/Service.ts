import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"

import { Page } from "../../api/schemas.js"
import { type Conflict, NotFound } from "../../domain/errors.js"
import { Model, type ModelId } from "../../domain/Model.js"
import { type PageRequest, toPage } from "../../domain/Page.js"
import { Cache, getOrRenderJson } from "../../platform/Cache.js"
import { commitThen, orDieOnSqlError } from "../../platform/Database.js"
import { withHotSpan } from "../../platform/Spans.js"
import { AuditLog, changedFields, diffChanges } from "../audit/AuditLog.js"
import { ModelsRepo, type NewModel } from "./Repo.js"

/** Every cached page and entry of the catalog lives under this prefix; any write invalidates all of them. */
export const MODELS_CACHE_PREFIX = "models"
const pageKey = (page: PageRequest) => `${MODELS_CACHE_PREFIX}:page:${page.page}:${page.pageSize}`
const providerKey = (name: string) => `${MODELS_CACHE_PREFIX}:provider:${name}`

/** A name's place in the catalog: none when no model has it, else the model's provider_id (null: none assigned). */
const CatalogProvider = Schema.Option(Schema.NullOr(Schema.String))

const ModelPage = Page(Model)
export type ModelPage = typeof ModelPage.Type

export interface CreateModelInput {
  readonly name: string
  readonly display_name: string
  readonly description?: string | null | undefined
  readonly provider_id?: string | null | undefined
  readonly provider_slug?: string | null | undefined
  readonly supports_reasoning?: boolean | undefined
  readonly supports_streaming?: boolean | undefined
}

export type UpdateModelInput = { readonly [K in keyof CreateModelInput]?: CreateModelInput[K] | undefined }

const notFound = (id: ModelId) => new NotFound({ detail: `Model ${id} does not exist` })

const editable = (model: Model): NewModel => ({
  name: model.name,
  display_name: model.display_name,
  description: model.description,
  provider_id: model.provider_id,
  provider_slug: model.provider_slug,
  supports_reasoning: model.supports_reasoning,
  supports_streaming: model.supports_streaming
})

/**
 * The model catalog (API.md section 5). Pages are read through the cache (one entry per page and
 * page size), and so is each model's provider; every write commits with its audit row, then
 * invalidates every cached page and provider.
 */
export class ModelsService extends Effect.Service<ModelsService>()("chatkit/ModelsService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const repo = yield* ModelsRepo
    const cache = yield* Cache
    const audit = yield* AuditLog

    /** A page of the catalog as its rendered JSON body: the hot read, served from the cache as is. */
    const listJson = (page: PageRequest): Effect.Effect<string> =>
      getOrRenderJson(
        cache,
        pageKey(page),
        ModelPage,
        Effect.map(repo.list(page.pageSize, page.offset), ({ items, total }) => toPage(page, items, total))
      ).pipe(
        orDieOnSqlError,
        withHotSpan("ModelsService.list", { attributes: { page: page.page, page_size: page.pageSize } })
      )

    /**
     * Whether the catalog has a model named `name`, and its provider: the router asks on every
     * model call (two a turn, with the title's), so the answer comes from the cache.
     */
    const providerOf = (name: string): Effect.Effect<Option.Option<string | null>> =>
      cache.getOrLoad(
        providerKey(name),
        CatalogProvider,
        Effect.map(repo.findByName(name), Option.map((row) => row.provider_id))
      ).pipe(orDieOnSqlError)

    /** Runs a write in a transaction and, once it has committed, drops every cached page and entry. */
    const mutate = commitThen(sql, () => cache.invalidatePrefix(MODELS_CACHE_PREFIX))

    const create = (input: CreateModelInput): Effect.Effect<Model, Conflict> =>
      mutate(
        Effect.gen(function*() {
          const fields: NewModel = {
            name: input.name,
            display_name: input.display_name,
            description: input.description ?? null,
            provider_id: input.provider_id ?? null,
            provider_slug: input.provider_slug ?? null,
            supports_reasoning: input.supports_reasoning ?? false,
            supports_streaming: input.supports_streaming ?? true
          }
          const model = yield* repo.insert(fields)
          yield* audit.record({
            action: "model.create",
            resourceType: "model",
            resourceId: model.id,
            changes: diffChanges({}, { ...fields })
          })
          return model
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("ModelsService.create"))

    /** PATCH semantics; a request that changes nothing writes nothing and invalidates nothing. */
    const update = (id: ModelId, input: UpdateModelInput): Effect.Effect<Model, NotFound | Conflict> =>
      Effect.gen(function*() {
        const result = yield* sql.withTransaction(
          Effect.gen(function*() {
            const before = yield* repo.lock(id)
            if (Option.isNone(before)) return yield* notFound(id)
            const { changes, diff } = changedFields(editable(before.value), input)
            if (Object.keys(diff).length === 0) return { model: before.value, changed: false }
            const after = yield* repo.update(id, changes)
            if (Option.isNone(after)) return yield* notFound(id)
            yield* audit.record({ action: "model.update", resourceType: "model", resourceId: id, changes: diff })
            return { model: after.value, changed: true }
          })
        )
        if (result.changed) yield* cache.invalidatePrefix(MODELS_CACHE_PREFIX)
        return result.model
      }).pipe(orDieOnSqlError, Effect.withSpan("ModelsService.update", { attributes: { "model.id": id } }))

    const remove = (id: ModelId): Effect.Effect<void, NotFound> =>
      mutate(
        Effect.gen(function*() {
          const deleted = yield* repo.delete(id)
          if (Option.isNone(deleted)) return yield* notFound(id)
          yield* audit.record({
            action: "model.delete",
            resourceType: "model",
            resourceId: id,
            changes: { name: deleted.value.name, display_name: deleted.value.display_name }
          })
        })
      ).pipe(orDieOnSqlError, Effect.withSpan("ModelsService.delete", { attributes: { "model.id": id } }))

    return { listJson, providerOf, create, update, delete: remove } as const
  }),
  dependencies: [ModelsRepo.Default]
}) {}
