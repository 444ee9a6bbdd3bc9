import { NodeHttpClient } from "@effect/platform-node"
import * as HttpClient from "@effect/platform/HttpClient"
import { Effect, Layer } from "effect"

import { inForeground } from "./Scheduling.js"

/**
 * How long a kept connection may sit unused before this side closes it: under the 5 s after which
 * uvicorn (vLLM, LiteLLM) and Node servers close theirs, so a call never goes out on a connection
 * the provider is closing at that moment.
 */
export const UPSTREAM_IDLE_MS = 4_000

/**
 * The HTTP client of calls to model and embeddings providers: Node's, with connections kept open
 * between calls. The platform's default agent opens a connection per call (and, to an https
 * provider, a TLS handshake per turn); a kept connection the provider closed meanwhile fails as a
 * connection error, which the callers retry. The idle limit is the agent's socket timeout, which
 * closes only idle (free) connections: a call waiting on a slow model is not affected.
 *
 * A call is sent and its answer awaited in the foreground (Scheduling.ts): the platform's client
 * sends the request and listens for the answer in two fibers of their own; in the background the
 * listening one can start a turn of the event loop after the answer came, and the call then waits
 * for an answer already gone, until its timeout.
 */
export const UpstreamHttpClient = Layer.effect(
  HttpClient.HttpClient,
  Effect.map(HttpClient.HttpClient, HttpClient.transform((execute) => inForeground(execute)))
).pipe(
  Layer.provide(NodeHttpClient.layerWithoutAgent),
  Layer.provide(NodeHttpClient.makeAgentLayer({ keepAlive: true, timeout: UPSTREAM_IDLE_MS }))
)
