import { describe, expect, it, layer } from "@effect/vitest"
import { Effect } from "effect"

import { ValidationError } from "../src/domain/errors.js"
import {
  boundedSources,
  localAnswer,
  RETRIEVAL_CONTEXT_MAX_CHARS,
  RETRIEVAL_PASSAGE_MAX_CHARS,
  retrievalContext
} from "../src/platform/LlmProvider.js"
import { TestApp } from "./support/app.js"
import { answerOf, chatkit, type Event, eventsOf, json, say } from "./support/chatkit.js"
import { Fake, TestAppOnFakeOpenAi } from "./support/fakeOpenAi.js"
import { type Client, raw, runId, session } from "./support/session.js"

/*
 * Retrieval in conversations (issue 12, point 5), through POST /api/v1/chatkit on the app's own
 * database (PGlite: pgvector; TEST_DATABASE_URL: the portable path): an `agent` node with
 * `vector_store_slug` searches the store for the user's message, gives the model the passages,
 * and its answer cites their documents as ChatKit annotations, streamed and stored.
 */

let counter = 0
const newSlug = (prefix: string) => `${prefix}-${runId}-${++counter}`

/** Six documents on distinct subjects, and a question each whose answer is in it. */
const KNOWLEDGE = [
  {
    id: "eiffel",
    title: "Eiffel Tower",
    body: "wrought iron lattice tower in Paris designed by Gustave Eiffel, 330 metres tall",
    query: "how tall is the iron tower in Paris"
  },
  {
    id: "photosynthesis",
    title: "Photosynthesis",
    body: "plants use chlorophyll and sunlight to turn carbon dioxide and water into glucose and oxygen",
    query: "how do plants make glucose from sunlight"
  },
  {
    id: "sourdough",
    title: "Sourdough bread",
    body: "bread leavened by a starter of wild yeast and lactobacilli, fermented for a tangy crumb",
    query: "wild yeast starter bread"
  },
  {
    id: "chess",
    title: "Chess openings",
    body: "the Sicilian Defence answers e4 with c5 and is the most popular reply among grandmasters",
    query: "Sicilian Defence chess opening"
  },
  {
    id: "volcano",
    title: "Eyjafjallajokull eruption",
    body: "the 2010 Iceland volcano eruption sent an ash cloud that stopped air travel in Europe",
    query: "volcano ash cloud Iceland flights"
  },
  {
    id: "black-hole",
    title: "Black holes",
    body: "a region of spacetime where gravity is so strong that nothing escapes past the event horizon",
    query: "what is the event horizon of a black hole"
  }
] as const

/** A store holding KNOWLEDGE (titles in the documents' metadata, except `untitled`'s), created by an administrator. */
const knowledgeStore = (admin: Client, prefix: string, options: { readonly untitled?: string } = {}) =>
  Effect.gen(function*() {
    const store = yield* admin.vectorStores.create({ payload: { slug: newSlug(prefix), title: `${prefix} store` } })
    for (const entry of KNOWLEDGE) {
      yield* admin.vectorStores.ingest({
        path: { slug: store.slug },
        payload: {
          doc_id: entry.id,
          document: { title: entry.title, summary: entry.body },
          metadata: entry.id === options.untitled ? {} : { title: entry.title }
        }
      })
    }
    return store.slug
  })

/** start -> agent "answer" (the given parameters) -> end. */
const retrievingGraph = (parameters: Record<string, unknown>) => ({
  nodes: [
    { slug: "start", kind: "start" },
    { slug: "answer", kind: "agent", parameters },
    { slug: "end", kind: "end" }
  ],
  edges: [{ source: "start", target: "answer" }, { source: "answer", target: "end" }]
})

const createWorkflow = (client: Client, parameters: Record<string, unknown>) =>
  Effect.map(
    client.workflows.create({
      payload: { slug: newSlug("retrieving"), display_name: "Retrieving", graph: retrievingGraph(parameters) },
      headers: {}
    }),
    (workflow) => workflow.id
  )

const ask = (token: string, workflowId: number, text: string) =>
  Effect.map(
    chatkit(token, { type: "threads.create", params: { input: say(text) }, metadata: { workflow_id: workflowId } }),
    eventsOf
  )

interface Annotation {
  readonly type: string
  readonly source: { readonly type: string; readonly filename: string; readonly title: string }
}

/** The annotations of the turn's final assistant item (`thread.item.done`). */
const doneAnnotations = (events: ReadonlyArray<Event>): ReadonlyArray<Annotation> => {
  const done = events.find((e) => e.type === "thread.item.done" && e.item.type === "assistant_message")
  const content = done?.item.content as ReadonlyArray<{ readonly annotations?: ReadonlyArray<Annotation> }> | undefined
  return content?.[0]?.annotations ?? []
}

/** The annotations streamed as `annotation_added` updates, in order. */
const streamedAnnotations = (events: ReadonlyArray<Event>) =>
  events.flatMap((e) => {
    const update = e.update as unknown as {
      readonly type?: string
      readonly annotation_index?: number
      readonly content_index?: number
      readonly annotation?: Annotation
    }
    return e.type === "thread.item.updated" && update.type === "assistant_message.content_part.annotation_added"
      ? [{ itemId: e.item_id, ...update }]
      : []
  })

describe("the retrieved context of a call", () => {
  it("is bounded whatever top_k finds: best passages first, each cut to its share, never inside a surrogate pair", () => {
    // 50 chunks of 20,000 characters (the most a search gives), the cut falling inside a pair for the first
    const long = (i: number) => `${"a".repeat(RETRIEVAL_PASSAGE_MAX_CHARS - 2)}😀${"b".repeat(20_000)}${i}`
    const found = Array.from(
      { length: 50 },
      (_, i) => ({ docId: `d${i}`, title: `T${i}`, text: long(i), score: 1 - i / 100 })
    )
    const kept = boundedSources(found)
    expect(kept.map((s) => s.docId)).toEqual(["d0", "d1", "d2"])
    const total = kept.reduce((sum, s) => sum + s.text.length, 0)
    expect(total).toBeLessThanOrEqual(RETRIEVAL_CONTEXT_MAX_CHARS)
    for (const source of kept) {
      expect(source.text.length).toBeLessThanOrEqual(RETRIEVAL_PASSAGE_MAX_CHARS)
      expect(source.text.endsWith("…")).toBe(true)
      expect(source.text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/)
    }
    // short passages go whole
    const short = [{ docId: "x", title: "X", text: "a short passage", score: 1 }]
    expect(boundedSources(short)).toEqual(short)
    expect(retrievalContext(kept).length).toBeLessThan(RETRIEVAL_CONTEXT_MAX_CHARS + 1_000)
  })

  it("the local model quotes the best passage and keeps the node's instructions apart from the sources", () => {
    const sources = [
      { docId: "a", title: "Alpha", text: "alpha text", score: 0.9 },
      { docId: "b", title: "Beta", text: "beta text", score: 0.5 }
    ]
    const answer = localAnswer({
      model: "default",
      messages: [{ role: "system", content: retrievalContext(sources) }, { role: "user", content: "question" }],
      sources
    })
    expect(answer).toMatch(/^According to Alpha: "alpha text" You wrote: "question"/)
    expect(answer).not.toContain("under the instructions")
  })
})

layer(TestApp("conversations_retrieval", { TRUST_PROXY: "1" }), { timeout: 120_000 })(
  "retrieval in conversations, local model",
  (it) => {
    it.effect("a turn cites the right document, streams and stores the annotations, and the local answer quotes its best chunk", () =>
      Effect.gen(function*() {
        const { client: admin } = yield* session("rag-admin", { isAdmin: true })
        const { client, token } = yield* session("rag-user")
        const slug = yield* knowledgeStore(admin, "rag")
        const workflowId = yield* createWorkflow(client, { vector_store_slug: slug, top_k: 3 })

        const events = yield* ask(token, workflowId, KNOWLEDGE[0].query)
        const annotations = doneAnnotations(events)
        expect(annotations[0]).toEqual({
          type: "annotation",
          source: {
            type: "file",
            filename: "eiffel",
            title: "Eiffel Tower",
            description: expect.stringContaining("330 metres tall")
          }
        })
        // top_k 3 chunks, one per document here: three sources, each cited once
        expect(annotations).toHaveLength(3)
        expect(new Set(annotations.map((a) => a.source.filename)).size).toBe(3)

        const answer = answerOf(events)
        expect(answer).toMatch(/^According to Eiffel Tower: "/)
        expect(answer).toContain(KNOWLEDGE[0].body)

        // streamed after the item is added, on its first content part, in order, the same as the final item's
        const added = events.findIndex((e) => e.type === "thread.item.added")
        const assistantId = events[added]?.item.id
        const streamed = streamedAnnotations(events)
        expect(streamed.map((u) => u.annotation)).toEqual(annotations)
        expect(streamed.map((u) => u.annotation_index)).toEqual([0, 1, 2])
        expect(streamed.every((u) => u.itemId === assistantId && u.content_index === 0)).toBe(true)
        expect(events.findIndex((e) => e.type === "thread.item.updated")).toBeGreaterThan(added)

        // the stored item keeps them: threads.get_by_id shows the same item as the stream's last
        const threadId = events[1]?.thread.id
        const thread = json(yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: threadId } }))
        const stored = thread.items.data.find((item) => item.type === "assistant_message")
        const done = events.find((e) => e.type === "thread.item.done" && e.item.type === "assistant_message")
        expect(stored).toEqual(done?.item)
        expect(stored).not.toHaveProperty("status")
      }))

    it.effect("each message retrieves for itself; top_k bounds the sources (default 5); an untitled document is cited by its id", () =>
      Effect.gen(function*() {
        const { client: admin } = yield* session("rag-each-admin", { isAdmin: true })
        const { client, token } = yield* session("rag-each-user")
        const slug = yield* knowledgeStore(admin, "rag-each", { untitled: "photosynthesis" })
        const one = yield* createWorkflow(client, { vector_store_slug: slug, top_k: 1 })

        const first = yield* ask(token, one, KNOWLEDGE[3].query)
        expect(doneAnnotations(first).map((a) => a.source.filename)).toEqual(["chess"])
        expect(answerOf(first)).toMatch(/^According to Chess openings: ".*Sicilian Defence/)
        const next = eventsOf(
          yield* chatkit(token, {
            type: "threads.add_user_message",
            params: { thread_id: first[1]?.thread.id, input: say(KNOWLEDGE[1].query) }
          })
        )
        expect(doneAnnotations(next)).toEqual([
          {
            type: "annotation",
            source: expect.objectContaining({ filename: "photosynthesis", title: "photosynthesis" })
          }
        ])
        expect(answerOf(next)).toMatch(/^According to photosynthesis: ".*chlorophyll/)

        const byDefault = yield* createWorkflow(client, { vector_store_slug: slug, instructions: "Be brief." })
        const five = yield* ask(token, byDefault, KNOWLEDGE[4].query)
        expect(doneAnnotations(five)).toHaveLength(5)
        expect(doneAnnotations(five)[0]?.source.filename).toBe("volcano")
        // the instructions are still the instructions, not the list of sources
        expect(answerOf(five)).toContain("under the instructions \"Be brief.\"")
      }))

    it.effect("a store with nothing to find: the answer says so, cites nothing, and the turn ends normally", () =>
      Effect.gen(function*() {
        const { client: admin } = yield* session("rag-empty-admin", { isAdmin: true })
        const { client, token } = yield* session("rag-empty-user")
        const store = yield* admin.vectorStores.create({ payload: { slug: newSlug("empty"), title: "Empty" } })
        const workflowId = yield* createWorkflow(client, { vector_store_slug: store.slug })
        const events = yield* ask(token, workflowId, "anything at all")
        expect(events.some((e) => e.type === "error")).toBe(false)
        expect(doneAnnotations(events)).toEqual([])
        expect(streamedAnnotations(events)).toEqual([])
        expect(answerOf(events)).toMatch(/^I searched the sources of this assistant and found nothing about it\./)
      }))

    it.effect("a store that does not exist, or was deleted since the workflow was saved, fails the turn with an error event naming the node", () =>
      Effect.gen(function*() {
        const { client: admin } = yield* session("rag-gone-admin", { isAdmin: true })
        const { client, token } = yield* session("rag-gone-user")
        const missing = newSlug("never-created")
        const never = yield* createWorkflow(client, { vector_store_slug: missing })
        const events = yield* ask(token, never, "where are you")
        expect(events.at(-1)).toMatchObject({ type: "error", code: "stream.error", allow_retry: false })
        expect(events.at(-1)?.message).toBe(`Node "answer": the vector store "${missing}" does not exist`)
        // no answer was started: the thread holds the user's message only
        expect(events.some((e) => e.type === "thread.item.added")).toBe(false)
        const thread = json(
          yield* chatkit(token, { type: "threads.get_by_id", params: { thread_id: events[1]?.thread.id } })
        )
        expect(thread.items.data.map((item) => item.type)).toEqual(["user_message"])

        const slug = yield* knowledgeStore(admin, "rag-deleted")
        const workflowId = yield* createWorkflow(client, { vector_store_slug: slug })
        expect(doneAnnotations(yield* ask(token, workflowId, KNOWLEDGE[2].query))[0]?.source.filename).toBe("sourdough")
        yield* admin.vectorStores.delete({ path: { slug } })
        const after = yield* ask(token, workflowId, KNOWLEDGE[2].query)
        expect(after.at(-1)).toMatchObject({
          type: "error",
          allow_retry: false,
          message: `Node "answer": the vector store "${slug}" does not exist`
        })
      }))

    it.effect("a workflow whose agent node has a malformed vector_store_slug or top_k is a 400 naming each parameter", () =>
      Effect.gen(function*() {
        const { client, token } = yield* session("rag-invalid")
        const cases: ReadonlyArray<readonly [Record<string, unknown>, ReadonlyArray<string>]> = [
          [{ vector_store_slug: "Not A Slug!" }, ["vector_store_slug"]],
          [{ vector_store_slug: 42 }, ["vector_store_slug"]],
          [{ vector_store_slug: "" }, ["vector_store_slug"]],
          [{ vector_store_slug: "kb", top_k: 0 }, ["top_k"]],
          [{ vector_store_slug: "kb", top_k: 51 }, ["top_k"]],
          [{ vector_store_slug: "kb", top_k: 2.5 }, ["top_k"]],
          [{ vector_store_slug: "kb", top_k: "5" }, ["top_k"]],
          [{ top_k: 5 }, ["top_k"]],
          [{ vector_store_slug: ["kb"], top_k: -1 }, ["top_k", "vector_store_slug"]]
        ]
        for (const [parameters, wrong] of cases) {
          const error = yield* Effect.flip(createWorkflow(client, parameters))
          expect(error, JSON.stringify(parameters)).toBeInstanceOf(ValidationError)
          expect((error as ValidationError).errors?.map((e) => e.path).sort(), JSON.stringify(parameters)).toEqual(
            wrong.map((name) => `nodes[1].parameters.${name}`)
          )
        }
        // the problem body a client reads, and the same rules on a new version
        const answer = yield* raw("POST", "/api/v1/workflows", {
          token,
          body: {
            slug: newSlug("raw"),
            display_name: "Raw",
            graph: retrievingGraph({ vector_store_slug: "kb", top_k: 51 })
          }
        })
        expect(answer.status).toBe(400)
        expect(answer.body).toMatchObject({
          error: "validation_error",
          errors: [{ path: "nodes[1].parameters.top_k", message: "must be an integer from 1 to 50" }]
        })
        const workflowId = yield* createWorkflow(client, { vector_store_slug: "kb", top_k: 50 })
        const version = yield* Effect.flip(
          client.workflows.createVersion({
            path: { id: workflowId },
            payload: { graph: retrievingGraph({ vector_store_slug: "KB" }) },
            headers: {}
          })
        )
        expect(version).toBeInstanceOf(ValidationError)
        // null means none: an editor's cleared field is no retrieval, not an error
        yield* createWorkflow(client, { vector_store_slug: null, top_k: null })
      }))
  }
)

layer(TestAppOnFakeOpenAi("conversations_retrieval_openai"), { timeout: 120_000 })(
  "retrieval in conversations, OpenAI-compatible model",
  (it) => {
    it.effect("the provider's request carries the retrieved chunks in a system message; the answer cites them", () =>
      Effect.gen(function*() {
        const fake = yield* Fake
        fake.script({ type: "stream", tokens: ["It is", " 330 m."] })
        const { client: admin } = yield* session("rag-openai-admin", { isAdmin: true })
        const { client, token } = yield* session("rag-openai-user")
        const slug = yield* knowledgeStore(admin, "rag-openai")
        const workflowId = yield* createWorkflow(client, {
          vector_store_slug: slug,
          top_k: 2,
          instructions: "Answer from the sources."
        })
        const events = yield* ask(token, workflowId, KNOWLEDGE[0].query)
        expect(answerOf(events)).toBe("It is 330 m.")
        expect(doneAnnotations(events).map((a) => a.source.filename)[0]).toBe("eiffel")

        const body = fake.requests.at(-1)?.body as {
          readonly messages: ReadonlyArray<{ readonly role: string; readonly content: string }>
        }
        expect(body.messages.map((m) => m.role)).toEqual(["system", "system", "user"])
        expect(body.messages[0]?.content).toBe("Answer from the sources.")
        const context = body.messages[1]?.content ?? ""
        expect(context).toContain(`[1] Eiffel Tower (document eiffel)`)
        expect(context).toContain(KNOWLEDGE[0].body)
        expect(context).toMatch(/\[2\] /)
        expect(context).not.toMatch(/\[3\] /)
        expect(body.messages[2]).toEqual({ role: "user", content: KNOWLEDGE[0].query })
        // nothing but the protocol's fields goes to the provider
        expect(Object.keys(body).sort()).not.toContain("sources")
      }))
  }
)

layer(
  TestApp("conversations_retrieval_down", {
    TRUST_PROXY: "1",
    EMBEDDINGS_PROVIDER: "openai",
    OPENAI_API_KEY: "sk-test-not-used",
    // nothing listens on port 9 of the loopback: every embeddings call is refused at once
    OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
    LLM_RETRY_ATTEMPTS: "1"
  }),
  { timeout: 120_000 }
)("retrieval in conversations, embeddings provider down", (it) => {
  it.effect("the turn ends with a retryable error event naming the node and the provider, and stores no answer", () =>
    Effect.gen(function*() {
      const { client: admin } = yield* session("rag-down-admin", { isAdmin: true })
      const { client, token } = yield* session("rag-down-user")
      const store = yield* admin.vectorStores.create({ payload: { slug: newSlug("down"), title: "Down" } })
      const workflowId = yield* createWorkflow(client, { vector_store_slug: store.slug })
      const events = yield* ask(token, workflowId, "is anyone there")
      const error = events.at(-1)
      expect(error).toMatchObject({ type: "error", code: "stream.error", allow_retry: true })
      expect(error?.message).toMatch(
        new RegExp(`^Node "answer": the vector store "${store.slug}" could not be searched \\(The embeddings provider`)
      )
      expect(JSON.stringify(events)).not.toContain("sk-test-not-used")
      expect(events.some((e) => e.type === "thread.item.added")).toBe(false)
    }))
})
