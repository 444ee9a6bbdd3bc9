import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, ParseResult, Schema } from "effect"

import { changedFields } from "../src/features/audit/AuditLog.js"
import { decodedCountedPage, findOneRow, singleRow } from "../src/platform/Database.js"

const Row = Schema.Struct({ id: Schema.Int, is_admin: Schema.Boolean, created_at: Schema.DateFromSelf })

const returning = (rows: ReadonlyArray<unknown>) => ({
  Request: Schema.Number,
  Result: Row,
  execute: () => Effect.succeed(rows)
})

describe("rows decoded with their schema", () => {
  it.effect("findOneRow decodes the first row, and None when there is none", () =>
    Effect.gen(function*() {
      const row = { id: 1, is_admin: false, created_at: new Date(0) }
      expect(yield* findOneRow(returning([row]))(1)).toEqual(Option.some(row))
      expect(yield* findOneRow(returning([]))(1)).toEqual(Option.none())
    }))

  it.effect("a row that drifted from its schema is a defect carrying the parse issue, not a value", () =>
    Effect.gen(function*() {
      // e.g. a migration made is_admin an integer column
      const exit = yield* Effect.exit(findOneRow(returning([{ id: 1, is_admin: 1, created_at: new Date(0) }]))(1))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      if (Exit.isFailure(exit)) expect(ParseResult.isParseError(Cause.squash(exit.cause))).toBe(true)
    }))

  it.effect("singleRow dies when the statement returns no row", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(singleRow(returning([]))(1))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    }))

  it.effect("decodedCountedPage decodes the items, drops the row of NULLs past the end, and dies on a bad item", () =>
    Effect.gen(function*() {
      const page = decodedCountedPage(Row, "id")
      const row = { id: 1, is_admin: false, created_at: new Date(0) }
      expect(yield* page([{ total: 3, ...row }])).toEqual({ total: 3, items: [row] })
      expect(yield* page([{ total: "3", id: null, is_admin: null, created_at: null }])).toEqual({ total: 3, items: [] })
      const exit = yield* Effect.exit(page([{ total: 1, ...row, is_admin: "no" }]))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      if (Exit.isFailure(exit)) expect(ParseResult.isParseError(Cause.squash(exit.cause))).toBe(true)
    }))
})

describe("changedFields", () => {
  const before = { display_name: "Ada" as string | null, is_admin: false }

  it("keeps the defined fields that differ, with their audit diff", () => {
    expect(changedFields(before, { display_name: null, is_admin: false })).toEqual({
      changes: { display_name: null },
      diff: { display_name: { from: "Ada", to: null } }
    })
  })

  it("ignores undefined values and fields the row does not have", () => {
    const input = { display_name: undefined, is_admin: true, password: "secret" }
    expect(changedFields(before, input)).toEqual({
      changes: { is_admin: true },
      diff: { is_admin: { from: false, to: true } }
    })
    expect(changedFields(before, { display_name: "Ada" })).toEqual({ changes: {}, diff: {} })
  })
})
