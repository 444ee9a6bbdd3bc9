import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { Worker } from "node:worker_threads"
import { gunzipSync } from "node:zlib"

import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OpenApi from "@effect/platform/OpenApi"
import { Effect } from "effect"

/**
 * The two API readers: Swagger UI at /docs and Scalar at /redoc, reading /openapi.json.
 *
 * @effect/platform's HttpApiSwagger and HttpApiScalar inline their bundles (1.9 MB and 3.3 MB of
 * JavaScript) in every page, and importing them keeps about 21 MB of strings in the heap for the
 * life of the process. Here the bundles are read once, on the first request for them, in a worker
 * thread whose heap is dropped afterwards; the process keeps them gzip-compressed (0.5 MB and
 * 0.9 MB) and sends them as static files the browser caches.
 */

/** Where the bundles live in the pinned @effect/platform (its CommonJS build). */
const bundleDirectory = join(
  dirname(createRequire(import.meta.url).resolve("@effect/platform/HttpApiSwagger")),
  "internal"
)

const BUNDLES = {
  "/docs/swagger-ui.js": { file: "httpApiSwagger.js", export: "javascript", type: "text/javascript" },
  "/docs/swagger-ui.css": { file: "httpApiSwagger.js", export: "css", type: "text/css" },
  "/redoc/scalar.js": { file: "httpApiScalar.js", export: "javascript", type: "text/javascript" }
} as const

type BundlePath = keyof typeof BUNDLES

/** A CommonJS worker: loads each module, gzips the named exports, posts the buffers back. */
const COMPRESSOR = `
const { parentPort, workerData } = require("node:worker_threads")
const { gzipSync } = require("node:zlib")
parentPort.postMessage(workerData.map(({ path, export: name }) => gzipSync(require(path)[name], { level: 9 })))
`

const compressBundles = Effect.async<ReadonlyMap<BundlePath, Buffer>>((resume) => {
  const paths = Object.keys(BUNDLES) as Array<BundlePath>
  const workerData = paths.map((path) => ({
    path: join(bundleDirectory, BUNDLES[path].file),
    export: BUNDLES[path].export
  }))
  const worker = new Worker(COMPRESSOR, { eval: true, workerData })
  worker.once("message", (buffers: Array<Uint8Array>) => {
    resume(Effect.succeed(new Map(paths.map((path, index) => [path, Buffer.from(buffers[index]!)]))))
    void worker.terminate()
  })
  worker.once("error", (error) => resume(Effect.die(error)))
  return Effect.promise(() => worker.terminate())
})

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`)

const swaggerPage = (title: string) =>
  `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <title>${escapeHtml(title)} Documentation</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui.js"></script>
  <script>
    window.onload = () => { window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" }) }
  </script>
</body>
</html>`

const scalarPage = (title: string) =>
  `<!doctype html>
<html>
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <title>${escapeHtml(title)}</title>
</head>
<body>
  <script id="api-reference" data-url="/openapi.json"></script>
  <script src="/redoc/scalar.js"></script>
</body>
</html>`

/** A compressed bundle, decompressed only for the rare client that does not take gzip. */
const bundleResponse = (path: BundlePath, compressed: Buffer, acceptEncoding: string | undefined) => {
  const gzip = /\bgzip\b/.test(acceptEncoding ?? "")
  return HttpServerResponse.uint8Array(gzip ? compressed : gunzipSync(compressed), {
    contentType: `${BUNDLES[path].type}; charset=utf-8`,
    headers: {
      "cache-control": "public, max-age=86400",
      vary: "Accept-Encoding",
      ...(gzip ? { "content-encoding": "gzip" } : {})
    }
  })
}

export const ApiDocsLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const { api } = yield* HttpApi.Api
    const title = OpenApi.fromApi(api).info.title
    const bundles = yield* Effect.cached(compressBundles)
    yield* router.get("/docs", Effect.succeed(HttpServerResponse.html(swaggerPage(title))))
    yield* router.get("/redoc", Effect.succeed(HttpServerResponse.html(scalarPage(title))))
    for (const path of Object.keys(BUNDLES) as Array<BundlePath>) {
      yield* router.get(
        path,
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          const compressed = (yield* bundles).get(path)!
          return bundleResponse(path, compressed, request.headers["accept-encoding"])
        })
      )
    }
  })
)
