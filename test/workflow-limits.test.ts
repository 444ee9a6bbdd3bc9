import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import fc from "fast-check"
import { it } from "vitest"

import { GraphInput, inspectJsonField, JSON_FIELD_LIMITS, normalizeGraph } from "../src/domain/Workflow.js"
import { MAX_GRAPH_BYTES, validateGraph } from "../src/features/workflows/Graph.js"
import { TestApp } from "./support/app.js"
import { randomIp, runId, session } from "./support/session.js"

/**
 * Issue 8 ("hostile input"), free-form graph fields: a node's `parameters` / `metadata` and an
 * edge's `metadata` are bounded (JSON_FIELD_LIMITS), and so is a version's whole graph
 * (MAX_GRAPH_BYTES). Hostile bodies are sent byte for byte through a real socket: each is a 4xx
 * that names the path and never echoes the value, never a 201, a 500 or a stall.
 */

const L = JSON_FIELD_LIMITS

/** `depth` objects nested inside one another, the innermost holding `leaf`. */
const nested = (depth: number, leaf: unknown = "leaf"): Record<string, unknown> => {
  let value: unknown = leaf
  for (let i = 0; i < depth; i++) value = { d: value }
  return value as Record<string, unknown>
}

const utf8 = (value: unknown) => Buffer.byteLength(JSON.stringify(value), "utf8")

describe("inspectJsonField (unit)", () => {
  it("accepts every bound exactly and refuses one more", () => {
    // depth: the field is level 0, `nested(9)` has 8 levels of objects inside it
    expect(inspectJsonField(nested(9))).toBeUndefined()
    expect(inspectJsonField(nested(10))?.message).toContain("at most 8 levels")
    expect(inspectJsonField(nested(10))?.path).toEqual(Array(9).fill("d"))
    const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]))
    expect(inspectJsonField(keys(L.keys))).toBeUndefined()
    expect(inspectJsonField(keys(L.keys + 1))).toEqual({ path: [], message: "must be an object of at most 100 keys" })
    expect(inspectJsonField({ s: "x".repeat(L.stringLength) })).toBeUndefined()
    expect(inspectJsonField({ s: "x".repeat(L.stringLength + 1) })).toEqual({
      path: ["s"],
      message: "must be a string of at most 10000 characters"
    })
    expect(inspectJsonField({ a: Array(L.arrayItems).fill(0) })).toBeUndefined()
    expect(inspectJsonField({ a: Array(L.arrayItems + 1).fill(0) })?.message).toBe(
      "must be an array of at most 1000 items"
    )
    expect(inspectJsonField({ ["k".repeat(L.keyLength)]: 1 })).toBeUndefined()
    expect(inspectJsonField({ ["k".repeat(L.keyLength + 1)]: 1 })?.message).toBe("keys must be at most 200 characters")
    // bytes: four strings of 8,000 characters are 32,000 bytes + keys and punctuation; one more key tips it over
    const big: Record<string, string> = {
      a: "x".repeat(8000),
      b: "x".repeat(8000),
      c: "x".repeat(8000),
      d: "x".repeat(8000)
    }
    const room = L.bytes - utf8(big)
    expect(room).toBeGreaterThan(0)
    // ,"e":"…" is 7 bytes + its length
    expect(utf8({ ...big, e: "y".repeat(room - 7) })).toBe(L.bytes)
    expect(inspectJsonField({ ...big, e: "y".repeat(room - 7) })).toBeUndefined()
    expect(inspectJsonField({ ...big, e: "y".repeat(room - 6) })).toEqual({
      path: [],
      message: "must be at most 32768 bytes serialised as JSON"
    })
    // the longest string fits in any script: 10,000 three-byte characters
    expect(inspectJsonField({ prompt: "€".repeat(L.stringLength) })).toBeUndefined()
  })

  it("counts the serialised size exactly (compact UTF-8 JSON), for any JSON object", () => {
    const generous = {
      depth: 100,
      keys: 10_000,
      keyLength: 10_000,
      stringLength: 100_000,
      arrayItems: 100_000,
      bytes: 0
    }
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: "binary" }), fc.jsonValue()), (value) => {
        // only the size is under test: skip values another bound refuses (NUL, lone surrogates)
        fc.pre(inspectJsonField(value, { ...generous, bytes: Number.MAX_SAFE_INTEGER }) === undefined)
        const size = utf8(value) // what JSON.stringify writes (-0 as 0, escapes and all)
        expect(inspectJsonField(value, { ...generous, bytes: size })).toBeUndefined()
        expect(inspectJsonField(value, { ...generous, bytes: size - 1 })?.message).toContain("bytes serialised as JSON")
      }),
      { numRuns: 300 }
    )
  })

  it("walks 100,000 levels of nesting without recursion, and stops at the first bound", () => {
    let deep: unknown = 1
    for (let i = 0; i < 100_000; i++) deep = [deep]
    const started = performance.now()
    expect(inspectJsonField({ deep })?.message).toContain("at most 8 levels")
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(inspectJsonField(cyclic)?.message).toContain("at most 8 levels")
    const wide = { a: Array.from({ length: 1000 }, () => Array(1000).fill(0)) }
    expect(inspectJsonField(wide)?.message).toContain("bytes serialised as JSON")
    expect(performance.now() - started).toBeLessThan(2000)
  })

  it("refuses what is not plain, storable JSON", () => {
    for (
      const bad of [
        1n,
        undefined,
        () => 1,
        Symbol("s"),
        NaN,
        Infinity,
        new Date(0),
        new Map(),
        "a\u0000b",
        "\uD800"
      ]
    ) {
      const problem = inspectJsonField({ v: bad })
      expect(problem?.path, String(typeof bad)).toEqual(["v"])
    }
    expect(inspectJsonField({ "a\u0000": 1 })?.message).toContain("keys must be text")
    for (const notObject of [null, [], "x", 1, new Date(0)]) {
      expect(inspectJsonField(notObject)?.message).toBe("must be a JSON object")
    }
    // a key that is long or unusual is not named in the path
    expect(inspectJsonField({ ["secret key!"]: { v: 1n } })?.path).toEqual(["(key)", "v"])
  })

  it("decoding never echoes the value, and every field of a node and edge is bounded", () => {
    const secret = "hunter2-" + "s".repeat(20_000)
    const result = Schema.decodeUnknownEither(GraphInput)({
      nodes: [{
        slug: secret,
        kind: secret,
        display_name: secret,
        parameters: { s: secret },
        metadata: secret,
        is_enabled: secret
      }],
      edges: [{ source: "a", target: "b", condition: secret, metadata: { x: [secret] } }]
    }, { errors: "all" })
    expect(result._tag).toBe("Left")
    const text = String(result._tag === "Left" ? result.left.message : "")
    expect(text).not.toContain("hunter2")
  })
})

describe("validateGraph: a version's total size", () => {
  it(`refuses a graph over ${MAX_GRAPH_BYTES} bytes with one issue on "graph", accepts one just under`, () => {
    const within = (n: number, size: number) =>
      normalizeGraph({
        nodes: [
          { slug: "start", kind: "start" },
          ...Array.from(
            { length: n },
            (_, i) => ({ slug: `n${i}`, kind: "agent", parameters: { p: "x".repeat(size) } })
          ),
          { slug: "end", kind: "end" }
        ],
        edges: [
          { source: "start", target: "n0" },
          ...Array.from({ length: n - 1 }, (_, i) => ({ source: `n${i}`, target: `n${i + 1}` })),
          { source: `n${n - 1}`, target: "end" }
        ]
      })
    const big = within(60, 9_000)
    expect(utf8(big)).toBeGreaterThan(MAX_GRAPH_BYTES)
    const issues = validateGraph(big)
    expect(issues).toHaveLength(1)
    expect(issues[0]?.path).toBe("graph")
    expect(issues[0]?.message).toContain(`at most ${MAX_GRAPH_BYTES} bytes`)
    const small = within(50, 9_000)
    expect(utf8(small)).toBeLessThan(MAX_GRAPH_BYTES)
    expect(validateGraph(small)).toEqual([])
  })
})

let slugCounter = 0
const newSlug = (name: string) => `${name}-${runId}-${++slugCounter}`

/** The part of a graph these tests read back. */
interface GraphShape {
  readonly nodes: ReadonlyArray<{ readonly parameters: unknown; readonly metadata: unknown }>
  readonly edges: ReadonlyArray<{ readonly metadata: unknown }>
}

interface Answer {
  readonly status: number
  readonly text: string
  readonly body: Record<string, unknown>
}

/** POST `text` exactly as given, as application/json, through the app's socket. */
const postText = (path: string, token: string, text: string) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const request = HttpClientRequest.post(path).pipe(
      HttpClientRequest.setHeader("x-forwarded-for", randomIp()),
      HttpClientRequest.bearerToken(token),
      HttpClientRequest.bodyText(text, "application/json")
    )
    const response = yield* client.execute(request)
    const body = yield* response.text
    let parsed: Record<string, unknown> = {}
    try {
      parsed = JSON.parse(body)
    } catch {
      parsed = {}
    }
    return { status: response.status, text: body, body: parsed } satisfies Answer
  }).pipe(Effect.timeout("30 seconds"))

const get = (path: string, token: string) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(
      HttpClientRequest.get(path).pipe(
        HttpClientRequest.setHeader("x-forwarded-for", randomIp()),
        HttpClientRequest.bearerToken(token)
      )
    )
    return {
      status: response.status,
      body: (yield* response.json) as Record<string, unknown> & {
        readonly errors?: unknown
        readonly graph?: GraphShape
      }
    }
  })

/** start → agent → end, the agent's `parameters` / `metadata` and the first edge's `metadata` as given. */
const graphWith = (fields: { parameters?: unknown; metadata?: unknown; edgeMetadata?: unknown }) => ({
  nodes: [
    { slug: "start", kind: "start" },
    {
      slug: "agent",
      kind: "agent",
      ...(fields.parameters === undefined ? {} : { parameters: fields.parameters }),
      ...(fields.metadata === undefined ? {} : { metadata: fields.metadata })
    },
    { slug: "end", kind: "end" }
  ],
  edges: [
    {
      source: "start",
      target: "agent",
      ...(fields.edgeMetadata === undefined ? {} : { metadata: fields.edgeMetadata })
    },
    { source: "agent", target: "end" }
  ]
})

const createBody = (graph: unknown) => JSON.stringify({ slug: newSlug("lim"), display_name: "Limits", graph })

interface Issue {
  readonly path: string
  readonly message: string
}
const issuesOf = (answer: Answer) => (answer.body.errors ?? []) as ReadonlyArray<Issue>

/** A 400 validation_error, small, not echoing `secret`, with an issue whose path contains `pathPart`. */
const expectRefused = (answer: Answer, pathPart: string, secret: string) => {
  expect(answer.status, answer.text.slice(0, 500)).toBe(400)
  expect(answer.body.error).toBe("validation_error")
  expect(issuesOf(answer).some((issue) => issue.path.includes(pathPart)), JSON.stringify(issuesOf(answer))).toBe(true)
  expect(answer.text).not.toContain(secret)
  expect(answer.text.length).toBeLessThan(8_000)
}

layer(TestApp("workflow-limits", { TRUST_PROXY: "1" }), { timeout: 180_000 })(
  "workflow graph limits over HTTP",
  (it) => {
    it.effect("a node parameter of a 200 KB or a 1 MB string is a 400 naming the path, without the string", () =>
      Effect.gen(function*() {
        const { token } = yield* session("lim-string")
        const secret = "s3cr3t-" + "x".repeat(200_000)
        const answer = yield* postText(
          "/api/v1/workflows",
          token,
          createBody(graphWith({ parameters: { prompt: secret } }))
        )
        expectRefused(answer, "parameters", "s3cr3t")
        expect(issuesOf(answer).find((issue) => issue.path.includes("parameters"))?.message).toBe(
          "must be a string of at most 10000 characters"
        )
        // a 1,000,000-character string still fits in the 1 MiB body: the same 400
        const million = "m1ll10n-" + "x".repeat(1_000_000)
        const body = createBody(graphWith({ parameters: { prompt: million } }))
        expect(body.length).toBeLessThan(1024 * 1024)
        expectRefused(yield* postText("/api/v1/workflows", token, body), "parameters", "m1ll10n")
        // and nothing was created
        expect((yield* get("/api/v1/workflows", token)).body.total).toBe(0)
      }))

    it.effect("metadata of 100,000 keys is a 413 over the body limit and a 400 under it, never 201 or 500", () =>
      Effect.gen(function*() {
        const { token } = yield* session("lim-keys")
        // built as text so the exact bytes are known: {"k000000":0,...}
        const keys = Array.from({ length: 100_000 }, (_, i) => `"k${String(i).padStart(6, "0")}":0`).join(",")
        const text = createBody(graphWith({ metadata: { __KEYS__: 0 } })).replace(`{"__KEYS__":0}`, `{${keys}}`)
        expect(text.length).toBeGreaterThan(1_000_000)
        const answer = yield* postText("/api/v1/workflows", token, text)
        expect([400, 413], answer.text.slice(0, 500)).toContain(answer.status) // 413: 1.2 MB
        expect(answer.text).not.toContain("k000123")
        expect(answer.text.length).toBeLessThan(8_000)
        // 100,000 shorter keys ("1a2b":0) fit under the 1 MiB body limit: then the bound on keys refuses them
        const compact = Array.from({ length: 100_000 }, (_, i) => `"${i.toString(36)}":0`).join(",")
        const underLimit = createBody(graphWith({ metadata: { __KEYS__: 0 } })).replace(
          `{"__KEYS__":0}`,
          `{${compact}}`
        )
        expect(underLimit.length).toBeLessThan(1024 * 1024)
        const smaller = yield* postText("/api/v1/workflows", token, underLimit)
        expectRefused(smaller, "metadata", `"${(12345).toString(36)}"`)
        expect((yield* get("/api/v1/workflows", token)).body.total).toBe(0)
      }))

    it.effect("parameters nested 50 levels deep are a 400 at the 9th level; edge metadata too", () =>
      Effect.gen(function*() {
        const { token } = yield* session("lim-deep")
        const answer = yield* postText(
          "/api/v1/workflows",
          token,
          createBody(graphWith({ parameters: nested(50, "deep-leaf") }))
        )
        expectRefused(answer, "parameters", "deep-leaf")
        const issue = issuesOf(answer).find((i) => i.path.includes("parameters"))
        expect(issue?.message).toBe("objects and arrays may be nested at most 8 levels deep inside this field")
        expect(issue?.path).toContain("parameters.d.d.d.d.d.d.d.d.d")
        const edge = yield* postText(
          "/api/v1/workflows",
          token,
          createBody(graphWith({ edgeMetadata: { a: nested(20) } }))
        )
        expectRefused(edge, "edges", "leaf")
      }))

    it.effect("NUL characters, arrays over 1,000 items and non-objects are 400s, never 500s", () =>
      Effect.gen(function*() {
        const { token } = yield* session("lim-misc")
        const nul = yield* postText(
          "/api/v1/workflows",
          token,
          createBody(graphWith({ parameters: { text: "a\u0000b" } }))
        )
        expect(nul.status, nul.text).toBe(400)
        const array = yield* postText(
          "/api/v1/workflows",
          token,
          createBody(graphWith({ metadata: { a: Array(1001).fill(7) } }))
        )
        expectRefused(array, "metadata", "7,7,7")
        const notObject = yield* postText(
          "/api/v1/workflows",
          token,
          createBody(graphWith({ parameters: ["hidden-value"] }))
        )
        expectRefused(notObject, "parameters", "hidden-value")
      }))

    it.effect("a version over 512 KiB (every field within its own bounds) is a 400 on `graph`", () =>
      Effect.gen(function*() {
        const { token } = yield* session("lim-total")
        const n = 70
        const graph = {
          nodes: [
            { slug: "start", kind: "start" },
            ...Array.from(
              { length: n },
              (_, i) => ({ slug: `n${i}`, kind: "agent", parameters: { p: "x".repeat(8_000) } })
            ),
            { slug: "end", kind: "end" }
          ],
          edges: [
            { source: "start", target: "n0" },
            ...Array.from({ length: n - 1 }, (_, i) => ({ source: `n${i}`, target: `n${i + 1}` })),
            { source: `n${n - 1}`, target: "end" }
          ]
        }
        const text = createBody(graph)
        expect(text.length).toBeGreaterThan(MAX_GRAPH_BYTES)
        expect(text.length).toBeLessThan(1024 * 1024)
        const answer = yield* postText("/api/v1/workflows", token, text)
        expectRefused(answer, "graph", "xxxxxxxxxx")
        expect(issuesOf(answer)).toEqual([{
          path: "graph",
          message: expect.stringContaining(`at most ${MAX_GRAPH_BYTES} bytes`)
        }])
      }))

    it.effect("import (admin) applies the same bounds", () =>
      Effect.gen(function*() {
        const { token } = yield* session("lim-import", { isAdmin: true })
        const answer = yield* postText(
          "/api/v1/workflows/import",
          token,
          JSON.stringify({
            slug: newSlug("imp"),
            display_name: "Imp",
            graph: graphWith({ parameters: nested(30, "imported-leaf") })
          })
        )
        expectRefused(answer, "parameters", "imported-leaf")
      }))

    it.effect("a graph at the limits is a 201 and reads back unchanged", () =>
      Effect.gen(function*() {
        const { token } = yield* session("lim-ok")
        const parameters = {
          instructions: "€".repeat(L.stringLength), // 30,000 bytes of one string of the longest length
          deep: nested(7, [1, 2.5, -3, true, false, null, "ü😀"]), // `deep` is level 1, the array level 8
          "unusual key: ✓": "kept as is"
        }
        const metadata = {
          ...Object.fromEntries(Array.from({ length: L.keys - 2 }, (_, i) => [`k${i}`, i])),
          list: Array(L.arrayItems).fill(1),
          name: "x".repeat(L.keyLength)
        }
        const edgeMetadata = { label: "go", [`${"k".repeat(L.keyLength)}`]: { nested: [[[]]] } }
        expect(inspectJsonField(parameters)).toBeUndefined()
        expect(utf8(parameters)).toBeGreaterThan(30_000)
        expect(Object.keys(metadata)).toHaveLength(L.keys)
        const answer = yield* postText(
          "/api/v1/workflows",
          token,
          createBody(graphWith({ parameters, metadata, edgeMetadata }))
        )
        expect(answer.status, answer.text.slice(0, 500)).toBe(201)
        const created = answer.body as unknown as { id: number; active_version: { id: number; graph: GraphShape } }
        const check = (graph: GraphShape | undefined) => {
          expect(graph?.nodes[1]?.parameters).toEqual(parameters)
          expect(graph?.nodes[1]?.metadata).toEqual(metadata)
          expect(graph?.edges[0]?.metadata).toEqual(edgeMetadata)
        }
        check(created.active_version.graph)
        const read = yield* get(`/api/v1/workflows/${created.id}/versions/${created.active_version.id}`, token)
        expect(read.status).toBe(200)
        check(read.body.graph)
        // its export imports back (same bounds on the way in)
        const exported = yield* get(
          `/api/v1/workflows/${created.id}/versions/${created.active_version.id}/export`,
          token
        )
        const admin = yield* session("lim-ok-admin", { isAdmin: true })
        const imported = yield* postText(
          "/api/v1/workflows/import",
          admin.token,
          JSON.stringify({ slug: newSlug("reimp"), display_name: "Re", graph: exported.body.graph })
        )
        expect(imported.status, imported.text.slice(0, 500)).toBe(201)
        check((imported.body as unknown as { active_version: { graph: GraphShape } }).active_version.graph)
      }))
  }
)
