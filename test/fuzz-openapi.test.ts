import { Agent, request } from "node:http"

import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, Schedule } from "effect"
import fc from "fast-check"
import { SignJWT } from "jose"

import { ACCESS_TOKEN_AUDIENCE, ACCESS_TOKEN_ISSUER } from "../src/features/auth/AccessTokens.js"
import { AppConfig } from "../src/platform/Config.js"
import { TestApp } from "./support/app.js"
import { chatkit, eventsOf, say } from "./support/chatkit.js"
import {
  encodeText,
  garbageSegment,
  hostileValue,
  LEAK_PATTERNS,
  makeGenerators,
  type OpenApiDocument,
  type Operation,
  operationsOf,
  SECRET_KEY,
  SECRET_TEXT
} from "./support/openapi.js"
import { largeDocument } from "./support/remote.js"
import { randomIp, raw, session } from "./support/session.js"

/*
 * Fuzzing from the OpenAPI document (issue 13, point 2): requests for every operation, well-formed
 * and hostile, from anonymous, forged, expired and valid callers. Every answer must be below 500,
 * every error the problem+json of API.md with its request id, no answer may hold a stack trace, a
 * source path, SQL or a secret it was sent, and rejected requests leave the database as it was.
 */

const SEED = 20261301
const BATCH = 8
const REJECTED_REQUESTS = 2_000
const MIXED_REQUESTS = 8_000

interface Fixture {
  readonly port: number
  readonly doc: OpenApiDocument
  readonly adminToken: string
  readonly userToken: string
  /** the seeded admin's and user's ids, which the fuzz must not delete or demote */
  readonly actorIds: ReadonlyArray<number>
  readonly emails: ReadonlyArray<string>
  /** a thread of the admin and one of the user */
  readonly threads: ReadonlyArray<string>
  /** ids of rows that exist (the seeded workflow's and its version's among them) */
  readonly ids: ReadonlyArray<number>
  /** documents of the `fuzz-docs` store: one ingested inline, one by a job */
  readonly documents: ReadonlyArray<string>
  /** the job that ingested the large document */
  readonly jobs: ReadonlyArray<string>
  /** tokens that must get a 401: expired, signed with another key, `alg: none`, of no user, garbage */
  readonly refusedTokens: ReadonlyArray<string>
}

class FuzzFixture extends Context.Tag("test/FuzzFixture")<FuzzFixture, Fixture>() {}

const signed = (secret: string, claims: { sub: string; exp: number; type?: string }) =>
  new SignJWT({ type: claims.type ?? "access" })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(claims.sub)
    .setIssuer(ACCESS_TOKEN_ISSUER)
    .setAudience(ACCESS_TOKEN_AUDIENCE)
    .setIssuedAt(claims.exp - 900)
    .setExpirationTime(claims.exp)
    .setJti(crypto.randomUUID())
    .sign(new TextEncoder().encode(secret))

const FixtureLive = Layer.effect(
  FuzzFixture,
  Effect.gen(function*() {
    const admin = yield* session("fuzz-admin", { isAdmin: true })
    const user = yield* session("fuzz-user")
    const secret = Redacted.value((yield* AppConfig).authSecretKey)
    const now = Math.floor(Date.now() / 1000)
    const expired = yield* Effect.promise(() => signed(secret, { sub: String(user.user.id), exp: now - 60 }))
    const otherKey = yield* Effect.promise(() =>
      signed(`${secret}-other`, { sub: String(admin.user.id), exp: now + 600 })
    )
    const noUser = yield* Effect.promise(() => signed(secret, { sub: "999999", exp: now + 600 }))
    const refresh = yield* Effect.promise(() =>
      signed(secret, { sub: String(admin.user.id), exp: now + 600, type: "refresh" })
    )
    const [header, payload] = admin.token.split(".")
    const none = `${Buffer.from("{\"alg\":\"none\",\"typ\":\"JWT\"}").toString("base64url")}.${payload}.`
    // a workflow and a vector store for well-formed ids and slugs to find
    const workflow = yield* raw("POST", "/api/v1/workflows", {
      token: admin.token,
      body: { slug: "fuzz-flow", display_name: "Fuzz flow" }
    })
    const store = yield* raw("POST", "/api/v1/vector-stores", {
      token: admin.token,
      body: { slug: "fuzz-docs", title: "Fuzz docs" }
    })
    expect([workflow.status, store.status]).toEqual([201, 201])
    const small = yield* raw("POST", "/api/v1/vector-stores/fuzz-docs/documents", {
      token: admin.token,
      body: { doc_id: "fuzz-doc", document: { title: "Fuzz", text: "A short document for the fuzz to find." } }
    })
    const large = yield* raw("POST", "/api/v1/vector-stores/fuzz-docs/documents", {
      token: admin.token,
      body: { doc_id: "fuzz-big", document: largeDocument() }
    })
    expect([small.status, large.status]).toEqual([201, 202])
    const threads: Array<string> = []
    for (const token of [admin.token, user.token]) {
      const events = eventsOf(yield* chatkit(token, { type: "threads.create", params: { input: say("Hello fuzz") } }))
      threads.push(events[1]?.thread.id ?? "")
    }
    expect(threads).toEqual([expect.stringMatching(/^thr_/), expect.stringMatching(/^thr_/)])
    // their title jobs run after their turns: settled before any snapshot, or a snapshot would see them land
    yield* Effect.flatMap(
      SqlClient.SqlClient,
      (sql) =>
        sql<{ n: number }>`SELECT count(*)::int AS n FROM jobs WHERE status IN ('queued', 'running')`.pipe(
          Effect.filterOrFail(([row]) => row?.n === 0),
          Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds"))),
          Effect.orDie
        )
    )
    const doc = (yield* raw("GET", "/openapi.json")).body as unknown as OpenApiDocument
    const address = (yield* HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") throw new Error("the test server listens on TCP")
    return {
      port: address.port,
      doc,
      adminToken: admin.token,
      userToken: user.token,
      actorIds: [admin.user.id, user.user.id],
      emails: [admin.user.email, user.user.email, "nobody@example.com"],
      threads,
      ids: [...new Set([1, 2, 3, 4, 5, Number(workflow.body.id), Number(workflow.body.active_version_id)])]
        .filter(Number.isSafeInteger),
      documents: ["fuzz-doc", "fuzz-big"],
      jobs: [String(large.body.job_id)],
      refusedTokens: [
        expired,
        otherKey,
        noUser,
        refresh,
        none,
        `${header}.${payload}.${"A".repeat(43)}`,
        admin.tokens.refresh_token,
        "Secret-not-a-jwt-at-all-0123456789"
      ]
    }
  })
)

// rate limits high, so the fuzz reaches validation and handlers; logs only for problems
const AppLive = FixtureLive.pipe(
  Layer.provideMerge(
    TestApp("fuzz", { TRUST_PROXY: "1", RATE_LIMIT_API_PER_MINUTE: "10000000", LOG_LEVEL: "warning" })
  )
)

interface FuzzRequest {
  readonly operation: string
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer | undefined
  /** what the request carried that no answer may contain */
  readonly secrets: ReadonlyArray<string>
}

interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
  readonly text: string
}

/** One node:http agent: keep-alive, as many sockets as requests in flight. */
const agent = new Agent({ keepAlive: true, maxSockets: BATCH })

const send = (port: number, req: FuzzRequest) =>
  new Promise<Answer>((resolve, reject) => {
    const outgoing = request({
      host: "127.0.0.1",
      port,
      method: req.method,
      path: req.path,
      headers: req.headers,
      agent
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on(
        "end",
        () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") })
      )
      res.on("error", reject)
    })
    outgoing.setTimeout(20_000, () => outgoing.destroy(new Error("no answer within 20 s")))
    outgoing.on("error", reject)
    outgoing.end(req.body)
  })

/** Strings under secret-named keys of a body, at any depth. */
const secretsOf = (value: unknown, underSecret = false): Array<string> => {
  if (typeof value === "string") return underSecret && value.length >= 8 ? [value] : []
  if (Array.isArray(value)) return value.flatMap((v) => secretsOf(v, underSecret))
  if (value !== null && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => secretsOf(v, underSecret || SECRET_KEY.test(k)))
  }
  return []
}

const describeRequest = (req: FuzzRequest) =>
  `${req.method} ${req.path.slice(0, 300)} (${req.operation}) headers ${
    JSON.stringify(req.headers).slice(0, 400)
  } body ${req.body?.toString("utf8").slice(0, 400) ?? "none"}`

/** Every generated secret sent so far: no later answer may hold one either (stored, then read back). */
const sentSecrets = new Set<string>()

/** What is wrong with an answer, if anything. */
const problemWith = (req: FuzzRequest, answer: Answer): string | undefined => {
  if (answer.status >= 500) return `status ${answer.status}`
  const requestId = answer.headers["x-request-id"]
  if (typeof requestId !== "string" || requestId === "") return "no X-Request-ID header"
  const leak = LEAK_PATTERNS.find((pattern) => pattern.test(answer.text))
  if (leak !== undefined) return `the body matches ${leak}`
  const echoed = req.secrets.find((secret) => answer.text.includes(secret))
  if (echoed !== undefined) return `the body echoes the secret ${echoed.slice(0, 40)}`
  const stored = [...answer.text.matchAll(SECRET_TEXT)].find(([text]) => sentSecrets.has(text))
  if (stored !== undefined) return `the body holds ${stored[0]}, a secret sent earlier`
  if (answer.status < 400) return undefined
  if (!String(answer.headers["content-type"]).startsWith("application/problem+json")) {
    return `error content-type ${answer.headers["content-type"]}`
  }
  let body: Record<string, unknown>
  try {
    body = JSON.parse(answer.text)
  } catch {
    return "the error body is not JSON"
  }
  const code = body.error
  if (typeof code !== "string" || !/^[a-z_]+$/.test(code)) return "no error code"
  if (body.type !== `urn:chatkit:error:${code}`) return "type is not urn:chatkit:error:<error>"
  if (body.status !== answer.status) return `body status ${body.status} differs`
  if (typeof body.title !== "string" || typeof body.detail !== "string") return "no title or detail"
  if (body.request_id !== requestId) return "request_id differs from X-Request-ID"
  if (typeof body.timestamp !== "string" || Number.isNaN(Date.parse(body.timestamp))) return "no timestamp"
  if (body.errors !== undefined && !Array.isArray(body.errors)) return "errors is not a list"
  return undefined
}

const CONTENT_TYPES: ReadonlyArray<[weight: number, type: string | undefined]> = [
  [12, "application/json"],
  [2, "application/json; charset=utf-8"],
  [1, "APPLICATION/JSON"],
  [1, undefined],
  [1, "text/plain"],
  [1, "application/x-www-form-urlencoded"],
  [1, "multipart/form-data; boundary=zz"],
  [1, "multipart/form-data"],
  [1, "application/jsonp"],
  [1, "application/json; charset=latin1"],
  [1, "*/*"]
]

const RAW_BODIES = fc.constantFrom(
  "",
  "{",
  "{\"a\":",
  "[1,2",
  "nul",
  "\ufeff{}",
  "{\"a\":1}{\"b\":2}",
  "1e400",
  "-0",
  "\"text\"",
  "123456789012345678901234567890",
  "{\"a\":\"\\u00\"}",
  "{'single':'quotes'}",
  "{\"a\":1,}"
).map((text) => Buffer.from(text, "utf8"))

/** Bytes that are not UTF-8 (a lone continuation byte, an overlong slash) inside a JSON string. */
const INVALID_UTF8 = Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xc0, 0xaf, 0x80, 0x22, 0x7d])

const headerText = fc.string({
  unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 300
})

const makeRequests = (fixture: Fixture) => {
  const operations = operationsOf(fixture.doc)
  const pools = {
    ids: fixture.ids,
    emails: fixture.emails,
    byPattern: {
      "^[a-z0-9][a-z0-9_-]{0,127}$": ["fuzz-docs", "fuzz-new", ...fixture.documents],
      "^thr_[0-9a-f]{16}$": fixture.threads,
      "^job_[0-9A-Za-z_-]{1,64}$": fixture.jobs
    }
  }
  // a pattern the document no longer has would leave its pool unused, silently
  const published = JSON.stringify(fixture.doc)
  for (const pattern of Object.keys(pools.byPattern)) expect(published).toContain(JSON.stringify(pattern))
  const generators = makeGenerators(fixture.doc, pools)

  const bearer = (token: string) => ({ authorization: `Bearer ${token}`, secret: token })
  const admin = bearer(fixture.adminToken)
  const user = bearer(fixture.userToken)
  const noExtra = { idempotency: null, requestId: null }
  const asJson = (value: unknown) => ({ body: Buffer.from(JSON.stringify(value), "utf8"), secrets: secretsOf(value) })
  const validCaller = fc.constantFrom(admin, user)
  const refusedCaller = fc.oneof(
    fc.constantFrom(...fixture.refusedTokens).map(bearer),
    fc.constantFrom(
      { authorization: "Bearer ", secret: "" },
      { authorization: "Basic YWRtaW46YWRtaW4=", secret: "" },
      { authorization: `bearer ${fixture.adminToken}x`, secret: fixture.adminToken },
      { authorization: `Bearer ${fixture.adminToken} ${fixture.adminToken}`, secret: fixture.adminToken }
    ),
    headerText.map((text) => ({ authorization: `Bearer ${text}`, secret: text.length >= 8 ? text : "" }))
  )
  const anonymous = fc.constant({ authorization: undefined, secret: "" })
  const caller = fc.oneof(
    { weight: 7, arbitrary: validCaller },
    { weight: 1, arbitrary: anonymous },
    { weight: 2, arbitrary: refusedCaller }
  )

  /** A path parameter: what the schema asks for (or a seeded value), or, when `hostile`, sometimes garbage. */
  const pathValue = (operation: Operation, name: string, hostile: boolean) => {
    const parameter = operation.parameters.find((p) => p.in === "path" && p.name === name)
    const wellFormed = generators.parameter(parameter?.schema ?? {}).map((value) =>
      // the seeded admin and user act for the whole run: deleting or demoting them would end it
      operation.path.startsWith("/api/v1/admin/users/") && fixture.actorIds.includes(Number(value))
        ? "6"
        : encodeText(value)
    )
    return hostile
      ? fc.oneof({ weight: 3, arbitrary: wellFormed }, { weight: 1, arbitrary: garbageSegment })
      : wellFormed
  }

  const pathOf = (operation: Operation, hostile = true) => {
    const names = [...operation.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] ?? "")
    return fc.tuple(...names.map((name) => pathValue(operation, name, hostile))).map((values) =>
      names.reduce((path, name, i) => path.replace(`{${name}}`, values[i] ?? ""), operation.path)
    )
  }

  const queryOf = (operation: Operation, hostile: boolean) => {
    const params = operation.parameters.filter((p) => p.in === "query")
    const one = (name: string, schema: object) =>
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(undefined) },
        { weight: 3, arbitrary: generators.parameter(schema).map((v) => `${name}=${encodeText(v)}`) },
        { weight: hostile ? 1 : 0, arbitrary: garbageSegment.map((v) => `${name}=${v}`) }
      )
    const extra = !hostile ? fc.constant(undefined) : fc.oneof(
      { weight: 8, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.tuple(garbageSegment, garbageSegment).map(([k, v]) => `${k}=${v}`) },
      { weight: 1, arbitrary: fc.constant("page=1&page=2") }
    )
    return fc.tuple(fc.tuple(...params.map((p) => one(p.name, p.schema))), extra).map(([values, more]) => {
      const parts = [...values, more].filter((part) => part !== undefined)
      return parts.length === 0 ? "" : `?${parts.join("&")}`
    })
  }

  const bodyOf = (operation: Operation) => {
    const schema = operation.body
    const alternatives: Array<fc.WeightedArbitrary<{ body: Buffer | undefined; secrets: Array<string> }>> = [
      { weight: 1, arbitrary: fc.constant({ body: undefined, secrets: [] }) },
      { weight: 1, arbitrary: RAW_BODIES.map((body) => ({ body, secrets: [] })) },
      { weight: 1, arbitrary: hostileValue.map(asJson) }
    ]
    if (schema !== undefined) {
      alternatives.push(
        { weight: 6, arbitrary: generators.value(schema, "valid").map(asJson) },
        { weight: 10, arbitrary: generators.value(schema, "fuzz").map(asJson) },
        { weight: 1, arbitrary: fc.constant({ body: INVALID_UTF8, secrets: [] }) }
      )
    }
    return schema === undefined
      ? fc.oneof({ weight: 12, arbitrary: fc.constant({ body: undefined, secrets: [] }) }, ...alternatives)
      : fc.oneof(...alternatives)
  }

  const contentType = fc.oneof(...CONTENT_TYPES.map(([weight, type]) => ({ weight, arbitrary: fc.constant(type) })))

  const headersOf = (operation: Operation) => {
    const idempotency = operation.parameters.some((p) => p.in === "header" && p.name === "idempotency-key")
    return fc.record({
      // a few shared keys, so retries with other bodies meet the stored answers
      idempotency: idempotency
        ? fc.option(fc.oneof(headerText, fc.constantFrom("fuzz-key-1", "fuzz-key-2")), { freq: 2 })
        : fc.constant(null),
      requestId: fc.option(headerText, { freq: 5 })
    })
  }

  const methodOf = (operation: Operation) =>
    fc.oneof(
      { weight: 30, arbitrary: fc.constant(operation.method) },
      { weight: 1, arbitrary: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS") }
    )

  const build = (
    operation: Operation,
    parts: {
      method: string
      path: string
      query: string
      caller: { authorization: string | undefined; secret: string }
      payload: { body: Buffer | undefined; secrets: ReadonlyArray<string> }
      contentType: string | undefined
      extra: { idempotency: string | null; requestId: string | null }
    }
  ): FuzzRequest => {
    const headers: Record<string, string> = { "x-forwarded-for": randomIp() }
    if (parts.caller.authorization !== undefined) headers.authorization = parts.caller.authorization
    if (parts.payload.body !== undefined) {
      headers["content-length"] = String(parts.payload.body.length)
      if (parts.contentType !== undefined) headers["content-type"] = parts.contentType
    }
    if (parts.extra.idempotency !== null) headers["idempotency-key"] = parts.extra.idempotency
    if (parts.extra.requestId !== null) headers["x-request-id"] = parts.extra.requestId
    return {
      operation: operation.id,
      method: parts.method,
      // Node answers a request line and headers over 16 KiB itself (a bare 431), before the app sees them
      path: (parts.path + parts.query).slice(0, 12_000),
      headers,
      body: parts.payload.body,
      secrets: [...parts.payload.secrets, parts.caller.secret].filter((s) => s.length >= 8)
    }
  }

  /** Any request for any operation: mostly valid callers, bodies valid or fuzzed. */
  const wellFormedBody = (operation: Operation) =>
    operation.body === undefined
      ? fc.constant({ body: undefined, secrets: [] })
      : generators.value(operation.body, "valid").map(asJson)

  // arbitraries are built once per operation: building them per request (fc.chain) costs more than the requests
  const mixed = fc.oneof(...operations.map((operation) =>
    fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          method: methodOf(operation),
          path: pathOf(operation),
          query: queryOf(operation, true),
          caller,
          payload: bodyOf(operation),
          contentType,
          extra: headersOf(operation)
        })
      },
      {
        // a request a client of the contract would send, so handlers run, not only validation
        weight: 2,
        arbitrary: fc.record({
          method: fc.constant(operation.method),
          path: pathOf(operation, false),
          query: queryOf(operation, false),
          caller: fc.oneof({ weight: 2, arbitrary: fc.constant(admin) }, { weight: 1, arbitrary: fc.constant(user) }),
          payload: wellFormedBody(operation),
          contentType: fc.constant("application/json"),
          extra: headersOf(operation)
        })
      }
    ).map((parts) => build(operation, parts))
  ))

  /**
   * A request each operation must refuse whatever the state: a refused caller, a body that is not
   * JSON or not an object, a path or query no schema accepts, a login of nobody.
   */
  const rejected = fc.oneof(...operations.map((operation) => {
    const base = { method: operation.method, query: "", contentType: "application/json", extra: noExtra }
    const ways: Array<fc.Arbitrary<FuzzRequest>> = [
      // a NUL or a lone surrogate in the path is refused before any route
      fc.tuple(pathOf(operation), fc.constantFrom("/%00", "/%ED%A0%80")).map(([path, tail]) =>
        build(operation, { ...base, path: path + tail, caller: admin, payload: { body: undefined, secrets: [] } })
      )
    ]
    if (operation.secured) {
      ways.push(
        fc.tuple(pathOf(operation), fc.oneof(refusedCaller, anonymous), bodyOf(operation)).map(
          ([path, caller, payload]) => build(operation, { ...base, path, caller, payload })
        )
      )
    }
    if (operation.body !== undefined) {
      ways.push(
        fc.tuple(
          pathOf(operation),
          generators.value(operation.body, "valid"),
          fc.constantFrom("text/plain", "application/xml")
        )
          .map(([path, value, type]) =>
            build(operation, { ...base, path, caller: admin, payload: asJson(value), contentType: type })
          ),
        fc.tuple(pathOf(operation), fc.constantFrom<unknown>([], [{}], "text", 1, true)).map(([path, value]) =>
          build(operation, { ...base, path, caller: admin, payload: asJson(value) })
        )
      )
    }
    if (operation.parameters.some((p) => p.in === "query" && p.name === "page")) {
      ways.push(
        fc.tuple(pathOf(operation), fc.constantFrom("0", "-1", "1.5", "x", "NaN")).map(([path, page]) =>
          build(operation, {
            ...base,
            path,
            query: `?page=${page}`,
            caller: admin,
            payload: { body: undefined, secrets: [] }
          })
        )
      )
    }
    if (operation.id === "auth.login") {
      ways.push(
        fc.emailAddress().map((email) =>
          build(operation, {
            ...base,
            path: operation.path,
            caller: { authorization: undefined, secret: "" },
            payload: asJson({ email, password: "Secret-wrong-password-0123" })
          })
        )
      )
    }
    return fc.oneof(...ways)
  }))

  return { operations, mixed, rejected }
}

const statuses = new Map<number, number>()
let sent = 0
/** per path segment of a seeded row (a document, a job): the successful answers to requests naming it */
const reached = new Map<string, number>()

/** Sends `count` requests in batches of BATCH in flight; fails with the seed and the first bad answer. */
const fuzz = (
  fixture: Fixture,
  requests: fc.Arbitrary<FuzzRequest>,
  count: number,
  expectation: (answer: Answer) => string | undefined = () => undefined
) =>
  Effect.promise(() =>
    fc.assert(
      fc.asyncProperty(fc.array(requests, { minLength: BATCH, maxLength: BATCH }), async (batch) => {
        for (const secret of batch.flatMap((req) => req.secrets)) sentSecrets.add(secret)
        const answers = await Promise.all(
          batch.map((req) =>
            send(fixture.port, req).catch((error: Error) => ({ status: 0, headers: {}, text: `${error.message}` }))
          )
        )
        batch.forEach((req, i) => {
          const answer = answers[i] as Answer
          sent++
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
          if (answer.status < 300) {
            for (const segment of req.path.split(/[/?]/)) {
              if (reached.has(segment)) reached.set(segment, reached.get(segment)! + 1)
            }
          }
          const problem = answer.status === 0
            ? `no answer: ${answer.text}`
            : problemWith(req, answer) ?? expectation(answer)
          if (problem !== undefined) {
            throw new Error(
              `${problem}\n  request: ${describeRequest(req)}\n  answer: ${answer.status} ${answer.text.slice(0, 600)}`
            )
          }
        })
      }),
      {
        seed: SEED,
        numRuns: Math.ceil(count / BATCH),
        // the server's state moves on between runs: shrinking would replay against another state, for minutes
        endOnFailure: true,
        reporter: (details) => {
          if (!details.failed) return
          throw new Error(
            `OpenAPI fuzz failed (fast-check seed ${details.seed}, path ${details.counterexamplePath}, after ${details.numRuns} batches): ${
              details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
            }`
          )
        }
      }
    )
  )

/** Row count and checksum of every table of the test's schema; failed sign-in audit rows left out (they are the point). */
const snapshot = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const tables = yield* sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables
    WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
  const rows: Record<string, string> = {}
  for (const { table_name } of tables) {
    // a refused login or password check is audited by design (API.md section 2): the only write a rejection makes
    const where = table_name === "audit_logs"
      ? sql`WHERE action NOT IN ('auth.login.failed', 'auth.password.failed')`
      : sql``
    const [row] = yield* sql<{ n: number; sum: string }>`SELECT count(*)::int AS n,
      md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS sum FROM ${sql(table_name)} t ${where}`
    rows[table_name] = `${row?.n} ${row?.sum}`
  }
  return rows
})

layer(AppLive, { timeout: 120_000 })("fuzzing from /openapi.json", (it) => {
  describe("every operation", () => {
    it.effect("requests each operation must refuse are 4xx problems and change no row", () =>
      Effect.gen(function*() {
        const fixture = yield* FuzzFixture
        const { operations, rejected } = makeRequests(fixture)
        expect(operations.length).toBeGreaterThan(50)
        const before = yield* snapshot
        expect(Object.keys(before)).toContain("users")
        yield* fuzz(fixture, rejected, REJECTED_REQUESTS, (answer) =>
          answer.status >= 400 && answer.status < 500 ? undefined : `expected a 4xx, got ${answer.status}`)
        expect(yield* snapshot).toEqual(before)
      }), { timeout: 120_000 })

    it.effect(
      "well-formed and hostile requests get no 5xx, problem+json errors, no leak",
      () =>
        Effect.gen(function*() {
          const fixture = yield* FuzzFixture
          const { mixed } = makeRequests(fixture)
          for (const seeded of [...fixture.documents, ...fixture.jobs]) reached.set(seeded, 0)
          const startedAt = Date.now()
          yield* fuzz(fixture, mixed, MIXED_REQUESTS)
          const histogram = [...statuses.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}: ${n}`).join(", ")
          console.log(
            `OpenAPI fuzz: ${sent} requests (seed ${SEED}), mixed phase ${
              Date.now() - startedAt
            } ms; statuses ${histogram}`
          )
          expect(sent).toBeGreaterThanOrEqual(REJECTED_REQUESTS + MIXED_REQUESTS)
          // the fuzz got past authentication into handlers, not only validation, and to the seeded rows
          expect([...statuses.keys()].filter((s) => s >= 200 && s < 300).length).toBeGreaterThan(0)
          console.log(
            `OpenAPI fuzz: successful answers about the seeded rows ${JSON.stringify(Object.fromEntries(reached))}`
          )
          for (const [seeded, answers] of reached) {
            expect(answers, `no well-formed request reached ${seeded}`).toBeGreaterThan(0)
          }
        }),
      { timeout: 120_000 }
    )
  })
})
