import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Either, Layer, Option } from "effect"

import type { JsonObject } from "../src/domain/Thread.js"
import { chunk, flatten, ingestionMetadata, linearizedText } from "../src/features/vectors/Ingestion.js"
import { type SearchRequest, SYSTEM_STORE_SLUG, VectorStoresRepo } from "../src/features/vectors/Repo.js"
import type { JsonValue } from "../src/features/workflows/Expressions.js"
import { testConfig } from "../src/platform/Config.js"
import { layerEmbedded } from "../src/platform/Database.js"
import { LOCAL_EMBEDDINGS_MODEL, makeLocalEmbeddings } from "../src/platform/Embeddings.js"
import { migrateDown, migrateUp, migrationStatus } from "../src/platform/Migrations.js"
import { type VectorPath, VectorSupport } from "../src/platform/VectorSupport.js"
import { LiveClock, testDatabaseLayer, testDatabaseUrl } from "./support/database.js"

/**
 * Vector stores (migration 0007, VectorStoresRepo): storage, ingestion by generations and the hybrid
 * search in SQL. Always on PGlite (the pgvector path); also on TEST_DATABASE_URL's PostgreSQL when
 * it is set (Debian's has no pgvector: the portable path), where an unreachable server fails the
 * suite (testDatabaseLayer's layer does not build) rather than skipping it.
 */

const embeddings = makeLocalEmbeddings()

const embed1 = (text: string) => Effect.map(embeddings.embed([text]), (vectors) => vectors[0]!)

let storeCounter = 0
/** A fresh store per test, so tests never see each other's documents. */
const newStore = (prefix: string) =>
  Effect.flatMap(VectorStoresRepo, (repo) =>
    repo.createStore({
      slug: `${prefix}-${++storeCounter}-${Math.random().toString(16).slice(2, 8)}`,
      title: prefix,
      embeddingModel: LOCAL_EMBEDDINGS_MODEL,
      dimension: embeddings.dimension
    }))

/** What the ingestion job will do: flatten, chunk, embed locally, then the repo's generation switch. */
const prepare = (document: JsonValue, metadata: JsonObject = {}) =>
  Effect.gen(function*() {
    const flat = flatten(document)
    const chunks = chunk(flat.lines)
    const vectors = yield* embeddings.embed(chunks.map((c) => c.text))
    return {
      linearizedText: linearizedText(flat.lines),
      metadata: { ...ingestionMetadata(flat), ...metadata },
      chunks: chunks.map((c, i) => ({
        index: c.index,
        text: c.text,
        metadata: { line_start: c.lineStart, line_end: c.lineEnd },
        embedding: vectors[i]!
      }))
    }
  })

const submit = (storeId: number, docId: string, document: JsonValue, metadata: JsonObject = {}) =>
  Effect.flatMap(VectorStoresRepo, (repo) =>
    Effect.map(
      repo.submitDocument({ storeId, docId, document, metadata }),
      (row) => Option.getOrThrowWith(row, () => new Error(`store ${storeId} is not live`)).latest_generation
    ))

const complete = (storeId: number, docId: string, generation: number, document: JsonValue, metadata: JsonObject = {}) =>
  Effect.gen(function*() {
    const repo = yield* VectorStoresRepo
    return yield* repo.completeIngestion({ storeId, docId, generation, ...(yield* prepare(document, metadata)) })
  })

const ingest = (storeId: number, docId: string, document: JsonValue, metadata: JsonObject = {}) =>
  Effect.flatMap(
    submit(storeId, docId, document, metadata),
    (generation) => complete(storeId, docId, generation, document, metadata)
  )

const search = (storeId: number, query: string, options: Partial<SearchRequest> = {}) =>
  Effect.gen(function*() {
    const repo = yield* VectorStoresRepo
    return yield* repo.search({
      storeId,
      dimension: embeddings.dimension,
      embedding: yield* embed1(query),
      query,
      topK: 5,
      ...options
    })
  })

/** 32 small documents on distinct subjects, with the same boilerplate fields, and a question each. */
const KNOWLEDGE: ReadonlyArray<{ id: string; doc: JsonValue; query: string }> = [
  [
    "eiffel-tower",
    "Eiffel Tower",
    "wrought iron lattice tower in Paris designed by Gustave Eiffel, 330 metres tall",
    "how tall is the iron tower in Paris"
  ],
  [
    "great-wall",
    "Great Wall of China",
    "fortifications built across northern China, mostly during the Ming dynasty",
    "which dynasty built the wall in China"
  ],
  [
    "photosynthesis",
    "Photosynthesis",
    "plants use chlorophyll and sunlight to turn carbon dioxide and water into glucose and oxygen",
    "how do plants make glucose from sunlight"
  ],
  [
    "eyjafjallajokull",
    "Eyjafjallajokull eruption",
    "the 2010 Iceland volcano eruption sent an ash cloud that stopped air travel in Europe",
    "volcano ash cloud Iceland flights"
  ],
  [
    "mitochondria",
    "Mitochondria",
    "the powerhouse of the cell, producing ATP through cellular respiration",
    "what organelle produces ATP"
  ],
  [
    "python",
    "Python programming language",
    "created by Guido van Rossum, known for significant indentation",
    "who created the Python language"
  ],
  [
    "espresso",
    "Espresso brewing",
    "finely ground coffee brewed under pressure gives a shot with crema",
    "how to brew espresso coffee with crema"
  ],
  [
    "marathon",
    "Marathon",
    "a long distance running race of 42.195 kilometres, after the legend of Pheidippides",
    "how long is a marathon race in kilometres"
  ],
  [
    "honeybees",
    "Honeybees",
    "a hive has one queen; workers do the waggle dance and pollinate flowers to make honey",
    "what is the waggle dance of bees"
  ],
  [
    "black-holes",
    "Black holes",
    "gravity so strong that not even light can escape beyond the event horizon",
    "what is an event horizon"
  ],
  [
    "sourdough",
    "Sourdough bread",
    "a starter of wild yeast and lactobacilli ferments the dough for a tangy loaf",
    "sourdough starter wild yeast"
  ],
  [
    "chess",
    "Chess",
    "a board game of 64 squares where checkmate of the king ends the game",
    "how does checkmate end a chess game"
  ],
  [
    "tides",
    "Ocean tides",
    "the gravitational pull of the moon raises high tide and low tide on the oceans",
    "why does the moon cause tides"
  ],
  [
    "vaccines",
    "Vaccines",
    "vaccination trains the immune system to produce antibodies against a pathogen",
    "how vaccines train antibodies"
  ],
  [
    "puncture",
    "Fixing a puncture",
    "remove the inner tube, find the hole and glue a patch before refitting the tyre",
    "how to patch a bicycle inner tube"
  ],
  [
    "jazz",
    "Jazz",
    "music born in New Orleans built on swing, blue notes and improvisation on saxophone and trumpet",
    "New Orleans improvisation music"
  ],
  [
    "penguins",
    "Emperor penguins",
    "flightless birds of Antarctica that huddle together through the polar winter",
    "flightless birds huddle in Antarctica"
  ],
  [
    "tea-ceremony",
    "Japanese tea ceremony",
    "chanoyu: matcha powdered green tea whisked and served with ritual",
    "matcha whisked in a Japanese ceremony"
  ],
  [
    "solar-panels",
    "Solar panels",
    "photovoltaic cells turn sunlight into electricity; an inverter feeds the grid from the rooftop",
    "photovoltaic rooftop inverter electricity"
  ],
  [
    "amazon",
    "Amazon rainforest",
    "the largest tropical rainforest, with a huge biodiversity under its canopy, threatened by deforestation",
    "deforestation of the tropical rainforest canopy"
  ],
  [
    "origami",
    "Origami",
    "the art of folding a square of paper into a crane without cuts or glue",
    "folding paper cranes"
  ],
  [
    "earthquakes",
    "Earthquakes",
    "tectonic plates slip and release seismic waves, measured by magnitude",
    "what causes seismic waves tectonic plates"
  ],
  [
    "cheddar",
    "Cheese making",
    "milk is curdled with rennet, the curd is pressed and cheddar is aged for months",
    "rennet curd cheddar aging"
  ],
  [
    "aurora",
    "Northern lights",
    "the aurora borealis appears when the solar wind meets the magnetic field near the poles",
    "what makes the aurora borealis glow"
  ],
  [
    "guitar",
    "Guitar",
    "six strings tuned E A D G B E, chords are pressed on the fretboard",
    "guitar strings tuning fretboard chords"
  ],
  [
    "recycling",
    "Recycling",
    "sort plastic, glass and paper into separate bins to keep waste out of the landfill",
    "sorting glass and plastic into bins"
  ],
  [
    "dinosaurs",
    "Dinosaurs",
    "Tyrannosaurus fossils of the Cretaceous; an asteroid impact caused their extinction",
    "asteroid extinction of Tyrannosaurus"
  ],
  [
    "knitting",
    "Knitting",
    "wool yarn and two needles make rows of stitches for a warm scarf",
    "knitting a wool scarf with needles"
  ],
  [
    "submarines",
    "Submarines",
    "an underwater vessel that dives with ballast tanks, navigates by sonar and watches through a periscope",
    "submarine ballast tanks sonar periscope"
  ],
  [
    "tax-return",
    "Income tax return",
    "file before the deadline and list your deductions to lower the income tax owed",
    "income tax filing deadline deductions"
  ],
  [
    "passwords",
    "Password security",
    "use a password manager, long unique passwords and two-factor authentication",
    "two-factor authentication password manager"
  ],
  [
    "apollo-11",
    "Apollo 11",
    "in 1969 Neil Armstrong stepped from the lunar module onto the Moon",
    "who walked on the moon in 1969"
  ]
].map(([id, title, summary, query]) => ({
  id: id!,
  query: query!,
  doc: {
    title: title!,
    summary: summary!,
    category: "encyclopedia",
    source: { corpus: "vector-store tests", license: "cc-by-4.0" },
    tags: [id!, "article"]
  }
}))

/** A document of `lines` leaves (`items[i]: ...`), so of several chunks (100 lines: 3). */
const longDocument = (lines: number, line: (i: number) => string): JsonValue => ({
  items: Array.from({ length: lines }, (_, i) => line(i))
})

const countChunks = (documentId: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ n: number; generations: number }>`SELECT count(*)::int AS n, count(DISTINCT generation)::int AS generations
        FROM vector_chunks WHERE document_id = ${documentId}`,
      (rows) => rows[0]!
    ))

const tablesOfSchema = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql<{ tablename: string }>`SELECT tablename FROM pg_catalog.pg_tables
      WHERE schemaname = current_schema() AND tablename LIKE 'vector%' ORDER BY tablename`,
    (rows) => rows.map((r) => r.tablename)
  ))

const suite = (
  name: string,
  database: Layer.Layer<SqlClient.SqlClient, unknown>,
  expectPath: Effect.Effect<VectorPath, unknown, SqlClient.SqlClient>
) => {
  const Migrated = Layer.effectDiscard(migrateUp()).pipe(Layer.provideMerge(database))
  const StoreLayer = VectorStoresRepo.DefaultWithoutDependencies.pipe(
    Layer.provideMerge(VectorSupport.Default),
    Layer.provideMerge(Migrated)
  )

  layer(StoreLayer, { timeout: 300_000, excludeTestServices: true })(name, (it) => {
    it.effect("detects the path the migration chose; the system store exists, protected", () =>
      Effect.gen(function*() {
        const repo = yield* VectorStoresRepo
        const support = yield* VectorSupport
        expect(support.path).toBe(yield* expectPath)
        expect(repo.path).toBe(support.path)

        const system = Option.getOrThrow(yield* repo.findStoreBySlug(SYSTEM_STORE_SLUG))
        expect(system).toMatchObject({ is_protected: true, dimension: 384, embedding_model: LOCAL_EMBEDDINGS_MODEL })
        const refused = yield* Effect.flip(repo.deleteStore(system.id))
        expect(refused._tag).toBe("Conflict")
        expect((yield* Effect.flip(repo.updateStore(system.id, { slug: "renamed" })))._tag).toBe("Conflict")
        expect(Option.isSome(yield* repo.findStoreBySlug(SYSTEM_STORE_SLUG))).toBe(true)
        // its title may change (the version moves with it)
        const retitled = Option.getOrThrow(yield* repo.updateStore(system.id, { title: "Workflows" }))
        expect(retitled.title).toBe("Workflows")
        expect(retitled.version).toBe(system.version + 1)
        expect(retitled.slug).toBe(SYSTEM_STORE_SLUG)
      }))

    it.effect("stores: slug unique among live ones, checked format, fixed dimension, version bumped on change", () =>
      Effect.gen(function*() {
        const repo = yield* VectorStoresRepo
        const sql = yield* SqlClient.SqlClient
        const store = yield* newStore("crud")
        expect(store.version).toBe(1)
        const taken = yield* Effect.flip(repo.createStore({
          slug: store.slug,
          title: "again",
          embeddingModel: LOCAL_EMBEDDINGS_MODEL,
          dimension: 384
        }))
        expect(taken._tag).toBe("Conflict")
        const bad = yield* Effect.either(
          repo.createStore({
            slug: "Not A Slug",
            title: "x",
            embeddingModel: LOCAL_EMBEDDINGS_MODEL,
            dimension: 384
          }).pipe(Effect.sandbox)
        )
        expect(Either.isLeft(bad)).toBe(true)
        expect(
          Either.isLeft(yield* Effect.either(sql`UPDATE vector_stores SET dimension = 1536 WHERE id = ${store.id}`))
        )
          .toBe(true)

        const updated = Option.getOrThrow(
          yield* repo.updateStore(store.id, { description: "d", metadata: { team: "search" } })
        )
        expect(updated).toMatchObject({ description: "d", metadata: { team: "search" }, version: 2 })
        const other = yield* newStore("crud-other")
        expect((yield* Effect.flip(repo.updateStore(other.id, { slug: store.slug })))._tag).toBe("Conflict")
        const renamed = Option.getOrThrow(yield* repo.updateStore(other.id, { slug: `${other.slug}-renamed` }))
        expect(renamed).toMatchObject({ slug: `${other.slug}-renamed`, version: 2 })
        expect(Option.isSome(yield* repo.findStoreBySlug(`${other.slug}-renamed`))).toBe(true)
        expect(Option.isNone(yield* repo.findStoreBySlug(other.slug))).toBe(true)
        const page = yield* repo.listStores({ page: 1, pageSize: 100, offset: 0 })
        expect(page.items.map((s) => s.slug)).toContain(store.slug)
        expect(page.total).toBeGreaterThanOrEqual(2)

        yield* ingest(store.id, "a", { text: "x" })
        const deleted = Option.getOrThrow(yield* repo.deleteStore(store.id))
        expect(deleted.deleted_at).not.toBeNull()
        expect(Option.isNone(yield* repo.findStore(store.id))).toBe(true)
        expect(Option.isNone(yield* repo.deleteStore(store.id))).toBe(true)
        expect(Option.isNone(yield* repo.updateStore(store.id, { title: "t" }))).toBe(true)
        expect(Option.isNone(yield* repo.submitDocument({ storeId: store.id, docId: "b", document: {} }))).toBe(true)
        // the slug is free again
        const again = yield* repo.createStore({
          slug: store.slug,
          title: "again",
          embeddingModel: LOCAL_EMBEDDINGS_MODEL,
          dimension: 384
        })
        expect(again.id).not.toBe(store.id)
      }))

    it.effect("32 documents with known answers: each question ranks its document first", () =>
      Effect.gen(function*() {
        const store = yield* newStore("knowledge")
        for (const { doc, id } of KNOWLEDGE) yield* ingest(store.id, id, doc, { topic: id })
        const misses: Array<string> = []
        for (const { id, query } of KNOWLEDGE) {
          const hits = yield* search(store.id, query)
          if (hits[0]?.doc_id !== id) misses.push(`${query} -> ${hits.map((h) => h.doc_id).join(", ")}`)
          // best first, scores in range, document and chunk metadata apart
          expect(hits.length).toBe(5)
          for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score)
          for (const hit of hits) {
            expect(hit.score).toBeGreaterThanOrEqual(0)
            expect(hit.score).toBeLessThanOrEqual(1)
            expect(hit.dense_score).toBeGreaterThanOrEqual(-1)
            expect(hit.dense_score).toBeLessThanOrEqual(1.000001)
            expect(hit.metadata.topic).toBe(hit.doc_id)
            expect(hit.chunk_metadata).toEqual({ line_start: 0, line_end: 7 })
          }
        }
        expect(misses).toEqual([])

        // the fused score is test-chatkit's: 0.5 (1 + cos) / 2 + 0.5 rank / max rank
        const hits = yield* search(store.id, "event horizon light escape", { topK: 10 })
        const maxRank = Math.max(...hits.map((h) => h.sparse_score))
        expect(maxRank).toBeGreaterThan(0)
        for (const hit of hits) {
          expect(hit.score).toBeCloseTo(0.5 * (1 + hit.dense_score) / 2 + 0.5 * hit.sparse_score / maxRank, 6)
        }
        // dense only: the scores are (1 + cos) / 2; sparse only: rank / max rank
        const dense = yield* search(store.id, "event horizon", { denseWeight: 1, sparseWeight: 0 })
        for (const hit of dense) expect(hit.score).toBeCloseTo((1 + hit.dense_score) / 2, 6)
        const sparse = yield* search(store.id, "event horizon", { denseWeight: 0, sparseWeight: 2 })
        expect(sparse[0]).toMatchObject({ doc_id: "black-holes", score: 1 })
        // a question no word of which is in the store still answers, on the dense score alone
        const none = yield* search(store.id, "zzzz qqqq")
        expect(none.length).toBe(5)
        for (const hit of none) expect(hit.sparse_score).toBe(0)
      }))

    it.effect("a long document: the chunk holding the answer comes first", () =>
      Effect.gen(function*() {
        const store = yield* newStore("long")
        const row = yield* ingest(
          store.id,
          "manual",
          longDocument(
            100,
            (i) => i === 75 ? "the warranty lasts five years for the turbocharger" : `routine step ${i}`
          )
        )
        expect(row).toMatchObject({ status: "ready", chunk_count: 3, live_generation: 1 })
        const [best] = yield* search(store.id, "turbocharger warranty")
        expect(best).toMatchObject({ doc_id: "manual", chunk_index: 2 })
        expect(best!.text).toContain("items[75]: the warranty lasts five years")
        expect(best!.chunk_metadata).toEqual({ line_start: 64, line_end: 100 })
      }))

    it.effect("re-ingestion replaces the document once its new generation is ready, never before, never both", () =>
      Effect.gen(function*() {
        const repo = yield* VectorStoresRepo
        const store = yield* newStore("reingest")
        yield* ingest(store.id, "other", { text: "an unrelated note about gardening" })
        const first = yield* ingest(store.id, "doc", longDocument(100, (i) => `zebra stripes entry ${i}`), {
          edition: "one"
        })
        expect(first).toMatchObject({ chunk_count: 3, live_generation: 1 })
        const docHits = (query: string) =>
          Effect.map(search(store.id, query, { topK: 50 }), (hits) => hits.filter((h) => h.doc_id === "doc"))

        // submitted, not yet complete: still the first edition, its metadata too
        const generation = yield* submit(store.id, "doc", { text: "giraffe necks" }, { edition: "two" })
        expect(generation).toBe(2)
        expect(Option.getOrThrow(yield* repo.findDocument(store.id, "doc"))).toMatchObject({
          status: "pending",
          live_generation: 1,
          metadata: { edition: "one" }
        })
        expect(Option.getOrThrow(yield* repo.pendingSubmission(store.id, "doc"))).toEqual({
          generation: 2,
          raw_json: { text: "giraffe necks" },
          metadata: { edition: "two" }
        })
        expect((yield* docHits("zebra stripes")).length).toBe(3)
        expect(yield* search(store.id, "giraffe necks", { metadataFilters: { edition: "two" } })).toEqual([])

        const second = yield* complete(store.id, "doc", generation, { text: "giraffe necks" }, { edition: "two" })
        expect(second).toMatchObject({
          status: "ready",
          chunk_count: 1,
          live_generation: 2,
          metadata: { edition: "two" }
        })
        expect(yield* countChunks(second.id)).toEqual({ n: 1, generations: 1 })
        const after = yield* docHits("zebra stripes giraffe")
        expect(after.map((h) => h.text)).toEqual(["text: giraffe necks"])
        expect(after[0]!.metadata).toMatchObject({ edition: "two" })
        for (const hit of yield* search(store.id, "zebra stripes", { topK: 50 })) {
          expect(hit.text).not.toContain("zebra")
        }

        // a failed re-ingestion leaves the live generation searchable, the error readable
        const third = yield* submit(store.id, "doc", { text: "okapi" })
        const failed = yield* repo.failIngestion({
          storeId: store.id,
          docId: "doc",
          generation: third,
          error: "embeddings unavailable"
        })
        expect(failed).toMatchObject({ status: "failed", error: "embeddings unavailable", live_generation: 2 })
        expect((yield* docHits("giraffe")).map((h) => h.text)).toEqual(["text: giraffe necks"])
        expect(Option.isNone(yield* repo.pendingSubmission(store.id, "doc"))).toBe(true)

        // a completion overtaken by a newer submission writes nothing
        const fourth = yield* submit(store.id, "doc", { text: "lemur" })
        const fifth = yield* submit(store.id, "doc", { text: "meerkat" })
        const late = yield* Effect.flip(complete(store.id, "doc", fourth, { text: "lemur" }))
        expect(late._tag).toBe("IngestionSuperseded")
        expect(
          (yield* Effect.flip(repo.failIngestion({ storeId: store.id, docId: "doc", generation: fourth, error: "x" })))
            ._tag
        )
          .toBe("IngestionSuperseded")
        expect(yield* countChunks(second.id)).toEqual({ n: 1, generations: 1 })
        yield* complete(store.id, "doc", fifth, { text: "meerkat" })
        expect((yield* docHits("lemur meerkat giraffe")).map((h) => h.text)).toEqual(["text: meerkat"])

        // vectors of another length than the store's are refused, nothing written
        const sixth = yield* submit(store.id, "doc", { text: "wrong" })
        const mismatch = yield* Effect.flip(repo.completeIngestion({
          storeId: store.id,
          docId: "doc",
          generation: sixth,
          linearizedText: "text: wrong",
          metadata: {},
          chunks: [{ index: 0, text: "text: wrong", embedding: new Float32Array(1536).fill(1 / Math.sqrt(1536)) }]
        }))
        expect(mismatch).toMatchObject({ _tag: "DimensionMismatch", expected: 384, actual: 1536 })
        expect(yield* countChunks(second.id)).toEqual({ n: 1, generations: 1 })
      }))

    it.effect("the store counts its live chunks (BM25's N) through ingestions, replacements, failures and deletes", () =>
      Effect.gen(function*() {
        const repo = yield* VectorStoresRepo
        const sql = yield* SqlClient.SqlClient
        const store = yield* newStore("counted")
        const counted = Effect.map(
          sql<{ kept: number; actual: number }>`
            SELECT s.live_chunks::int AS kept, (
              SELECT count(*)::int FROM vector_chunks c JOIN vector_documents d ON d.id = c.document_id
              WHERE d.store_id = s.id AND d.deleted_at IS NULL AND c.generation = d.live_generation
            ) AS actual
            FROM vector_stores s WHERE s.id = ${store.id}`,
          (rows) => rows[0]!
        )
        expect(yield* counted).toEqual({ kept: 0, actual: 0 })
        yield* ingest(store.id, "long", longDocument(100, (i) => `line ${i}`))
        yield* ingest(store.id, "short", { text: "one chunk" })
        expect(yield* counted).toEqual({ kept: 4, actual: 4 })
        // a replacement swaps the 3 chunks for 1; a pending or failed submission changes nothing
        yield* ingest(store.id, "long", { text: "now short" })
        expect(yield* counted).toEqual({ kept: 2, actual: 2 })
        const generation = yield* submit(store.id, "short", longDocument(100, (i) => `again ${i}`))
        expect(yield* counted).toEqual({ kept: 2, actual: 2 })
        yield* repo.failIngestion({ storeId: store.id, docId: "short", generation, error: "provider down" })
        expect(yield* counted).toEqual({ kept: 2, actual: 2 })
        // a document never live, deleted, takes nothing away; a live one its chunks
        yield* submit(store.id, "never", { text: "pending" })
        yield* repo.deleteDocument(store.id, "never")
        expect(yield* counted).toEqual({ kept: 2, actual: 2 })
        yield* repo.deleteDocument(store.id, "long")
        expect(yield* counted).toEqual({ kept: 1, actual: 1 })
      }))

    it.effect("a search running during re-ingestions sees one whole edition of the document, never a mix", () =>
      Effect.gen(function*() {
        const store = yield* newStore("concurrent")
        const edition = (name: string) => longDocument(100, (i) => `shared words ${name} line ${i}`)
        yield* ingest(store.id, "doc", edition("alpha"))
        const seen: Array<string> = []
        const reingest = Effect.forEach(
          Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? "bravo" : "alpha")),
          (name) => ingest(store.id, "doc", edition(name)),
          { discard: true }
        )
        const searches = Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i),
          () =>
            Effect.map(search(store.id, "shared words line", { topK: 50 }), (hits) => {
              const editions = new Set(hits.map((h) => (h.text.includes("alpha") ? "alpha" : "bravo")))
              seen.push(`${[...editions].join("+")}:${hits.length}`)
            }),
          { concurrency: 2, discard: true }
        )
        yield* Effect.all([reingest, searches], { concurrency: "unbounded", discard: true })
        const mixed = seen.filter((s) => s !== "alpha:3" && s !== "bravo:3")
        expect(mixed).toEqual([])
        expect(seen.length).toBe(40)
      }))

    it.effect("a deleted document, then a deleted store, disappear from search", () =>
      Effect.gen(function*() {
        const repo = yield* VectorStoresRepo
        const store = yield* newStore("deletes")
        yield* ingest(store.id, "keep", { text: "lighthouse keeper logbook" })
        const gone = yield* ingest(store.id, "drop", { text: "lighthouse lens polishing" })
        expect((yield* search(store.id, "lighthouse lens")).map((h) => h.doc_id)).toEqual(["drop", "keep"])

        const before = Option.getOrThrow(yield* repo.findStore(store.id)).version
        const deleted = Option.getOrThrow(yield* repo.deleteDocument(store.id, "drop"))
        expect(deleted.deleted_at).not.toBeNull()
        expect(Option.getOrThrow(yield* repo.findStore(store.id)).version).toBe(before + 1)
        expect((yield* search(store.id, "lighthouse lens")).map((h) => h.doc_id)).toEqual(["keep"])
        expect(Option.isNone(yield* repo.findDocument(store.id, "drop"))).toBe(true)
        expect(Option.isNone(yield* repo.deleteDocument(store.id, "drop"))).toBe(true)
        expect(yield* countChunks(gone.id)).toEqual({ n: 0, generations: 0 })
        const page = yield* repo.listDocuments(store.id, { page: 1, pageSize: 10, offset: 0 })
        expect(page).toMatchObject({ total: 1, items: [{ doc_id: "keep", status: "ready", chunk_count: 1 }] })
        yield* ingest(store.id, "later", { text: "foghorn" })
        const second = yield* repo.listDocuments(store.id, { page: 2, pageSize: 1, offset: 1 })
        expect(second).toMatchObject({ total: 2, items: [{ doc_id: "later" }] })
        expect((yield* repo.listDocuments(store.id, { page: 3, pageSize: 1, offset: 2 })).items).toEqual([])

        // the doc_id can be ingested again, as a new document
        const back = yield* ingest(store.id, "drop", { text: "lighthouse lens again" })
        expect(back.id).not.toBe(gone.id)
        expect(back.live_generation).toBe(1)

        yield* repo.deleteStore(store.id)
        expect(yield* search(store.id, "lighthouse")).toEqual([])
        expect(Option.isNone(yield* repo.findDocument(store.id, "keep"))).toBe(true)
      }))

    it.effect("metadata filters are JSONB containment on the document's metadata", () =>
      Effect.gen(function*() {
        const store = yield* newStore("filters")
        yield* ingest(store.id, "fr-1", { text: "recette de la tarte aux pommes" }, {
          lang: "fr",
          tags: ["food", "fruit"]
        })
        yield* ingest(store.id, "fr-2", { text: "tarte au citron" }, { lang: "fr", tags: ["food"], level: { n: 2 } })
        yield* ingest(store.id, "en-1", { text: "apple pie tarte recipe" }, { lang: "en", tags: ["food", "fruit"] })
        const ids = (filters: JsonObject | undefined) =>
          Effect.map(
            search(store.id, "tarte", { topK: 10, metadataFilters: filters }),
            (hits) => hits.map((h) => h.doc_id).sort()
          )
        expect(yield* ids(undefined)).toEqual(["en-1", "fr-1", "fr-2"])
        expect(yield* ids({})).toEqual(["en-1", "fr-1", "fr-2"])
        expect(yield* ids({ lang: "fr" })).toEqual(["fr-1", "fr-2"])
        expect(yield* ids({ tags: ["fruit"] })).toEqual(["en-1", "fr-1"])
        expect(yield* ids({ lang: "fr", tags: ["fruit"] })).toEqual(["fr-1"])
        expect(yield* ids({ level: { n: 2 } })).toEqual(["fr-2"])
        expect(yield* ids({ lang: "de" })).toEqual([])
        // the ingestion's own metadata is there too
        expect(yield* ids({ line_count: 1, lang: "en" })).toEqual(["en-1"])
        const repo = yield* VectorStoresRepo
        const bad = yield* Effect.flip(repo.search({
          storeId: store.id,
          dimension: 384,
          embedding: yield* embed1("x"),
          query: "x",
          topK: 5,
          metadataFilters: ["lang"] as unknown as JsonObject
        }))
        expect(bad._tag).toBe("ValidationError")
      }))

    it.effect("top_k is 1..50; weights are finite and >= 0; the query's vector has the store's length", () =>
      Effect.gen(function*() {
        const store = yield* newStore("topk")
        yield* ingest(store.id, "many", longDocument(64 * 32, (i) => `reading list entry ${i}`))
        const tagOf = (options: Partial<SearchRequest>) =>
          Effect.map(Effect.flip(search(store.id, "reading list", options)), (error) => error._tag)
        expect(yield* tagOf({ topK: 0 })).toBe("ValidationError")
        expect(yield* tagOf({ topK: 51 })).toBe("ValidationError")
        expect(yield* tagOf({ topK: 2.5 })).toBe("ValidationError")
        expect(yield* tagOf({ denseWeight: -1 })).toBe("ValidationError")
        expect(yield* tagOf({ sparseWeight: Number.NaN })).toBe("ValidationError")
        expect(yield* tagOf({ embedding: new Float32Array(10) })).toBe("DimensionMismatch")
        expect((yield* search(store.id, "reading list", { topK: 1 })).length).toBe(1)
        const fifty = yield* search(store.id, "reading list", { topK: 50 })
        expect(fifty.length).toBe(50)
        expect(new Set(fifty.map((h) => h.chunk_index)).size).toBe(50)
        // a store of another dimension than the one searched answers nothing
        expect(yield* search(store.id, "reading list", { dimension: 10, embedding: new Float32Array(10).fill(0.1) }))
          .toEqual([])
      }))

    it.effect(
      "EXPLAIN: the dense candidates come from the dimension's HNSW index (pgvector path)",
      () =>
        Effect.gen(function*() {
          const repo = yield* VectorStoresRepo
          const sql = yield* SqlClient.SqlClient
          const store = yield* newStore("explain")
          yield* ingest(store.id, "seed", { text: "seed" })
          // enough rows that scanning them all costs more than the index (at 1,500 chunks the planner
          // rightly prefers an exact scan and sort; at 3,000 the index): 600 documents of 5 chunks,
          // random vectors (the plan is the point here, not the answers)
          yield* sql`
          WITH docs AS (
            INSERT INTO vector_documents (store_id, doc_id, raw_json, status, chunk_count, live_generation)
            SELECT ${store.id}, 'filler-' || i, '{}'::jsonb, 'ready', 5, 1 FROM generate_series(1, 600) AS i
            RETURNING id
          )
          INSERT INTO vector_chunks (document_id, generation, chunk_index, text, dimension, embedding)
          SELECT docs.id, 1, j, 'filler text ' || docs.id || ' ' || j, 384,
            ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 384) WHERE docs.id + j > 0)
          FROM docs CROSS JOIN generate_series(0, 4) AS j`
          yield* sql`ANALYZE vector_chunks`
          yield* sql`ANALYZE vector_documents`
          const plan = (yield* repo.explainSearch({
            storeId: store.id,
            dimension: 384,
            embedding: yield* embed1("seed"),
            query: "seed",
            topK: 5
          })).join("\n")
          if (repo.path === "pgvector") {
            expect(plan).toContain("vector_chunks_embedding_384_idx")
            // the words' chunks (counted, then the sparse candidates) come from the GIN index on the
            // tsvector; PostgreSQL's default random_page_cost prices a seq scan of 3,000 rows lower
            expect(plan).toMatch(/vector_chunks_tsv_idx/)
          } else {
            expect(plan).not.toContain("hnsw")
          }
          const [best] = yield* search(store.id, "seed", { topK: 1 })
          expect(best?.text).toBe("text: seed")
        }),
      240_000
    ) // 3,000 HNSW inserts: several ms each in WASM, more on a busy machine

    it.effect("the migration's down removes its tables, function and the unused extension; up restores", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        expect(yield* tablesOfSchema).toEqual(["vector_chunks", "vector_documents", "vector_stores"])
        // 0007 and the migrations after it, newest first
        const newer = (yield* migrationStatus()).filter((m) => m.state === "applied" && m.version >= 7)
        const reverted = yield* migrateDown({ steps: newer.length })
        expect(reverted.at(-1)?.name).toBe("vector_stores")
        expect(yield* tablesOfSchema).toEqual([])
        const leftovers = yield* sql<{ name: string }>`
          SELECT proname AS name FROM pg_proc
          WHERE proname = 'vector_stores_keep_embedding' AND pronamespace = current_schema()::regnamespace`
        expect(leftovers).toEqual([])
        const extension = yield* sql<
          { n: number }
        >`SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'vector'`
        if (name.startsWith("PGlite")) expect(extension[0]!.n).toBe(0)
        yield* migrateUp()
        expect(yield* tablesOfSchema).toEqual(["vector_chunks", "vector_documents", "vector_stores"])
        const [system] = yield* sql<{ slug: string }>`SELECT slug FROM vector_stores WHERE is_protected`
        expect(system?.slug).toBe(SYSTEM_STORE_SLUG)
      }))
  })
}

const embedded = layerEmbedded("memory://").pipe(Layer.provide(testConfig()), Layer.provide(LiveClock))
suite("vector stores on PGlite", embedded, Effect.succeed("pgvector" as VectorPath))

describe.runIf(Option.isSome(testDatabaseUrl))("on TEST_DATABASE_URL", () => {
  suite(
    "vector stores on PostgreSQL",
    testDatabaseLayer("vector_store"),
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.map(
        sql`SELECT 1 FROM pg_available_extensions WHERE name = 'vector'`,
        (rows): VectorPath => rows.length > 0 ? "pgvector" : "portable"
      ))
  )
})
