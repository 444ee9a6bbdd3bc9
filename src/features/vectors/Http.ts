import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { pageRequest } from "../../domain/Page.js"
import { CurrentUser } from "../../domain/User.js"
import { VectorStoresService } from "./Service.js"

/**
 * Vector stores (API.md section 8): reads for every user, writes admin only through
 * AdminAuthentication (api/VectorStoresApi.ts). A large document's ingestion job belongs to its submitter.
 */
export const VectorStoresHandlers = HttpApiBuilder.group(
  ChatkitApi,
  "vectorStores",
  (handlers) =>
    Effect.gen(function*() {
      const stores = yield* VectorStoresService
      return handlers
        .handle("list", ({ urlParams }) => stores.list(pageRequest(urlParams)))
        .handle("create", ({ payload }) => stores.create(payload))
        .handle("get", ({ path }) => stores.get(path.slug))
        .handle("update", ({ path, payload }) => stores.update(path.slug, payload))
        .handle("delete", ({ path }) => stores.delete(path.slug))
        .handle("ingest", ({ path, payload }) =>
          Effect.flatMap(CurrentUser, (caller) => stores.ingest(path.slug, payload, caller.id)))
        .handle("listDocuments", ({ path, urlParams }) =>
          stores.listDocuments(path.slug, pageRequest(urlParams)))
        .handle("getDocument", ({ path }) => stores.getDocument(path.slug, path.doc_id))
        .handle("deleteDocument", ({ path }) => stores.deleteDocument(path.slug, path.doc_id))
        .handle("searchJson", ({ path, payload }) => stores.searchJson(path.slug, payload))
        .handle("searchDocuments", ({ path, payload }) => stores.searchDocuments(path.slug, payload))
    })
)
