import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Option } from "effect"

import { testDatabaseLayer, testDatabaseUrl } from "./support/database.js"

layer(testDatabaseLayer("database"))("Database", (it) => {
  it.effect("answers a query with the configured statement timeout and its own schema first", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ one: number }>`SELECT 1 AS one`
      expect(rows[0]?.one).toBe(1)
      const [timeout] = yield* sql<{ statement_timeout: string }>`SHOW statement_timeout`
      expect(timeout?.statement_timeout).toBe("10s")
      const [path] = yield* sql<{ search_path: string }>`SHOW search_path`
      expect(path?.search_path).toMatch(Option.isSome(testDatabaseUrl) ? /^t_database_\w+,\s*public$/ : /public/)
    }))
})
