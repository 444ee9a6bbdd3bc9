import { Option } from "effect"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"

import { freshDatabase, testDatabaseUrl } from "./support/database.js"
import { adminToken, bootServer, histogram, load, type Outcome, send } from "./support/serverProcess.js"

/*
 * The app's PostgreSQL connections killed (pg_terminate_backend) while requests flow, twice: a
 * request that meets a dead connection fails at once with a 503 problem, none hangs or gets a 500,
 * and the pool serves again within 5 s. The server is a process on a database of its own on
 * TEST_DATABASE_URL's server, so only its backends are selected (by database name); skipped
 * without TEST_DATABASE_URL, failing when it is set and does not answer.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Terminates every backend connected to `database`: how many there were. */
const killBackends = async (database: string) => {
  const admin = new pg.Client({ connectionString: Option.getOrThrow(testDatabaseUrl) })
  await admin.connect()
  try {
    const result = await admin.query(
      "SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1) t",
      [database]
    )
    return (result.rows[0] as { n: number }).n
  } finally {
    await admin.end()
  }
}

describe.runIf(Option.isSome(testDatabaseUrl))("PostgreSQL connections killed while requests flow", () => {
  const database = freshDatabase("chatkit_faults_pg")
  afterAll(() => database.drop())

  it("answers 503 at once while the pool has dead connections and serves again within 5 s", async () => {
    const url = await database.create()
    const name = new URL(url).pathname.slice(1)
    const server = await bootServer({ DATABASE_URL: url, RATE_LIMIT_API_PER_MINUTE: "1000000" })
    try {
      const { port } = server
      const token = await adminToken(port)
      // a list that reads the database on every request (no cache in front of it)
      const traffic = load(4, () => send(server.port, "/api/v1/workflows?page=1&page_size=5", { token }))
      await sleep(300)

      const kills: Array<{ at: number; backends: number }> = []
      for (let round = 0; round < 2; round++) {
        const at = Date.now()
        kills.push({ at, backends: await killBackends(name) })
        await sleep(1_200)
      }
      const outcomes = await traffic.stop()
      const ready = await send(port, "/health/ready")

      const failed = outcomes.filter((o) => o.status !== 200)
      // the pool has recovered once every later request succeeds: the last failure of a round marks it
      const recoveryMs = kills.map(({ at }, i) => {
        const until = kills[i + 1]?.at ?? Infinity
        const ends = failed.map((o) => o.sentAt + o.ms).filter((end) => end >= at && end < until)
        return ends.length === 0 ? 0 : Math.max(...ends) - at
      })
      const slowestFailure = Math.max(0, ...failed.map((o) => o.ms))
      console.log(
        `PostgreSQL backends killed twice (${kills.map((k) => k.backends).join(" and ")} connections): ` +
          `${outcomes.length} requests, statuses ${JSON.stringify(histogram(outcomes))}; ` +
          `recovered ${recoveryMs.join(" and ")} ms after the kills; slowest failure ${slowestFailure} ms, ` +
          `slowest request ${Math.max(...outcomes.map((o) => o.ms))} ms`
      )

      expect(kills.every((k) => k.backends > 0)).toBe(true)
      expect(Object.keys(histogram(outcomes)).filter((status) => status !== "200" && status !== "503")).toEqual([])
      for (const failure of failed) expectProblem(failure)
      expect(slowestFailure).toBeLessThan(1_000)
      expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(5_000)
      expect(Math.max(...recoveryMs)).toBeLessThan(5_000)
      expect(outcomes.filter((o) => o.sentAt > kills[1]!.at + 1_000).every((o) => o.status === 200)).toBe(true)
      expect(ready.status).toBe(200)
    } finally {
      expect(await server.stop()).toBe(0)
    }
  }, 30_000)
})

const expectProblem = (outcome: Outcome) => {
  expect(outcome.headers["content-type"]).toBe("application/problem+json")
  expect(JSON.parse(outcome.body)).toMatchObject({ status: 503, request_id: expect.any(String) })
}
