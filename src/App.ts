import { HttpApiBuilder, HttpApiScalar, HttpApiSwagger } from "@effect/platform"
import { Effect, Layer } from "effect"

import { ChatkitApi } from "./api/Api.js"
import { AuditLog } from "./features/audit/AuditLog.js"
import { AuditLive } from "./features/audit/Http.js"
import { AuditRepo } from "./features/audit/Repo.js"
import {
  AdminAuthenticationLive,
  AuthenticationLive,
  ClientIpLimitsLive,
  MetricsAuthenticationLive
} from "./features/auth/Authentication.js"
import { AuthLive } from "./features/auth/Http.js"
import { RefreshTokens } from "./features/auth/RefreshTokens.js"
import { AuthService } from "./features/auth/Service.js"
import { AccessTokens } from "./features/auth/Tokens.js"
import { OperationsLive } from "./features/health/Http.js"
import { ReadinessChecks } from "./features/health/Readiness.js"
import { ModelsLive } from "./features/models/Http.js"
import { ModelsService } from "./features/models/Service.js"
import { SettingsLive } from "./features/settings/Http.js"
import { SettingsService } from "./features/settings/Service.js"
import { BootstrapAdmin } from "./features/users/Bootstrap.js"
import { UsersLive } from "./features/users/Http.js"
import { UsersRepo } from "./features/users/Repo.js"
import { UsersService } from "./features/users/Service.js"
import { UserLookup } from "./features/users/UserLookup.js"
import { BootstrapDefaultWorkflow } from "./features/workflows/DefaultWorkflow.js"
import { WorkflowsLive } from "./features/workflows/Http.js"
import { WorkflowsService } from "./features/workflows/Service.js"
import { WorkflowShares } from "./features/workflows/Shares.js"
import { AppConfig } from "./platform/Config.js"
import { ProblemResponsesLive, requestPipeline } from "./platform/Http.js"
import { migrateUp } from "./platform/Migrations.js"
import { RateLimiter } from "./platform/RateLimiter.js"

/** Applies pending migrations before serving when MIGRATE_ON_START is true (development default). */
const MigrateOnStart = Layer.effectDiscard(
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
export const SharedServicesLive = Layer.mergeAll(
  UsersRepo.Default,
  UserLookup.Default,
  AuditLog.Default,
  RefreshTokens.Default,
  AccessTokens.Default,
  AuthService.Default
).pipe(Layer.provideMerge(RateLimiter.layer))

/** Every group of the Api with its handlers; a feature adds one line here. */
export const ApiLive = HttpApiBuilder.api(ChatkitApi).pipe(
  Layer.provide(OperationsLive),
  Layer.provide(AuthLive),
  Layer.provide(AuditLive.pipe(Layer.provide(AuditRepo.Default))),
  Layer.provide(UsersLive.pipe(Layer.provide(UsersService.Default))),
  Layer.provide(SettingsLive.pipe(Layer.provide(SettingsService.Default))),
  Layer.provide(ModelsLive.pipe(Layer.provide(ModelsService.Default))),
  Layer.provide(WorkflowsLive.pipe(Layer.provide([WorkflowsService.Default, WorkflowShares.Default]))),
  Layer.provide(ReadinessChecks.Default),
  // below every group: the bearer middleware and the shared services are for all of them
  Layer.provide([AuthenticationLive, AdminAuthenticationLive, MetricsAuthenticationLive, ClientIpLimitsLive]),
  Layer.provide(SharedServicesLive)
)

/**
 * The Api served behind the platform middleware, with the OpenAPI document and two readers
 * (Swagger UI at /docs, Scalar at /redoc). Needs an HttpServer and the infrastructure layers; build
 * `PrepareToServe` before either.
 */
export const HttpAppLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => HttpApiBuilder.serve(requestPipeline(config)))
).pipe(
  Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
  Layer.provide(HttpApiScalar.layer({ path: "/redoc" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ProblemResponsesLive),
  Layer.provide(ApiLive)
)
