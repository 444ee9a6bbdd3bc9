import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { ConflictProblem, NotFoundProblem } from "../domain/errors.js"
import { Model, ModelDescription, ModelDisplayName, ModelId, ModelName, ModelProviderRef } from "../domain/Model.js"
import { Page, PageParams, Payload } from "./schemas.js"
import { AdminAuthentication, Authentication } from "./Security.js"

const ModelIdParam = Schema.Struct({ id: Schema.NumberFromString.pipe(Schema.compose(ModelId)) })

const modelFields = {
  name: ModelName,
  display_name: ModelDisplayName,
  description: Schema.optional(Schema.NullOr(ModelDescription)),
  provider_id: Schema.optional(Schema.NullOr(ModelProviderRef)),
  provider_slug: Schema.optional(Schema.NullOr(ModelProviderRef)),
  supports_reasoning: Schema.optional(Schema.Boolean),
  supports_streaming: Schema.optional(Schema.Boolean)
}

/** The model catalog (API.md section 5). */
export class ModelsApi extends HttpApiGroup.make("models")
  .add(
    HttpApiEndpoint.get("list", "/models")
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(Model))
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "Available models")
      .annotate(OpenApi.Description, "For model pickers; any signed-in user. Ordered by display_name, then id.")
  )
  .add(
    HttpApiEndpoint.get("adminList", "/admin/models")
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(Model))
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "List models (admin)")
      .annotate(OpenApi.Description, "Ordered by display_name, then id.")
  )
  .add(
    HttpApiEndpoint.post("create", "/admin/models")
      .setPayload(Payload(modelFields))
      .addSuccess(Model, { status: 201 })
      .addError(ConflictProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Add a model (admin)")
      .annotate(
        OpenApi.Description,
        "409 when a model has the name already (names are unique ignoring case). Defaults: supports_reasoning false, " +
          "supports_streaming true, description/provider_id/provider_slug null."
      )
  )
  .add(
    HttpApiEndpoint.patch("update", "/admin/models/:id")
      .setPath(ModelIdParam)
      .setPayload(
        Payload({
          name: Schema.optional(ModelName),
          display_name: Schema.optional(ModelDisplayName),
          description: modelFields.description,
          provider_id: modelFields.provider_id,
          provider_slug: modelFields.provider_slug,
          supports_reasoning: modelFields.supports_reasoning,
          supports_streaming: modelFields.supports_streaming
        })
      )
      .addSuccess(Model)
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Update a model (admin)")
      .annotate(OpenApi.Description, "Absent fields stay as they are; 409 when the new name is taken.")
  )
  .add(
    HttpApiEndpoint.del("delete", "/admin/models/:id")
      .setPath(ModelIdParam)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFoundProblem)
      .middleware(AdminAuthentication)
      .annotate(OpenApi.Summary, "Delete a model (admin)")
      .annotate(OpenApi.Description, "Removes the model from the catalog.")
  )
  .annotate(OpenApi.Title, "Model catalog")
{}
