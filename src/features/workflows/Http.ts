import { HttpApiBuilder } from "@effect/platform"
import { Effect, type Schema } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { CurrentUser } from "../../api/Security.js"
import { pageRequest } from "../../domain/Page.js"
import { Workflow, WorkflowVersion } from "../../domain/Workflow.js"
import { withIdempotency } from "../../platform/Idempotency.js"
import { adminOnly } from "../auth/Policy.js"
import { WorkflowsService } from "./Service.js"

/** Runs a creating POST under its Idempotency-Key (if any), scoped to the caller and the route. */
const idempotent = <A, I, E, R>(
  route: string,
  key: string | undefined,
  request: unknown,
  success: Schema.Schema<A, I>,
  effect: Effect.Effect<A, E, R>
) =>
  Effect.flatMap(
    CurrentUser,
    (caller) => withIdempotency({ key, scope: `user:${caller.id}:${route}`, request, success, status: 201 }, effect)
  )

/** Workflows (API.md section 6): one pipe per handler; rules live in WorkflowsService. */
export const WorkflowsLive = HttpApiBuilder.group(ChatkitApi, "workflows", (handlers) =>
  Effect.gen(function*() {
    const workflows = yield* WorkflowsService
    return handlers
      .handle("list", ({ urlParams }) =>
        Effect.flatMap(CurrentUser, (caller) => workflows.list(caller, pageRequest(urlParams))))
      .handle("create", ({ headers, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          idempotent(
            "POST /workflows",
            headers["idempotency-key"],
            payload,
            Workflow,
            workflows.create(payload, caller)
          )))
      .handle("current", () =>
        workflows.current)
      .handle("setDefault", ({ payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.setDefault(payload.workflow_id, caller)).pipe(adminOnly))
      .handle("import", ({ headers, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          idempotent(
            "POST /workflows/import",
            headers["idempotency-key"],
            payload,
            Workflow,
            workflows.import(payload, caller)
          ))
          .pipe(adminOnly))
      .handle("get", ({ path }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.get(path.id, caller)))
      .handle("update", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.update(path.id, payload, caller)))
      .handle("delete", ({ path }) =>
        Effect.flatMap(CurrentUser, (caller) => workflows.delete(path.id, caller)))
      .handle("duplicate", ({ headers, path, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          idempotent(
            `POST /workflows/${path.id}/duplicate`,
            headers["idempotency-key"],
            payload,
            Workflow,
            workflows.duplicate(path.id, payload, caller)
          )))
      .handle("listVersions", ({ path, urlParams }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.listVersions(path.id, caller, pageRequest(urlParams))))
      .handle("createVersion", ({ headers, path, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          idempotent(
            `POST /workflows/${path.id}/versions`,
            headers["idempotency-key"],
            payload,
            WorkflowVersion,
            workflows.createVersion(path.id, payload, caller)
          )))
      .handle("getVersion", ({ path }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.getVersion(path.id, path.version_id, caller)))
      .handle("exportVersion", ({ path }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.exportVersion(path.id, path.version_id, caller)))
      .handle("activate", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.activate(path.id, payload.version_id, caller)))
      .handle("listShares", ({ path, urlParams }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.listShares(path.id, caller, pageRequest(urlParams))))
      .handle("createShare", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.createShare(path.id, payload, caller)))
      .handle("updateShare", ({ path, payload }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.updateShare(path.id, path.user_id, payload.permission, caller)))
      .handle("deleteShare", ({ path }) =>
        Effect.flatMap(CurrentUser, (caller) =>
          workflows.deleteShare(path.id, path.user_id, caller)))
  }))
