import { Schema } from "effect"

/**
 * A request body schema that reports every bad field at once and refuses unknown fields,
 * so a typo in a PATCH is a 400 instead of a silent no-op.
 */
export const Payload = <Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(fields).annotations({ parseOptions: { errors: "all", onExcessProperty: "error" } })

const PositiveIntFromString = Schema.NumberFromString.pipe(Schema.int(), Schema.greaterThanOrEqualTo(1))

/** `?page&page_size` (API.md section 0): optional here, defaults applied by `pageRequest`. */
export const PageParams = {
  page: Schema.optional(PositiveIntFromString.annotations({ description: "page number, from 1 (default 1)" })),
  page_size: Schema.optional(
    PositiveIntFromString.pipe(Schema.lessThanOrEqualTo(100)).annotations({ description: "1 to 100 (default 20)" })
  )
}

/** The first and the last instant a date filter accepts: years 0001 to 9999, in UTC. */
export const MIN_DATE_PARAM = new Date("0001-01-01T00:00:00.000Z")
export const MAX_DATE_PARAM = new Date("9999-12-31T23:59:59.999Z")

/**
 * An ISO 8601 date-time in a query parameter, bounded to years 0001-9999. JavaScript dates reach
 * from year -271821 to +275760, PostgreSQL `timestamptz` does not: a date outside it would be a
 * database error, and it is a 400 here instead. The message names the expectation, not the value.
 */
export const DateParam = (description: string) => {
  const text = `${description}; an ISO 8601 date-time (e.g. 2026-01-31T00:00:00Z) with a year from 0001 to 9999`
  const message = () => ({ message: "must be an ISO 8601 date-time with a year from 0001 to 9999", override: true })
  // the encoded side (the query text) carries the description, so the OpenAPI document shows it
  return Schema.String.annotations({
    description: text,
    jsonSchema: { type: "string", format: "date-time", description: text }
  })
    .pipe(Schema.compose(Schema.Date.pipe(Schema.betweenDate(MIN_DATE_PARAM, MAX_DATE_PARAM))))
    .annotations({ message })
}

/** The paginated list body of API.md section 0. */
export const Page = <A, I, R>(item: Schema.Schema<A, I, R>) =>
  Schema.Struct({
    items: Schema.Array(item),
    total: Schema.Int,
    page: Schema.Int,
    page_size: Schema.Int,
    total_pages: Schema.Int
  })

/** `Idempotency-Key` on a create: a retry with the same key and body gets the first answer again. */
export const IdempotencyHeaders = Schema.Struct({
  "idempotency-key": Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(255)))
})
