import { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"

import { Conflict } from "../../domain/errors.js"
import type { Model, ModelId } from "../../domain/Model.js"
import { countedPage, type CountedPageRows, isUniqueViolation, patchColumns } from "../../platform/Database.js"

const COLUMNS =
  "id, name, display_name, description, provider_id, provider_slug, supports_reasoning, supports_streaming, " +
  "created_at, updated_at"

export interface NewModel {
  readonly name: string
  readonly display_name: string
  readonly description: string | null
  readonly provider_id: string | null
  readonly provider_slug: string | null
  readonly supports_reasoning: boolean
  readonly supports_streaming: boolean
}

export type ModelChanges = Partial<NewModel>

/** another model has the name (ignoring case) */
const isNameTaken = isUniqueViolation("models_name_key")

const nameTaken = (name: string) => new Conflict({ detail: `A model named ${name} already exists` })

/** SQL of the models table. Writes join the caller's transaction. */
export class ModelsRepo extends Effect.Service<ModelsRepo>()("chatkit/ModelsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const first = <A>(rows: ReadonlyArray<A>) => Option.fromNullable(rows[0])

    /**
     * One page in (display_name, id) order with the total: one statement whatever the page holds
     * (the lateral join yields one row of NULLs past the end, so the total still comes back).
     */
    const list = (limit: number, offset: number) =>
      sql<CountedPageRows<Model>[number]>`
        SELECT c.total, m.*
        FROM (SELECT count(*) AS total FROM models) c
        LEFT JOIN LATERAL (
          SELECT ${sql.literal(COLUMNS)} FROM models ORDER BY display_name, id LIMIT ${limit} OFFSET ${offset}
        ) m ON true
        ORDER BY m.display_name, m.id`.pipe(
        Effect.map(countedPage<Model>("id")),
        Effect.withSpan("ModelsRepo.list")
      )

    const lock = (id: ModelId) =>
      sql<Model>`SELECT ${sql.literal(COLUMNS)} FROM models WHERE id = ${id} FOR UPDATE`.pipe(Effect.map(first))

    const insert = (model: NewModel) =>
      sql<Model>`INSERT INTO models ${sql.insert({ ...model })} RETURNING ${sql.literal(COLUMNS)}`.pipe(
        Effect.flatMap((rows) =>
          Option.match(first(rows), {
            onNone: () => Effect.dieMessage("INSERT returned no row"),
            onSome: Effect.succeed
          })
        ),
        Effect.catchIf(isNameTaken, () => Effect.fail(nameTaken(model.name)))
      )

    const update = (id: ModelId, changes: ModelChanges) =>
      sql<Model>`UPDATE models SET ${patchColumns(sql, { ...changes, updated_at: sql`now()` })}
        WHERE id = ${id} RETURNING ${sql.literal(COLUMNS)}`.pipe(
        Effect.map(first),
        Effect.catchIf(isNameTaken, () => Effect.fail(nameTaken(changes.name ?? "")))
      )

    const remove = (id: ModelId) =>
      sql<Model>`DELETE FROM models WHERE id = ${id} RETURNING ${sql.literal(COLUMNS)}`.pipe(Effect.map(first))

    return { list, lock, insert, update, delete: remove } as const
  })
}) {}
