import { request } from "node:http"

import * as HttpServer from "@effect/platform/HttpServer"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { TestApp } from "./support/app.js"
import { randomIp, runId, session } from "./support/session.js"

/*
 * Body limits per route, over a real socket: a vector store document may be up to
 * VECTOR_DOCUMENT_MAX_BYTES (here 3 MiB), every other body 1 MiB; over the limit is a 413 the client
 * actually reads, even while it is still sending.
 */

const MiB = 1024 * 1024
const DOCUMENT_LIMIT = 3 * MiB

interface Answer {
  readonly status: number
  readonly body: Record<string, unknown>
}

/**
 * POSTs `total` bytes of JSON (`{"doc_id":..,"document":"xxx..."}`) in 64 KiB pieces, with a
 * Content-Length or chunked, and resolves with the answer as soon as it arrives; a reset before
 * the answer fails.
 */
const post = (url: string, token: string, options: { total: number; chunked?: boolean; docId?: string }) =>
  Effect.async<Answer, Error>((resume) => {
    const prefix = `{"doc_id":"${options.docId ?? "big"}","document":"`
    const suffix = `"}`
    const filler = options.total - prefix.length - suffix.length
    const req = request(url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        "x-forwarded-for": randomIp(),
        ...(options.chunked === true ? { "transfer-encoding": "chunked" } : { "content-length": String(options.total) })
      }
    })
    let sent = 0
    let answered = false
    req.on("response", (response) => {
      answered = true
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => {
        const text = Buffer.concat(chunks).toString()
        resume(Effect.succeed({ status: response.statusCode ?? 0, body: text === "" ? {} : JSON.parse(text) }))
        req.destroy()
      })
    })
    req.on("error", (error) => {
      if (!answered) resume(Effect.fail(error))
    })
    const piece = "x".repeat(64 * 1024)
    const write = () => {
      if (answered) return
      if (sent === 0) {
        req.write(prefix)
        sent += prefix.length
      }
      const remaining = options.total - suffix.length - sent
      if (remaining <= 0) {
        req.end(suffix)
        return
      }
      const next = piece.slice(0, Math.min(piece.length, remaining))
      sent += next.length
      // a little at a time, so the server answers while the client is still sending
      if (req.write(next)) setTimeout(write, 2)
      else req.once("drain", write)
    }
    expect(filler).toBeGreaterThan(0)
    write()
    return Effect.sync(() => req.destroy())
  })

const baseUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP server")
  return `http://127.0.0.1:${address.port}`
})

let stores = 0

const adminWithStore = Effect.gen(function*() {
  const n = ++stores
  const admin = yield* session(`large-bodies-${n}`, { isAdmin: true })
  const store = yield* admin.client.vectorStores.create({ payload: { slug: `large-${runId}-${n}`, title: "Large" } })
  return { admin, store, base: `${yield* baseUrl}/api/v1/vector-stores/${store.slug}` }
})

layer(TestApp("large_bodies", { VECTOR_DOCUMENT_MAX_BYTES: String(DOCUMENT_LIMIT) }))("body limits per route", (it) => {
  it.effect(
    "a document over 1 MiB and under the document limit is accepted for ingestion",
    () =>
      Effect.gen(function*() {
        const { admin, base } = yield* adminWithStore
        const answer = yield* post(`${base}/documents`, admin.token, { total: 2 * MiB, docId: "two-mib" })
        expect(answer.status).toBe(202)
        expect(answer.body).toMatchObject({ doc_id: "two-mib", status: "pending" })
        expect(answer.body["job_id"]).toEqual(expect.any(String))
      }),
    60_000
  )

  it.effect("the same body to any other route is a 413 at 1 MiB", () =>
    Effect.gen(function*() {
      const { admin, base } = yield* adminWithStore
      const answer = yield* post(`${base}/search_json`, admin.token, { total: 2 * MiB })
      expect(answer.status).toBe(413)
      expect(answer.body).toMatchObject({ status: 413, error: "payload_too_large" })
      expect(String(answer.body["detail"])).toContain(String(MiB))
    }), 60_000)

  it.effect(
    "a declared document over the limit gets its 413 while the client is still sending",
    () =>
      Effect.gen(function*() {
        const { admin, base } = yield* adminWithStore
        const answer = yield* post(`${base}/documents`, admin.token, { total: DOCUMENT_LIMIT + MiB })
        expect(answer.status).toBe(413)
        expect(answer.body).toMatchObject({ error: "payload_too_large" })
        expect(String(answer.body["detail"])).toContain(String(DOCUMENT_LIMIT))
      }),
    60_000
  )

  it.effect(
    "a chunked document is cut at the limit with a 413 the client reads, not a reset",
    () =>
      Effect.gen(function*() {
        const { admin, base } = yield* adminWithStore
        const answer = yield* post(`${base}/documents`, admin.token, { total: DOCUMENT_LIMIT + MiB, chunked: true })
        expect(answer.status).toBe(413)
        expect(answer.body).toMatchObject({ error: "payload_too_large" })
        // the server still serves: the next document goes in
        const next = yield* post(`${base}/documents`, admin.token, { total: 1024, docId: "after" })
        expect(next.status).toBe(201)
      }),
    60_000
  )
})
