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

export interface PageRequest {
  readonly page: number
  readonly pageSize: number
  readonly offset: number
}

export const pageRequest = (params: { readonly page?: number | undefined; readonly page_size?: number | undefined }): PageRequest => {
  const page = params.page ?? 1
  const pageSize = params.page_size ?? 20
  return { page, pageSize, offset: (page - 1) * pageSize }
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

export const toPage = <A>(request: PageRequest, items: ReadonlyArray<A>, total: number) => ({
  items,
  total,
  page: request.page,
  page_size: request.pageSize,
  total_pages: Math.ceil(total / request.pageSize)
})
