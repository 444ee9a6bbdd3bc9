/* Requests to a server running in another process (plain fetch), and the jobs they start. */
import { expect } from "vitest"

export interface RemoteAnswer {
  readonly status: number
  readonly headers: Headers
  readonly body: Record<string, unknown>
}

/** A JSON request; `headers` are added to the content type and bearer. */
export const request = async (
  method: string,
  url: string,
  body?: unknown,
  token?: string,
  headers: Record<string, string> = {}
): Promise<RemoteAnswer> => {
  const response = await fetch(url, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...headers
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return {
    status: response.status,
    headers: response.headers,
    body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown>
  }
}

/**
 * The settings of processes whose jobs a test interrupts: embeddings from the fake server at
 * `embeddingsUrl` (slow on command), locks and stalled checks short enough to retake a killed
 * worker's job within seconds, quick retries.
 */
export const interruptibleJobsEnv = (embeddingsUrl: string) => ({
  EMBEDDINGS_PROVIDER: "openai",
  OPENAI_API_KEY: "sk-test-not-a-real-key-0123456789",
  OPENAI_BASE_URL: embeddingsUrl,
  JOB_LOCK_DURATION_MS: "1500",
  JOB_STALLED_INTERVAL_MS: "500",
  JOB_BACKOFF_MS: "100"
})

/**
 * A document too large to ingest inline, sent to the `handbook` store of `base`: accepted for a job
 * (202, pending); its job id.
 */
export const submitLargeDocument = async (
  base: string,
  token: string,
  docId: string,
  headers: Record<string, string> = {}
) => {
  const accepted = await request(
    "POST",
    `${base}/vector-stores/handbook/documents`,
    { doc_id: docId, document: largeDocument() },
    token,
    headers
  )
  expect(accepted.status).toBe(202)
  expect(accepted.body).toMatchObject({ doc_id: docId, status: "pending" })
  return accepted.body.job_id as string
}

/**
 * Signed in as the admin `credentials`, creates the `handbook` store and submits a document too large
 * to ingest inline (202): its job id and the admin's token.
 */
export const submitHandbook = async (
  base: string,
  credentials: { readonly email: string; readonly password: string }
) => {
  const login = await request("POST", `${base}/auth/login`, credentials)
  expect(login.status).toBe(200)
  const token = login.body.access_token as string
  expect((await request("POST", `${base}/vector-stores`, { slug: "handbook", title: "Handbook" }, token)).status)
    .toBe(201)
  return { token, jobId: await submitLargeDocument(base, token, "plant") }
}

/** A vector store document of about 80 KB: over VECTOR_INLINE_MAX_BYTES (64 KiB), so it is ingested by a job. */
export const largeDocument = () => ({
  title: "Plant handbook",
  sections: Array.from({ length: 400 }, (_, i) => ({
    heading: `Section ${i}`,
    text: `Procedure ${i}: close valve ${i}, read the gauge, note the pressure and hand the sheet to the supervisor ` +
      `of the shift before leaving the hall, then file it under number ${i}.`
  }))
})

/** The job (GET /jobs/:id under `base`) once completed or failed, polled for at most `ms`. */
export const settledJob = async (base: string, token: string, jobId: string, ms: number) => {
  let job: Record<string, unknown> = {}
  for (const deadline = Date.now() + ms; Date.now() < deadline;) {
    job = (await request("GET", `${base}/jobs/${jobId}`, undefined, token)).body
    if (job.status === "completed" || job.status === "failed") break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return job
}
