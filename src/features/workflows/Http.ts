import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { pageRequest } from "../../domain/Page.js"
import { Workflow, WorkflowVersion } from "../../domain/Workflow.js"
import { idempotentCreate } from "../../platform/Idempotency.js"
import { WorkflowsService } from "./Service.js"
import { WorkflowShares } from "./Shares.js"

/**
 * Workflows (API.md section 6): one call per handler. The services act for the request's
 * `CurrentUser` and `WorkflowsPolicy` decides what they may do.
 */
export const WorkflowsHandlers = HttpApiBuilder.group(ChatkitApi, "workflows", (handlers) =>
  Effect.gen(function*() {
    const workflows = yield* WorkflowsService
    const shares = yield* WorkflowShares
    return handlers
      .handle("list", ({ urlParams }) => workflows.list(pageRequest(urlParams)))
      .handle("create", ({ headers, payload }) =>
        workflows.create(payload).pipe(idempotentCreate("POST /workflows", headers, payload, Workflow)))
      .handle("current", () =>
        workflows.current)
      .handle("setDefault", ({ payload }) =>
        workflows.setDefault(payload.workflow_id))
      .handle("import", ({ headers, payload }) =>
        workflows.import(payload).pipe(idempotentCreate("POST /workflows/import", headers, payload, Workflow)))
      .handle("get", ({ path }) =>
        workflows.get(path.id))
      .handle("update", ({ path, payload }) =>
        workflows.update(path.id, payload))
      .handle("delete", ({ path }) =>
        workflows.delete(path.id))
      .handle("duplicate", ({ headers, path, payload }) =>
        workflows.duplicate(path.id, payload).pipe(
          idempotentCreate(`POST /workflows/${path.id}/duplicate`, headers, payload, Workflow)
        ))
      .handle("listVersions", ({ path, urlParams }) => workflows.listVersions(path.id, pageRequest(urlParams)))
      .handle("createVersion", ({ headers, path, payload }) =>
        workflows.createVersion(path.id, payload).pipe(
          idempotentCreate(`POST /workflows/${path.id}/versions`, headers, payload, WorkflowVersion)
        ))
      .handle("getVersion", ({ path }) => workflows.getVersion(path.id, path.version_id))
      .handle("exportVersion", ({ path }) => workflows.exportVersion(path.id, path.version_id))
      .handle("activate", ({ path, payload }) => workflows.activate(path.id, payload.version_id))
      .handle("listShares", ({ path, urlParams }) => shares.list(path.id, pageRequest(urlParams)))
      .handle("createShare", ({ path, payload }) => shares.create(path.id, payload))
      .handle("updateShare", ({ path, payload }) => shares.update(path.id, path.user_id, payload.permission))
      .handle("deleteShare", ({ path }) => shares.delete(path.id, path.user_id))
  }))
