/** A page of a list (API.md section 0): what repositories read and services answer with. */

export interface PageRequest {
  readonly page: number
  readonly pageSize: number
  readonly offset: number
}

export const pageRequest = (
  params: { readonly page?: number | undefined; readonly page_size?: number | undefined }
): PageRequest => {
  const page = params.page ?? 1
  const pageSize = params.page_size ?? 20
  return { page, pageSize, offset: (page - 1) * pageSize }
}

export const toPage = <A>(request: PageRequest, items: ReadonlyArray<A>, total: number) => ({
  items,
  total,
  page: request.page,
  page_size: request.pageSize,
  total_pages: Math.ceil(total / request.pageSize)
})
