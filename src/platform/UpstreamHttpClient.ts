import { NodeHttpClient } from "@effect/platform-node"
import { Layer } from "effect"

/**
 * The HTTP client of calls to model and embeddings providers: Node's, with connections kept open
 * between calls. The platform's default agent opens a connection per call (and, to an https
 * provider, a TLS handshake per turn); a kept connection the provider closed meanwhile fails as a
 * connection error, which the callers retry.
 */
export const UpstreamHttpClient = NodeHttpClient.layerWithoutAgent.pipe(
  Layer.provide(NodeHttpClient.makeAgentLayer({ keepAlive: true }))
)
