import { NodeHttpServer } from "@effect/platform-node"
import { Layer, Option } from "effect"
import { HttpAppLive, MigrateOnStart } from "../../src/App.js"
import { makeChatkitClient } from "../../src/client/Client.js"
import { Cache } from "../../src/platform/Cache.js"
import { testConfig } from "../../src/platform/Config.js"
import { Redis } from "../../src/platform/Redis.js"
import { testDatabaseLayer } from "./database.js"

/** CI's real Redis when TEST_REDIS_URL is set; the suites then must not skip. */
export const testRedisUrl = Option.fromNullable(process.env.TEST_REDIS_URL).pipe(Option.filter((url) => url !== ""))

/**
 * The whole application in process on 127.0.0.1:0, migrated, over a fresh database (PGlite in
 * memory, or an own schema of TEST_DATABASE_URL) and Redis when TEST_REDIS_URL is set. Provides
 * an `HttpClient` bound to the server, for `makeChatkitClient()` and raw requests.
 */
export const TestApp = (name: string, env: Record<string, string> = {}) => {
  const redis = Option.match(testRedisUrl, { onNone: () => ({}), onSome: (url) => ({ REDIS_URL: url }) })
  const config = testConfig({ ...redis, ...env })
  return HttpAppLive.pipe(
    Layer.provide(MigrateOnStart),
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Cache.layer),
    Layer.provideMerge(Redis.layerOptional),
    Layer.provideMerge(testDatabaseLayer(name)),
    Layer.provideMerge(config)
  )
}

export const chatkitClient = makeChatkitClient()
