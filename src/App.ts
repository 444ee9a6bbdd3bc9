import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Layer } from "effect"

import { ChatkitApi } from "./api/Api.js"
import { AuditLog } from "./features/audit/AuditLog.js"
import { AuditHandlers } from "./features/audit/Http.js"
import { AuditRepo } from "./features/audit/Repo.js"
import { AccessTokens } from "./features/auth/AccessTokens.js"
import {
  AdminAuthenticationLive,
  AuthenticationLive,
  ClientIpLimitsLive,
  MetricsAuthenticationLive
} from "./features/auth/Authentication.js"
import { AuthHandlers } from "./features/auth/Http.js"
import { RefreshTokens } from "./features/auth/RefreshTokens.js"
import { AuthService } from "./features/auth/Service.js"
import { OperationsHandlers } from "./features/health/Http.js"
import { ReadinessChecks } from "./features/health/Readiness.js"
import { JobsHandlers } from "./features/jobs/Http.js"
import { JobsService } from "./features/jobs/Service.js"
import { ModelsHandlers } from "./features/models/Http.js"
import { ModelsService } from "./features/models/Service.js"
import { SettingsHandlers } from "./features/settings/Http.js"
import { SettingsService } from "./features/settings/Service.js"
import { AbandonedAnswersSweep } from "./features/threads/AbandonedAnswers.js"
import { ConversationsHandlers, ThreadsAdminHandlers } from "./features/threads/Http.js"
import { ThreadsService } from "./features/threads/Service.js"
import { ThreadTitles } from "./features/threads/Titles.js"
import { BootstrapAdmin } from "./features/users/Bootstrap.js"
import { UsersHandlers } from "./features/users/Http.js"
import { UsersRepo } from "./features/users/Repo.js"
import { UsersService } from "./features/users/Service.js"
import { UserLookup } from "./features/users/UserLookup.js"
import { VectorStoresHandlers } from "./features/vectors/Http.js"
import { VectorStoresService } from "./features/vectors/Service.js"
import { BootstrapDefaultWorkflow } from "./features/workflows/DefaultWorkflow.js"
import { WorkflowsHandlers } from "./features/workflows/Http.js"
import { WorkflowsService } from "./features/workflows/Service.js"
import { WorkflowShares } from "./features/workflows/Shares.js"
import { ApiDocsLive } from "./platform/ApiDocs.js"
import { AppConfig, type AppConfigShape } from "./platform/Config.js"
import { type LargeBodyRoute, ProblemResponsesLive, requestPipeline } from "./platform/Http.js"
import { migrateUp } from "./platform/Migrations.js"
import { RateLimiter } from "./platform/RateLimiter.js"

/** Applies pending migrations before serving when MIGRATE_ON_START is true (development default). */
export const MigrateOnStart = Layer.effectDiscard(
  Effect.flatMap(AppConfig, (config) =>
    config.migrateOnStart
      ? migrateUp()
      : Effect.logInfo("MIGRATE_ON_START is false: run `npm run migrate -- up` before starting"))
)

/**
 * What must be done before the port opens, in order: the migrations, the first administrator,
 * the default workflow. A request can only arrive once the app can answer it.
 */
export const PrepareToServe = BootstrapDefaultWorkflow.pipe(
  Layer.provide(BootstrapAdmin),
  Layer.provide(MigrateOnStart)
)

/**
 * Services that several groups share. Layers are memoized by reference, so each is built once.
 * Passwords is left to the caller: `Passwords.layer()` in main.ts, cheap parameters in tests.
 */
export const SharedServices = Layer.mergeAll(
  UsersRepo.Default,
  UserLookup.Default,
  AuditLog.Default,
  RefreshTokens.Default,
  AccessTokens.Default,
  AuthService.Default
).pipe(Layer.provideMerge(RateLimiter.layer))

/** Every group of the Api with its handlers; a feature adds one line here. */
export const ApiHandlers = HttpApiBuilder.api(ChatkitApi).pipe(
  Layer.provide(OperationsHandlers),
  Layer.provide(AuthHandlers),
  Layer.provide(AuditHandlers.pipe(Layer.provide(AuditRepo.Default))),
  Layer.provide(UsersHandlers.pipe(Layer.provide(UsersService.Default))),
  Layer.provide(SettingsHandlers.pipe(Layer.provide(SettingsService.Default))),
  Layer.provide(ModelsHandlers.pipe(Layer.provide(ModelsService.Default))),
  Layer.provide(WorkflowsHandlers.pipe(Layer.provide([WorkflowsService.Default, WorkflowShares.Default]))),
  Layer.provide(
    Layer.mergeAll(ConversationsHandlers, ThreadsAdminHandlers, AbandonedAnswersSweep).pipe(
      Layer.provide(ThreadsService.Default)
    )
  ),
  // VectorStoresRepo reads the vector path (VectorSupport) from the migrated schema: built here, after PrepareToServe
  Layer.provide(VectorStoresHandlers.pipe(Layer.provide(VectorStoresService.Default))),
  Layer.provide(JobsHandlers.pipe(Layer.provide(JobsService.Default))),
  Layer.provide(ReadinessChecks.Default),
  // below every group: the bearer middleware and the shared services are for all of them
  Layer.provide([AuthenticationLive, AdminAuthenticationLive, MetricsAuthenticationLive, ClientIpLimitsLive]),
  Layer.provide(SharedServices)
)

/**
 * The features that register job handlers (thread.title, document.ingest): what a `chatkit worker`
 * process builds besides the infrastructure, so that it runs the same handlers as the server.
 * Build it after the migrations (the vector stores read the migrated schema).
 */
export const JobHandlers = Layer.mergeAll(ThreadTitles.Default, VectorStoresService.Default).pipe(
  Layer.provide(AuditLog.Default)
)

/**
 * A vector store document may be up to VECTOR_DOCUMENT_MAX_BYTES (10 MiB), with more keys than
 * any other body: ingestion flattens it iteratively and its schema does not walk it.
 */
const documentIngestBody = (config: AppConfigShape): LargeBodyRoute => {
  const endpoint = ChatkitApi.groups.vectorStores!.endpoints.ingest!
  return {
    method: endpoint.method,
    path: endpoint.path,
    limits: { maxBytes: config.vectorDocumentMaxBytes, maxObjectKeys: 100_000, maxBodyKeys: 1_000_000 }
  }
}

/**
 * The Api served behind the platform middleware, with the OpenAPI document and two readers
 * (Swagger UI at /docs, Scalar at /redoc, platform/ApiDocs.ts). Needs an HttpServer and the infrastructure layers; build
 * `PrepareToServe` before either.
 */
export const ServedApi = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => HttpApiBuilder.serve(requestPipeline(config, [documentIngestBody(config)])))
).pipe(
  Layer.provide(ApiDocsLive),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ProblemResponsesLive),
  Layer.provide(ApiHandlers)
)
