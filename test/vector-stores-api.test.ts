import { HttpClient, HttpClientRequest } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"

import { Conflict, Forbidden, NotFound, UpstreamUnavailable } from "../src/domain/errors.js"
import { TestApp } from "./support/app.js"
import { type Client, randomIp, raw, runId, session } from "./support/session.js"

/**
 * The vector stores API (API.md section 8) through the derived client, on the app's own database
 * (PGlite: the pgvector path; TEST_DATABASE_URL: the portable one), local embeddings.
 */

let slugCounter = 0
const newSlug = (prefix: string) => `${prefix}-${runId}-${++slugCounter}`

const createStore = (client: Client, prefix: string) =>
  client.vectorStores.create({ payload: { slug: newSlug(prefix), title: `${prefix} store` } })

/** Ten small documents on distinct subjects, with the same boilerplate fields, and a question each. */
const KNOWLEDGE: ReadonlyArray<{ id: string; title: string; body: string; category: string; query: string }> = [
  {
    id: "eiffel",
    title: "Eiffel Tower",
    body: "wrought iron lattice tower in Paris designed by Gustave Eiffel, 330 metres tall",
    category: "landmark",
    query: "how tall is the iron tower in Paris"
  },
  {
    id: "great-wall",
    title: "Great Wall of China",
    body: "fortifications built across northern China, mostly during the Ming dynasty",
    category: "landmark",
    query: "which dynasty built the wall in China"
  },
  {
    id: "photosynthesis",
    title: "Photosynthesis",
    body: "plants use chlorophyll and sunlight to turn carbon dioxide and water into glucose and oxygen",
    category: "biology",
    query: "how do plants make glucose from sunlight"
  },
  {
    id: "mitochondria",
    title: "Mitochondria",
    body: "the powerhouse of the cell, producing ATP through cellular respiration",
    category: "biology",
    query: "which organelle produces ATP"
  },
  {
    id: "volcano",
    title: "Eyjafjallajokull eruption",
    body: "the 2010 Iceland volcano eruption sent an ash cloud that stopped air travel in Europe",
    category: "geology",
    query: "volcano ash cloud Iceland flights"
  },
  {
    id: "black-hole",
    title: "Black holes",
    body: "a region of spacetime where gravity is so strong that nothing escapes past the event horizon",
    category: "physics",
    query: "what is the event horizon of a black hole"
  },
  {
    id: "sourdough",
    title: "Sourdough bread",
    body: "bread leavened by a starter of wild yeast and lactobacilli, fermented for a tangy crumb",
    category: "cooking",
    query: "wild yeast starter bread"
  },
  {
    id: "chess",
    title: "Chess openings",
    body: "the Sicilian Defence answers e4 with c5 and is the most popular reply among grandmasters",
    category: "games",
    query: "Sicilian Defence chess opening"
  },
  {
    id: "tides",
    title: "Ocean tides",
    body: "the gravitational pull of the Moon and the Sun raises and lowers sea levels twice a day",
    category: "geology",
    query: "why does the moon cause tides in the sea"
  },
  {
    id: "penicillin",
    title: "Penicillin",
    body: "Alexander Fleming discovered in 1928 that Penicillium mould kills bacteria, the first antibiotic",
    category: "medicine",
    query: "who discovered the first antibiotic"
  }
]

const documentOf = (entry: (typeof KNOWLEDGE)[number]) => ({
  title: entry.title,
  summary: entry.body,
  source: { kind: "encyclopedia", language: "en" },
  tags: [entry.category, "reference"]
})

/** A POST whose body is `text` as sent, for what the typed client cannot send (bad JSON). */
const postText = (path: string, token: string, text: string) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(
      HttpClientRequest.post(path).pipe(
        HttpClientRequest.setHeader("x-forwarded-for", randomIp()),
        HttpClientRequest.bearerToken(token),
        HttpClientRequest.bodyText(text, "application/json")
      )
    )
    const body = (yield* response.json) as Record<string, unknown>
    return { status: response.status, body }
  })

layer(TestApp("vector-stores-api", { TRUST_PROXY: "1" }), { timeout: 120_000 })("vector stores API", (it) => {
  it.effect("creates, lists, reads, updates and deletes stores; writes are admin only, each one audited", () =>
    Effect.gen(function*() {
      const { client: admin, user } = yield* session("store-admin", { isAdmin: true })
      const { client: reader } = yield* session("store-reader")
      const slug = newSlug("crud")

      const [created, response] = yield* admin.vectorStores.create({
        payload: { slug, title: "CRUD store", description: "for tests", metadata: { team: "search" } },
        withResponse: true
      })
      expect(response.status).toBe(201)
      expect(created).toMatchObject({
        slug,
        title: "CRUD store",
        description: "for tests",
        metadata: { team: "search" },
        embedding_model: "local-hashed-tokens-v1",
        dimension: 384,
        is_protected: false
      })
      expect(yield* reader.vectorStores.get({ path: { slug } })).toEqual(created)
      const listed = yield* reader.vectorStores.list({ urlParams: { page_size: 100 } })
      expect(listed.items.map((s) => s.slug)).toContain(slug)
      expect(listed.items.map((s) => s.slug)).toContain("chatkit-workflows")
      expect(listed.page_size).toBe(100)

      // a non-admin writes nothing
      const forbidden = [
        yield* Effect.flip(reader.vectorStores.create({ payload: { slug: newSlug("x"), title: "x" } })),
        yield* Effect.flip(reader.vectorStores.update({ path: { slug }, payload: { title: "x" } })),
        yield* Effect.flip(reader.vectorStores.delete({ path: { slug } })),
        yield* Effect.flip(
          reader.vectorStores.ingest({ path: { slug }, payload: { doc_id: "d", document: { a: 1 } } })
        ),
        yield* Effect.flip(reader.vectorStores.deleteDocument({ path: { slug, doc_id: "d" } }))
      ]
      for (const error of forbidden) expect(error).toBeInstanceOf(Forbidden)

      const updated = yield* admin.vectorStores.update({
        path: { slug },
        payload: { title: "CRUD store renamed", description: null }
      })
      expect(updated).toMatchObject({ slug, title: "CRUD store renamed", description: null })
      expect(updated.version).toBeGreaterThan(created.version)
      // a PATCH that changes nothing writes nothing
      expect(yield* admin.vectorStores.update({ path: { slug }, payload: { title: "CRUD store renamed" } }))
        .toEqual(updated)

      // a taken slug is a 409, on create and on rename
      const other = yield* createStore(admin, "other")
      expect(yield* Effect.flip(admin.vectorStores.create({ payload: { slug, title: "again" } })))
        .toBeInstanceOf(Conflict)
      expect(yield* Effect.flip(admin.vectorStores.update({ path: { slug: other.slug }, payload: { slug } })))
        .toBeInstanceOf(Conflict)

      yield* admin.vectorStores.delete({ path: { slug } })
      expect(yield* Effect.flip(reader.vectorStores.get({ path: { slug } }))).toBeInstanceOf(NotFound)
      expect(yield* Effect.flip(admin.vectorStores.delete({ path: { slug } }))).toBeInstanceOf(NotFound)
      expect((yield* reader.vectorStores.list({ urlParams: { page_size: 100 } })).items.map((s) => s.slug))
        .not.toContain(slug)
      // the slug is free again
      expect((yield* admin.vectorStores.create({ payload: { slug, title: "reborn" } })).id).not.toBe(created.id)

      const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ action: string; user_id: number }>`
          SELECT action, user_id FROM audit_logs WHERE resource_type = 'vector_store'
            AND resource_id = ${String(created.id)} ORDER BY id`)
      expect(rows.map((r) => r.action)).toEqual(["vector_store.create", "vector_store.update", "vector_store.delete"])
      for (const row of rows) expect(row.user_id).toBe(user.id)
    }))

  it.effect("answers 404 for an unknown store and 409 for deleting or renaming the system store", () =>
    Effect.gen(function*() {
      const { client: admin } = yield* session("missing-admin", { isAdmin: true })
      const slug = `nowhere-${runId}`
      const missing = [
        yield* Effect.flip(admin.vectorStores.get({ path: { slug } })),
        yield* Effect.flip(admin.vectorStores.update({ path: { slug }, payload: { title: "x" } })),
        yield* Effect.flip(admin.vectorStores.delete({ path: { slug } })),
        yield* Effect.flip(admin.vectorStores.ingest({ path: { slug }, payload: { doc_id: "d", document: 1 } })),
        yield* Effect.flip(admin.vectorStores.listDocuments({ path: { slug }, urlParams: {} })),
        yield* Effect.flip(admin.vectorStores.getDocument({ path: { slug, doc_id: "d" } })),
        yield* Effect.flip(admin.vectorStores.searchJson({ path: { slug }, payload: { query: "x" } })),
        yield* Effect.flip(admin.vectorStores.searchDocuments({ path: { slug }, payload: { query: "x" } }))
      ]
      for (const error of missing) expect(error).toBeInstanceOf(NotFound)

      const system = yield* admin.vectorStores.get({ path: { slug: "chatkit-workflows" } })
      expect(system.is_protected).toBe(true)
      expect(yield* Effect.flip(admin.vectorStores.delete({ path: { slug: "chatkit-workflows" } })))
        .toBeInstanceOf(Conflict)
      expect(
        yield* Effect.flip(
          admin.vectorStores.update({ path: { slug: "chatkit-workflows" }, payload: { slug: `moved-${runId}` } })
        )
      ).toBeInstanceOf(Conflict)
      expect((yield* admin.vectorStores.get({ path: { slug: "chatkit-workflows" } })).slug).toBe("chatkit-workflows")

      // a document of a live store that does not exist
      const store = yield* createStore(admin, "empty")
      expect(yield* Effect.flip(admin.vectorStores.getDocument({ path: { slug: store.slug, doc_id: "none" } })))
        .toBeInstanceOf(NotFound)
      expect(yield* Effect.flip(admin.vectorStores.deleteDocument({ path: { slug: store.slug, doc_id: "none" } })))
        .toBeInstanceOf(NotFound)
    }))

  it.effect("ingests documents inline and search ranks the right one first for each question", () =>
    Effect.gen(function*() {
      const { client: admin } = yield* session("rank-admin", { isAdmin: true })
      const { client: reader } = yield* session("rank-reader")
      const store = yield* createStore(admin, "rank")
      const slug = store.slug
      for (const entry of KNOWLEDGE) {
        const [document, response] = yield* admin.vectorStores.ingest({
          path: { slug },
          payload: { doc_id: entry.id, document: documentOf(entry), metadata: { category: entry.category } },
          withResponse: true
        })
        expect(response.status).toBe(201)
        expect(document).toMatchObject({ doc_id: entry.id, status: "ready", chunk_count: 1, error: null })
        expect(document.metadata).toMatchObject({ category: entry.category, line_count: 6 })
      }

      for (const entry of KNOWLEDGE) {
        const { results } = yield* reader.vectorStores.searchJson({ path: { slug }, payload: { query: entry.query } })
        expect(results.length, entry.query).toBe(5)
        expect(results[0]?.doc_id, entry.query).toBe(entry.id)
        expect(results[0]?.metadata).toMatchObject({ category: entry.category })
        expect(results[0]?.chunk_metadata).toEqual({ line_start: 0, line_end: 6 })
        expect(results[0]?.text).toContain(entry.body)
        for (let i = 1; i < results.length; i++) {
          expect(results[i - 1]!.score).toBeGreaterThanOrEqual(results[i]!.score)
        }
      }

      // top_k, and metadata filters as containment on the documents' metadata
      const one = yield* reader.vectorStores.searchJson({ path: { slug }, payload: { query: "tower", top_k: 1 } })
      expect(one.results.map((r) => r.doc_id)).toEqual(["eiffel"])
      const biology = yield* reader.vectorStores.searchJson({
        path: { slug },
        payload: { query: "volcano ash cloud Iceland flights", top_k: 10, metadata_filters: { category: "biology" } }
      })
      expect(biology.results.map((r) => r.doc_id).sort()).toEqual(["mitochondria", "photosynthesis"])
      // sparse only: a document without the words is not a match worth more than 0
      const sparse = yield* reader.vectorStores.searchJson({
        path: { slug },
        payload: { query: "Sicilian grandmasters", dense_weight: 0, sparse_weight: 1, top_k: 2 }
      })
      expect(sparse.results[0]?.doc_id).toBe("chess")
      expect(sparse.results[0]?.score).toBeCloseTo(1, 6)

      // pages of documents, by doc_id
      const page = yield* reader.vectorStores.listDocuments({ path: { slug }, urlParams: { page: 2, page_size: 4 } })
      expect(page).toMatchObject({ total: 10, page: 2, page_size: 4, total_pages: 3 })
      expect(page.items.map((d) => d.doc_id)).toEqual([...KNOWLEDGE.map((k) => k.id)].sort().slice(4, 8))
      const past = yield* reader.vectorStores.listDocuments({ path: { slug }, urlParams: { page: 9 } })
      expect(past).toMatchObject({ total: 10, items: [] })
      expect(yield* reader.vectorStores.getDocument({ path: { slug, doc_id: "chess" } })).toMatchObject({
        doc_id: "chess",
        status: "ready",
        chunk_count: 1,
        metadata: { category: "games" }
      })
    }))

  it.effect("re-ingesting replaces, deleting hides, and a cached search is never served stale", () =>
    Effect.gen(function*() {
      const { client: admin } = yield* session("cache-admin", { isAdmin: true })
      const { client: reader } = yield* session("cache-reader")
      const store = yield* createStore(admin, "cache")
      const slug = store.slug
      for (const entry of KNOWLEDGE.slice(0, 5)) {
        yield* admin.vectorStores.ingest({ path: { slug }, payload: { doc_id: entry.id, document: documentOf(entry) } })
      }
      const query = { query: "saxophone jazz improvisation bebop", top_k: 3 }
      const search = reader.vectorStores.searchJson({ path: { slug }, payload: query })
      const before = yield* search
      expect(before.results.map((r) => r.text).join("\n")).not.toContain("saxophone")
      // the same search again: served from the cache, same answer
      expect(yield* search).toEqual(before)

      // re-ingest "eiffel" about jazz: the very next search finds it, with its new text only
      const replaced = yield* admin.vectorStores.ingest({
        path: { slug },
        payload: {
          doc_id: "eiffel",
          document: { title: "Bebop", summary: "saxophone jazz improvisation, bebop by Charlie Parker" },
          metadata: { category: "music" }
        }
      })
      expect(replaced).toMatchObject({ doc_id: "eiffel", status: "ready", metadata: { category: "music" } })
      const after = yield* search
      expect(after.results[0]?.doc_id).toBe("eiffel")
      expect(after.results[0]?.text).toContain("saxophone")
      expect(after.results[0]?.metadata).toMatchObject({ category: "music" })
      const eiffelChunks = after.results.filter((r) => r.doc_id === "eiffel")
      expect(eiffelChunks.length).toBe(1)
      const tower = yield* reader.vectorStores.searchJson({
        path: { slug },
        payload: { query: "wrought iron lattice tower Gustave", top_k: 5 }
      })
      for (const hit of tower.results) expect(hit.text).not.toContain("Gustave")
      expect((yield* reader.vectorStores.listDocuments({ path: { slug }, urlParams: {} })).total).toBe(5)

      // delete it: the very next search no longer returns it
      yield* admin.vectorStores.deleteDocument({ path: { slug, doc_id: "eiffel" } })
      const gone = yield* search
      expect(gone.results.map((r) => r.doc_id)).not.toContain("eiffel")
      expect(yield* Effect.flip(reader.vectorStores.getDocument({ path: { slug, doc_id: "eiffel" } })))
        .toBeInstanceOf(NotFound)
      expect((yield* reader.vectorStores.listDocuments({ path: { slug }, urlParams: {} })).total).toBe(4)

      // a new document, then the store deleted: each shows at once
      yield* admin.vectorStores.ingest({
        path: { slug },
        payload: { doc_id: "jazz", document: { summary: "saxophone jazz improvisation bebop" } }
      })
      expect((yield* search).results[0]?.doc_id).toBe("jazz")
      yield* admin.vectorStores.delete({ path: { slug } })
      expect(yield* Effect.flip(search)).toBeInstanceOf(NotFound)

      const actions = yield* Effect.flatMap(
        SqlClient.SqlClient,
        (sql) =>
          sql<{ action: string; changes: { store?: string; doc_id?: string } }>`
          SELECT action, changes FROM audit_logs WHERE resource_type = 'vector_document'
            AND changes->>'store' = ${slug} ORDER BY id`
      )
      expect(actions.map((a) => a.action)).toEqual([
        ...Array(6).fill("vector_store.document.ingest"),
        "vector_store.document.delete",
        "vector_store.document.ingest"
      ])
    }))

  it.effect("search_documents groups chunks per document, scored by the best chunk", () =>
    Effect.gen(function*() {
      const { client: admin } = yield* session("group-admin", { isAdmin: true })
      const store = yield* createStore(admin, "group")
      const slug = store.slug
      // 100 lines: 3 chunks, each mentioning the comet
      const long = Object.fromEntries(
        Array.from(
          { length: 100 },
          (_, i) => [`line${i}`, i % 10 === 0 ? `the comet Hale-Bopp passed ${i}` : `filler text number ${i}`]
        )
      )
      const long1 = yield* admin.vectorStores.ingest({ path: { slug }, payload: { doc_id: "long", document: long } })
      expect(long1.chunk_count).toBe(3)
      for (const entry of KNOWLEDGE.slice(0, 6)) {
        yield* admin.vectorStores.ingest({ path: { slug }, payload: { doc_id: entry.id, document: documentOf(entry) } })
      }
      yield* admin.vectorStores.ingest({
        path: { slug },
        payload: { doc_id: "comet", document: { summary: "comet Hale-Bopp comet tail comet nucleus" } }
      })

      const { results } = yield* admin.vectorStores.searchDocuments({
        path: { slug },
        payload: { query: "comet Hale-Bopp", top_k: 3, chunks_per_document: 2 }
      })
      expect(results.length).toBe(3)
      expect(new Set(results.map((r) => r.doc_id)).size).toBe(3)
      expect(results.map((r) => r.doc_id)).toContain("long")
      expect(results.map((r) => r.doc_id)).toContain("comet")
      for (const result of results) {
        expect(result.chunks.length).toBeGreaterThanOrEqual(1)
        expect(result.chunks.length).toBeLessThanOrEqual(2)
        expect(result.score).toBe(Math.max(...result.chunks.map((c) => c.score)))
        expect(result.score).toBe(result.chunks[0]!.score)
      }
      for (let i = 1; i < results.length; i++) expect(results[i - 1]!.score).toBeGreaterThanOrEqual(results[i]!.score)
      const longResult = results.find((r) => r.doc_id === "long")!
      expect(longResult.chunks.length).toBe(2)
      expect(longResult.chunks[0]!.chunk_index).not.toBe(longResult.chunks[1]!.chunk_index)

      // the chunk list agrees: the documents' best chunks are search_json's hits
      const flat = yield* admin.vectorStores.searchJson({
        path: { slug },
        payload: { query: "comet Hale-Bopp", top_k: 6 }
      })
      const best = new Map<string, number>()
      for (const hit of flat.results) if (!best.has(hit.doc_id)) best.set(hit.doc_id, hit.score)
      expect([...best.keys()].slice(0, 2)).toEqual(results.slice(0, 2).map((r) => r.doc_id))

      // defaults: 5 documents, 3 chunks each at most
      const defaults = yield* admin.vectorStores.searchDocuments({ path: { slug }, payload: { query: "comet" } })
      expect(defaults.results.length).toBe(5)
      for (const result of defaults.results) expect(result.chunks.length).toBeLessThanOrEqual(3)
      expect(defaults.results.find((r) => r.doc_id === "long")?.chunks.length).toBe(3)
    }))

  it.effect("refuses bad input with 400, never a 500", () =>
    Effect.gen(function*() {
      const { client: admin, token } = yield* session("bad-admin", { isAdmin: true })
      const store = yield* createStore(admin, "bad")
      const base = `/api/v1/vector-stores/${store.slug}`
      const bad: Array<[string, unknown]> = [
        ["/api/v1/vector-stores", { slug: "Has Caps", title: "x" }],
        ["/api/v1/vector-stores", { slug: "", title: "x" }],
        ["/api/v1/vector-stores", { slug: "a".repeat(129), title: "x" }],
        ["/api/v1/vector-stores", { slug: newSlug("t"), title: "" }],
        ["/api/v1/vector-stores", { slug: newSlug("t"), title: "x".repeat(257) }],
        ["/api/v1/vector-stores", { slug: newSlug("t"), title: "tab\there" }],
        ["/api/v1/vector-stores", { slug: newSlug("t"), title: "x", color: "red" }],
        ["/api/v1/vector-stores", { slug: newSlug("t"), title: "x", metadata: [1] }],
        [`${base}/documents`, { doc_id: "", document: {} }],
        [`${base}/documents`, { doc_id: "d".repeat(257), document: {} }],
        [`${base}/documents`, { doc_id: "new\nline", document: {} }],
        [`${base}/documents`, { doc_id: "nul\u0000", document: {} }],
        [`${base}/documents`, { doc_id: "lone\ud800", document: {} }],
        [`${base}/documents`, { doc_id: "no-document" }],
        [`${base}/documents`, { doc_id: "d", document: { text: "nul \u0000 inside" } }],
        [`${base}/documents`, { doc_id: "d", document: {}, metadata: "not an object" }],
        [`${base}/search_json`, { query: "x", top_k: 0 }],
        [`${base}/search_json`, { query: "x", top_k: 51 }],
        [`${base}/search_json`, { query: "x", top_k: 2.5 }],
        [`${base}/search_json`, { query: "x", top_k: "5" }],
        [`${base}/search_json`, { query: "" }],
        [`${base}/search_json`, { query: "q".repeat(4001) }],
        [`${base}/search_json`, { query: "lone \udc00" }],
        [`${base}/search_json`, { top_k: 5 }],
        [`${base}/search_json`, { query: "x", metadata_filters: "category=biology" }],
        [`${base}/search_json`, { query: "x", metadata_filters: [{ category: "biology" }] }],
        [`${base}/search_json`, { query: "x", metadata_filters: null }],
        [`${base}/search_json`, { query: "x", dense_weight: -1 }],
        [`${base}/search_json`, { query: "x", sparse_weight: "a lot" }],
        [`${base}/search_json`, { query: "x", chunks_per_document: 2 }],
        [`${base}/search_documents`, { query: "x", chunks_per_document: 0 }],
        [`${base}/search_documents`, { query: "x", chunks_per_document: 11 }],
        [`${base}/search_documents`, { query: "x", top_k: 51 }]
      ]
      for (const [path, body] of bad) {
        const response = yield* raw("POST", path, { token, body })
        expect(response.status, JSON.stringify(body).slice(0, 200)).toBe(400)
        expect(response.body.error).toBe("validation_error")
      }
      for (
        const [path, body] of [["/api/v1/vector-stores/Bad%20Slug", {}], [`${base}`, { title: "\u0007" }]] as const
      ) {
        const response = yield* raw("PATCH", path, { token, body })
        expect(response.status, path).toBe(400)
      }
      for (const query of ["page=0", "page_size=101", "page=abc"]) {
        expect((yield* raw("GET", `${base}/documents?${query}`, { token })).status, query).toBe(400)
      }

      // a document that is not JSON
      for (
        const text of [
          "{\"doc_id\": \"d\", \"document\": {",
          "{\"doc_id\": \"d\", \"document\": undefined}",
          "not json"
        ]
      ) {
        const response = yield* postText(`${base}/documents`, token, text)
        expect(response.status, text).toBe(400)
        expect(response.body.error).toBe("validation_error")
      }
      // nested deeper than 64 levels (the body's own object is the first level) is refused; 60 is ingested
      const nested = (depth: number) => "[".repeat(depth) + "1" + "]".repeat(depth)
      const deep = yield* postText(`${base}/documents`, token, `{"doc_id": "deep", "document": ${nested(64)}}`)
      expect(deep.status).toBe(400)
      expect(deep.body.error).toBe("validation_error")
      expect(JSON.stringify(deep.body.errors)).toContain("64")
      const fine = yield* postText(`${base}/documents`, token, `{"doc_id": "deep", "document": ${nested(60)}}`)
      expect(fine.status).toBe(201)
      expect(fine.body).toMatchObject({ doc_id: "deep", status: "ready", chunk_count: 1 })
      // nothing failed past the schemas: the store holds only the accepted document
      expect((yield* admin.vectorStores.listDocuments({ path: { slug: store.slug }, urlParams: {} })).total).toBe(1)
    }))

  it.effect("a store whose dimension is not the provider's is a 409 at write and search time", () =>
    Effect.gen(function*() {
      const { client: admin } = yield* session("dim-admin", { isAdmin: true })
      const slug = newSlug("dim")
      yield* Effect.flatMap(
        SqlClient.SqlClient,
        (sql) =>
          sql`INSERT INTO vector_stores (slug, title, embedding_model, dimension)
          VALUES (${slug}, 'openai store', 'text-embedding-3-small', 1536)`
      )
      const write = yield* Effect.flip(
        admin.vectorStores.ingest({ path: { slug }, payload: { doc_id: "d", document: { a: "b" } } })
      )
      expect(write).toBeInstanceOf(Conflict)
      expect((write as Conflict).detail).toMatch(/write to.*dimension 1536.*384/)
      const search = yield* Effect.flip(admin.vectorStores.searchJson({ path: { slug }, payload: { query: "b" } }))
      expect(search).toBeInstanceOf(Conflict)
      expect((search as Conflict).detail).toMatch(/search.*dimension 1536.*384/)
      expect(yield* Effect.flip(admin.vectorStores.searchDocuments({ path: { slug }, payload: { query: "b" } })))
        .toBeInstanceOf(Conflict)
      expect((yield* admin.vectorStores.listDocuments({ path: { slug }, urlParams: {} })).total).toBe(0)
    }))
})

layer(
  TestApp("vector-stores-upstream", {
    TRUST_PROXY: "1",
    EMBEDDINGS_PROVIDER: "openai",
    OPENAI_API_KEY: "sk-test-not-used",
    // nothing listens on port 9 of the loopback: every call is refused at once
    OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
    LLM_RETRY_ATTEMPTS: "1"
  }),
  { timeout: 120_000 }
)("vector stores API, embeddings provider down", (it) => {
  it.effect("search and ingest answer 503 upstream_unavailable and write nothing", () =>
    Effect.gen(function*() {
      const { client: admin, token } = yield* session("down-admin", { isAdmin: true })
      const store = yield* createStore(admin, "down")
      expect(store).toMatchObject({ embedding_model: "text-embedding-3-small", dimension: 1536 })
      const search = yield* Effect.flip(
        admin.vectorStores.searchJson({ path: { slug: store.slug }, payload: { query: "x" } })
      )
      expect(search).toBeInstanceOf(UpstreamUnavailable)
      const response = yield* raw("POST", `/api/v1/vector-stores/${store.slug}/search_documents`, {
        token,
        body: { query: "x" }
      })
      expect(response.status).toBe(503)
      expect(response.body.error).toBe("upstream_unavailable")
      expect(
        yield* Effect.flip(
          admin.vectorStores.ingest({ path: { slug: store.slug }, payload: { doc_id: "d", document: { a: 1 } } })
        )
      ).toBeInstanceOf(UpstreamUnavailable)
      expect((yield* admin.vectorStores.listDocuments({ path: { slug: store.slug }, urlParams: {} })).total).toBe(0)
      // the local store of the migration cannot be searched with this provider: a 409, not a provider call
      expect(
        yield* Effect.flip(
          admin.vectorStores.searchJson({ path: { slug: "chatkit-workflows" }, payload: { query: "x" } })
        )
      ).toBeInstanceOf(Conflict)
    }))
})
