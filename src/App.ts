import { HttpApiBuilder, HttpApiScalar, HttpApiSwagger } from "@effect/platform"
import { Effect, Layer } from "effect"
import { ChatkitApi } from "./api/Api.js"
import { OperationsLive } from "./features/health/Http.js"
import { ReadinessChecks } from "./features/health/Readiness.js"
import { AppConfig } from "./platform/Config.js"
import { ProblemResponsesLive, requestPipeline } from "./platform/Http.js"
import { migrateUp } from "./platform/Migrations.js"

/** Applies pending migrations before serving when MIGRATE_ON_START is true (development default). */
export const MigrateOnStart = Layer.effectDiscard(
  Effect.flatMap(AppConfig, (config) =>
    config.migrateOnStart
      ? migrateUp()
      : Effect.logInfo("MIGRATE_ON_START is false: run `npm run migrate -- up` before starting"))
)

/** Every group of the Api with its handlers; a feature adds one line here. */
export const ApiLive = HttpApiBuilder.api(ChatkitApi).pipe(
  Layer.provide(OperationsLive),
  Layer.provide(ReadinessChecks.Default)
)

/**
 * The Api served behind the platform middleware, with the OpenAPI document and two readers
 * (Swagger UI at /docs, Scalar at /redoc). Needs an HttpServer and the infrastructure layers.
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
