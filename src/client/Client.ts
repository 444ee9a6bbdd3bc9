import * as HttpApiClient from "@effect/platform/HttpApiClient"
import type { Effect } from "effect"

import { ChatkitApi } from "../api/Api.js"

/**
 * The typed client of the whole Api, derived from its definition: `client.operations.health()`.
 * Provide an `HttpClient` (FetchHttpClient.layer in a browser or Node) and, for a remote server,
 * a `baseUrl`.
 */
export const makeChatkitClient = (options: { readonly baseUrl?: string } = {}) =>
  HttpApiClient.make(ChatkitApi, options.baseUrl === undefined ? {} : { baseUrl: options.baseUrl })

export type ChatkitClient = Effect.Effect.Success<ReturnType<typeof makeChatkitClient>>
export { ChatkitApi } from "../api/Api.js"
export * from "../domain/errors.js"
