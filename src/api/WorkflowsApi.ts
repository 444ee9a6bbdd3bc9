import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { ConflictProblem, ForbiddenProblem, NotFoundProblem } from "../domain/errors.js"
import { Email } from "../domain/User.js"
import {
  CurrentWorkflow,
  GraphInput,
  JSON_FIELD_LIMITS,
  SharePermission,
  Workflow,
  WorkflowDescription,
  WorkflowExport,
  WorkflowName,
  WorkflowShare,
  WorkflowSlug,
  WorkflowSummary,
  WorkflowVersion,
  WorkflowVersionSummary
} from "../domain/Workflow.js"
import { IdempotencyHeaders, Page, PageParams, Payload } from "./schemas.js"
import { AdminAuthentication, Authentication } from "./Security.js"

const Id = Schema.NumberFromString.pipe(Schema.int(), Schema.positive())
const WorkflowIdParam = Schema.Struct({ id: Id })
const VersionParams = Schema.Struct({ id: Id, version_id: Id })
const ShareParams = Schema.Struct({ id: Id, user_id: Id })
const PositiveInt = Schema.Int.pipe(Schema.positive())

const ACCESS =
  "Access: the owner and administrators manage a workflow; a `write` share may also edit it and create and " +
  "activate versions; a `read` share may read it. A workflow you cannot see is a 404, never a 403; one you can " +
  "see but not change is a 403."

const GRAPH_RULES =
  "The graph is validated and every problem is listed in one 400 (`errors[].path` like `nodes[3].kind`, " +
  "`edges[1].target`): unique slugs; exactly one enabled `start` node, without incoming edges; no edge out of an " +
  "`end` node; every edge endpoint exists; every enabled node reachable from `start`; conditions only on edges " +
  "leaving a `condition` node; `parent_slug` names a node and its chains do not loop; kinds among start, end, " +
  "agent, assistant_message, condition, state, wait_for_user_input; at most 500 nodes and 2000 edges, and at most " +
  "512 KiB for the whole graph as compact JSON. Each node's `parameters` and `metadata` and each edge's `metadata` " +
  `is a bounded \`JsonObject\`: at most ${JSON_FIELD_LIMITS.depth} levels of objects and arrays inside it, ` +
  `${JSON_FIELD_LIMITS.keys} keys per object, keys of ${JSON_FIELD_LIMITS.keyLength} characters, strings of ` +
  `${JSON_FIELD_LIMITS.stringLength.toLocaleString("en-US")} characters, arrays of ` +
  `${JSON_FIELD_LIMITS.arrayItems.toLocaleString("en-US")} items, ${
    JSON_FIELD_LIMITS.bytes / 1024
  } KiB as compact JSON. ` +
  "A value over a bound is a 400 naming its path; the value itself is never echoed."

const IDEMPOTENT =
  " Accepts Idempotency-Key (a repeat with the same key and body within 24 h returns the stored response)."

/**
 * Workflows (API.md section 6). Every endpoint needs a user (Authentication); import and set-default
 * are admin only (AdminAuthentication, declared last so that Authentication does not also run on them).
 */
export class WorkflowsApi extends HttpApiGroup.make("workflows")
  .add(
    HttpApiEndpoint.get("list", "/workflows")
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(WorkflowSummary))
      .annotate(OpenApi.Summary, "List workflows")
      .annotate(
        OpenApi.Description,
        "Administrators see every workflow; other users those they own and those shared with them. Ordered by id ascending."
      )
  )
  .add(
    HttpApiEndpoint.post("create", "/workflows")
      .setPayload(
        Payload({
          slug: WorkflowSlug,
          display_name: WorkflowName,
          description: Schema.optional(Schema.NullOr(WorkflowDescription)),
          graph: Schema.optionalWith(GraphInput, { exact: true })
        })
      )
      .setHeaders(IdempotencyHeaders)
      .addSuccess(Workflow, { status: 201 })
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Create a workflow")
      .annotate(
        OpenApi.Description,
        "The caller owns it. `graph` becomes the active version 1 (without it: start → agent → end). 409 when a " +
          "live workflow has the slug. " + GRAPH_RULES + IDEMPOTENT
      )
  )
  .add(
    HttpApiEndpoint.get("current", "/workflows/current")
      .addSuccess(CurrentWorkflow)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "The default workflow's active version")
      .annotate(OpenApi.Description, "Any user. Served from the cache; 404 when no default workflow is set.")
  )
  .add(
    HttpApiEndpoint.get("get", "/workflows/:id")
      .setPath(WorkflowIdParam)
      .addSuccess(Workflow)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "Get a workflow with its active version")
      .annotate(OpenApi.Description, ACCESS)
  )
  .add(
    HttpApiEndpoint.patch("update", "/workflows/:id")
      .setPath(WorkflowIdParam)
      .setPayload(
        Payload({
          slug: Schema.optional(WorkflowSlug),
          display_name: Schema.optional(WorkflowName),
          description: Schema.optional(Schema.NullOr(WorkflowDescription))
        })
      )
      .addSuccess(Workflow)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Update a workflow")
      .annotate(OpenApi.Description, "Owner, admin or write share. 409 when the new slug is taken. " + ACCESS)
  )
  .add(
    HttpApiEndpoint.del("delete", "/workflows/:id")
      .setPath(WorkflowIdParam)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Soft-delete a workflow")
      .annotate(
        OpenApi.Description,
        "Owner or admin. The default workflow cannot be deleted (409): make another one the default first."
      )
  )
  .add(
    HttpApiEndpoint.post("duplicate", "/workflows/:id/duplicate")
      .setPath(WorkflowIdParam)
      .setPayload(Payload({ display_name: WorkflowName, slug: Schema.optional(WorkflowSlug) }))
      .setHeaders(IdempotencyHeaders)
      .addSuccess(Workflow, { status: 201 })
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Duplicate a workflow")
      .annotate(
        OpenApi.Description,
        "Anyone who can read it. The copy is owned by the caller, its version 1 is the source's active graph; its " +
          "slug is `slug` or `<source slug>-copy` (then `-copy-2`, ...)." + IDEMPOTENT
      )
  )
  .add(
    HttpApiEndpoint.get("listVersions", "/workflows/:id/versions")
      .setPath(WorkflowIdParam)
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(WorkflowVersionSummary))
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "List versions")
      .annotate(OpenApi.Description, "Newest first (version descending).")
  )
  .add(
    HttpApiEndpoint.post("createVersion", "/workflows/:id/versions")
      .setPath(WorkflowIdParam)
      .setPayload(
        Payload({
          graph: GraphInput,
          name: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(200)))),
          mark_as_active: Schema.optional(Schema.Boolean)
        })
      )
      .setHeaders(IdempotencyHeaders)
      .addSuccess(WorkflowVersion, { status: 201 })
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Create version n+1")
      .annotate(
        OpenApi.Description,
        "Owner, admin or write share. Concurrent calls get consecutive numbers. mark_as_active=true also makes it " +
          "the production version. " + GRAPH_RULES + IDEMPOTENT
      )
  )
  .add(
    HttpApiEndpoint.get("getVersion", "/workflows/:id/versions/:version_id")
      .setPath(VersionParams)
      .addSuccess(WorkflowVersion)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "Get a version with its graph")
      .annotate(
        OpenApi.Description,
        "Any version of a workflow the caller can read; 404 when the version belongs to another workflow."
      )
  )
  .add(
    HttpApiEndpoint.get("exportVersion", "/workflows/:id/versions/:version_id/export")
      .setPath(VersionParams)
      .addSuccess(WorkflowExport)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "Export a version")
      .annotate(
        OpenApi.Description,
        "A self-contained document; its slug, display_name and graph can be imported back."
      )
  )
  .add(
    HttpApiEndpoint.post("activate", "/workflows/:id/production")
      .setPath(WorkflowIdParam)
      .setPayload(Payload({ version_id: PositiveInt }))
      .addSuccess(Workflow)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "Activate a version (make it production)")
      .annotate(OpenApi.Description, "Owner, admin or write share. A version of another workflow is a 404.")
  )
  .add(
    HttpApiEndpoint.get("listShares", "/workflows/:id/shares")
      .setPath(WorkflowIdParam)
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(WorkflowShare))
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "List shares")
      .annotate(OpenApi.Description, "Anyone who can read the workflow. Ordered by user id.")
  )
  .add(
    HttpApiEndpoint.post("createShare", "/workflows/:id/shares")
      .setPath(WorkflowIdParam)
      .setPayload(Payload({ user_email: Email, permission: SharePermission }))
      .addSuccess(WorkflowShare, { status: 201 })
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .annotate(OpenApi.Summary, "Share a workflow")
      .annotate(
        OpenApi.Description,
        "Owner or admin. 404 when no user has the email; 409 for the owner or a user it is already shared with."
      )
  )
  .add(
    HttpApiEndpoint.patch("updateShare", "/workflows/:id/shares/:user_id")
      .setPath(ShareParams)
      .setPayload(Payload({ permission: SharePermission }))
      .addSuccess(WorkflowShare)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "Change a share's permission (owner or admin)")
      .annotate(OpenApi.Description, "`permission` is read or write; 404 when the user has no share on this workflow.")
  )
  .add(
    HttpApiEndpoint.del("deleteShare", "/workflows/:id/shares/:user_id")
      .setPath(ShareParams)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "Remove a share (owner or admin)")
      .annotate(OpenApi.Description, "The user loses access to the workflow at once; 404 when there is no such share.")
  )
  .addError(ForbiddenProblem)
  // every endpoint so far: any user; the admin ones below carry AdminAuthentication instead
  .middlewareEndpoints(Authentication)
  .add(
    HttpApiEndpoint.post("setDefault", "/workflows/default")
      .setPayload(Payload({ workflow_id: PositiveInt }))
      .addSuccess(WorkflowSummary)
      .addError(NotFoundProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Set the default workflow (admin)")
      .annotate(
        OpenApi.Description,
        "The workflow new conversations run unless they name another. Invalidates the cached GET /workflows/current."
      )
  )
  .add(
    HttpApiEndpoint.post("import", "/workflows/import")
      .setPayload(
        Payload({
          slug: Schema.optional(WorkflowSlug),
          display_name: Schema.optional(WorkflowName),
          description: Schema.optional(Schema.NullOr(WorkflowDescription)),
          graph: GraphInput,
          mark_as_active: Schema.optional(Schema.Boolean)
        })
      )
      .setHeaders(IdempotencyHeaders)
      .addSuccess(Workflow, { status: 201 })
      .addError(ConflictProblem)
      .addError(NotFoundProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Import a graph (admin)")
      .annotate(
        OpenApi.Description,
        "When a live workflow has `slug`, the graph becomes its next version (active only with mark_as_active=true). " +
          "Otherwise a new workflow is created (slug from `slug`, else from `display_name`) with the graph as its " +
          "active version 1. Send the `slug`, `display_name` and `graph` of an export. " + GRAPH_RULES + IDEMPOTENT
      )
  )
  .annotate(OpenApi.Title, "Workflows")
{}
