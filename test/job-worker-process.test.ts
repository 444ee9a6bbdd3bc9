import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"

import { Effect, Exit, Option, Scope } from "effect"
import pg from "pg"
import { afterAll, describe, expect, it } from "vitest"

import { freshDatabase, testDatabaseUrl } from "./support/database.js"
import { fakeEmbeddings } from "./support/fakeEmbeddings.js"
import { freePort } from "./support/network.js"
import { collect, startServer, waitFor } from "./support/process.js"
import { testRedisUrl } from "./support/redis.js"
import { interruptibleJobsEnv, request, settledJob, submitHandbook } from "./support/remote.js"

/*
 * Durable jobs across processes (issue 12, point 6), on TEST_REDIS_URL and TEST_DATABASE_URL: a
 * server that runs no consumers (WORKER_MODE=off) accepts a large document (202 + job_id); a
 * `chatkit worker` process takes the document.ingest job and is killed with SIGKILL while the
 * embeddings provider has not answered; a second worker process retakes the job (BullMQ's
 * stalled-job check) and completes it, once: one set of chunks, one audit row.
 */

const ADMIN_EMAIL = "worker-admin@example.com"
const ADMIN_PASSWORD = "correct horse battery staple"
const AUTH_SECRET_KEY = "worker-test-secret-0123456789-abcdefghij"

const startWorker = (env: Record<string, string>) =>
  spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "worker"], {
    env: { PATH: process.env.PATH ?? "", NODE_ENV: "test", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })

describe.runIf(Option.isSome(testRedisUrl) && Option.isSome(testDatabaseUrl))(
  "job worker processes (TEST_REDIS_URL, TEST_DATABASE_URL)",
  () => {
    const scope = Effect.runSync(Scope.make())
    const database = freshDatabase("jobs_worker")
    const children: Array<ReturnType<typeof spawn>> = []
    afterAll(async () => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await database.drop()
    })

    it("a worker killed mid-job leaves the job to another worker, which completes it exactly once", async () => {
      const url = await database.create()
      // the first embeddings call never answers in time (its worker dies meanwhile); the next ones do
      const fake = await Effect.runPromise(
        Scope.extend(fakeEmbeddings({ type: "ok", delayMs: 120_000 }, { type: "ok" }), scope)
      )
      const env = {
        DATABASE_URL: url,
        REDIS_URL: Option.getOrThrow(testRedisUrl),
        REDIS_NAMESPACE: `jobs_worker_${randomBytes(4).toString("hex")}`,
        AUTH_SECRET_KEY,
        ...interruptibleJobsEnv(fake.baseUrl)
      }

      const port = await freePort()
      const server = startServer({ ...env, PORT: String(port), ADMIN_EMAIL, ADMIN_PASSWORD, WORKER_MODE: "off" })
      children.push(server)
      const serverRun = collect(server)
      await waitFor(() => serverRun.output.stdout.includes("listening on"), 90_000)
      expect(serverRun.output.stdout).not.toContain("job consumers started")
      const base = `http://127.0.0.1:${port}/api/v1`

      const first = startWorker(env)
      children.push(first)
      const firstRun = collect(first)
      await waitFor(() => firstRun.output.stdout.includes("worker ready"), 90_000)
      expect(firstRun.output.stdout).toContain("job consumers started")

      const { jobId, token } = await submitHandbook(base, { email: ADMIN_EMAIL, password: ADMIN_PASSWORD })

      // the first worker has taken the job and waits for the provider: kill it there
      await waitFor(() => fake.requests.length >= 1, 30_000)
      const running = await request("GET", `${base}/jobs/${jobId}`, undefined, token)
      expect(running.body).toMatchObject({ status: "running", attempts: 1 })
      first.kill("SIGKILL")
      await firstRun.exited

      const second = startWorker(env)
      children.push(second)
      const secondRun = collect(second)
      await waitFor(() => secondRun.output.stdout.includes("worker ready"), 90_000)

      const job = await settledJob(base, token, jobId, 60_000)
      expect(job).toMatchObject({ status: "completed", attempts: 2, progress: 100 })
      expect(fake.requests).toHaveLength(2)

      const document = await request("GET", `${base}/vector-stores/handbook/documents/plant`, undefined, token)
      expect(document.body).toMatchObject({ status: "ready", error: null })
      const chunkCount = document.body.chunk_count as number
      expect(chunkCount).toBeGreaterThan(10)
      expect(job.result).toEqual({ doc_id: "plant", generation: 1, chunk_count: chunkCount })

      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        const chunks = await client.query(
          `SELECT count(*)::int AS n FROM vector_chunks c JOIN vector_documents d ON d.id = c.document_id
           WHERE d.doc_id = 'plant'`
        )
        expect(chunks.rows[0].n).toBe(chunkCount)
        const audits = await client.query(
          `SELECT count(*)::int AS n FROM audit_logs WHERE action = 'vector_store.document.ingest'`
        )
        expect(audits.rows[0].n).toBe(1)
      } finally {
        await client.end()
      }

      const search = await request("POST", `${base}/vector-stores/handbook/search_json`, {
        query: "close valve 200 read the gauge"
      }, token)
      expect(search.status).toBe(200)
      expect((search.body.results as Array<{ doc_id: string }>)[0]?.doc_id).toBe("plant")

      // SIGTERM stops a worker cleanly
      second.kill("SIGTERM")
      expect(await secondRun.exited).toBe(0)
      expect(secondRun.output.stdout).toContain("worker stopped")
      server.kill("SIGTERM")
      expect(await serverRun.exited).toBe(0)
    }, 240_000)
  }
)

describe.runIf(Option.isSome(testRedisUrl))("a server on Redis with WORKER_MODE=on (TEST_REDIS_URL)", () => {
  it(
    "consumes its own jobs (a large document turns ready, a thread gets its title) with no worker; /metrics counts them",
    async () => {
      const port = await freePort()
      const server = startServer({
        PORT: String(port),
        AUTH_SECRET_KEY,
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
        METRICS_TOKEN: "metrics-token-for-job-tests",
        REDIS_URL: Option.getOrThrow(testRedisUrl),
        REDIS_NAMESPACE: `jobs_server_${randomBytes(4).toString("hex")}`
      })
      const run = collect(server)
      try {
        await waitFor(() => run.output.stdout.includes("listening on"), 90_000)
        expect(run.output.stdout).toContain("job consumers started")
        const base = `http://127.0.0.1:${port}/api/v1`
        const { jobId, token } = await submitHandbook(base, { email: ADMIN_EMAIL, password: ADMIN_PASSWORD })
        const job = await settledJob(base, token, jobId, 30_000)
        expect(job).toMatchObject({ type: "document.ingest", status: "completed", attempts: 1 })
        const document = await request("GET", `${base}/vector-stores/handbook/documents/plant`, undefined, token)
        expect(document.body.status).toBe("ready")

        // the thread.title job runs on the same queue
        const opened = await fetch(`${base}/chatkit`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({
            type: "threads.create",
            params: { input: { content: [{ type: "input_text", text: "Tell me about durable queues" }] } }
          })
        })
        const events = (await opened.text()).split("\n\n").filter((block) => block.startsWith("data: "))
          .map((block) => JSON.parse(block.slice(6)) as { type: string; thread?: { id: string } })
        const threadId = events.find((e) => e.type === "thread.created")?.thread?.id
        expect(threadId).toMatch(/^thr_/)
        let title: unknown
        for (const deadline = Date.now() + 20_000; Date.now() < deadline && title === undefined;) {
          const thread = await request("POST", `${base}/chatkit`, {
            type: "threads.get_by_id",
            params: { thread_id: threadId }
          }, token)
          title = thread.body.title
          if (title === undefined) await new Promise((resolve) => setTimeout(resolve, 100))
        }
        expect(title).toBe("Tell me about durable queues")

        const metrics = await fetch(`http://127.0.0.1:${port}/metrics`, {
          headers: { authorization: "Bearer metrics-token-for-job-tests" }
        })
        const text = await metrics.text()
        expect(text).toMatch(/^jobs_total\{.*outcome="completed".*type="document.ingest".*\} 1$/m)
        expect(text).toMatch(/^jobs_total\{.*outcome="completed".*type="thread.title".*\} 1$/m)
        expect(text).toMatch(/^jobs_queue_depth\{state="waiting"\} \d+$/m)
      } finally {
        server.kill("SIGTERM")
        expect(await run.exited).toBe(0)
      }
    },
    120_000
  )
})

describe("chatkit worker", () => {
  it("refuses to start without REDIS_URL, saying why", async () => {
    const child = startWorker({ AUTH_SECRET_KEY, CHATKIT_DATA_DIR: "memory://" })
    const run = collect(child)
    expect(await run.exited).toBe(1)
    expect(run.output.stderr).toContain("chatkit worker needs REDIS_URL")
  }, 60_000)
})
