import { HttpClient, HttpClientRequest } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"

import { TestApp } from "./support/app.js"
import { randomIp, session } from "./support/session.js"

/*
 * Property: whatever text lands in whatever text field of whatever endpoint (NUL, unpaired
 * surrogates, control characters, long runs), the answer is never a 5xx. The endpoints and their
 * text fields come from the served OpenAPI document, so a new endpoint is covered without a new row.
 */

type JsonSchema = {
  readonly $ref?: string
  readonly type?: string | ReadonlyArray<string>
  readonly properties?: Record<string, JsonSchema>
  readonly required?: ReadonlyArray<string>
  readonly items?: JsonSchema
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly oneOf?: ReadonlyArray<JsonSchema>
  readonly allOf?: ReadonlyArray<JsonSchema>
  readonly enum?: ReadonlyArray<unknown>
  readonly const?: unknown
}

interface Operation {
  readonly method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE"
  readonly path: string
  readonly textQuery: ReadonlyArray<string>
  readonly body: JsonSchema | undefined
}

interface OpenApiDocument {
  readonly paths: Record<
    string,
    Record<string, {
      readonly parameters?: ReadonlyArray<{ readonly name: string; readonly in: string; readonly schema?: JsonSchema }>
      readonly requestBody?: { readonly content: Record<string, { readonly schema: JsonSchema }> }
    }>
  >
  readonly components: { readonly schemas: Record<string, JsonSchema> }
}

const operationsOf = (doc: OpenApiDocument): ReadonlyArray<Operation> =>
  Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({
      method: method.toUpperCase() as Operation["method"],
      // every path parameter is an id; 1 exists for users (the admin), maybe not for the rest
      path: path.replace(/\{[^}]+\}/g, "1"),
      textQuery: (op.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name),
      body: op.requestBody?.content["application/json"]?.schema
    }))
  )

/** A body where every string is `text` and everything else a plausible value, so the strings reach the handlers. */
const bodyOf = (doc: OpenApiDocument, schema: JsonSchema, text: string, depth = 0): unknown => {
  if (schema.$ref !== undefined) {
    return bodyOf(doc, doc.components.schemas[schema.$ref.split("/").pop()!] ?? {}, text, depth)
  }
  if (schema.const !== undefined) return schema.const
  if (schema.enum !== undefined) return schema.enum[0]
  const options = schema.anyOf ?? schema.oneOf ?? schema.allOf
  if (options !== undefined) {
    const chosen = options.find((o) => o.type !== "null") ?? options[0]
    return chosen === undefined ? null : bodyOf(doc, chosen, text, depth)
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type
  if (depth > 4) return null
  switch (type) {
    case "string":
      return text
    case "integer":
    case "number":
      return 1
    case "boolean":
      return true
    case "array":
      return schema.items === undefined ? [] : [bodyOf(doc, schema.items, text, depth + 1)]
    case "object":
      return Object.fromEntries(
        Object.entries(schema.properties ?? {}).map(([k, v]) => [k, bodyOf(doc, v, text, depth + 1)])
      )
    default:
      return text
  }
}

/** Text built from the characters that break storage and parsers, mixed with ordinary ones. */
const hostileText = fc.array(
  fc.oneof(
    fc.constantFrom(
      "\u0000",
      "\ud800",
      "\udbff",
      "\udc00",
      "\udfff",
      "\u0001",
      "\u001f",
      "\u007f",
      "\u2028",
      "\ufeff",
      "\uffff"
    ),
    fc.integer({ min: 0, max: 31 }).map((c) => String.fromCharCode(c)),
    fc.string({ unit: "binary", maxLength: 8 }),
    fc.constantFrom("a", "@", "%00", "\\", "\"", "'", "--", ";", "{}")
  ),
  { minLength: 1, maxLength: 24 }
).map((parts) => parts.join(""))

/** Percent-encodes the UTF-8 bytes (a lone surrogate goes out as U+FFFD, as a browser would send it). */
const percentEncode = (text: string) =>
  Array.from(Buffer.from(text, "utf8"), (byte) => `%${byte.toString(16).padStart(2, "0")}`).join("")

const SEED = Number(process.env.FUZZ_SEED ?? 20261201)

layer(TestApp("hostile_text", { TRUST_PROXY: "1", RATE_LIMIT_API_PER_MINUTE: "100000" }))(
  "hostile text in every text field",
  (it) => {
    it.effect("never gets a 5xx, in a body or in a query parameter", () =>
      Effect.gen(function*() {
        const { token } = yield* session("fuzz-admin", { isAdmin: true })
        const http = yield* HttpClient.HttpClient
        const doc = (yield* Effect.flatMap(http.get("/openapi.json"), (r) => r.json)) as OpenApiDocument
        const operations = operationsOf(doc)
        expect(operations.length).toBeGreaterThan(40)
        const send = (op: Operation, text: string) =>
          Effect.gen(function*() {
            const query = op.textQuery.map((name) => `${encodeURIComponent(name)}=${percentEncode(text)}`).join("&")
            let request = HttpClientRequest.make(op.method)(query === "" ? op.path : `${op.path}?${query}`).pipe(
              HttpClientRequest.setHeader("x-forwarded-for", randomIp()),
              HttpClientRequest.bearerToken(token)
            )
            if (op.body !== undefined) {
              request = HttpClientRequest.bodyText(
                request,
                JSON.stringify(bodyOf(doc, op.body, text)),
                "application/json"
              )
            }
            const response = yield* http.execute(request)
            return { status: response.status, body: yield* response.text }
          })
        const failures: Array<string> = []
        const property = fc.asyncProperty(fc.constantFrom(...operations), hostileText, async (op, text) => {
          const answer = await Effect.runPromise(send(op, text))
          if (answer.status >= 500) {
            failures.push(
              `${op.method} ${op.path} ${JSON.stringify(text)} -> ${answer.status} ${answer.body.slice(0, 200)}`
            )
          }
          return answer.status < 500
        })
        const result = yield* Effect.promise(() => fc.check(property, { numRuns: 400, seed: SEED }))
        expect(failures, `seed ${SEED}`).toEqual([])
        expect(
          result.failed,
          `seed ${SEED}: ${result.counterexample === null ? "" : JSON.stringify(result.counterexample)}`
        ).toBe(false)
      }))
  }
)
