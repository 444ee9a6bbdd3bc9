import type { ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"

import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

import { Redis } from "../src/platform/Redis.js"
import { type Answer, answerOf, eventsOf, json, say } from "./support/chatkit.js"
import { freshDatabase, testDatabaseUrl } from "./support/database.js"
import { type FakeEmbeddings, fakeEmbeddings } from "./support/fakeEmbeddings.js"
import { freePort } from "./support/network.js"
import { collect, runBuilt, startBuilt, waitFor } from "./support/process.js"
import { reachableRedis, testRedisUrl } from "./support/redis.js"
import { interruptibleJobsEnv, request, settledJob, submitLargeDocument } from "./support/remote.js"
import { PASSWORD, randomIp } from "./support/session.js"

/*
 * Scale-out (issue 13, point 4), on TEST_DATABASE_URL and TEST_REDIS_URL: two compiled server
 * processes (`node dist/main.js`, WORKER_MODE=off) on their own ports and one `node dist/cli/main.js
 * worker`, all on one fresh database (migrated once, by `dist/cli/migrate.js up`) and one Redis
 * namespace, as a deployment behind a load balancer runs them. What one instance does, the other
 * sees at once: limits, cached reads, refresh tokens, users, documents, conversations; jobs are
 * the worker's, and survive it. Requests come from made-up client addresses (TRUST_PROXY=1).
 */

const ADMIN_EMAIL = "scale-admin@example.com"
const AUTH_SECRET_KEY = "scale-out-test-secret-0123456789-abcdefghij"

/** A process of the deployment: a server or a worker. */
interface Instance {
  readonly name: string
  readonly child: ChildProcess
  readonly output: { readonly stdout: string; readonly stderr: string }
  readonly exited: Promise<number | null>
}

/** A server process: `http://127.0.0.1:<port>`, and the base URL of its API. */
interface Server extends Instance {
  readonly origin: string
  readonly base: string
}

const start = (name: string, entry: string, args: ReadonlyArray<string>, env: Record<string, string>): Instance => {
  const child = startBuilt(entry, args, env)
  return { name, child, ...collect(child) }
}

const started = (instance: Instance, line: string) =>
  waitFor(() => instance.output.stdout.includes(line), 60_000, `${instance.name} (stderr: ${instance.output.stderr})`)

/** A request to `instance` from a fresh client address unless `headers` name one. */
const call = (
  instance: Server,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
  headers: Record<string, string> = {}
) => request(method, `${instance.base}${path}`, body, token, { "x-forwarded-for": randomIp(), ...headers })

const chatkit = async (instance: Server, token: string, body: unknown): Promise<Answer> => {
  const response = await fetch(`${instance.base}/chatkit`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "x-forwarded-for": randomIp() },
    body: JSON.stringify(body)
  })
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => (headers[name] = value))
  return { status: response.status, headers, text: await response.text() }
}

/** Lookups of the cache `cache` that `instance` answered from Redis, from its /metrics. */
const cacheHits = async (instance: Server, cache: string) => {
  const text = await (await fetch(`${instance.origin}/metrics`)).text()
  const line = text.split("\n").find((l) =>
    l.startsWith("cache_requests_total{") && l.includes(`cache="${cache}"`) && l.includes(`result="hit"`)
  )
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

describe.runIf(Option.isSome(testRedisUrl) && Option.isSome(testDatabaseUrl))(
  "two server instances and a worker on one PostgreSQL and one Redis (TEST_DATABASE_URL, TEST_REDIS_URL)",
  () => {
    const scope = Effect.runSync(Scope.make())
    const database = freshDatabase("scale_out")
    const namespace = `scale_out_${randomBytes(4).toString("hex")}`
    const processes: Array<Instance> = []
    let redis: Context.Tag.Service<Redis>
    let fake: FakeEmbeddings
    let workerEnv: Record<string, string>
    let a: Server
    let b: Server
    let worker: Instance
    let admin: { readonly access: string; readonly refresh: string }

    beforeAll(async () => {
      // an unreachable Redis or PostgreSQL fails here, before anything starts
      redis = Context.get(await Effect.runPromise(Layer.buildWithScope(reachableRedis, scope)), Redis)
      const url = await database.create()
      fake = await Effect.runPromise(Scope.extend(fakeEmbeddings({ type: "ok" }), scope))
      const shared = {
        DATABASE_URL: url,
        REDIS_URL: Option.getOrThrow(testRedisUrl),
        REDIS_NAMESPACE: namespace,
        AUTH_SECRET_KEY,
        MIGRATE_ON_START: "false",
        ...interruptibleJobsEnv(fake.baseUrl)
      }
      // the one build (when dist/ is stale) and the one migration run of the deployment
      const migrated = await runBuilt("cli/migrate.js", ["up"], shared)
      expect(migrated.code, migrated.stderr).toBe(0)

      const server = async (name: string): Promise<Server> => {
        const origin = `http://127.0.0.1:${await freePort()}`
        const env = { ...shared, PORT: new URL(origin).port, WORKER_MODE: "off", TRUST_PROXY: "1" }
        return {
          ...start(name, "main.js", [], { ...env, ADMIN_EMAIL, ADMIN_PASSWORD: PASSWORD }),
          origin,
          base: `${origin}/api/v1`
        }
      }
      workerEnv = shared
      a = await server("instance A")
      b = await server("instance B")
      worker = start("worker 1", "cli/main.js", ["worker"], workerEnv)
      processes.push(a, b, worker)
      await Promise.all([started(a, "listening on"), started(b, "listening on"), started(worker, "worker ready")])

      const login = await call(a, "POST", "/auth/login", { email: ADMIN_EMAIL, password: PASSWORD })
      expect(login.status).toBe(200)
      admin = { access: login.body.access_token as string, refresh: login.body.refresh_token as string }
    }, 120_000)

    afterAll(async () => {
      const running = processes.filter(({ child }) => child.exitCode === null && child.signalCode === null)
      for (const { child } of running) child.kill("SIGTERM")
      await Promise.race([
        Promise.all(running.map(({ exited }) => exited)),
        new Promise((resolve) => setTimeout(resolve, 10_000))
      ])
      for (const { child } of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      await Promise.all(running.map(({ exited }) => exited))
      if (redis !== undefined) {
        await Effect.runPromise(Effect.ignore(redis.run(async (client) => {
          let cursor = "0"
          do {
            const [next, keys] = await client.scan(cursor, "MATCH", `chatkit:${namespace}:*`, "COUNT", 500)
            cursor = next
            if (keys.length > 0) await client.del(...keys)
          } while (cursor !== "0")
        })))
      }
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await database.drop()
    }, 30_000)

    it("counts login attempts once for both: 5 failures spread over A and B, the 6th refused by either", async () => {
      const email = "limited@example.com"
      expect((await call(a, "POST", "/admin/users", { email, password: PASSWORD }, admin.access)).status).toBe(201)
      // each from its own address: this is the per-email limit
      for (const [i, instance] of [a, b, a, b, a].entries()) {
        const attempt = await call(instance, "POST", "/auth/login", { email, password: `not the password ${i}` })
        expect(attempt.status).toBe(401)
      }
      for (const instance of [b, a]) {
        const refused = await call(instance, "POST", "/auth/login", { email, password: PASSWORD })
        expect(refused.status, instance.name).toBe(429)
        expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0)
      }

      // and the per-address limit, counted before the body is read: malformed attempts from one address
      const address = { "x-forwarded-for": randomIp() }
      for (const instance of [a, b, a, b, a]) {
        expect((await call(instance, "POST", "/auth/login", {}, undefined, address)).status).toBe(400)
      }
      for (const instance of [b, a]) {
        expect((await call(instance, "POST", "/auth/login", {}, undefined, address)).status, instance.name).toBe(429)
      }
    })

    it("a write through A invalidates the page B had cached, at once", async () => {
      const catalogOnB = async () => {
        const page = await call(b, "GET", "/models", undefined, admin.access)
        expect(page.status).toBe(200)
        return (page.body.items as Array<{ display_name: string }>).map((m) => m.display_name)
      }
      expect(await catalogOnB()).toEqual([])
      const hits = await cacheHits(b, "models")
      expect(await catalogOnB()).toEqual([])
      expect(await cacheHits(b, "models")).toBe(hits + 1) // B serves the page from Redis now

      const created = await call(
        a,
        "POST",
        "/admin/models",
        { name: "llama3.1", display_name: "Llama 3.1" },
        admin.access
      )
      expect(created.status).toBe(201)
      expect(await catalogOnB()).toEqual(["Llama 3.1"])
      const renamed = await call(
        a,
        "PATCH",
        `/admin/models/${created.body.id}`,
        { display_name: "Llama 3.1 8B" },
        admin.access
      )
      expect(renamed.status).toBe(200)
      expect(await catalogOnB()).toEqual(["Llama 3.1 8B"])
    })

    it("a refresh token rotated on A is refused as reused on B, which revokes its whole family", async () => {
      const rotated = await call(a, "POST", "/auth/refresh", { refresh_token: admin.refresh })
      expect(rotated.status).toBe(200)
      expect((await call(b, "POST", "/auth/refresh", { refresh_token: admin.refresh })).status).toBe(401)
      expect((await call(a, "POST", "/auth/refresh", { refresh_token: rotated.body.refresh_token })).status).toBe(401)
    })

    it("a user demoted, then deleted, through A loses access on B at once", async () => {
      const email = "moved@example.com"
      const user = await call(a, "POST", "/admin/users", { email, password: PASSWORD, is_admin: true }, admin.access)
      expect(user.status).toBe(201)
      const login = await call(b, "POST", "/auth/login", { email, password: PASSWORD })
      expect(login.status).toBe(200)
      const token = login.body.access_token as string
      expect((await call(b, "GET", "/admin/users", undefined, token)).status).toBe(200) // B knows the user now

      const demoted = await call(a, "PATCH", `/admin/users/${user.body.id}`, { is_admin: false }, admin.access)
      expect(demoted.status).toBe(200)
      expect((await call(b, "GET", "/admin/users", undefined, token)).status).toBe(403)
      expect((await call(b, "GET", "/auth/me", undefined, token)).status).toBe(200)

      expect((await call(a, "DELETE", `/admin/users/${user.body.id}`, undefined, admin.access)).status).toBe(204)
      expect((await call(b, "GET", "/auth/me", undefined, token)).status).toBe(401)
    })

    it("a document too large to ingest inline, sent to A, is ingested by the worker and searchable through both", async () => {
      for (const server of [a, b]) expect(server.output.stdout).not.toContain("job consumers started")
      expect(worker.output.stdout).toContain("job consumers started")
      const store = await call(a, "POST", "/vector-stores", { slug: "handbook", title: "Handbook" }, admin.access)
      expect(store.status).toBe(201)
      const jobId = await submitLargeDocument(a.base, admin.access, "plant", { "x-forwarded-for": randomIp() })

      const job = await settledJob(b.base, admin.access, jobId, 30_000)
      expect(job).toMatchObject({ type: "document.ingest", status: "completed", attempts: 1 })
      for (const server of [a, b]) {
        const search = await call(server, "POST", "/vector-stores/handbook/search_json", {
          query: "close valve 200 read the gauge"
        }, admin.access)
        expect(search.status).toBe(200)
        expect((search.body.results as Array<{ doc_id: string }>)[0]?.doc_id, server.name).toBe("plant")
      }
    })

    it("a conversation started on A continues on B, with the same history through both", async () => {
      const opened = eventsOf(
        await chatkit(a, admin.access, { type: "threads.create", params: { input: say("Hello from A") } })
      )
      const threadId = opened.find((e) => e.type === "thread.created")?.thread.id
      expect(threadId).toMatch(/^thr_/)
      expect(answerOf(opened)).toContain("Hello from A")

      const continued = eventsOf(
        await chatkit(b, admin.access, {
          type: "threads.add_user_message",
          params: { thread_id: threadId, input: say("And hello from B") }
        })
      )
      expect(answerOf(continued)).toContain("And hello from B")

      const [onA, onB] = await Promise.all(
        [a, b].map(async (server) =>
          json(
            await chatkit(server, admin.access, { type: "items.list", params: { thread_id: threadId, order: "asc" } })
          )
        )
      )
      expect(onA?.data.map((item) => item.type)).toEqual([
        "user_message",
        "assistant_message",
        "user_message",
        "assistant_message"
      ])
      expect(onB).toEqual(onA)
    })

    it("a worker killed mid-job leaves the job to another worker, which completes it", async () => {
      const callsBefore = fake.requests.length
      // the next embeddings call never answers in time (its worker dies meanwhile); the ones after do
      fake.script({ type: "ok", delayMs: 120_000 }, { type: "ok" })
      const jobId = await submitLargeDocument(b.base, admin.access, "manual", { "x-forwarded-for": randomIp() })

      await waitFor(() => fake.requests.length > callsBefore, 20_000, "the worker's call to the embeddings provider")
      expect((await call(a, "GET", `/jobs/${jobId}`, undefined, admin.access)).body)
        .toMatchObject({ status: "running", attempts: 1 })
      worker.child.kill("SIGKILL")
      await worker.exited

      const second = start("worker 2", "cli/main.js", ["worker"], workerEnv)
      processes.push(second)
      await started(second, "worker ready")
      const job = await settledJob(a.base, admin.access, jobId, 30_000)
      expect(job).toMatchObject({ status: "completed", attempts: 2, progress: 100 })
      for (const server of [a, b]) {
        const document = await call(server, "GET", "/vector-stores/handbook/documents/manual", undefined, admin.access)
        expect(document.body, server.name).toMatchObject({ status: "ready", error: null })
      }
    })
  }
)
