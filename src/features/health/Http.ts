import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { prometheusText } from "../../platform/Prometheus.js"
import { ReadinessChecks } from "./Readiness.js"

/** Operational endpoints; /metrics' METRICS_TOKEN is checked by MetricsAuthentication (api/OperationsApi.ts). */
export const OperationsHandlers = HttpApiBuilder.group(ChatkitApi, "operations", (handlers) =>
  Effect.gen(function*() {
    const readiness = yield* ReadinessChecks
    return handlers
      .handle("health", () => Effect.succeed({ status: "ok" as const }))
      .handle("ready", () => readiness.run)
      .handle("metrics", () => prometheusText)
  }))
