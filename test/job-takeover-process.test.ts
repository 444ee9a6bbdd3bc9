import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"

import { fakeEmbeddings } from "./support/fakeEmbeddings.js"
import { freePort } from "./support/network.js"
import { collect, startServer, waitFor } from "./support/process.js"
import { interruptibleJobsEnv, request, settledJob, submitHandbook } from "./support/remote.js"

/*
 * In-process jobs (no Redis: the embedded default) across a crash. A server on an embedded data
 * directory accepts a large document (202 + job_id) and is killed with SIGKILL while the ingestion
 * waits for the embeddings provider: no way out to record anything. The next server started on the
 * same directory takes the job over (its row kept the payload; the dead queue stopped marking it
 * alive) and completes it: the document becomes ready, the attempt that died counted.
 */

const ADMIN = { email: "takeover-admin@example.com", password: "correct horse battery staple" }

describe("in-process jobs after a crash (embedded database, no Redis)", () => {
  const scope = Effect.runSync(Scope.make())
  const dataDir = mkdtempSync(join(tmpdir(), "chatkit-takeover-"))
  const children: Array<ReturnType<typeof startServer>> = []
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    await Effect.runPromise(Scope.close(scope, Exit.void))
    rmSync(dataDir, { recursive: true, force: true })
  })

  const start = async (env: Record<string, string>) => {
    const port = await freePort()
    const server = startServer({ ...env, PORT: String(port) })
    children.push(server)
    const run = collect(server)
    await waitFor(() => run.output.stdout.includes("listening on"), 90_000)
    return { server, run, base: `http://127.0.0.1:${port}/api/v1` }
  }

  it(
    "a server killed mid-job leaves the job to the next server on its data directory, which completes it",
    async () => {
      // the first embeddings call never answers in time (its server dies meanwhile); the next ones do
      const fake = await Effect.runPromise(
        Scope.extend(fakeEmbeddings({ type: "ok", delayMs: 120_000 }, { type: "ok" }), scope)
      )
      const env = {
        CHATKIT_DATA_DIR: dataDir,
        AUTH_SECRET_KEY: "takeover-test-secret-0123456789-abcdefgh",
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
        ...interruptibleJobsEnv(fake.baseUrl)
      }

      const first = await start(env)
      const { jobId, token } = await submitHandbook(first.base, ADMIN)
      await waitFor(() => fake.requests.length >= 1, 30_000, "the ingestion's embeddings call")
      expect((await request("GET", `${first.base}/jobs/${jobId}`, undefined, token)).body).toMatchObject({
        status: "running",
        attempts: 1
      })
      first.server.kill("SIGKILL")
      await first.run.exited

      const second = await start(env)
      const job = await settledJob(second.base, token, jobId, 60_000)
      expect(job).toMatchObject({ status: "completed", attempts: 2, progress: 100 })
      expect(fake.requests).toHaveLength(2)
      const document = await request("GET", `${second.base}/vector-stores/handbook/documents/plant`, undefined, token)
      expect(document.body).toMatchObject({ status: "ready", error: null })
      expect(second.run.output.stdout).toContain("took over the jobs of an in-process queue that stopped")

      second.server.kill("SIGTERM")
      expect(await second.run.exited).toBe(0)
    },
    240_000
  )
})
