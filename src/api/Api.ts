import * as HttpApi from "@effect/platform/HttpApi"
import * as OpenApi from "@effect/platform/OpenApi"

import {
  InternalErrorProblem,
  PayloadTooLargeProblem,
  ServiceUnavailableProblem,
  UnsupportedMediaTypeProblem,
  ValidationErrorProblem
} from "../domain/errors.js"
import { AuditApi } from "./AuditApi.js"
import { AuthApi } from "./AuthApi.js"
import { ConversationsApi, ThreadsAdminApi } from "./ConversationsApi.js"
import { JobsApi } from "./JobsApi.js"
import { ModelsApi } from "./ModelsApi.js"
import { OperationsApi } from "./OperationsApi.js"
import { SettingsApi } from "./SettingsApi.js"
import { UsersApi } from "./UsersApi.js"
import { VectorStoresApi } from "./VectorStoresApi.js"
import { WorkflowsApi } from "./WorkflowsApi.js"

/**
 * The whole HTTP contract. Feature groups are added before `.prefix("/api/v1")`; the operational
 * endpoints come after it so they stay at the root. The errors added here can come from any endpoint
 * (they are produced by the platform middleware); features declare their own on their endpoints.
 */
export class ChatkitApi extends HttpApi.make("chatkit")
  .add(AuthApi)
  .add(UsersApi)
  .add(AuditApi)
  .add(SettingsApi)
  .add(ModelsApi)
  .add(WorkflowsApi)
  .add(ConversationsApi)
  .add(ThreadsAdminApi)
  .add(VectorStoresApi)
  .add(JobsApi)
  .prefix("/api/v1")
  .add(OperationsApi)
  .addError(ValidationErrorProblem)
  .addError(PayloadTooLargeProblem)
  .addError(UnsupportedMediaTypeProblem)
  .addError(InternalErrorProblem)
  .addError(ServiceUnavailableProblem)
  .annotate(OpenApi.Title, "chatkit-backend")
  .annotate(OpenApi.Version, "1")
  .annotate(
    OpenApi.Description,
    "ChatKit-style AI chat and workflow backend. Errors are application/problem+json documents " +
      "(type, title, status, error, detail, request_id, timestamp); every response carries X-Request-ID and API-Version."
  )
{}
