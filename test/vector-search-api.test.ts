import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"

import { PrepareToServe, ServedApi } from "../src/App.js"
import { Passwords } from "../src/features/auth/Passwords.js"
import { VectorStoresRepo } from "../src/features/vectors/Repo.js"
import { Cache } from "../src/platform/Cache.js"
import { testConfig } from "../src/platform/Config.js"
import { layerEmbedded } from "../src/platform/Database.js"
import { localEmbedding } from "../src/platform/Embeddings.js"
import { EmbeddingsLive } from "../src/platform/EmbeddingsLive.js"
import { InProcessJobQueueLive } from "../src/platform/JobQueue.js"
import { LlmProviderLive } from "../src/platform/LlmProviderLive.js"
import { Redis } from "../src/platform/Redis.js"
import { type VectorPath, VectorSupport } from "../src/platform/VectorSupport.js"
import { LiveClock, testDatabaseLayer, testDatabaseUrl } from "./support/database.js"
import { type Client, runId, session } from "./support/session.js"

/**
 * Search through the HTTP API (the derived client), local embeddings, on both vector paths in one
 * run: PGlite (pgvector, HNSW) always, and TEST_DATABASE_URL's PostgreSQL (Debian's: portable) when
 * it is set, where an unreachable server fails the suite (its layer does not build), never skips it.
 * Issue 12's "done when": 30+ documents with known answers ranked first by search_json and
 * search_documents, re-ingest replaces, delete hides, the cache never serves a stale answer; and,
 * with no manual ANALYZE, the planner uses the HNSW index and filtered searches still fill top_k.
 */

/** The app of test/support/app.ts (TestApp) over `database` instead of the one the environment picks. */
const appOn = (database: Layer.Layer<SqlClient.SqlClient, unknown>) =>
  ServedApi.pipe(
    Layer.provide(PrepareToServe),
    Layer.provideMerge(Passwords.layerTest),
    Layer.provideMerge(NodeHttpServer.layerTest),
    Layer.provideMerge(Cache.layer),
    Layer.provideMerge(LlmProviderLive),
    Layer.provideMerge(EmbeddingsLive),
    Layer.provideMerge(InProcessJobQueueLive()),
    Layer.provideMerge(Redis.layerOptional),
    Layer.provideMerge(database),
    Layer.provideMerge(testConfig({ TRUST_PROXY: "1" })),
    Layer.provide(LiveClock)
  )

type Kind = "product" | "policy" | "faq"

/** One document of a small company's knowledge base and a question only it answers. */
interface Entry {
  readonly id: string
  readonly kind: Kind
  readonly title: string
  readonly body: string
  readonly details: Readonly<Record<string, string | number>>
  readonly question: string
}

const entry = (
  id: string,
  kind: Kind,
  title: string,
  body: string,
  details: Readonly<Record<string, string | number>>,
  question: string
): Entry => ({ id, kind, title, body, details, question })

const KNOWLEDGE: ReadonlyArray<Entry> = [
  // product sheets
  entry(
    "espresso-machine",
    "product",
    "Barista Pro espresso machine",
    "15 bar pump, steam wand for milk froth, 58 mm portafilter",
    { sku: "KT-1001", price_eur: 549, warranty_years: 2 },
    "which machine has a steam wand and a portafilter"
  ),
  entry(
    "trail-shoes",
    "product",
    "Ridgeline trail running shoes",
    "grippy lugged outsole, waterproof membrane, rock plate for rocky trails",
    { sku: "SP-2040", price_eur: 139, sizes: "38-47" },
    "waterproof trail running shoes with lugged outsole"
  ),
  entry(
    "standing-desk",
    "product",
    "Elevate standing desk",
    "dual motor height adjustment from 62 to 127 cm, memory presets, oak veneer top",
    { sku: "OF-3300", price_eur: 699, load_kg: 120 },
    "desk with dual motor height adjustment"
  ),
  entry(
    "noise-headphones",
    "product",
    "Quietwave headphones",
    "active noise cancellation, 40 hour battery, bluetooth multipoint pairing",
    { sku: "AU-4410", price_eur: 299, weight_g: 250 },
    "headphones with active noise cancellation and long battery"
  ),
  entry(
    "cast-iron-pan",
    "product",
    "Heritage cast iron skillet",
    "pre-seasoned cast iron, oven safe to 260 C, works on induction hobs",
    { sku: "KT-1077", price_eur: 79, diameter_cm: 28 },
    "how to season a cast iron skillet for induction"
  ),
  entry(
    "ebike",
    "product",
    "Urban Volt e-bike",
    "250 W hub motor, 500 Wh removable battery, hydraulic disc brakes, 90 km range",
    { sku: "MO-5120", price_eur: 2299, frame: "aluminium" },
    "range of the e-bike battery and its hub motor"
  ),
  entry(
    "tent",
    "product",
    "Summit two person tent",
    "freestanding dome, ripstop nylon fly, aluminium poles, 2.1 kg packed",
    { sku: "OU-6200", price_eur: 349, season: "3" },
    "lightweight freestanding dome tent with ripstop fly"
  ),
  entry(
    "robot-vacuum",
    "product",
    "Dustbot robot vacuum",
    "lidar mapping, automatic dustbin emptying dock, mops hard floors",
    { sku: "HO-7300", price_eur: 499, runtime_min: 180 },
    "robot vacuum with lidar mapping and emptying dock"
  ),
  entry(
    "monitor",
    "product",
    "Clarity 27 inch monitor",
    "4K IPS panel, USB-C with 90 W power delivery, factory colour calibration",
    { sku: "OF-3410", price_eur: 429, refresh_hz: 60 },
    "monitor with usb-c power delivery and colour calibration"
  ),
  entry(
    "blender",
    "product",
    "Vortex high speed blender",
    "2 litre tritan jar, hardened steel blades crush ice, smoothie and soup programs",
    { sku: "KT-1150", price_eur: 189, watts: 1500 },
    "blender that crushes ice for smoothies"
  ),
  entry(
    "smart-thermostat",
    "product",
    "Nest-free smart thermostat",
    "learns the heating schedule, geofencing, works with boilers and heat pumps",
    { sku: "HO-7420", price_eur: 219, protocol: "zigbee" },
    "thermostat that learns the heating schedule with geofencing"
  ),
  entry(
    "kayak",
    "product",
    "Drift inflatable kayak",
    "drop-stitch floor, two seats, paddles and pump included, rated for lakes",
    { sku: "OU-6350", price_eur: 599, capacity_kg: 200 },
    "inflatable kayak with drop-stitch floor"
  ),
  // policies
  entry(
    "returns-policy",
    "policy",
    "Returns and refunds",
    "unused items may be returned within 30 days for a full refund to the original payment method",
    { policy_id: "POL-01", owner: "customer care" },
    "can I return an item within 30 days for a refund"
  ),
  entry(
    "shipping-policy",
    "policy",
    "Shipping and delivery",
    "orders ship in 2 business days; free shipping above 50 euros; tracking number by email",
    { policy_id: "POL-02", owner: "logistics" },
    "when is shipping free and how do I get a tracking number"
  ),
  entry(
    "privacy-policy",
    "policy",
    "Privacy notice",
    "we process personal data under GDPR, you may request erasure or a copy of your data",
    { policy_id: "POL-03", owner: "data protection officer" },
    "how to request erasure of my personal data under GDPR"
  ),
  entry(
    "remote-work",
    "policy",
    "Remote work policy",
    "employees may work from home three days a week with a manager approved schedule",
    { policy_id: "HR-11", owner: "people team" },
    "how many days a week can employees work from home"
  ),
  entry(
    "expenses",
    "policy",
    "Travel expenses",
    "book economy class, hotels up to 150 euros a night, submit receipts within 14 days for reimbursement",
    { policy_id: "FIN-04", owner: "finance" },
    "hotel limit per night and receipts for travel reimbursement"
  ),
  entry(
    "parental-leave",
    "policy",
    "Parental leave",
    "sixteen weeks of paid parental leave for every new parent, adoption included",
    { policy_id: "HR-15", owner: "people team" },
    "how many weeks of paid parental leave for adoption"
  ),
  entry(
    "security-policy",
    "policy",
    "Information security",
    "laptops use full disk encryption; report phishing emails to the security desk at once",
    { policy_id: "SEC-02", owner: "security" },
    "where to report a phishing email and disk encryption rules"
  ),
  entry(
    "warranty-policy",
    "policy",
    "Warranty terms",
    "defects in materials are repaired or replaced free of charge; accidental damage is excluded",
    { policy_id: "POL-07", owner: "customer care" },
    "is accidental damage covered by the warranty for defects"
  ),
  entry(
    "code-of-conduct",
    "policy",
    "Code of conduct",
    "no harassment or discrimination; conflicts of interest must be declared to compliance",
    { policy_id: "LEG-01", owner: "compliance" },
    "declaring a conflict of interest to compliance"
  ),
  entry(
    "accessibility",
    "policy",
    "Accessibility statement",
    "the website follows WCAG 2.1 AA, screen readers and keyboard navigation are supported",
    { policy_id: "WEB-03", owner: "web team" },
    "is the website WCAG compliant for screen readers"
  ),
  entry(
    "loyalty-program",
    "policy",
    "Loyalty programme",
    "members earn one point per euro; 500 points convert into a 10 euro voucher",
    { policy_id: "MKT-05", owner: "marketing" },
    "how many points for a voucher in the loyalty programme"
  ),
  entry(
    "price-match",
    "policy",
    "Price match promise",
    "if a competitor sells the identical product cheaper within 7 days we refund the difference",
    { policy_id: "POL-09", owner: "sales" },
    "competitor cheaper price match refund the difference"
  ),
  // FAQs
  entry(
    "faq-password-reset",
    "faq",
    "Resetting your password",
    "click forgot password on the sign in page, a reset link valid for one hour is emailed",
    { faq_id: "FAQ-101", section: "account" },
    "I forgot my password, how do I get a reset link"
  ),
  entry(
    "faq-invoice",
    "faq",
    "Downloading an invoice",
    "invoices are in your account under orders, download the PDF with VAT details",
    { faq_id: "FAQ-102", section: "billing" },
    "where can I download a PDF invoice with VAT"
  ),
  entry(
    "faq-gift-card",
    "faq",
    "Gift cards",
    "gift cards never expire and can be combined with a discount code at checkout",
    { faq_id: "FAQ-103", section: "payments" },
    "do gift cards expire and can they be combined with a discount code"
  ),
  entry(
    "faq-order-cancel",
    "faq",
    "Cancelling an order",
    "an order can be cancelled until it is packed; after dispatch use the returns form",
    { faq_id: "FAQ-104", section: "orders" },
    "can I cancel my order before it is packed"
  ),
  entry(
    "faq-student-discount",
    "faq",
    "Student discount",
    "students verified through UNiDAYS get 15 percent off full priced items",
    { faq_id: "FAQ-105", section: "payments" },
    "student discount through UNiDAYS verification"
  ),
  entry(
    "faq-store-hours",
    "faq",
    "Store opening hours",
    "flagship stores open 9 to 20 Monday to Saturday and 10 to 18 on Sunday",
    { faq_id: "FAQ-106", section: "stores" },
    "what time do the flagship stores open on Sunday"
  ),
  entry(
    "faq-klarna",
    "faq",
    "Paying in instalments",
    "pay in three interest free instalments with Klarna at checkout",
    { faq_id: "FAQ-107", section: "payments" },
    "pay in interest free instalments with Klarna"
  ),
  entry(
    "faq-damaged-parcel",
    "faq",
    "Damaged parcel",
    "photograph the damaged parcel and the packaging and contact us within 48 hours",
    { faq_id: "FAQ-108", section: "orders" },
    "my parcel arrived damaged, should I photograph the packaging"
  ),
  entry(
    "faq-size-guide",
    "faq",
    "Finding your size",
    "measure your foot length in centimetres and compare with the size chart",
    { faq_id: "FAQ-109", section: "products" },
    "how to measure foot length for the size chart"
  ),
  entry("faq-newsletter", "faq", "Newsletter", "unsubscribe with the link at the bottom of any newsletter email", {
    faq_id: "FAQ-110",
    section: "account"
  }, "how do I unsubscribe from the newsletter"),
  entry(
    "faq-click-collect",
    "faq",
    "Click and collect",
    "order online and pick up in store after two hours, bring the collection QR code",
    { faq_id: "FAQ-111", section: "orders" },
    "pick up in store with a collection QR code"
  ),
  entry(
    "faq-recycling",
    "faq",
    "Recycling old electronics",
    "bring old electronics to any store for free WEEE recycling, batteries included",
    { faq_id: "FAQ-112", section: "stores" },
    "recycling old electronics and batteries WEEE"
  )
]

const kindOf = new Map(KNOWLEDGE.map((e) => [e.id, e.kind]))

/** The document as a realistic JSON record of its kind, with the company's boilerplate around it. */
const documentOf = (e: Entry) => {
  const common = { company: "Northwind Retail", language: "en", revision: 3, updated: "2026-10-01" }
  switch (e.kind) {
    case "product":
      return { ...common, type: "product_sheet", name: e.title, description: e.body, specs: e.details }
    case "policy":
      return {
        ...common,
        type: "policy",
        title: e.title,
        sections: [{ heading: "Scope", text: "applies to all customers and staff" }, { heading: "Rule", text: e.body }],
        ...e.details
      }
    case "faq":
      return { ...common, type: "faq", question: e.title, answer: e.body, ...e.details }
  }
}

let slugCounter = 0
const newStore = (admin: Client, prefix: string) =>
  admin.vectorStores.create({ payload: { slug: `${prefix}-${runId}-${++slugCounter}`, title: prefix } })

const suite = (
  name: string,
  database: Layer.Layer<SqlClient.SqlClient, unknown>,
  expected: Effect.Effect<VectorPath, unknown, SqlClient.SqlClient>
) =>
  layer(appOn(database), { timeout: 300_000, excludeTestServices: true })(name, (it) => {
    it.effect("the database's vector path is the expected one", () =>
      Effect.gen(function*() {
        const support = yield* Effect.provide(VectorSupport, VectorSupport.Default)
        expect(support.path).toBe(yield* expected)
      }))

    it.effect(
      `${KNOWLEDGE.length} documents with known answers: search_json and search_documents rank each first`,
      () =>
        Effect.gen(function*() {
          const { client: admin } = yield* session("known-admin", { isAdmin: true })
          const { client: reader } = yield* session("known-reader")
          const { slug } = yield* newStore(admin, "known")
          for (const e of KNOWLEDGE) {
            const document = yield* admin.vectorStores.ingest({
              path: { slug },
              payload: { doc_id: e.id, document: documentOf(e), metadata: { kind: e.kind } }
            })
            expect(document).toMatchObject({ doc_id: e.id, status: "ready" })
          }
          const misses: Array<string> = []
          for (const e of KNOWLEDGE) {
            const chunks = yield* reader.vectorStores.searchJson({ path: { slug }, payload: { query: e.question } })
            const documents = yield* reader.vectorStores.searchDocuments({
              path: { slug },
              payload: { query: e.question }
            })
            if (chunks.results[0]?.doc_id !== e.id) {
              misses.push(`search_json "${e.question}" -> ${chunks.results.map((r) => r.doc_id).join(", ")}`)
            }
            if (documents.results[0]?.doc_id !== e.id) {
              misses.push(`search_documents "${e.question}" -> ${documents.results.map((r) => r.doc_id).join(", ")}`)
            }
            // the document's own metadata comes back with each hit
            for (const hit of chunks.results) expect(hit.metadata.kind).toBe(kindOf.get(hit.doc_id))
            expect(new Set(documents.results.map((r) => r.doc_id)).size).toBe(documents.results.length)
          }
          expect(misses).toEqual([])
        }),
      180_000
    )

    it.effect("re-ingest replaces, delete hides, and a changed store never gets a cached answer", () =>
      Effect.gen(function*() {
        const { client: admin } = yield* session("change-admin", { isAdmin: true })
        const { client: reader } = yield* session("change-reader")
        const { slug } = yield* newStore(admin, "change")
        for (const e of KNOWLEDGE.slice(0, 12)) {
          yield* admin.vectorStores.ingest({ path: { slug }, payload: { doc_id: e.id, document: documentOf(e) } })
        }
        const query = { query: "sailing dinghy with a carbon mast and trapeze harness", top_k: 3 }
        const json = reader.vectorStores.searchJson({ path: { slug }, payload: query })
        const documents = reader.vectorStores.searchDocuments({ path: { slug }, payload: query })
        const before = yield* json
        expect(
          before.results.map((r) =>
            r.text
          ).join("\n")
        ).not.toContain("dinghy")
        yield* documents
        // asked again, unchanged: the same answer
        expect(yield* json).toEqual(before)

        // re-ingest "kayak" as a dinghy: the very next searches serve the new text, not the cached old answer
        yield* admin.vectorStores.ingest({
          path: { slug },
          payload: {
            doc_id: "kayak",
            document: {
              type: "product_sheet",
              name: "Breeze sailing dinghy",
              description: "carbon mast, trapeze harness, self-bailing hull"
            }
          }
        })
        const replaced = yield* json
        expect(replaced.results[0]?.doc_id).toBe("kayak")
        expect(replaced.results[0]?.text).toContain("carbon mast")
        const kayakTexts = (yield* reader.vectorStores.searchJson({
          path: { slug },
          payload: { query: "inflatable kayak drop-stitch floor paddles", top_k: 50 }
        })).results.filter((r) => r.doc_id === "kayak").map((r) => r.text)
        expect(kayakTexts.join("\n")).not.toContain("drop-stitch")
        expect((yield* documents).results[0]).toMatchObject({ doc_id: "kayak" })
        expect((yield* reader.vectorStores.getDocument({ path: { slug, doc_id: "kayak" } })).chunk_count).toBe(1)

        // delete it: gone from both searches at once
        yield* admin.vectorStores.deleteDocument({ path: { slug, doc_id: "kayak" } })
        const deleted = yield* json
        expect(deleted.results.map((r) => r.doc_id)).not.toContain("kayak")
        expect(deleted.results.length).toBe(3)
        expect((yield* documents).results.map((r) => r.doc_id)).not.toContain("kayak")

        // a new document answering the question: found by the next search, cached one or not
        yield* admin.vectorStores.ingest({
          path: { slug },
          payload: {
            doc_id: "dinghy",
            document: { name: "Dinghy", description: "sailing dinghy, carbon mast, trapeze" }
          }
        })
        expect((yield* json).results[0]?.doc_id).toBe("dinghy")
        expect((yield* documents).results[0]?.doc_id).toBe("dinghy")

        // the store itself deleted: 404, not a cached page of results
        yield* admin.vectorStores.delete({ path: { slug } })
        expect((yield* Effect.flip(json))._tag).toBe("NotFound")
      }), 120_000)

    it.effect(
      "with no manual ANALYZE, a grown store plans with statistics (HNSW on pgvector) and filtered searches fill top_k",
      () =>
        Effect.gen(function*() {
          const { client: admin } = yield* session("grown-admin", { isAdmin: true })
          const store = yield* newStore(admin, "grown")
          const path = yield* expected
          // 165 documents of 37 chunks: ~6,100 chunks, past the size where pgvector's cost model has the
          // index beat an exact scan for a top_k of 1 (ef_search 40)
          const lines = (doc: number) =>
            Array.from({ length: 1200 }, (_, i) =>
              `part ${i} of catalogue ${doc}: bolt washer ${(doc * 31 + i) % 997}`)
          for (let doc = 0; doc < 165; doc++) {
            yield* admin.vectorStores.ingest({
              path: { slug: store.slug },
              payload: {
                doc_id: `catalogue-${doc}`,
                document: { parts: lines(doc) },
                metadata: { batch: doc < 3 ? "rare" : "common" }
              }
            })
          }
          const repo = yield* Effect.provide(VectorStoresRepo, VectorStoresRepo.Default)
          const plan = (yield* repo.explainSearch({
            storeId: store.id,
            dimension: 384,
            embedding: localEmbedding("bolt washer"),
            query: "bolt washer",
            topK: 1
          })).join("\n")
          if (path === "pgvector") {
            expect(plan).toContain("vector_chunks_embedding_384_idx")
            // PGlite runs no autovacuum: the statistics are the ingestions' own ANALYZEs
            const [stats] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
              sql<
                { rows: number }
              >`SELECT reltuples::float8 AS rows FROM pg_class WHERE oid = 'vector_chunks'::regclass`)
            expect(stats!.rows).toBeGreaterThan(2000)
          } else {
            expect(plan).not.toContain("hnsw")
          }

          // the words are in no chunk (no sparse candidate): the 10 come from the dense scan, past the
          // chunks of the 162 other documents that the filter drops
          const filtered = yield* admin.vectorStores.searchJson({
            path: { slug: store.slug },
            payload: { query: "zzqx wvyk", top_k: 10, metadata_filters: { batch: "rare" } }
          })
          expect(filtered.results.length).toBe(10)
          for (const hit of filtered.results) {
            expect(["catalogue-0", "catalogue-1", "catalogue-2"]).toContain(hit.doc_id)
            expect(hit.sparse_score).toBe(0)
          }
        }),
      600_000
    )
  })

const embedded = layerEmbedded("memory://").pipe(Layer.provide(testConfig()), Layer.provide(LiveClock))
suite("vector search API on PGlite", embedded, Effect.succeed("pgvector"))

describe.runIf(Option.isSome(testDatabaseUrl))("on TEST_DATABASE_URL", () => {
  suite(
    "vector search API on PostgreSQL",
    testDatabaseLayer("vector_search_api"),
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.map(
        sql`SELECT 1 FROM pg_available_extensions WHERE name = 'vector'`,
        (rows): VectorPath => rows.length > 0 ? "pgvector" : "portable"
      ))
  )
})
