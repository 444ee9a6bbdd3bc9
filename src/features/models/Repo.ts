import { SqlClient } from "@effect/sql"
import { Effect, Schema, Struct } from "effect"

import { Conflict } from "../../domain/errors.js"
import { Model, ModelId } from "../../domain/Model.js"
import {
  columnsOf,
  countedPage,
  countedPageQuery,
  findOneRow,
  isUniqueViolation,
  patchColumns,
  singleRow
} from "../../platform/Database.js"
import { withHotSpan } from "../../platform/Spans.js"

/** A models row as stored (migration 0004). */
const ModelRow = Schema.Struct({
  ...Model.fields,
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf
})

const COLUMNS = columnsOf(ModelRow)

/** What an insert writes: every column but those the database fills in. */
const NewModel = Schema.Struct(Struct.omit(Model.fields, "id", "created_at", "updated_at"))
export type NewModel = typeof NewModel.Type

const ModelChanges = Schema.partialWith(NewModel, { exact: true })
export type ModelChanges = typeof ModelChanges.Type

/** another model has the name (ignoring case) */
const isNameTaken = isUniqueViolation("models_name_key")

const nameTaken = (name: string) => new Conflict({ detail: `A model named ${name} already exists` })

/** SQL of the models table. Writes join the caller's transaction. */
export class ModelsRepo extends Effect.Service<ModelsRepo>()("chatkit/ModelsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const columns = sql.literal(COLUMNS)

    /**
     * One page in (display_name, id) order with the total: one statement whatever the page holds
     * (the lateral join yields one row of NULLs past the end, so the total still comes back).
     */
    const list = (limit: number, offset: number) =>
      countedPageQuery<Model>(sql, { columns, from: sql`FROM models`, orderBy: "display_name, id", limit, offset })
        .pipe(
          Effect.map(countedPage<Model>("id")),
          withHotSpan("ModelsRepo.list")
        )

    /** The catalog entry an agent node's `model` names, to find its provider. */
    const findByName = findOneRow({
      Request: Schema.String,
      Result: ModelRow,
      execute: (name) => sql`SELECT ${columns} FROM models WHERE name = ${name}`
    })

    const lock = findOneRow({
      Request: ModelId,
      Result: ModelRow,
      execute: (id) => sql`SELECT ${columns} FROM models WHERE id = ${id} FOR UPDATE`
    })

    const insertRow = singleRow({
      Request: NewModel,
      Result: ModelRow,
      execute: (model) => sql`INSERT INTO models ${sql.insert({ ...model })} RETURNING ${columns}`
    })

    const insert = (model: NewModel) =>
      insertRow(model).pipe(Effect.catchIf(isNameTaken, () => Effect.fail(nameTaken(model.name))))

    const updateRow = findOneRow({
      Request: Schema.Struct({ id: ModelId, changes: ModelChanges }),
      Result: ModelRow,
      execute: ({ changes, id }) =>
        sql`UPDATE models SET ${patchColumns(sql, { ...changes, updated_at: sql`now()` })}
          WHERE id = ${id} RETURNING ${columns}`
    })

    const update = (id: ModelId, changes: ModelChanges) =>
      updateRow({ id, changes }).pipe(
        Effect.catchIf(isNameTaken, () => Effect.fail(nameTaken(changes.name ?? "")))
      )

    const remove = findOneRow({
      Request: ModelId,
      Result: ModelRow,
      execute: (id) => sql`DELETE FROM models WHERE id = ${id} RETURNING ${columns}`
    })

    return { list, findByName, lock, insert, update, delete: remove } as const
  })
}) {}
