import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { MetricsAuthentication } from "./Security.js"

export const Liveness = Schema.Struct({ status: Schema.Literal("ok") }).annotations({
  identifier: "Liveness",
  examples: [{ status: "ok" }]
})

export const DependencyCheck = Schema.Struct({
  status: Schema.Literal("ok", "error"),
  latency_ms: Schema.Number,
  error: Schema.optional(Schema.String),
  /** the vector check's search path: pgvector's HNSW index, or `real[]` scored in SQL */
  path: Schema.optional(Schema.Literal("pgvector", "portable"))
}).annotations({ identifier: "DependencyCheck" })

export const Readiness = Schema.Struct({
  status: Schema.Literal("ok", "degraded", "unavailable"),
  checks: Schema.Record({ key: Schema.String, value: DependencyCheck })
}).annotations({
  identifier: "Readiness",
  examples: [{
    status: "ok",
    checks: {
      database: { status: "ok", latency_ms: 1.2 },
      vector: { status: "ok", latency_ms: 0.8, path: "pgvector" },
      redis: { status: "ok", latency_ms: 0.4 }
    }
  }]
})

/** The 503 answer of /health/ready: the same document, with the failing checks. */
export const NotReady = Readiness.annotations({
  ...HttpApiSchema.annotations({ status: 503 }),
  identifier: "NotReady",
  examples: [{
    status: "degraded",
    checks: {
      database: { status: "ok", latency_ms: 1.1 },
      redis: { status: "error", latency_ms: 0, error: "unreachable" }
    }
  }],
  description: "A dependency failed its check (or took more than 1 s)."
})

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/** Operational endpoints, at the root (no /api/v1 prefix) and without user authentication. */
export class OperationsApi extends HttpApiGroup.make("operations")
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(Liveness)
      .annotate(OpenApi.Summary, "Liveness")
      .annotate(OpenApi.Description, "Always 200 while the process serves requests. Does no I/O.")
  )
  .add(
    HttpApiEndpoint.get("ready", "/health/ready")
      .addSuccess(Readiness)
      .addError(NotReady)
      .annotate(OpenApi.Summary, "Readiness")
      .annotate(
        OpenApi.Description,
        "Checks the database and, when REDIS_URL is configured, Redis, each with a 1 s timeout. " +
          "200 when every check passes, 503 with the failing checks otherwise."
      )
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: METRICS_CONTENT_TYPE }))
      .middleware(MetricsAuthentication)
      .annotate(OpenApi.Summary, "Prometheus metrics")
      .annotate(
        OpenApi.Description,
        "Prometheus text exposition. When METRICS_TOKEN is set, requires `Authorization: Bearer <METRICS_TOKEN>`."
      )
  )
  .annotate(OpenApi.Title, "Operations")
{}
