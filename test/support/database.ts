import { randomBytes } from "node:crypto"

import { SqlClient } from "@effect/sql"
import { Clock, Effect, Layer, Option, Redacted } from "effect"
import pg from "pg"

import { testConfig } from "../../src/platform/Config.js"
import { layerEmbedded, layerPostgres } from "../../src/platform/Database.js"

/** The real PostgreSQL of CI when TEST_DATABASE_URL is set; the suites then must not skip. */
export const testDatabaseUrl = Option.fromNullable(process.env.TEST_DATABASE_URL).pipe(
  Option.filter((url) => url !== "")
)

/** A fresh schema name so test files sharing one server never see each other's rows. */
export const uniqueSchema = (prefix: string) =>
  `t_${prefix.replace(/[^a-z0-9]/gi, "_").toLowerCase().slice(0, 30)}_${randomBytes(4).toString("hex")}`

/**
 * @effect/vitest builds layers under its TestClock, where the start-up retry schedule would wait
 * forever; the infrastructure of the tests runs on the real clock.
 */
export const LiveClock = Layer.setClock(Clock.make())

/** Drops the file's schema when its layer is released, so CI's database does not accumulate them. */
const dropSchemaAtEnd = (schema: string) =>
  Layer.scopedDiscard(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.addFinalizer(() => Effect.ignore(sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`)))
  )

/**
 * A SqlClient for one test file: its own schema on TEST_DATABASE_URL, or its own in-memory PGlite.
 * `connectAttempts` is small so an unreachable CI database fails the suite quickly.
 */
export const testDatabaseLayer = (name: string) =>
  Option.match(testDatabaseUrl, {
    onNone: () => layerEmbedded("memory://"),
    onSome: (url) => {
      const schema = uniqueSchema(name)
      return dropSchemaAtEnd(schema).pipe(
        Layer.provideMerge(layerPostgres(Redacted.make(url), { schema, connectAttempts: 2 }))
      )
    }
  }).pipe(Layer.provide(testConfig()), Layer.provide(LiveClock))

/**
 * A PostgreSQL database of its own on TEST_DATABASE_URL's server, for tests that start server
 * processes (which migrate it from scratch): `create` answers its URL, `drop` removes it.
 */
export const freshDatabase = (prefix: string) => {
  const server = new URL(Option.getOrElse(testDatabaseUrl, () => "postgres://localhost/x"))
  const name = `${prefix}_${randomBytes(4).toString("hex")}`
  const run = async (statement: string) => {
    const client = new pg.Client({ connectionString: server.toString() })
    await client.connect()
    try {
      await client.query(statement)
    } finally {
      await client.end()
    }
  }
  return {
    create: async () => {
      await run(`CREATE DATABASE ${name}`)
      const url = new URL(server)
      url.pathname = `/${name}`
      return url.toString()
    },
    drop: () => run(`DROP DATABASE IF EXISTS ${name}`)
  }
}
