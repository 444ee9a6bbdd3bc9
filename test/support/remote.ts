/* Requests to a server running in another process (plain fetch), and the jobs they start. */

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
