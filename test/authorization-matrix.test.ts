import { HttpClient, HttpClientRequest } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { afterAll } from "vitest"

import type { ChatkitRequest } from "../src/domain/ChatkitRequest.js"
import { Forbidden, NotFound, Unauthorized } from "../src/domain/errors.js"
import { JobQueue } from "../src/platform/JobQueue.js"
import { TestApp } from "./support/app.js"
import { chatkit, eventsOf, say } from "./support/chatkit.js"
import { LiveClock } from "./support/database.js"
import { type Client, login, PASSWORD, randomIp, runId, seedUser, session } from "./support/session.js"

/*
 * The authorization matrix (issue 13, point 3): every operation of /openapi.json, as four subjects
 * see it: nobody (no token), user A who owns the fixtures, user B (another plain user) and an
 * administrator. A row gives the status each one gets (API.md: 401 without a token, 403 for an
 * action the caller may not take, 404 for a resource the caller may not see, as for one that does
 * not exist), with a valid request, so the status is the authorization's, not the validation's.
 * An operation of the document without a row fails, and so does a row whose request is not its
 * operation's route. Every refusal is the problem+json document of its status; no refusal and no
 * answer to B holds text of A's private fixtures; every 404 reads as the 404 the same subject gets
 * for a resource that does not exist. Rows that delete or change a fixture for good make their own
 * per subject, so any order of the rows passes (`--sequence.shuffle`).
 */

const SUBJECTS = ["anonymous", "a", "b", "admin"] as const
type Subject = (typeof SUBJECTS)[number]
type Expected = Readonly<Record<Subject, number>>

const everyone = (status: number): Expected => ({ anonymous: status, a: status, b: status, admin: status })
const anyUser = (status: number): Expected => ({ anonymous: 401, a: status, b: status, admin: status })
const adminOnly = (status: number): Expected => ({ anonymous: 401, a: 403, b: 403, admin: status })
/** workflows and jobs: administrators see every one */
const ownerOrAdmin = (status: number): Expected => ({ anonymous: 401, a: status, b: 404, admin: status })
/** threads: administrators review them through /admin/threads only */
const ownerOnly = (status: number): Expected => ({ anonymous: 401, a: status, b: 404, admin: 404 })

interface Call {
  readonly method: "GET" | "POST" | "PATCH" | "DELETE"
  readonly path: string
  readonly body?: unknown
}
const V1 = "/api/v1"
const get = (path: string): Call => ({ method: "GET", path })
const del = (path: string): Call => ({ method: "DELETE", path })
const post = (path: string, body: unknown = {}): Call => ({ method: "POST", path, body })
const patch = (path: string, body: unknown): Call => ({ method: "PATCH", path, body })
const chatkitCall = (type: ChatkitRequest["type"], params: object, metadata: object = {}) =>
  post(`${V1}/chatkit`, { type, params, metadata })

/** start → end: the smallest graph the validation accepts */
const GRAPH = {
  nodes: [{ slug: "start", kind: "start" }, { slug: "end", kind: "end" }],
  edges: [{ source: "start", target: "end" }]
}

let serial = 0
/** A name no other request of this run uses (slugs, emails, model names, doc ids). */
const unique = (prefix: string) => `${prefix}-${runId}-${++serial}`

/* Fixtures ---------------------------------------------------------------------------------- */

type AppServices = Layer.Layer.Success<ReturnType<typeof TestApp>>
type Prepared = Effect.Effect<Call, unknown, AppServices>

/** What B may do with a workflow of A: nothing, or what a read or write share allows. */
type BAccess = "none" | "read" | "write"
interface WorkflowRef {
  readonly id: number
  readonly versionId: number
}
interface ThreadRef {
  readonly id: string
  readonly userItem: string
  readonly answerItem: string
}

/** The subjects, and the users the rows name (as share recipients, as targets of the admin endpoints). */
interface Actors {
  readonly tokens: Readonly<Record<Subject, string | undefined>>
  readonly a: Client
  readonly admin: Client
  readonly emails: { readonly b: string; readonly sharee: string; readonly newcomer: string }
  readonly shareeId: number
}

interface Route {
  readonly method: string
  /** the OpenAPI template: /api/v1/workflows/{id} */
  readonly path: string
}

interface Fixtures extends Actors {
  /** operationId → its method and path template, from the served /openapi.json */
  readonly operations: ReadonlyMap<string, Route>
  /** A's workflows, each shared read with the sharee and, besides, with B as the key says */
  readonly workflows: Readonly<Record<BAccess, WorkflowRef>>
  /** a workflow of B's, shared with nobody */
  readonly workflowOfB: number
  /** a workflow of A's shared write with B, then deleted */
  readonly deletedWorkflow: WorkflowRef
  readonly defaultWorkflowId: number
  /** A's conversation: a user message and its answer */
  readonly thread: ThreadRef
  /** a job that works for A */
  readonly job: string
  readonly store: string
  readonly document: string
  readonly model: number
  /** text of A's private fixtures, which no refusal and no answer to B may contain */
  readonly secrets: ReadonlyArray<string>
}
const Fixtures = Context.GenericTag<Fixtures>("authorization-matrix/Fixtures")

/** A word of A's first message, which the thread's title may take up. */
const SECRET_WORD = `Quokka${runId}`
const SECRET_MESSAGE = `${SECRET_WORD} launch codes: 0451`

const present = <A>(value: A | null | undefined, what: string): A => {
  if (value === null || value === undefined) throw new Error(`the fixture has no ${what}`)
  return value
}

/** A workflow of A, shared read with the sharee and, for `access` read or write, with B. */
const newWorkflow = (actors: Actors, access: BAccess, names: { slug?: string; display_name?: string } = {}) =>
  Effect.gen(function*() {
    const created = yield* actors.a.workflows.create({
      headers: {},
      payload: { slug: names.slug ?? unique("wf"), display_name: names.display_name ?? "A's workflow" }
    })
    const share = (user_email: string, permission: "read" | "write") =>
      actors.a.workflows.createShare({ path: { id: created.id }, payload: { user_email, permission } })
    yield* share(actors.emails.sharee, "read")
    if (access !== "none") yield* share(actors.emails.b, access)
    return { id: created.id, versionId: present(created.active_version_id, "the active version") } satisfies WorkflowRef
  })

/** A conversation of A: its first turn, read from the stream. */
const newThread = (actors: Actors) =>
  Effect.gen(function*() {
    const events = eventsOf(
      yield* chatkit(actors.tokens.a ?? "", { type: "threads.create", params: { input: say(SECRET_MESSAGE) } })
    )
    const itemOf = (type: string) => events.find((e) => e.type === "thread.item.done" && e.item.type === type)?.item
    return {
      id: present(events.find((e) => e.type === "thread.created")?.thread.id, "thread.created"),
      userItem: present(itemOf("user_message")?.id, "the user message"),
      answerItem: present(itemOf("assistant_message")?.id, "the answer")
    } satisfies ThreadRef
  })

const newStore = (actors: Actors) =>
  Effect.map(
    actors.admin.vectorStores.create({ payload: { slug: unique("store"), title: "Handbook" } }),
    (store) => store.slug
  )

const newDocument = (actors: Actors, slug: string) => {
  const doc_id = unique("doc")
  const document = { title: "Holidays", text: "Ten days a year, booked a month ahead." }
  return Effect.as(actors.admin.vectorStores.ingest({ path: { slug }, payload: { doc_id, document } }), doc_id)
}

/** The openapi.json document's operations. */
interface OpenApiDocument {
  readonly paths: Record<string, Record<string, { readonly operationId?: string }>>
}

const FixturesLive = Layer.effect(
  Fixtures,
  Effect.gen(function*() {
    const a = yield* session("a")
    const b = yield* session("b")
    const admin = yield* session("admin", { isAdmin: true })
    const sharee = yield* seedUser("sharee")
    const newcomer = yield* seedUser("newcomer")
    const actors: Actors = {
      tokens: { anonymous: undefined, a: a.token, b: b.token, admin: admin.token },
      a: a.client,
      admin: admin.client,
      emails: { b: b.user.email, sharee: sharee.email, newcomer: newcomer.email },
      shareeId: sharee.id
    }
    const secretSlug = unique("a-private")
    const secretName = `A's private plans ${runId}`
    const workflows = {
      none: yield* newWorkflow(actors, "none", { slug: secretSlug, display_name: secretName }),
      read: yield* newWorkflow(actors, "read"),
      write: yield* newWorkflow(actors, "write")
    }
    const deletedWorkflow = yield* newWorkflow(actors, "write")
    yield* actors.a.workflows.delete({ path: { id: deletedWorkflow.id } })
    const jobs = yield* JobQueue
    yield* jobs.register("authz.noop", () => Effect.succeed({ done: true }))
    const store = yield* newStore(actors)
    const document = yield* newDocument(actors, store)
    const model = yield* actors.admin.models.create({ payload: { name: unique("model"), display_name: "Model" } })
    const client = yield* HttpClient.HttpClient
    const openapi = (yield* Effect.flatMap(client.get("/openapi.json"), (response) => response.json)) as OpenApiDocument
    const operations = new Map<string, Route>()
    for (const [path, item] of Object.entries(openapi.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        if (operation.operationId !== undefined) {
          operations.set(operation.operationId, { method: method.toUpperCase(), path })
        }
      }
    }
    return {
      ...actors,
      operations,
      workflows,
      deletedWorkflow,
      workflowOfB: (yield* b.client.workflows.create({
        headers: {},
        payload: { slug: unique("b-own"), display_name: "B's workflow" }
      })).id,
      defaultWorkflowId: (yield* a.client.workflows.current()).workflow_id,
      thread: yield* newThread(actors),
      job: yield* jobs.enqueue("authz.noop", {}, { owner: a.user.id }),
      store,
      document,
      model: model.id,
      secrets: [secretSlug, secretName, SECRET_WORD]
    } satisfies Fixtures
  }).pipe(Effect.orDie)
).pipe(Layer.provide(LiveClock))

/** A refresh token of a user of its own, for the rows that spend one. */
const freshRefreshToken = Effect.suspend(() =>
  Effect.flatMap(
    seedUser(unique("refresher")),
    (user) => Effect.map(login(user.email), (tokens) => tokens.refresh_token)
  )
)

/* The table ----------------------------------------------------------------------------------- */

interface Row {
  /** the operationId in /openapi.json */
  readonly operation: string
  /** what sets the row apart from the operation's other rows: a ChatKit type, B's share */
  readonly case?: string
  readonly expected: Expected
  /** the request `subject` sends; a fixture made here is that subject's own, so the rows' order does not matter */
  readonly request: (fx: Fixtures, subject: Subject) => Call | Prepared
  /** the same request on a resource that does not exist: every 404 of the row must read like its 404 */
  readonly missing?: (fx: Fixtures, subject: Subject) => Call
}

/**
 * A resource the rows act on: the shared fixture, a fresh one per subject (none: no subject can
 * change it), and one that does not exist.
 */
interface Resource<T> {
  readonly shared: (fx: Fixtures) => T
  readonly fresh?: (fx: Fixtures) => Effect.Effect<T, unknown, AppServices>
  readonly missing: (fx: Fixtures) => T
}

/** The part of a row that acts on a resource, and the same request on the missing one. */
const owned = <T>(resource: Resource<T>, spec: {
  readonly expected: Expected
  /** a fixture of its own per subject: the request deletes it or changes it for good */
  readonly fresh?: boolean | undefined
  readonly request: (target: T, fx: Fixtures, subject: Subject) => Call
}): Pick<Row, "expected" | "request" | "missing"> => ({
  expected: spec.expected,
  request: (fx, subject) =>
    Effect.map(
      spec.fresh === true && resource.fresh !== undefined ? resource.fresh(fx) : Effect.succeed(resource.shared(fx)),
      (target) => spec.request(target, fx, subject)
    ),
  missing: (fx, subject) => spec.request(resource.missing(fx), fx, subject)
})

const NO_ID = 999_999_999

const workflowOf = (access: BAccess): Resource<WorkflowRef> => ({
  shared: (fx) => fx.workflows[access],
  fresh: (fx) => newWorkflow(fx, access),
  missing: () => ({ id: NO_ID, versionId: NO_ID })
})

/** B's own workflow, with A's version and A's sharee in the request: B must not reach them through it. */
const crossed: Resource<WorkflowRef> = {
  shared: (fx) => ({ id: fx.workflowOfB, versionId: fx.workflows.none.versionId }),
  missing: (fx) => ({ id: fx.workflowOfB, versionId: NO_ID })
}

/** Soft-deleted: gone for everyone, its owner and administrators included, as one that never existed. */
const deleted: Resource<WorkflowRef> = {
  shared: (fx) => fx.deletedWorkflow,
  missing: () => ({ id: NO_ID, versionId: NO_ID })
}

const thread: Resource<ThreadRef> = {
  shared: (fx) => fx.thread,
  fresh: newThread,
  missing: () => ({ id: "thr_0000000000000000", userItem: "msg_missing", answerItem: "msg_missing" })
}

const job: Resource<string> = { shared: (fx) => fx.job, missing: () => "job_missing" }

const CHATKIT = "conversations.chatkit"

type Need = "read" | "write" | "manage"
/** What B's share grants (API.md section 6); the owner and administrators manage. */
const GRANTS: Readonly<Record<BAccess, ReadonlyArray<Need>>> = { none: [], read: ["read"], write: ["read", "write"] }

/** An operation on one workflow: the access it needs and its success status. */
interface WorkflowOperation {
  readonly operation: string
  readonly case?: string
  readonly need: Need
  readonly success: number
  readonly fresh?: boolean
  /** the request names a version or a share of the workflow besides the workflow */
  readonly namesPart?: boolean
  readonly request: (workflow: WorkflowRef, fx: Fixtures, subject: Subject) => Call
}

const at = (workflow: WorkflowRef) => `${V1}/workflows/${workflow.id}`

const WORKFLOW_OPERATIONS: ReadonlyArray<WorkflowOperation> = [
  { operation: "workflows.get", need: "read", success: 200, request: (w) => get(at(w)) },
  {
    operation: "workflows.update",
    need: "write",
    success: 200,
    request: (w, _, subject) => patch(at(w), { description: `edited by ${subject}` })
  },
  { operation: "workflows.delete", need: "manage", success: 204, fresh: true, request: (w) => del(at(w)) },
  {
    operation: "workflows.duplicate",
    need: "read",
    success: 201,
    request: (w) => post(`${at(w)}/duplicate`, { display_name: "Copy" })
  },
  { operation: "workflows.listVersions", need: "read", success: 200, request: (w) => get(`${at(w)}/versions`) },
  {
    operation: "workflows.createVersion",
    need: "write",
    success: 201,
    request: (w) => post(`${at(w)}/versions`, { graph: GRAPH })
  },
  {
    operation: "workflows.getVersion",
    namesPart: true,
    need: "read",
    success: 200,
    request: (w) => get(`${at(w)}/versions/${w.versionId}`)
  },
  {
    operation: "workflows.exportVersion",
    namesPart: true,
    need: "read",
    success: 200,
    request: (w) => get(`${at(w)}/versions/${w.versionId}/export`)
  },
  {
    operation: "workflows.activate",
    namesPart: true,
    need: "write",
    success: 200,
    request: (w) => post(`${at(w)}/production`, { version_id: w.versionId })
  },
  { operation: "workflows.listShares", need: "read", success: 200, request: (w) => get(`${at(w)}/shares`) },
  {
    operation: "workflows.createShare",
    need: "manage",
    success: 201,
    fresh: true,
    request: (w, fx) => post(`${at(w)}/shares`, { user_email: fx.emails.newcomer, permission: "read" })
  },
  {
    operation: "workflows.updateShare",
    namesPart: true,
    need: "manage",
    success: 200,
    request: (w, fx) => patch(`${at(w)}/shares/${fx.shareeId}`, { permission: "read" })
  },
  {
    operation: "workflows.deleteShare",
    namesPart: true,
    need: "manage",
    success: 204,
    fresh: true,
    request: (w, fx) => del(`${at(w)}/shares/${fx.shareeId}`)
  },
  {
    operation: CHATKIT,
    case: "threads.create in the workflow (metadata.workflow_id)",
    need: "read",
    success: 200,
    request: (w) => chatkitCall("threads.create", { input: say("Hello") }, { workflow_id: w.id })
  }
]

/** The workflow operations on A's workflow that B holds `access` on. */
const workflowRows = (access: BAccess): ReadonlyArray<Row> =>
  WORKFLOW_OPERATIONS.map((op) => {
    const cases = [
      ...(op.case === undefined ? [] : [op.case]),
      ...(access === "none" ? [] : [`B holds a ${access} share`])
    ]
    return {
      operation: op.operation,
      ...(cases.length === 0 ? {} : { case: cases.join("; ") }),
      ...owned(workflowOf(access), {
        expected: {
          ...ownerOrAdmin(op.success),
          b: access === "none" ? 404 : GRANTS[access].includes(op.need) ? op.success : 403
        },
        fresh: op.fresh,
        request: op.request
      })
    }
  })

/** `operations` on a workflow no signed-in subject reaches: a 404 for each, whatever they may do elsewhere. */
const unreachableRows = (
  resource: Resource<WorkflowRef>,
  label: string,
  operations: ReadonlyArray<WorkflowOperation>
): ReadonlyArray<Row> =>
  operations.map((op) => ({
    operation: op.operation,
    case: [...(op.case === undefined ? [] : [op.case]), label].join("; "),
    ...owned(resource, { expected: { anonymous: 401, a: 404, b: 404, admin: 404 }, request: op.request })
  }))

type ChatkitType = ChatkitRequest["type"]

/** One row per ChatKit request type the server serves: a new type does not compile without its row. */
const CHATKIT_TYPES: { readonly [T in ChatkitType]: (type: T) => Pick<Row, "expected" | "request" | "missing"> } = {
  "threads.create": (type) => ({ expected: anyUser(200), request: () => chatkitCall(type, { input: say("Hello") }) }),
  "threads.add_user_message": (type) =>
    owned(thread, {
      expected: ownerOnly(200),
      request: (t) => chatkitCall(type, { thread_id: t.id, input: say("And then?") })
    }),
  "threads.retry_after_item": (type) =>
    owned(thread, {
      expected: ownerOnly(200),
      fresh: true,
      request: (t) => chatkitCall(type, { thread_id: t.id, item_id: t.userItem })
    }),
  "threads.resume": (type) =>
    owned(thread, { expected: ownerOnly(200), request: (t) => chatkitCall(type, { thread_id: t.id }) }),
  "threads.get_by_id": (type) =>
    owned(thread, { expected: ownerOnly(200), request: (t) => chatkitCall(type, { thread_id: t.id }) }),
  "threads.list": (type) => ({ expected: anyUser(200), request: () => chatkitCall(type, {}) }),
  "items.list": (type) =>
    owned(thread, { expected: ownerOnly(200), request: (t) => chatkitCall(type, { thread_id: t.id }) }),
  "threads.update": (type) =>
    owned(thread, {
      expected: ownerOnly(200),
      request: (t, _, subject) => chatkitCall(type, { thread_id: t.id, title: `Renamed by ${subject}` })
    }),
  "threads.delete": (type) =>
    owned(thread, { expected: ownerOnly(200), fresh: true, request: (t) => chatkitCall(type, { thread_id: t.id }) }),
  "items.feedback": (type) =>
    owned(thread, {
      expected: ownerOnly(200),
      request: (t) => chatkitCall(type, { thread_id: t.id, item_ids: [t.answerItem], kind: "positive" })
    })
}

const chatkitRows: ReadonlyArray<Row> = (Object.keys(CHATKIT_TYPES) as Array<ChatkitType>).map((type) => ({
  operation: CHATKIT,
  case: type,
  ...(CHATKIT_TYPES[type] as (type: ChatkitType) => Pick<Row, "expected" | "request" | "missing">)(type)
}))

const ROWS: ReadonlyArray<Row> = [
  // auth: the public ones answer by their body, whatever token comes along
  {
    operation: "auth.login",
    expected: everyone(200),
    request: () =>
      Effect.map(
        seedUser(unique("login")),
        (user) => post(`${V1}/auth/login`, { email: user.email, password: PASSWORD })
      )
  },
  {
    operation: "auth.refresh",
    expected: everyone(200),
    request: () => Effect.map(freshRefreshToken, (refresh_token) => post(`${V1}/auth/refresh`, { refresh_token }))
  },
  {
    operation: "auth.logout",
    expected: everyone(204),
    request: () => Effect.map(freshRefreshToken, (refresh_token) => post(`${V1}/auth/logout`, { refresh_token }))
  },
  // access tokens outlive both: the other rows still run as the same subjects
  { operation: "auth.logoutAll", expected: anyUser(204), request: () => post(`${V1}/auth/logout-all`) },
  {
    operation: "auth.changePassword",
    expected: anyUser(204),
    request: () => post(`${V1}/auth/password`, { current_password: PASSWORD, new_password: PASSWORD })
  },
  { operation: "auth.me", expected: anyUser(200), request: () => get(`${V1}/auth/me`) },
  { operation: "auth.usersMe", expected: anyUser(200), request: () => get(`${V1}/users/me`) },

  // users (admin)
  { operation: "users.list", expected: adminOnly(200), request: () => get(`${V1}/admin/users`) },
  {
    operation: "users.create",
    expected: adminOnly(201),
    request: () => post(`${V1}/admin/users`, { email: `${unique("created")}@example.com`, password: PASSWORD })
  },
  { operation: "users.get", expected: adminOnly(200), request: (fx) => get(`${V1}/admin/users/${fx.shareeId}`) },
  {
    operation: "users.update",
    expected: adminOnly(200),
    request: (fx, subject) => patch(`${V1}/admin/users/${fx.shareeId}`, { display_name: `Named by ${subject}` })
  },
  {
    operation: "users.delete",
    expected: adminOnly(204),
    request: () => Effect.map(seedUser(unique("doomed")), (user) => del(`${V1}/admin/users/${user.id}`))
  },
  {
    operation: "users.restore",
    expected: adminOnly(200),
    request: (fx) =>
      Effect.gen(function*() {
        const user = yield* seedUser(unique("deleted"))
        yield* fx.admin.users.delete({ path: { id: user.id } })
        return post(`${V1}/admin/users/${user.id}/restore`)
      })
  },
  { operation: "audit.list", expected: adminOnly(200), request: () => get(`${V1}/admin/audit-logs`) },

  // settings
  { operation: "settings.getAppSettings", expected: adminOnly(200), request: () => get(`${V1}/admin/app-settings`) },
  {
    operation: "settings.updateAppSettings",
    expected: adminOnly(200),
    request: () => patch(`${V1}/admin/app-settings`, { thread_title_prompt: "Name this conversation in five words" })
  },
  {
    operation: "settings.getAdminAppearance",
    expected: adminOnly(200),
    request: () => get(`${V1}/admin/appearance-settings`)
  },
  {
    operation: "settings.updateAppearance",
    expected: adminOnly(200),
    request: () => patch(`${V1}/admin/appearance-settings`, { greeting: "Welcome back" })
  },
  { operation: "settings.getAppearance", expected: everyone(200), request: () => get(`${V1}/appearance-settings`) },

  // models
  { operation: "models.list", expected: anyUser(200), request: () => get(`${V1}/models`) },
  { operation: "models.adminList", expected: adminOnly(200), request: () => get(`${V1}/admin/models`) },
  {
    operation: "models.create",
    expected: adminOnly(201),
    request: () => post(`${V1}/admin/models`, { name: unique("model"), display_name: "Model" })
  },
  {
    operation: "models.update",
    expected: adminOnly(200),
    request: (fx, subject) => patch(`${V1}/admin/models/${fx.model}`, { display_name: `Renamed by ${subject}` })
  },
  {
    operation: "models.delete",
    expected: adminOnly(204),
    request: (fx) =>
      Effect.map(
        fx.admin.models.create({ payload: { name: unique("model"), display_name: "Doomed" } }),
        (model) => del(`${V1}/admin/models/${model.id}`)
      )
  },

  // workflows: the collection, the default, the import; then one workflow as B sees it without and with a share
  { operation: "workflows.list", expected: anyUser(200), request: () => get(`${V1}/workflows`) },
  {
    operation: "workflows.create",
    expected: anyUser(201),
    request: () => post(`${V1}/workflows`, { slug: unique("created"), display_name: "New" })
  },
  { operation: "workflows.current", expected: anyUser(200), request: () => get(`${V1}/workflows/current`) },
  {
    operation: "workflows.setDefault",
    expected: adminOnly(200),
    // the default it already is: the other rows keep running the same default workflow
    request: (fx) => post(`${V1}/workflows/default`, { workflow_id: fx.defaultWorkflowId })
  },
  {
    operation: "workflows.import",
    expected: adminOnly(201),
    request: () => post(`${V1}/workflows/import`, { slug: unique("imported"), display_name: "Imported", graph: GRAPH })
  },
  ...workflowRows("none"),
  ...workflowRows("read"),
  ...workflowRows("write"),
  ...unreachableRows(
    crossed,
    "B's workflow, A's version or sharee",
    WORKFLOW_OPERATIONS.filter((op) => op.namesPart === true)
  ),
  ...unreachableRows(deleted, "A's deleted workflow, shared write with B", WORKFLOW_OPERATIONS),

  // conversations
  ...chatkitRows,
  { operation: "threadsAdmin.list", expected: adminOnly(200), request: () => get(`${V1}/admin/threads`) },
  {
    operation: "threadsAdmin.items",
    expected: adminOnly(200),
    request: (fx) => get(`${V1}/admin/threads/${fx.thread.id}/items`)
  },

  // vector stores: read by every user, written by administrators
  { operation: "vectorStores.list", expected: anyUser(200), request: () => get(`${V1}/vector-stores`) },
  {
    operation: "vectorStores.create",
    expected: adminOnly(201),
    request: () => post(`${V1}/vector-stores`, { slug: unique("store"), title: "Store" })
  },
  { operation: "vectorStores.get", expected: anyUser(200), request: (fx) => get(`${V1}/vector-stores/${fx.store}`) },
  {
    operation: "vectorStores.update",
    expected: adminOnly(200),
    request: (fx, subject) => patch(`${V1}/vector-stores/${fx.store}`, { title: `Retitled by ${subject}` })
  },
  {
    operation: "vectorStores.delete",
    expected: adminOnly(204),
    request: (fx) => Effect.map(newStore(fx), (slug) => del(`${V1}/vector-stores/${slug}`))
  },
  {
    operation: "vectorStores.ingest",
    expected: adminOnly(201),
    request: (fx) =>
      post(`${V1}/vector-stores/${fx.store}/documents`, { doc_id: unique("doc"), document: { text: "Opening hours" } })
  },
  {
    operation: "vectorStores.listDocuments",
    expected: anyUser(200),
    request: (fx) => get(`${V1}/vector-stores/${fx.store}/documents`)
  },
  {
    operation: "vectorStores.getDocument",
    expected: anyUser(200),
    request: (fx) => get(`${V1}/vector-stores/${fx.store}/documents/${fx.document}`)
  },
  {
    operation: "vectorStores.deleteDocument",
    expected: adminOnly(204),
    request: (fx) =>
      Effect.map(newDocument(fx, fx.store), (docId) => del(`${V1}/vector-stores/${fx.store}/documents/${docId}`))
  },
  {
    operation: "vectorStores.searchJson",
    expected: anyUser(200),
    request: (fx) => post(`${V1}/vector-stores/${fx.store}/search_json`, { query: "holidays" })
  },
  {
    operation: "vectorStores.searchDocuments",
    expected: anyUser(200),
    request: (fx) => post(`${V1}/vector-stores/${fx.store}/search_documents`, { query: "holidays" })
  },

  // jobs
  { operation: "jobs.get", ...owned(job, { expected: ownerOrAdmin(200), request: (id) => get(`${V1}/jobs/${id}`) }) },

  // operations: public (GET /metrics too, as METRICS_TOKEN is not set)
  { operation: "operations.health", expected: everyone(200), request: () => get("/health") },
  { operation: "operations.ready", expected: everyone(200), request: () => get("/health/ready") },
  { operation: "operations.metrics", expected: everyone(200), request: () => get("/metrics") }
]

/* The checks ---------------------------------------------------------------------------------- */

interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly text: string
}

const send = (call: Call, token: string | undefined) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    let request = HttpClientRequest.make(call.method)(call.path).pipe(
      HttpClientRequest.setHeader("x-forwarded-for", randomIp())
    )
    if (token !== undefined) request = HttpClientRequest.bearerToken(request, token)
    if (call.body !== undefined) request = HttpClientRequest.bodyUnsafeJson(request, call.body)
    const response = yield* client.execute(request)
    return { status: response.status, headers: response.headers, text: yield* response.text } satisfies Answer
  })

const REFUSALS: Readonly<Record<number, { readonly code: string; readonly title: string }>> = {
  401: Unauthorized.problem,
  403: Forbidden.problem,
  404: NotFound.problem
}

/** A refusal is the problem+json document of its status. */
const expectProblem = (answer: Answer) => {
  const problem = REFUSALS[answer.status]
  if (problem === undefined) return
  expect(answer.headers["content-type"]).toBe("application/problem+json")
  expect(JSON.parse(answer.text)).toEqual({
    type: `urn:chatkit:error:${problem.code}`,
    title: problem.title,
    status: answer.status,
    error: problem.code,
    detail: expect.any(String),
    request_id: answer.headers["x-request-id"],
    timestamp: expect.any(String)
  })
}

/** A 404's body without what differs from one request to the next: its id, time, and the ids it names. */
const shapeOf = (answer: Answer) => {
  const { detail, request_id: _, timestamp: __, ...rest } = JSON.parse(answer.text) as Record<string, unknown>
  return { ...rest, detail: String(detail).replace(/\b(thr_[0-9a-f]{16}|job_[\w-]+|\d+)\b/g, "<id>") }
}

const routeOf = (route: Route) => `${route.method} ${route.path.replace(/\{[^}]+\}/g, "[^/]+")}`

const NAMES: Readonly<Record<Subject, string>> = { anonymous: "anonymous", a: "A", b: "B", admin: "admin" }

const titleOf = (row: Row) =>
  `${row.operation}${row.case === undefined ? "" : ` (${row.case})`}: ` +
  SUBJECTS.map((subject) => `${NAMES[subject]} ${row.expected[subject]}`).join(", ")

/** What the run checked, for the figure printed at the end. */
const checked = { cells: 0, twins: 0 }

layer(
  FixturesLive.pipe(Layer.provideMerge(TestApp("authorization-matrix", {
    TRUST_PROXY: "1",
    // each subject sends more than a minute's worth of the default per-user limit
    RATE_LIMIT_API_PER_MINUTE: "10000"
  }))),
  { timeout: 120_000 }
)("authorization matrix", (it) => {
  afterAll(() => {
    const operations = new Set(ROWS.map((row) => row.operation)).size
    const n = SUBJECTS.length
    console.log(
      `authorization matrix: ${operations} operations × ${n} subjects = ${operations * n}; ` +
        `${ROWS.length} rows × ${n} = ${ROWS.length * n} cells (${chatkitRows.length} ChatKit request types × ${n} = ` +
        `${chatkitRows.length * n} among them), ${checked.cells} checked; ` +
        `${checked.twins} 404s compared with the 404 of a missing resource`
    )
  })

  it.effect("every operation of /openapi.json has a row, and every row is an operation of it", () =>
    Effect.gen(function*() {
      const { operations } = yield* Fixtures
      const covered = new Set(ROWS.map((row) => row.operation))
      expect([...operations.keys()].filter((operation) => !covered.has(operation)), "operations without a row")
        .toEqual([])
      expect([...covered].filter((operation) => !operations.has(operation)), "rows of no operation").toEqual([])
    }))

  for (const row of ROWS) {
    it.effect(titleOf(row), () =>
      Effect.gen(function*() {
        const fx = yield* Fixtures
        const route = fx.operations.get(row.operation)
        if (route === undefined) return yield* Effect.dieMessage(`${row.operation} is not in /openapi.json`)
        const answers = yield* Effect.forEach(SUBJECTS, (subject) =>
          Effect.gen(function*() {
            const made = row.request(fx, subject)
            const call = Effect.isEffect(made) ? yield* made : made
            // the row exercises its own operation
            expect(`${call.method} ${call.path}`).toMatch(new RegExp(`^${routeOf(route)}$`))
            return { subject, answer: yield* send(call, fx.tokens[subject]) }
          }), { concurrency: "unbounded" })
        expect(
          Object.fromEntries(answers.map(({ answer, subject }) => [subject, answer.status])),
          answers.map(({ answer, subject }) => `${subject}: ${answer.text.slice(0, 200)}`).join("\n")
        ).toEqual(row.expected)

        for (const { answer, subject } of answers) {
          expectProblem(answer)
          if (subject === "b" || answer.status in REFUSALS) {
            for (const secret of fx.secrets) expect(answer.text, `${subject}'s answer`).not.toContain(secret)
          }
          if (answer.status !== 404) continue
          // what the subject is told of a resource that does not exist
          if (row.missing === undefined) return yield* Effect.dieMessage("a row with a 404 names its missing resource")
          const twin = yield* send(row.missing(fx, subject), fx.tokens[subject])
          expect(twin.status).toBe(404)
          expect(shapeOf(answer), `${subject}'s 404`).toEqual(shapeOf(twin))
          checked.twins++
        }
        checked.cells += answers.length
      }))
  }
})
