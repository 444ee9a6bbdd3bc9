/**
 * Vector search benchmark (issue 12): ingests synthetic JSON documents with the local embeddings
 * (10 chunks each: 10,000 documents, 100,000 chunks) through the repository, in transactions of
 * --batch documents (the statements the service runs for an inline ingestion, without HTTP), then
 * measures search_json's cost on a cache miss, the query's embedding and the repository's one
 * hybrid statement, over a few hundred distinct queries after a warm-up, on both vector paths:
 *
 * - pgvector: PGlite (embedded, WASM) with the HNSW index, statistics from the repository's own
 *   ANALYZE policy (PGlite runs no autovacuum); target p95 < 50 ms at 100k chunks;
 * - portable: PostgreSQL (BENCH_DATABASE_URL's server, default
 *   postgres://postgres@127.0.0.1:5432/postgres; Debian's has no pgvector) on a database created
 *   for the run and dropped after; cosine computed in SQL over the store's chunks. Reported, not
 *   targeted.
 *
 * Prints a table and writes bench/results/vectors.json.
 *
 *   npx tsx bench/vectors.ts [--documents 10000] [--queries 300] [--warmup 30] [--batch 100]
 *                            [--paths pgvector,portable] [--index-after-load] [--data-dir DIR]
 *                            [--portable-queries N] [--portable-warmup N] [--top-k 5]
 *   (BENCH_VECTORS_EXPLAIN=1 prints EXPLAIN (ANALYZE, BUFFERS) of each path's slowest query)
 *
 * --index-after-load drops vector_chunks' HNSW and GIN indexes before the load and builds them
 * again after (their definitions read from pg_indexes), as a bulk import would: on PGlite each
 * HNSW insert costs milliseconds (WASM), so 100k of them one by one take the better part of an
 * hour. The build time is reported apart from the ingestion's.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { mkdir } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"

import { SqlClient } from "@effect/sql"
import { Effect, Layer, Logger, LogLevel, Redacted } from "effect"
import pg from "pg"

import { chunk, flatten, ingestionMetadata, linearizedText } from "../src/features/vectors/Ingestion.js"
import { VectorStoresRepo } from "../src/features/vectors/Repo.js"
import { testConfig } from "../src/platform/Config.js"
import { layerEmbedded, layerPostgres } from "../src/platform/Database.js"
import { makeLocalEmbeddings } from "../src/platform/Embeddings.js"
import { migrateUp } from "../src/platform/Migrations.js"
import type { VectorPath } from "../src/platform/VectorSupport.js"
import { median } from "./support.js"

const { values: args } = parseArgs({
  options: {
    documents: { type: "string", default: "10000" },
    queries: { type: "string", default: "300" },
    warmup: { type: "string", default: "30" },
    batch: { type: "string", default: "100" },
    paths: { type: "string", default: "pgvector,portable" },
    "index-after-load": { type: "boolean", default: false },
    "top-k": { type: "string", default: "5" },
    "portable-queries": { type: "string" },
    "portable-warmup": { type: "string" },
    "data-dir": { type: "string" }
  }
})
const DOCUMENTS = Number(args.documents)
const QUERIES = Number(args.queries)
const WARMUP = Number(args.warmup)
const BATCH = Number(args.batch)
const TOP_K = Number(args["top-k"])
/** the portable path computes each query's cosine over every chunk of the store: fewer queries there */
const PORTABLE_QUERIES = Number(args["portable-queries"] ?? QUERIES)
const PORTABLE_WARMUP = Number(args["portable-warmup"] ?? WARMUP)
/** PGlite's data in this directory, kept: a later run with the same --documents measures search without ingesting again */
const DATA_DIR = args["data-dir"]
const INDEX_AFTER_LOAD = args["index-after-load"]
const PATHS = args.paths.split(",").map((p) => p.trim()) as ReadonlyArray<VectorPath>
const TARGET_P95_MS = 50
const DATABASE_SERVER_URL = process.env.BENCH_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres"
const RESULTS = new URL("./results/vectors.json", import.meta.url)

// --- synthetic documents -----------------------------------------------------------------------

/** A seeded PRNG (mulberry32): the same documents and queries on both paths and every run. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const SYLLABLES = [
  "ka",
  "lo",
  "mi",
  "ter",
  "van",
  "sul",
  "dro",
  "pe",
  "nix",
  "ra",
  "bo",
  "quel",
  "shi",
  "fen",
  "gor",
  "tua"
]
/** 20,000 distinct made-up words; drawn with a Zipf-like skew, so some are common and most are rare. */
const VOCABULARY = Array.from({ length: 20_000 }, (_, i) => {
  let word = ""
  let n = i + 17
  while (n > 0) {
    word += SYLLABLES[n % SYLLABLES.length]
    n = Math.floor(n / SYLLABLES.length)
  }
  return word
})
const word = (next: () => number) => VOCABULARY[Math.floor(VOCABULARY.length * next() ** 3)]!
const words = (next: () => number, n: number) => Array.from({ length: n }, () => word(next)).join(" ")

/** 300 leaves: 10 chunks of 40 lines stepping by 32. A product catalogue page of made-up words. */
const LINES_PER_DOCUMENT = 300
const documentOf = (index: number) => {
  const next = random(index + 1)
  const items = Array.from({ length: (LINES_PER_DOCUMENT - 4) / 4 }, (_, i) => ({
    name: words(next, 3),
    description: words(next, 8),
    sku: `SKU-${index}-${i}`,
    price: Math.round(next() * 100_000) / 100
  }))
  return {
    catalogue: `catalogue ${index}`,
    supplier: words(next, 2),
    region: ["north", "south", "east", "west"][index % 4]!,
    year: 2000 + (index % 25),
    items
  }
}

/** A query: 2 to 5 words of one line of a random document, so it has an answer; its document kept. */
const queryOf = (next: () => number, documents: number) => {
  const index = Math.floor(next() * documents)
  const document = documentOf(index)
  const item = document.items[Math.floor(next() * document.items.length)]!
  const pool = `${item.name} ${item.description}`.split(" ")
  const start = Math.floor(next() * (pool.length - 2))
  return { docId: `doc-${index}`, text: pool.slice(start, start + 2 + Math.floor(next() * 4)).join(" ") }
}

// --- one path ----------------------------------------------------------------------------------

const embeddings = makeLocalEmbeddings()

interface PathResult {
  readonly path: VectorPath
  readonly database: string
  readonly documents: number
  readonly chunks: number
  /** null when the documents of an earlier run (--data-dir) were reused */
  readonly ingestSeconds: number | null
  readonly indexBuildSeconds: number | null
  readonly queries: number
  readonly p50Ms: number
  readonly p95Ms: number
  readonly p99Ms: number
  readonly meanMs: number
  /** share of queries whose source document is among the top_k results */
  readonly hitAtK: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN

const log = (message: string) => console.error(`[vectors] ${message}`)

const run = (path: VectorPath, database: string) =>
  Effect.gen(function*() {
    const repo = yield* VectorStoresRepo
    const sql = yield* SqlClient.SqlClient
    if (repo.path !== path) return yield* Effect.dieMessage(`expected the ${path} path, the database has ${repo.path}`)
    const slug = `bench-${DOCUMENTS}`
    const existing = yield* repo.findStoreBySlug(slug)
    const reused = existing._tag === "Some" &&
      (yield* repo.listDocuments(existing.value.id, { page: 1, pageSize: 1, offset: 0 })).total === DOCUMENTS
    if (existing._tag === "Some" && !reused) yield* repo.deleteStore(existing.value.id)
    const store = reused && existing._tag === "Some" ? existing.value : yield* repo.createStore({
      slug,
      title: "bench",
      embeddingModel: embeddings.model,
      dimension: embeddings.dimension
    })
    if (reused) log(`${path}: reusing the ${DOCUMENTS} documents of ${slug}`)

    // bulk mode: the HNSW and GIN indexes of vector_chunks are built after the rows
    const deferred = INDEX_AFTER_LOAD && !reused
      ? yield* sql<{ name: string; definition: string }>`
          SELECT indexname AS name, indexdef AS definition FROM pg_indexes
          WHERE tablename = 'vector_chunks' AND schemaname = current_schema()
            AND (indexdef LIKE '%USING hnsw%' OR indexdef LIKE '%USING gin%')`
      : []
    for (const index of deferred) yield* sql`DROP INDEX ${sql(index.name)}`

    let chunks = 0
    const started = performance.now()
    for (let from = 0; from < (reused ? 0 : DOCUMENTS); from += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, DOCUMENTS - from) }, (_, i) => from + i).map((index) => {
        const document = documentOf(index)
        const flat = flatten(document)
        return { index, document, flat, chunks: chunk(flat.lines) }
      })
      const vectors = yield* embeddings.embed(batch.flatMap((d) => d.chunks.map((c) => c.text)))
      let v = 0
      yield* sql.withTransaction(Effect.forEach(batch, (d) =>
        Effect.gen(function*() {
          const docId = `doc-${d.index}`
          const metadata = { ...ingestionMetadata(d.flat), region: d.document.region, year: d.document.year }
          const submitted = yield* repo.submitDocument({ storeId: store.id, docId, document: d.document, metadata })
          if (submitted._tag === "None") return yield* Effect.dieMessage("the bench store is gone")
          yield* repo.completeIngestion({
            storeId: store.id,
            docId,
            generation: submitted.value.latest_generation,
            linearizedText: linearizedText(d.flat.lines),
            metadata,
            chunks: d.chunks.map((c) => ({
              index: c.index,
              text: c.text,
              metadata: { line_start: c.lineStart, line_end: c.lineEnd },
              embedding: vectors[v++]!
            }))
          })
          chunks += d.chunks.length
        }), { discard: true }))
      if ((from / BATCH) % 10 === 9 || from + BATCH >= DOCUMENTS) {
        const seconds = (performance.now() - started) / 1000
        log(`${path}: ${from + batch.length} documents, ${chunks} chunks, ${seconds.toFixed(1)} s`)
      }
    }
    const ingestSeconds = (performance.now() - started) / 1000
    if (reused) {
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM vector_chunks c
        JOIN vector_documents d ON d.id = c.document_id WHERE d.store_id = ${store.id}`
      chunks = row?.n ?? 0
    }

    let indexBuildSeconds: number | null = null
    if (deferred.length > 0) {
      const building = performance.now()
      if (path === "pgvector") yield* sql`SET maintenance_work_mem = '512MB'`
      for (const index of deferred) yield* sql.unsafe(index.definition)
      indexBuildSeconds = (performance.now() - building) / 1000
      log(`${path}: indexes built in ${indexBuildSeconds.toFixed(1)} s`)
    }
    // PostgreSQL's autovacuum analyzes the new rows within its naptime; the bench does not wait for it
    if (path === "portable") yield* sql`ANALYZE vector_chunks, vector_documents`

    const next = random(424_242)
    const measured = path === "portable" ? PORTABLE_QUERIES : QUERIES
    const warmup = path === "portable" ? PORTABLE_WARMUP : WARMUP
    const queries = Array.from({ length: warmup + measured }, () => queryOf(next, DOCUMENTS))
    const times: Array<number> = []
    let hits = 0
    for (const [i, query] of queries.entries()) {
      const start = performance.now()
      const [embedding] = yield* embeddings.embed([query.text])
      const results = yield* repo.search({
        storeId: store.id,
        dimension: embeddings.dimension,
        embedding: embedding!,
        query: query.text,
        topK: TOP_K
      })
      const elapsed = performance.now() - start
      if (i >= warmup) {
        times.push(elapsed)
        if (results.some((r) => r.doc_id === query.docId)) hits++
      }
    }
    if (process.env.BENCH_VECTORS_EXPLAIN === "1") {
      // the plan and timings of the slowest measured query
      const slowest = queries[warmup + times.indexOf(Math.max(...times))]!
      const [embedding] = yield* embeddings.embed([slowest.text])
      const plan = yield* repo.explainSearch({
        storeId: store.id,
        dimension: embeddings.dimension,
        embedding: embedding!,
        query: slowest.text,
        topK: TOP_K
      }, { analyze: true })
      log(`${path}: EXPLAIN ANALYZE of "${slowest.text}"\n${
        plan.map((l) => l.replace(/\[[-0-9.e,]{200,}\]/g, "[...]")).join("\n")
      }`)
    }
    const sorted = [...times].sort((a, b) =>
      a - b
    )
    const result: PathResult = {
      path,
      database,
      documents: DOCUMENTS,
      chunks,
      ingestSeconds: reused ? null : ingestSeconds,
      indexBuildSeconds,
      queries: times.length,
      p50Ms: median(times),
      p95Ms: percentile(sorted, 95),
      p99Ms: percentile(sorted, 99),
      meanMs: times.reduce((a, b) => a + b, 0) / times.length,
      hitAtK: hits / times.length
    }
    log(`${path}: p50 ${result.p50Ms.toFixed(1)} ms, p95 ${result.p95Ms.toFixed(1)} ms`)
    return result
  })

const config = testConfig({ DATABASE_STATEMENT_TIMEOUT_MS: "600000" })

const onDatabase = (path: VectorPath, database: Layer.Layer<SqlClient.SqlClient, unknown>, name: string) =>
  run(path, name).pipe(
    Effect.provide(VectorStoresRepo.Default.pipe(
      Layer.provideMerge(Layer.effectDiscard(migrateUp()).pipe(Layer.provideMerge(database)))
    )),
    Effect.scoped
  )

const pgliteOn = (dir: string) =>
  onDatabase("pgvector", layerEmbedded(dir).pipe(Layer.provide(config)), "PGlite (pgvector 0.8, HNSW)")

const pglite = DATA_DIR === undefined
  ? Effect.acquireUseRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "bench-vectors-"))),
    pgliteOn,
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  : pgliteOn(DATA_DIR)

const adminQuery = (statement: string) =>
  Effect.promise(async () => {
    const client = new pg.Client({ connectionString: DATABASE_SERVER_URL })
    await client.connect()
    try {
      await client.query(statement)
    } finally {
      await client.end()
    }
  })

const postgres = Effect.gen(function*() {
  const name = `bench_vectors_${Date.now()}`
  const url = new URL(DATABASE_SERVER_URL)
  url.pathname = `/${name}`
  return yield* Effect.acquireUseRelease(
    adminQuery(`CREATE DATABASE ${name}`),
    () =>
      onDatabase(
        "portable",
        layerPostgres(Redacted.make(url.toString())).pipe(Layer.provide(config)),
        "PostgreSQL (portable, real[])"
      ),
    () => adminQuery(`DROP DATABASE IF EXISTS ${name}`)
  )
})

const main = Effect.gen(function*() {
  const results: Array<PathResult> = []
  for (const path of PATHS) results.push(yield* (path === "pgvector" ? pglite : postgres))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(32) : c.padStart(11))).join(" ")
  console.log(line(["path", "chunks", "ingest s", "index s", "p50 ms", "p95 ms", "p99 ms", `hit@${TOP_K}`]))
  for (const r of results) {
    console.log(line([
      r.database,
      String(r.chunks),
      r.ingestSeconds === null ? "reused" : r.ingestSeconds.toFixed(1),
      r.indexBuildSeconds === null ? "-" : r.indexBuildSeconds.toFixed(1),
      r.p50Ms.toFixed(1),
      r.p95Ms.toFixed(1),
      r.p99Ms.toFixed(1),
      r.hitAtK.toFixed(2)
    ]))
  }
  const hnsw = results.find((r) => r.path === "pgvector")
  if (hnsw !== undefined) {
    console.log(
      `HNSW path p95 ${hnsw.p95Ms.toFixed(1)} ms at ${hnsw.chunks} chunks: target < ${TARGET_P95_MS} ms ${
        hnsw.p95Ms < TARGET_P95_MS ? "met" : "MISSED"
      }`
    )
  }
  yield* Effect.promise(async () => {
    await mkdir(new URL("./results/", import.meta.url), { recursive: true })
    await writeFile(
      RESULTS,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          options: {
            documents: DOCUMENTS,
            queries: QUERIES,
            warmup: WARMUP,
            batch: BATCH,
            topK: TOP_K,
            indexAfterLoad: INDEX_AFTER_LOAD
          },
          targetP95Ms: TARGET_P95_MS,
          results
        },
        null,
        2
      ) + "\n"
    )
  })
})

Effect.runPromise(main.pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))).catch((error) => {
  console.error(error)
  process.exit(1)
})
