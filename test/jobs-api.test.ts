import { expect, layer } from "@effect/vitest"
import { Clock, Effect } from "effect"

import type { Job } from "../src/api/JobsApi.js"
import { NotFound } from "../src/domain/errors.js"
import { JobQueue } from "../src/platform/JobQueue.js"
import { TestApp } from "./support/app.js"
import { type Client, raw, runId, session } from "./support/session.js"

/**
 * GET /api/v1/jobs/{id} (API.md section 9) and the large-document path of the vector stores'
 * ingest (section 8: 202 + job_id), on the in-process queue (the embedded default: PGlite, no
 * Redis for the jobs), through the derived client.
 */

/** Polls and backoffs on the real clock (the test layer's clock is a TestClock). */
const live = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.withClock(self, Clock.make())

/** Polls GET /jobs/{id} until the job is completed or failed (20 s at most). */
const finished = (client: Client, id: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 400; i++) {
      const job = yield* client.jobs.get({ path: { id } })
      if (job.status === "completed" || job.status === "failed") return job
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.dieMessage(`job ${id} did not finish`)
  })

/** A document of about `sections` x 260 bytes of JSON; one section holds a distinctive sentence. */
const largeDocument = (sections: number, needle: string) => ({
  title: "Operations manual",
  sections: Array.from({ length: sections }, (_, i) => ({
    heading: `Section ${i}`,
    text: i === Math.floor(sections / 2)
      ? needle
      : `Routine maintenance step ${i}: inspect the valves, log the pressure readings and report anomalies to the ` +
        `shift supervisor before the end of the shift, then archive the checklist number ${i}.`
  }))
})

let slugs = 0
const newSlug = (prefix: string) => `${prefix}-${runId}-${++slugs}`

layer(TestApp("jobs-api", { TRUST_PROXY: "1", JOB_BACKOFF_MS: "50" }), { timeout: 120_000 })("jobs API", (it) => {
  it.effect("a job is read by its owner and by admins; another user, an unknown id and a bad id are refused", () =>
    live(Effect.gen(function*() {
      const jobs = yield* JobQueue
      yield* jobs.register("test.owned", (payload) => Effect.succeed({ echoed: payload }))
      const { client: owner, user } = yield* session("job-owner")
      const { client: other } = yield* session("job-other")
      const { client: admin } = yield* session("job-admin", { isAdmin: true })

      const id = yield* jobs.enqueue("test.owned", { n: 1 }, { owner: user.id })
      const done = yield* finished(owner, id)
      expect(done).toMatchObject({
        id,
        type: "test.owned",
        status: "completed",
        attempts: 1,
        progress: 100,
        result: { echoed: { n: 1 } }
      })
      expect(done.created_at).toBeInstanceOf(Date)
      expect(done.started_at).toBeInstanceOf(Date)
      expect(done.finished_at).toBeInstanceOf(Date)
      expect(done).not.toHaveProperty("error")
      expect(yield* admin.jobs.get({ path: { id } })).toEqual(done)

      const hidden = yield* Effect.flip(other.jobs.get({ path: { id } }))
      expect(hidden).toBeInstanceOf(NotFound)
      const unknown = yield* Effect.flip(other.jobs.get({ path: { id: "job_00000000-0000-0000-0000-000000000000" } }))
      expect(unknown).toBeInstanceOf(NotFound)
      // the same answer for someone else's job and for none: nothing tells them apart
      expect((hidden as NotFound).detail).toBe(`Job ${id} does not exist`)

      // a system job (no owner) is for administrators only
      const system = yield* jobs.enqueue("test.owned", { n: 2 })
      yield* finished(admin, system)
      expect(yield* Effect.flip(owner.jobs.get({ path: { id: system } }))).toBeInstanceOf(NotFound)

      const { token } = yield* session("job-raw")
      const bad = yield* raw("GET", "/api/v1/jobs/not-a-job", { token })
      expect(bad.status).toBe(400)
      expect(bad.body).toMatchObject({ error: "validation_error" })
      const anonymous = yield* raw("GET", `/api/v1/jobs/${id}`)
      expect(anonymous.status).toBe(401)
    })))

  it.effect("a failing job shows its attempts and its readable error", () =>
    live(Effect.gen(function*() {
      const jobs = yield* JobQueue
      yield* jobs.register("test.broken", () => Effect.fail(new Error("the remote service answered 502")))
      const { client: admin } = yield* session("job-broken-admin", { isAdmin: true })
      const id = yield* jobs.enqueue("test.broken", {})
      const failed = yield* finished(admin, id)
      expect(failed).toMatchObject({ status: "failed", attempts: 3, error: "the remote service answered 502" })
      expect(failed).not.toHaveProperty("result")
    })))

  it.effect("a document over VECTOR_INLINE_MAX_BYTES is answered 202 with a job that makes it ready and searchable", () =>
    live(Effect.gen(function*() {
      const { client: admin } = yield* session("ingest-admin", { isAdmin: true })
      const { client: reader } = yield* session("ingest-reader")
      const store = yield* admin.vectorStores.create({ payload: { slug: newSlug("large"), title: "Large documents" } })
      const slug = store.slug
      const needle = "The quokka zephyr calibration needs the violet torque wrench and a signed permit."
      const document = largeDocument(400, needle)
      const bytes = Buffer.byteLength(JSON.stringify(document))
      expect(bytes).toBeGreaterThan(65_536)
      expect(bytes).toBeLessThan(1_048_576)

      const [small, smallResponse] = yield* admin.vectorStores.ingest({
        path: { slug },
        payload: { doc_id: "small", document: { title: "Lunch menu", text: "soup of the day and bread" } },
        withResponse: true
      })
      expect(smallResponse.status).toBe(201)
      expect(small.status).toBe("ready")

      const [accepted, response] = yield* admin.vectorStores.ingest({
        path: { slug },
        payload: { doc_id: "manual", document, metadata: { kind: "manual" } },
        withResponse: true
      })
      expect(response.status).toBe(202)
      expect(accepted).toMatchObject({ doc_id: "manual", status: "pending" })
      const jobId = (accepted as { job_id?: string }).job_id
      expect(jobId).toMatch(/^job_/)

      const job: Job = yield* finished(admin, jobId!)
      expect(job).toMatchObject({ type: "document.ingest", status: "completed", attempts: 1, progress: 100 })
      const ready = yield* reader.vectorStores.getDocument({ path: { slug, doc_id: "manual" } })
      expect(ready).toMatchObject({ status: "ready", error: null, metadata: { kind: "manual" } })
      expect(ready.chunk_count).toBeGreaterThan(10)
      expect(job.result).toEqual({ doc_id: "manual", generation: 1, chunk_count: ready.chunk_count })

      const { results } = yield* reader.vectorStores.searchJson({
        path: { slug },
        payload: { query: "quokka zephyr calibration torque wrench" }
      })
      expect(results[0]?.doc_id).toBe("manual")
      expect(results[0]?.text).toContain("quokka zephyr")
    })))
})

layer(
  TestApp("jobs-api-down", {
    TRUST_PROXY: "1",
    JOB_BACKOFF_MS: "50",
    EMBEDDINGS_PROVIDER: "openai",
    OPENAI_API_KEY: "sk-test-not-a-real-key-0123456789",
    // nothing listens on the discard port: the provider is down
    OPENAI_BASE_URL: "http://127.0.0.1:9/v1"
  }),
  { timeout: 120_000 }
)("jobs API, embeddings provider down", (it) => {
  it.effect("the ingest job fails after its 3 attempts with a readable error, and so does the document", () =>
    live(Effect.gen(function*() {
      const { client: admin } = yield* session("down-admin", { isAdmin: true })
      const store = yield* admin.vectorStores.create({ payload: { slug: newSlug("down"), title: "Provider down" } })
      const [accepted, response] = yield* admin.vectorStores.ingest({
        path: { slug: store.slug },
        payload: { doc_id: "manual", document: largeDocument(400, "nothing special") },
        withResponse: true
      })
      expect(response.status).toBe(202)
      const job = yield* finished(admin, (accepted as { job_id: string }).job_id)
      expect(job).toMatchObject({ status: "failed", attempts: 3 })
      expect(job.error).toMatch(/embeddings provider/i)
      const document = yield* admin.vectorStores.getDocument({ path: { slug: store.slug, doc_id: "manual" } })
      expect(document.status).toBe("failed")
      expect(document.error).toBe(`Ingestion failed: ${job.error}`)
    })))
})
