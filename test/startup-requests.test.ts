import { spawn } from "node:child_process"
import { request } from "node:http"

import { Option } from "effect"
import { afterAll, describe, expect, it } from "vitest"

import { freshDatabase, testDatabaseUrl } from "./support/database.js"
import { freePort } from "./support/network.js"

/*
 * A readiness poller fires from the moment the process starts: every request must either be
 * refused (nothing listens yet) or answered (503 while starting, 200 once ready), never left open.
 */

type Outcome =
  | { readonly kind: "refused" }
  | {
    readonly kind: "answered"
    readonly status: number
    readonly headers: Record<string, unknown>
    readonly body: string
  }
  | { readonly kind: "hung" }
  | { readonly kind: "error"; readonly message: string }

/** One GET on a fresh connection, given up after `timeoutMs` (that counts as hung). */
const probe = (port: number, path: string, timeoutMs: number) =>
  new Promise<Outcome>((resolve) => {
    const req = request(
      { host: "127.0.0.1", port, path, agent: false, headers: { origin: "http://localhost:5173" } },
      (res) => {
        let body = ""
        res.on("data", (chunk) => (body += String(chunk)))
        res.on("end", () => resolve({ kind: "answered", status: res.statusCode ?? 0, headers: res.headers, body }))
      }
    )
    req.setTimeout(timeoutMs, () => {
      resolve({ kind: "hung" })
      req.destroy()
    })
    req.on("error", (error: NodeJS.ErrnoException) =>
      resolve(
        error.code === "ECONNREFUSED"
          ? { kind: "refused" }
          : { kind: "error", message: String(error.code ?? error.message) }
      ))
    req.end()
  })

const pollDuringStartup = async (env: Record<string, string>) => {
  const port = await freePort()
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", NODE_ENV: "test", PORT: String(port), ...env },
    stdio: ["ignore", "ignore", "pipe"]
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve))
  const pending: Array<Promise<Outcome>> = []
  const deadline = Date.now() + 90_000
  // poll every 20 ms until /health/ready answers 200, then a little longer
  let readyAt: number | undefined
  while (Date.now() < deadline && (readyAt === undefined || Date.now() < readyAt + 300)) {
    const outcome = probe(port, "/health/ready", 10_000)
    pending.push(outcome)
    void outcome.then((o) => {
      if (o.kind === "answered" && o.status === 200 && readyAt === undefined) readyAt = Date.now()
    })
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const outcomes = await Promise.all(pending)
  child.kill("SIGTERM")
  expect(await exited).toBe(0)
  return outcomes
}

const expectEveryRequestAnswered = (outcomes: ReadonlyArray<Outcome>) => {
  expect(outcomes.filter((o) => o.kind === "hung")).toEqual([])
  expect(outcomes.filter((o) => o.kind === "error")).toEqual([])
  const answered = outcomes.flatMap((o) => (o.kind === "answered" ? [o] : []))
  expect(answered.some((o) => o.status === 200)).toBe(true)
  for (const o of answered) {
    expect([200, 503]).toContain(o.status)
    expect(o.headers["x-request-id"]).toBeDefined()
    expect(o.headers["api-version"]).toBe("1")
    if (o.status === 503) {
      expect(o.headers["content-type"]).toContain("application/problem+json")
      expect(JSON.parse(o.body)).toMatchObject({ status: 503 })
    }
  }
}

describe("requests sent while the server starts", () => {
  it("are refused or answered on the embedded database, never left hanging", async () => {
    expectEveryRequestAnswered(await pollDuringStartup({ CHATKIT_DATA_DIR: "memory://" }))
  })

  describe.runIf(Option.isSome(testDatabaseUrl))("on PostgreSQL", () => {
    const database = freshDatabase("chatkit_startup")
    afterAll(() => database.drop())

    it("are refused or answered on a fresh database, never left hanging", async () => {
      expectEveryRequestAnswered(await pollDuringStartup({ DATABASE_URL: await database.create() }))
    })
  })
})
