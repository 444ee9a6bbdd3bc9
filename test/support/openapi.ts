import fc from "fast-check"

/*
 * Requests derived from the OpenAPI document for fuzzing: every operation, its path, query, header
 * and body parameters, each value either what the schema asks for or something hostile.
 */

/** The part of a JSON Schema (as `OpenApi.fromApi` writes it) the generators read. */
export interface JsonSchema {
  readonly $ref?: string
  readonly type?: string
  readonly enum?: ReadonlyArray<unknown>
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly properties?: Readonly<Record<string, JsonSchema>>
  readonly required?: ReadonlyArray<string>
  readonly additionalProperties?: boolean | JsonSchema
  readonly items?: JsonSchema
  readonly minLength?: number
  readonly maxLength?: number
  readonly minimum?: number
  readonly maximum?: number
  readonly exclusiveMinimum?: number
  readonly maxItems?: number
  readonly pattern?: string
  readonly format?: string
  readonly description?: string
  readonly examples?: ReadonlyArray<unknown>
}

interface Parameter {
  readonly name: string
  readonly in: "path" | "query" | "header"
  readonly required?: boolean
  readonly schema: JsonSchema
}

interface OperationObject {
  readonly operationId: string
  readonly parameters?: ReadonlyArray<Parameter>
  readonly requestBody?: { readonly content: Record<string, { readonly schema: JsonSchema }> }
  readonly security?: ReadonlyArray<Record<string, unknown>>
}

export interface OpenApiDocument {
  readonly paths: Record<string, Record<string, OperationObject>>
  readonly components: { readonly schemas: Record<string, JsonSchema> }
}

export interface Operation {
  readonly id: string
  readonly method: string
  /** the template, `/api/v1/workflows/{id}` */
  readonly path: string
  readonly parameters: ReadonlyArray<Parameter>
  readonly body: JsonSchema | undefined
  /** needs a bearer token (user or admin; the document does not tell them apart) */
  readonly secured: boolean
}

export const operationsOf = (doc: OpenApiDocument): ReadonlyArray<Operation> =>
  Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({
      id: op.operationId,
      method: method.toUpperCase(),
      path,
      parameters: op.parameters ?? [],
      body: op.requestBody?.content["application/json"]?.schema,
      secured: (op.security ?? []).some((scheme) => "bearer" in scheme)
    }))
  )

/**
 * What no response may hold: stack frames, source paths, engine error names, SQL. Generated text
 * is scrubbed of the same patterns, so an answer that echoes what it was sent never trips them.
 */
export const LEAK_PATTERNS: ReadonlyArray<RegExp> = [
  /\/work\b/,
  /\bsrc\//,
  /\.ts:/,
  /node_modules/,
  /^\s*at .+:\d+:\d+\)?$/m,
  /\b(?:Type|Syntax|Range|Reference)Error\b/,
  /\bSQLSTATE\b/,
  /\b(?:SELECT .+ FROM|INSERT INTO|UPDATE \S+ SET|DELETE FROM)\b/,
  /syntax error at or near|violates (?:not-null|unique|foreign key|check) constraint|duplicate key value/,
  /invalid input syntax for|relation "[^"]+" does not exist/
]

const scrub = (text: string) =>
  LEAK_PATTERNS.reduce((clean, pattern) => clean.replace(new RegExp(pattern.source, "gim"), "_"), text)

/** Fields whose values are secrets: no answer may contain what was sent in them. */
export const SECRET_KEY = /password|token|secret|api_key/i

/** A distinctive secret, long enough that finding it in an answer is no coincidence. */
const secretText = fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 16, maxLength: 24 })
  .map((hex) => `Secret-${hex}`)

/** The generated secrets wherever they appear in a text. */
export const SECRET_TEXT = /Secret-[0-9a-f]{16,24}/g

const controlText = fc.string({ unit: fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)) })

/** Strings a careless server chokes on: NUL, lone surrogates, controls, direction marks, huge. */
const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  { weight: 2, arbitrary: controlText },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "",
      " ",
      "\u0000",
      "a\u0000b",
      "\ud800",
      "\udfff",
      "a\ud800b",
      "\udc00\ud800",
      "\u202eevil",
      "\ufeff",
      "\uffff",
      "\u200b\u200d",
      "e\u0301\u0301\u0301",
      "\u{1F600}",
      "null",
      "true",
      "-1",
      "0",
      "1e400",
      "NaN",
      "2026-13-45T99:99:99Z",
      "../../etc/passwd",
      "' OR 1=1 --",
      "<script>alert(1)</script>",
      "%00",
      "${jndi:ldap://x}"
    )
  },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 120_000 }).map((n) => "é".repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 300, max: 5_000 }).map((n) => "x".repeat(n)) }
).map(scrub)

const hostileNumber = fc.oneof(
  fc.constantFrom(
    -1,
    0,
    -0,
    0.5,
    1.5,
    -1.5,
    1e308,
    -1e308,
    2 ** 31,
    2 ** 31 - 1,
    2 ** 53 + 2,
    2 ** 63,
    -(2 ** 53),
    Number.MIN_VALUE,
    1e-7,
    1e21
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer()
)

const nest = (depth: number, asArray: boolean): unknown => {
  let value: unknown = 1
  for (let i = 0; i < depth; i++) value = asArray ? [value] : { a: value }
  return value
}

/** Keys no schema declares: prototype names, bad text, long ones; never a secret name. */
const hostileKey = fc.oneof(
  fc.constantFrom("__proto__", "constructor", "prototype", "extra", "\u0000", "\ud800", "", "x".repeat(300)),
  fc.string({ unit: "binary", maxLength: 12 })
).map(scrub).filter((key) => !SECRET_KEY.test(key))

/** A JSON value of any type, shape or size: what to send where a schema expects something else. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  { weight: 3, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.constantFrom(true, false, null, [], {}) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 10, max: 120 }), fc.boolean()).map(([d, a]) => nest(d, a)) },
  { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 5 }) },
  { weight: 1, arbitrary: fc.dictionary(hostileKey, hostileString, { maxKeys: 4 }) },
  // own __proto__ / constructor keys, which object spreading and merging mishandle
  {
    weight: 1,
    arbitrary: fc.constant(JSON.parse("{\"__proto__\":{\"is_admin\":true},\"constructor\":{\"prototype\":1}}"))
  }
)

/** Values the test knows exist, so well-formed requests reach rows instead of 404s. */
export interface Pools {
  readonly ids: ReadonlyArray<number>
  readonly emails: ReadonlyArray<string>
  /** strings that exist, by the pattern of the schema they are for (slugs, thread ids) */
  readonly byPattern: Readonly<Record<string, ReadonlyArray<string>>>
}

type Mode = "valid" | "fuzz"

const numeric = (schema: JsonSchema) => schema.description?.includes("decoded into a number") === true
const isEmail = (schema: JsonSchema) => schema.examples?.some((e) => typeof e === "string" && e.includes("@")) === true

const CHATKIT_TYPES = [
  "threads.create",
  "threads.add_user_message",
  "threads.get_by_id",
  "threads.list",
  "threads.update",
  "threads.delete",
  "threads.retry_after_item",
  "threads.custom_action",
  "items.list",
  "items.feedback",
  "attachments.create",
  "nonsense.type"
]

/**
 * Generates values for the schemas of one document: `valid` follows the schema (within small
 * bounds), `fuzz` replaces any node by a hostile value, drops required fields and adds unknown ones.
 */
export const makeGenerators = (doc: OpenApiDocument, pools: Pools) => {
  const resolve = (schema: JsonSchema): JsonSchema => {
    if (schema.$ref === undefined) return schema
    const name = schema.$ref.replace("#/components/schemas/", "")
    const target = doc.components.schemas[name]
    if (target === undefined) throw new Error(`unresolved $ref ${schema.$ref}`)
    return resolve(target)
  }

  const text = (schema: JsonSchema): fc.Arbitrary<string> => {
    if (schema.enum !== undefined) return fc.constantFrom(...schema.enum.map(String))
    if (numeric(schema)) {
      return fc.oneof(fc.constantFrom(...pools.ids), fc.integer({ min: 1, max: 100 })).map(String)
    }
    if (isEmail(schema)) return fc.oneof(fc.constantFrom(...pools.emails), fc.emailAddress())
    if (schema.format === "date-time") {
      return fc.date({ min: new Date("1990-01-01"), max: new Date("2100-01-01"), noInvalidDate: true })
        .map((d) => d.toISOString())
    }
    if (schema.pattern !== undefined) {
      const matching = fc.stringMatching(new RegExp(schema.pattern))
      const known = pools.byPattern[schema.pattern] ?? []
      return known.length === 0 ? matching : fc.oneof(fc.constantFrom(...known), matching)
    }
    const minLength = schema.minLength ?? 0
    return fc.string({ minLength, maxLength: Math.min(schema.maxLength ?? 40, minLength + 40) }).map(scrub)
      .filter((s) => s.length >= minLength)
  }

  const integer = (schema: JsonSchema) => {
    const min = schema.minimum ?? (schema.exclusiveMinimum === undefined ? -5 : schema.exclusiveMinimum + 1)
    const max = Math.min(schema.maximum ?? min + 20, min + 20)
    const known = pools.ids.filter((id) => id >= min && id <= max)
    return known.length === 0 ? fc.integer({ min, max }) : fc.oneof(fc.constantFrom(...known), fc.integer({ min, max }))
  }

  /** An object per its properties: required keys always, optional ones sometimes. */
  const object = (schema: JsonSchema, mode: Mode, depth: number): fc.Arbitrary<Record<string, unknown>> => {
    const properties = schema.properties ?? {}
    const model: Record<string, fc.Arbitrary<unknown>> = {}
    for (const [key, property] of Object.entries(properties)) model[key] = field(key, property, mode, depth + 1)
    const declared = fc.record(model, { requiredKeys: [...(schema.required ?? [])] })
    const free: fc.Arbitrary<Record<string, unknown>> = schema.additionalProperties === true
      ? fc.dictionary(
        fc.string({ maxLength: 12 }).map(scrub).filter((k) => !SECRET_KEY.test(k)),
        fc.jsonValue({ maxDepth: 2 }),
        { maxKeys: 3 }
      )
      : fc.constant({})
    const base = fc.tuple(declared, free).map(([d, f]): Record<string, unknown> => ({ ...f, ...d }))
    if (mode === "valid") return base
    return fc.tuple(base, fc.nat(9), hostileKey, hostileValue).map(([value, mutation, key, extra]) => {
      const required = schema.required ?? []
      if (mutation === 0 && required.length > 0) {
        const { [required[key.length % required.length] ?? ""]: _, ...rest } = value
        return rest
      }
      if (mutation === 1) return { ...value, [key]: extra }
      return value
    })
  }

  /** A property's value; secret fields get distinctive text, so an echo of it can be recognised. */
  const field = (key: string, schema: JsonSchema, mode: Mode, depth: number): fc.Arbitrary<unknown> => {
    if (!SECRET_KEY.test(key)) return value(schema, mode, depth)
    const secret = resolve(schema).type === "string" ? secretText : value(schema, "valid", depth)
    if (mode === "valid") return secret
    return fc.oneof(
      { weight: 6, arbitrary: secret },
      { weight: 1, arbitrary: secretText.map((s) => [s]) },
      { weight: 1, arbitrary: secretText.map((s) => ({ value: s })) },
      { weight: 1, arbitrary: secretText.map((s) => s.repeat(30)) },
      { weight: 1, arbitrary: hostileValue }
    )
  }

  const THREAD_ID = "^thr_[0-9a-f]{16}$"
  const threadId = text({ type: "string", pattern: THREAD_ID })
  const itemId = fc.stringMatching(/^msg_[0-9a-f]{16}$/)
  const sometimesHostile = <A>(arbitrary: fc.Arbitrary<A>, mode: Mode) =>
    mode === "valid" ? arbitrary : fc.oneof({ weight: 6, arbitrary }, { weight: 1, arbitrary: hostileValue })

  /** `{type, params, metadata?}` of the ChatKit endpoint, which the document only describes in words. */
  const chatkitRequest = (mode: Mode) =>
    fc.record({
      type: mode === "valid" ? fc.constantFrom(...CHATKIT_TYPES.slice(0, 10)) : fc.constantFrom(...CHATKIT_TYPES),
      params: fc.record({
        thread_id: sometimesHostile(threadId, mode),
        item_id: sometimesHostile(itemId, mode),
        item_ids: sometimesHostile(fc.array(itemId, { minLength: 1, maxLength: 3 }), mode),
        kind: sometimesHostile(fc.constantFrom("positive", "negative"), mode),
        title: sometimesHostile(fc.string({ minLength: 1, maxLength: 30 }).map((t) => `t${scrub(t)}`), mode),
        limit: sometimesHostile(fc.integer({ min: 1, max: 100 }), mode),
        order: sometimesHostile(fc.constantFrom("asc", "desc"), mode),
        input: sometimesHostile(
          fc.record({
            content: fc.array(
              fc.record({
                type: fc.constant("input_text"),
                text: fc.string({ maxLength: 60 }).map((t) => `hi ${scrub(t)}`)
              }),
              { minLength: 1, maxLength: 2 }
            )
          }),
          mode
        )
      }, { requiredKeys: mode === "valid" ? ["thread_id", "input"] : [] }),
      metadata: fc.record({ workflow_id: sometimesHostile(fc.constantFrom(...pools.ids), mode) }, { requiredKeys: [] })
    }, { requiredKeys: mode === "valid" ? ["type", "params"] : ["type"] })

  /** A graph that passes its validation (a start, a chain of nodes, an end), when valid. */
  const graphInput = (mode: Mode) =>
    fc.array(fc.constantFrom("assistant_message", "agent", "state", "condition", "wait_for_user_input"), {
      maxLength: 4
    })
      .chain((middle) => {
        const kinds = ["start", ...middle, "end"]
        const slugs = kinds.map((_, i) => `n${i}`)
        return fc.record({
          nodes: fc.tuple(...kinds.map((kind, i) =>
            fc.record({
              slug: sometimesHostile(fc.constant(slugs[i]), mode),
              kind: sometimesHostile(fc.constant(kind), mode),
              parameters: sometimesHostile(fc.constant({}), mode),
              metadata: sometimesHostile(fc.jsonValue({ maxDepth: 2 }).map((value) => ({ value })), mode)
            }, { requiredKeys: ["slug", "kind"] })
          )),
          edges: fc.tuple(
            ...slugs.slice(1).map((target, i) =>
              fc.record({ source: sometimesHostile(fc.constant(slugs[i]), mode), target: fc.constant(target) })
            )
          )
        })
      })

  /** Schemas whose constraints the document cannot show (free text, a trimmed pattern), by component. */
  const hints: Record<string, (mode: Mode) => fc.Arbitrary<unknown>> = {
    ChatkitRequest: chatkitRequest,
    GraphInput: graphInput,
    // two fixed slugs besides random ones, so concurrent creates collide on the unique key
    WorkflowSlug: (mode) =>
      sometimesHostile(
        fc.oneof(fc.constantFrom("fuzz-a", "fuzz-b"), fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/)),
        mode
      )
  }

  const structural = (raw: JsonSchema, mode: Mode, depth: number): fc.Arbitrary<unknown> => {
    const hint = hints[raw.$ref?.replace("#/components/schemas/", "") ?? ""]
    if (hint !== undefined) return hint(mode)
    const schema = resolve(raw)
    if (depth > 6) return fc.constant(null)
    if (schema.anyOf !== undefined) return fc.oneof(...schema.anyOf.map((member) => value(member, mode, depth)))
    if (schema.enum !== undefined) return fc.constantFrom(...schema.enum)
    switch (schema.type) {
      case "string":
        return text(schema)
      case "integer":
        return integer(schema)
      case "number":
        return fc.double({ min: schema.minimum ?? -100, max: schema.maximum ?? 100, noNaN: true })
      case "boolean":
        return fc.boolean()
      case "null":
        return fc.constant(null)
      case "array":
        return fc.array(value(schema.items ?? {}, mode, depth + 1), { maxLength: Math.min(schema.maxItems ?? 3, 3) })
      case "object":
        return object(schema, mode, depth)
      default:
        return fc.jsonValue({ maxDepth: 2 })
    }
  }

  const value = (schema: JsonSchema, mode: Mode, depth: number): fc.Arbitrary<unknown> =>
    mode === "valid"
      ? structural(schema, mode, depth)
      : fc.oneof({ weight: 8, arbitrary: structural(schema, mode, depth) }, { weight: 1, arbitrary: hostileValue })

  return {
    /** a value for `schema` as `mode` says */
    value: (schema: JsonSchema, mode: Mode) => value(schema, mode, 0),
    /** a parameter's text as a client would send it */
    parameter: (schema: JsonSchema) => text(resolve(schema))
  }
}

/** Garbage for a URL path segment or query value, already percent-encoded where needed. */
export const garbageSegment = fc.oneof(
  fc.constantFrom(
    "%00",
    "%ZZ",
    "%",
    "..",
    ".",
    "%2F",
    "%2e%2e",
    "-1",
    "0",
    "1.5",
    "1e3",
    "0x1f",
    "99999999999999999999999",
    "9007199254740993",
    "%201",
    "%20",
    "%ED%A0%80",
    "%C0%AF",
    "%F0%9F%98%80",
    "thr_0123",
    "job_",
    "NaN",
    "Infinity"
  ),
  fc.integer({ min: 300, max: 6_000 }).map((n) => "9".repeat(n)),
  hostileString.map((s) => encodeText(s))
)

/** Percent-encodes any JavaScript string, lone surrogates too (as their WTF-8 bytes, which are not UTF-8). */
export const encodeText = (text: string) => {
  let out = ""
  for (const char of text) {
    try {
      out += encodeURIComponent(char)
    } catch {
      const code = char.charCodeAt(0)
      out += [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)]
        .map((byte) => `%${byte.toString(16).toUpperCase()}`).join("")
    }
  }
  return out
}
