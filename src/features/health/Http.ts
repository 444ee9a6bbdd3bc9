import { createHash, timingSafeEqual } from "node:crypto"

import { HttpApiBuilder, HttpServerRequest } from "@effect/platform"
import { Effect, Option, Redacted } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { Unauthorized } from "../../domain/errors.js"
import { AppConfig } from "../../platform/Config.js"
import { prometheusText } from "../../platform/Telemetry.js"
import { ReadinessChecks } from "./Readiness.js"

const digest = (value: string) => createHash("sha256").update(value).digest()

/** Compared through fixed-length digests in constant time, so timing reveals nothing of the token. */
const bearerMatches = (header: string | undefined, token: Redacted.Redacted) =>
  header !== undefined && timingSafeEqual(digest(header), digest(`Bearer ${Redacted.value(token)}`))

export const OperationsLive = HttpApiBuilder.group(ChatkitApi, "operations", (handlers) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const readiness = yield* ReadinessChecks
    return handlers
      .handle("health", () => Effect.succeed({ status: "ok" as const }))
      .handle("ready", () => readiness.run)
      .handle("metrics", () =>
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          if (
            Option.isSome(config.metricsToken) &&
            !bearerMatches(request.headers.authorization, config.metricsToken.value)
          ) {
            return yield* new Unauthorized({ detail: "This endpoint requires the metrics bearer token" })
          }
          return yield* prometheusText
        }))
  }))
