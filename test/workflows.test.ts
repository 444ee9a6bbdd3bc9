import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"

import { Conflict, Forbidden, NotFound, ValidationError } from "../src/domain/errors.js"
import { CurrentWorkflow, type GraphInput, WorkflowVersion } from "../src/domain/Workflow.js"
import { AuditLog } from "../src/features/audit/AuditLog.js"
import { activeKey, CURRENT_KEY } from "../src/features/workflows/CacheKeys.js"
import { DEFAULT_WORKFLOW_SLUG, ensureDefaultWorkflow } from "../src/features/workflows/DefaultWorkflow.js"
import { WorkflowsRepo } from "../src/features/workflows/Repo.js"
import { Cache } from "../src/platform/Cache.js"
import { TestApp } from "./support/app.js"
import { answerOf, chatkit, eventsOf, say } from "./support/chatkit.js"
import { countQueries } from "./support/queries.js"
import { type Client, emailOf, raw, runId, session } from "./support/session.js"

let slugCounter = 0
const newSlug = (name: string) => `${name}-${runId}-${++slugCounter}`

const graphOf = (middle: ReadonlyArray<string>, name = "agent"): GraphInput => {
  const slugs = ["start", ...middle.map((_, i) => `${name}-${i}`), "end"]
  return {
    nodes: slugs.map((slug, i) => ({
      slug,
      kind: i === 0 ? "start" : i === slugs.length - 1 ? "end" : middle[i - 1] ?? "agent",
      parameters: i === 0 || i === slugs.length - 1 ? {} : { instructions: `step ${i}` }
    })),
    edges: slugs.slice(1).map((slug, i) => ({ source: slugs[i] ?? "", target: slug }))
  }
}

const auditActions = (workflowId: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ readonly action: string }>`SELECT action FROM audit_logs
      WHERE resource_type = 'workflow' AND resource_id = ${String(workflowId)} ORDER BY id`).pipe(
      Effect.map((rows) => rows.map((row) => row.action))
    )

layer(TestApp("workflows", { TRUST_PROXY: "1" }), { timeout: 180_000 })("workflows", (it) => {
  describe("default workflow", () => {
    it.effect("exists after start with start → agent → end, and is created only once", () =>
      Effect.gen(function*() {
        const { client } = yield* session("current-reader")
        const current = yield* client.workflows.current()
        expect(current.slug).toBe(DEFAULT_WORKFLOW_SLUG)
        expect(current.version.version).toBe(1)
        expect(current.version.is_active).toBe(true)
        expect(current.version.graph.nodes.map((n) => n.kind)).toEqual(["start", "agent", "end"])
        expect(current.version.graph.edges.map((e) => [e.source, e.target])).toEqual([["start", "agent"], [
          "agent",
          "end"
        ]])
        // two instances starting at once after that: nothing more is created
        const again = yield* Effect.all([ensureDefaultWorkflow, ensureDefaultWorkflow], { concurrency: 2 }).pipe(
          Effect.provide(Layer.mergeAll(WorkflowsRepo.Default, AuditLog.Default))
        )
        expect(again.every(Option.isNone)).toBe(true)
        const sql = yield* SqlClient.SqlClient
        const defaults = yield* sql`SELECT id FROM workflows WHERE slug = ${DEFAULT_WORKFLOW_SLUG}`
        expect(defaults).toHaveLength(1)
      }))
  })

  describe("CRUD and access", () => {
    it.effect("creates, reads, lists, updates, duplicates and deletes, each mutation audited", () =>
      Effect.gen(function*() {
        const { client, user } = yield* session("crud-owner")
        const other = yield* session("crud-other")
        const slug = newSlug("crud")
        const [created, response] = yield* client.workflows.create({
          payload: { slug, display_name: "Crud", description: "first", graph: graphOf(["agent", "assistant_message"]) },
          headers: {},
          withResponse: true
        })
        expect(response.status).toBe(201)
        expect(created).toMatchObject({
          slug,
          owner_id: user.id,
          versions_count: 1,
          is_default: false,
          shared_with: []
        })
        expect(created.owner?.email).toBe(user.email)
        expect(created.active_version?.version).toBe(1)
        expect(created.active_version?.graph.nodes).toHaveLength(4)

        // no graph: start → agent → end
        const plain = yield* client.workflows.create({
          payload: { slug: newSlug("plain"), display_name: "Plain" },
          headers: {}
        })
        expect(plain.active_version?.graph.nodes.map((n) => n.kind)).toEqual(["start", "agent", "end"])

        expect((yield* client.workflows.get({ path: { id: created.id } })).slug).toBe(slug)
        const mine = yield* client.workflows.list({ urlParams: {} })
        expect(mine.items.map((w) => w.id)).toEqual([created.id, plain.id])
        expect(mine.total).toBe(2)
        // another user's private workflow: invisible, 404 (never 403)
        expect((yield* other.client.workflows.list({ urlParams: {} })).items).toEqual([])
        expect(yield* Effect.flip(other.client.workflows.get({ path: { id: created.id } }))).toBeInstanceOf(NotFound)
        expect(
          yield* Effect.flip(
            other.client.workflows.update({ path: { id: created.id }, payload: { display_name: "x" } })
          )
        )
          .toBeInstanceOf(NotFound)
        expect(yield* Effect.flip(other.client.workflows.delete({ path: { id: created.id } }))).toBeInstanceOf(NotFound)

        // duplicate slug
        const taken = yield* Effect.flip(
          client.workflows.create({ payload: { slug, display_name: "Again" }, headers: {} })
        )
        expect(taken).toBeInstanceOf(Conflict)
        expect(yield* Effect.flip(client.workflows.update({ path: { id: plain.id }, payload: { slug } })))
          .toBeInstanceOf(Conflict)

        const updated = yield* client.workflows.update({
          path: { id: created.id },
          payload: { display_name: "Renamed", description: null }
        })
        expect(updated).toMatchObject({ display_name: "Renamed", description: null, slug })

        // unknown fields are refused
        const unknown = yield* raw("PATCH", `/api/v1/workflows/${created.id}`, {
          token: (yield* session("crud-raw", { isAdmin: true })).token,
          body: { display_name: "ok", colour: "red" }
        })
        expect(unknown.status).toBe(400)
        expect(unknown.body.error).toBe("validation_error")
        expect(JSON.stringify(unknown.body.errors)).toContain("colour")

        const copy = yield* other.client.workflows.duplicate({
          path: { id: created.id },
          payload: { display_name: "x" },
          headers: {}
        })
          .pipe(Effect.flip)
        expect(copy).toBeInstanceOf(NotFound)
        const duplicated = yield* client.workflows.duplicate({
          path: { id: created.id },
          payload: { display_name: "Copy" },
          headers: {}
        })
        expect(duplicated).toMatchObject({ slug: `${slug}-copy`, owner_id: user.id, versions_count: 1 })
        expect(duplicated.active_version?.graph).toEqual(created.active_version?.graph)
        const second = yield* client.workflows.duplicate({
          path: { id: created.id },
          payload: { display_name: "Copy 2" },
          headers: {}
        })
        expect(second.slug).toBe(`${slug}-copy-2`)

        yield* client.workflows.delete({ path: { id: created.id } })
        expect(yield* Effect.flip(client.workflows.get({ path: { id: created.id } }))).toBeInstanceOf(NotFound)
        // the slug is free again once deleted
        const reused = yield* client.workflows.create({ payload: { slug, display_name: "Reused" }, headers: {} })
        expect(reused.id).not.toBe(created.id)

        expect(yield* auditActions(created.id)).toEqual(["workflow.create", "workflow.update", "workflow.delete"])
        expect(yield* auditActions(duplicated.id)).toEqual(["workflow.duplicate"])
      }))

    it.effect("refuses an invalid graph with one 400 listing every problem", () =>
      Effect.gen(function*() {
        const { client } = yield* session("graph-owner")
        const bad: GraphInput = {
          nodes: [
            { slug: "s1", kind: "start" },
            { slug: "s2", kind: "start" },
            { slug: "island", kind: "agent" },
            { slug: "w", kind: "widget" },
            { slug: "p", kind: "agent", parent_slug: "q" },
            { slug: "q", kind: "agent", parent_slug: "p" }
          ],
          edges: [
            { source: "s1", target: "w" },
            { source: "s1", target: "ghost" },
            { source: "s1", target: "p" },
            { source: "s1", target: "q" }
          ]
        }
        const error = yield* Effect.flip(
          client.workflows.create({ payload: { slug: newSlug("bad"), display_name: "Bad", graph: bad }, headers: {} })
        )
        expect(error).toBeInstanceOf(ValidationError)
        const paths = (error as ValidationError).errors?.map((e) => e.path).sort()
        expect(paths).toEqual(
          ["nodes[1].kind", "nodes[1]", "nodes[2]", "nodes[3].kind", "edges[1].target", "nodes[4].parent_slug"].sort()
        )
        expect((error as ValidationError).errors?.find((e) => e.path === "nodes[3].kind")?.message).toContain(
          "start, end, agent, assistant_message, condition, state, wait_for_user_input"
        )
        // nothing was written
        expect((yield* client.workflows.list({ urlParams: {} })).total).toBe(0)

        const good = yield* client.workflows.create({
          payload: { slug: newSlug("good"), display_name: "Good" },
          headers: {}
        })
        const versionError = yield* Effect.flip(
          client.workflows.createVersion({ path: { id: good.id }, payload: { graph: bad }, headers: {} })
        )
        expect(versionError).toBeInstanceOf(ValidationError)
      }))
  })

  describe("versions", () => {
    it.effect("creates n+1, lists, reads with graph, exports, activates; concurrent creations get consecutive numbers", () =>
      Effect.gen(function*() {
        const { client, user } = yield* session("versions-owner")
        const admin = yield* session("versions-admin", { isAdmin: true })
        const wf = yield* client.workflows.create({
          payload: { slug: newSlug("ver"), display_name: "Ver" },
          headers: {}
        })
        const [v2, response] = yield* client.workflows.createVersion({
          path: { id: wf.id },
          payload: { graph: graphOf(["agent", "state"]), name: "two" },
          headers: {},
          withResponse: true
        })
        expect(response.status).toBe(201)
        expect(v2).toMatchObject({ version: 2, name: "two", is_active: false, created_by: user.id, workflow_id: wf.id })
        expect(v2.graph.nodes.map((n) => n.kind)).toEqual(["start", "agent", "state", "end"])

        const both = yield* Effect.all(
          [3, 4].map((n) =>
            client.workflows.createVersion({
              path: { id: wf.id },
              payload: { graph: graphOf(["agent"]), name: `c${n}` },
              headers: {}
            })
          ),
          { concurrency: 2 }
        )
        expect(both.map((v) => v.version).sort()).toEqual([3, 4])

        const listed = yield* client.workflows.listVersions({ path: { id: wf.id }, urlParams: { page_size: 2 } })
        expect(listed.items.map((v) => v.version)).toEqual([4, 3])
        expect(listed.total).toBe(4)
        expect(listed.total_pages).toBe(2)

        const read = yield* client.workflows.getVersion({ path: { id: wf.id, version_id: v2.id } })
        expect(read.graph).toEqual(v2.graph)

        const activated = yield* client.workflows.activate({ path: { id: wf.id }, payload: { version_id: v2.id } })
        expect(activated.active_version_id).toBe(v2.id)
        expect(activated.active_version?.is_active).toBe(true)

        // a version of another workflow: 404
        const other = yield* client.workflows.create({
          payload: { slug: newSlug("ver-other"), display_name: "O" },
          headers: {}
        })
        const foreign = other.active_version_id ?? 0
        expect(yield* Effect.flip(client.workflows.activate({ path: { id: wf.id }, payload: { version_id: foreign } })))
          .toBeInstanceOf(NotFound)
        expect(yield* Effect.flip(client.workflows.getVersion({ path: { id: wf.id, version_id: foreign } })))
          .toBeInstanceOf(NotFound)

        const exported = yield* client.workflows.exportVersion({ path: { id: wf.id, version_id: v2.id } })
        expect(exported).toMatchObject({ format: "chatkit.workflow", slug: wf.slug, version: 2, graph: v2.graph })

        // import: admin only; a new slug creates a workflow, an existing slug a new version
        expect(
          yield* Effect.flip(
            client.workflows.import({ payload: { slug: newSlug("imp"), graph: exported.graph }, headers: {} })
          )
        )
          .toBeInstanceOf(Forbidden)
        const importedSlug = newSlug("imp")
        const imported = yield* admin.client.workflows.import({
          payload: { slug: importedSlug, display_name: "Imported", graph: exported.graph },
          headers: {}
        })
        expect(imported).toMatchObject({ slug: importedSlug, owner_id: admin.user.id, versions_count: 1 })
        expect(imported.active_version?.graph).toEqual(v2.graph)
        const reimported = yield* admin.client.workflows.import({
          payload: { slug: wf.slug, graph: graphOf(["assistant_message"]), mark_as_active: true },
          headers: {}
        })
        expect(reimported.id).toBe(wf.id)
        expect(reimported.versions_count).toBe(5)
        expect(reimported.active_version?.version).toBe(5)

        expect(yield* auditActions(wf.id)).toEqual([
          "workflow.create",
          "workflow.version.create",
          "workflow.version.create",
          "workflow.version.create",
          "workflow.version.activate",
          "workflow.import"
        ])
        expect(yield* auditActions(imported.id)).toEqual(["workflow.import"])
      }))
  })

  describe("shares", () => {
    it.effect("read shares read, write shares edit, only owner or admin manage shares", () =>
      Effect.gen(function*() {
        const owner = yield* session("share-owner")
        const reader = yield* session("share-reader")
        const writer = yield* session("share-writer")
        const wf = yield* owner.client.workflows.create({
          payload: { slug: newSlug("share"), display_name: "S" },
          headers: {}
        })

        expect(
          yield* Effect.flip(
            owner.client.workflows.createShare({
              path: { id: wf.id },
              payload: { user_email: emailOf("nobody"), permission: "read" }
            })
          )
        ).toBeInstanceOf(NotFound)

        const [share, response] = yield* owner.client.workflows.createShare({
          path: { id: wf.id },
          payload: { user_email: reader.user.email, permission: "read" },
          withResponse: true
        })
        expect(response.status).toBe(201)
        expect(share).toMatchObject({ user_id: reader.user.id, permission: "read", email: reader.user.email })
        expect(
          yield* Effect.flip(
            owner.client.workflows.createShare({
              path: { id: wf.id },
              payload: { user_email: reader.user.email, permission: "write" }
            })
          )
        ).toBeInstanceOf(Conflict)
        yield* owner.client.workflows.createShare({
          path: { id: wf.id },
          payload: { user_email: writer.user.email, permission: "write" }
        })

        // read share: sees it, cannot change it (403: it is visible to them)
        const seen = yield* reader.client.workflows.list({ urlParams: {} })
        expect(seen.items.map((w) => w.id)).toEqual([wf.id])
        expect(seen.items[0]?.shared_with.map((s) => [s.user_id, s.permission])).toEqual([
          [reader.user.id, "read"],
          [writer.user.id, "write"]
        ])
        expect((yield* reader.client.workflows.get({ path: { id: wf.id } })).id).toBe(wf.id)
        expect(
          yield* Effect.flip(reader.client.workflows.update({ path: { id: wf.id }, payload: { display_name: "no" } }))
        )
          .toBeInstanceOf(Forbidden)
        expect(
          yield* Effect.flip(
            reader.client.workflows.createVersion({
              path: { id: wf.id },
              payload: { graph: graphOf(["agent"]) },
              headers: {}
            })
          )
        ).toBeInstanceOf(Forbidden)

        // write share: edits and versions, but neither deletes nor manages shares
        expect(
          (yield* writer.client.workflows.update({ path: { id: wf.id }, payload: { display_name: "W" } })).display_name
        ).toBe("W")
        const v2 = yield* writer.client.workflows.createVersion({
          path: { id: wf.id },
          payload: { graph: graphOf(["agent"]), mark_as_active: true },
          headers: {}
        })
        expect(v2.is_active).toBe(true)
        expect(yield* Effect.flip(writer.client.workflows.delete({ path: { id: wf.id } }))).toBeInstanceOf(Forbidden)
        expect(
          yield* Effect.flip(
            writer.client.workflows.updateShare({
              path: { id: wf.id, user_id: reader.user.id },
              payload: { permission: "write" }
            })
          )
        ).toBeInstanceOf(Forbidden)

        const upgraded = yield* owner.client.workflows.updateShare({
          path: { id: wf.id, user_id: reader.user.id },
          payload: { permission: "write" }
        })
        expect(upgraded.permission).toBe("write")
        const shares = yield* owner.client.workflows.listShares({ path: { id: wf.id }, urlParams: {} })
        expect(shares.items.map((s) => s.permission)).toEqual(["write", "write"])
        yield* owner.client.workflows.deleteShare({ path: { id: wf.id, user_id: reader.user.id } })
        expect(yield* Effect.flip(reader.client.workflows.get({ path: { id: wf.id } }))).toBeInstanceOf(NotFound)
        expect(yield* Effect.flip(owner.client.workflows.deleteShare({ path: { id: wf.id, user_id: reader.user.id } })))
          .toBeInstanceOf(NotFound)

        expect(yield* auditActions(wf.id)).toEqual([
          "workflow.create",
          "workflow.share.create",
          "workflow.share.create",
          "workflow.update",
          "workflow.version.create",
          "workflow.version.activate",
          "workflow.share.update",
          "workflow.share.delete"
        ])
      }))
  })

  describe("cache", () => {
    const currentVersion = (client: Client) => Effect.map(client.workflows.current(), (c) => c.version.version)

    it.effect("the default workflow is read through the cache and invalidated by every write that changes it", () =>
      Effect.gen(function*() {
        const cache = yield* Cache
        const admin = yield* session("cache-admin", { isAdmin: true })
        const wf = yield* admin.client.workflows.create({
          payload: { slug: newSlug("cached"), display_name: "C" },
          headers: {}
        })
        const previous = yield* admin.client.workflows.current()

        // setting the default
        yield* admin.client.workflows.setDefault({ payload: { workflow_id: wf.id } })
        expect((yield* admin.client.workflows.current()).workflow_id).toBe(wf.id)
        expect(Option.isSome(yield* cache.get(CURRENT_KEY, Schema_Current))).toBe(true)

        // creating a version with mark_as_active
        yield* admin.client.workflows.createVersion({
          path: { id: wf.id },
          payload: { graph: graphOf(["agent", "agent"]), mark_as_active: true },
          headers: {}
        })
        expect(yield* currentVersion(admin.client)).toBe(2)
        // ... and without it: nothing changes, the cached value stays
        yield* admin.client.workflows.createVersion({
          path: { id: wf.id },
          payload: { graph: graphOf(["state"]) },
          headers: {}
        })
        expect(yield* currentVersion(admin.client)).toBe(2)

        // activating a version
        const v1 = (yield* admin.client.workflows.listVersions({ path: { id: wf.id }, urlParams: {} })).items.find((
          v
        ) => v.version === 1)
        yield* admin.client.workflows.activate({ path: { id: wf.id }, payload: { version_id: v1?.id ?? 0 } })
        expect(yield* currentVersion(admin.client)).toBe(1)

        // patching the default workflow
        yield* admin.client.workflows.update({ path: { id: wf.id }, payload: { display_name: "Renamed default" } })
        expect((yield* admin.client.workflows.current()).display_name).toBe("Renamed default")

        // the default cannot be deleted; another one can, and its cached active version goes
        expect(yield* Effect.flip(admin.client.workflows.delete({ path: { id: wf.id } }))).toBeInstanceOf(Conflict)
        yield* admin.client.workflows.setDefault({ payload: { workflow_id: previous.workflow_id } })
        expect((yield* admin.client.workflows.current()).workflow_id).toBe(previous.workflow_id)
        yield* admin.client.workflows.get({ path: { id: wf.id } })
        expect(Option.isSome(yield* cache.get(activeKey(wf.id), Schema_Version))).toBe(true)
        yield* admin.client.workflows.delete({ path: { id: wf.id } })
        expect(Option.isNone(yield* cache.get(activeKey(wf.id), Schema_Version))).toBe(true)

        expect(yield* auditActions(wf.id)).toContain("workflow.default.set")
      }))

    it.effect("a new thread runs the default workflow, whose choice is read through the cache", () =>
      Effect.gen(function*() {
        const admin = yield* session("default-thread-admin", { isAdmin: true })
        const fixed = (text: string) => ({
          nodes: [
            { slug: "start", kind: "start" },
            { slug: "say", kind: "assistant_message", parameters: { text } },
            { slug: "end", kind: "end" }
          ],
          edges: [{ source: "start", target: "say" }, { source: "say", target: "end" }]
        })
        const wf = yield* admin.client.workflows.create({
          payload: { slug: newSlug("greeter"), display_name: "Greeter", graph: fixed("Hello from the greeter") },
          headers: {}
        })
        const previous = yield* admin.client.workflows.current()
        const answer = Effect.map(
          chatkit(admin.token, { type: "threads.create", params: { input: say("Hi") } }),
          (response) => answerOf(eventsOf(response))
        )
        const before = yield* answer
        expect(before).not.toBe("Hello from the greeter")

        yield* admin.client.workflows.setDefault({ payload: { workflow_id: wf.id } })
        expect(yield* answer).toBe("Hello from the greeter")
        yield* admin.client.workflows.createVersion({
          path: { id: wf.id },
          payload: { graph: fixed("Hello from version 2"), mark_as_active: true },
          headers: {}
        })
        expect(yield* answer).toBe("Hello from version 2")
        yield* admin.client.workflows.setDefault({ payload: { workflow_id: previous.workflow_id } })
        expect(yield* answer).not.toMatch(/^Hello from/)
      }))

    it.effect("each workflow's active version is cached and invalidated on activation", () =>
      Effect.gen(function*() {
        const cache = yield* Cache
        const { client } = yield* session("cache-owner")
        const wf = yield* client.workflows.create({ payload: { slug: newSlug("act"), display_name: "A" }, headers: {} })
        expect(Option.map(yield* cache.get(activeKey(wf.id), Schema_Version), Option.map((v) => v.version))).toEqual(
          Option.some(Option.some(1))
        )
        const v2 = yield* client.workflows.createVersion({
          path: { id: wf.id },
          payload: { graph: graphOf(["agent"]) },
          headers: {}
        })
        expect((yield* client.workflows.get({ path: { id: wf.id } })).active_version?.version).toBe(1)
        yield* client.workflows.activate({ path: { id: wf.id }, payload: { version_id: v2.id } })
        expect((yield* client.workflows.get({ path: { id: wf.id } })).active_version?.version).toBe(2)
      }))
  })

  describe("queries", () => {
    it.effect("lists workflows with owner, shares and version counts in a constant number of statements", () =>
      Effect.gen(function*() {
        const few = yield* session("few-owner")
        const many = yield* session("many-owner")
        const friend = yield* session("friend")
        const make = (s: typeof few, n: number) =>
          Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
            Effect.gen(function*() {
              const wf = yield* s.client.workflows.create({
                payload: { slug: newSlug(`q${i}`), display_name: `Q${i}` },
                headers: {}
              })
              if (i % 2 === 0) {
                yield* s.client.workflows.createShare({
                  path: { id: wf.id },
                  payload: { user_email: friend.user.email, permission: "read" }
                })
              }
            }), { concurrency: 4 })
        yield* make(few, 3)
        yield* make(many, 60)
        // warm the authentication cache of both callers
        yield* few.client.workflows.list({ urlParams: {} })
        yield* many.client.workflows.list({ urlParams: {} })
        const small = yield* countQueries(few.client.workflows.list({ urlParams: { page_size: 100 } }))
        const large = yield* countQueries(many.client.workflows.list({ urlParams: { page_size: 100 } }))
        expect(small.result.items).toHaveLength(3)
        expect(large.result.items).toHaveLength(60)
        // created concurrently, so ids do not follow i: count the shared ones instead
        expect(large.result.items.filter((w) => w.shared_with.length === 1)).toHaveLength(30)
        expect(large.result.items.every((w) => w.versions_count === 1)).toBe(true)
        expect(large.queries).toBe(small.queries)
        expect(large.queries).toBeLessThanOrEqual(2)
      }))

    it.effect("lists versions and shares in a constant number of statements", () =>
      Effect.gen(function*() {
        const owner = yield* session("lists-owner")
        const friends = yield* Effect.forEach(
          Array.from({ length: 8 }, (_, i) => i),
          (i) => session(`lists-friend-${i}`)
        )
        const workflow = (slug: string) =>
          owner.client.workflows.create({ payload: { slug: newSlug(slug), display_name: slug }, headers: {} })
        const small = yield* workflow("lists-small")
        const large = yield* workflow("lists-large")
        yield* owner.client.workflows.createVersion({
          path: { id: small.id },
          payload: { graph: graphOf(["agent"]) },
          headers: {}
        })
        yield* Effect.forEach(Array.from({ length: 11 }, (_, i) => i), () =>
          owner.client.workflows.createVersion({
            path: { id: large.id },
            payload: { graph: graphOf(["agent"]) },
            headers: {}
          }))
        yield* owner.client.workflows.createShare({
          path: { id: small.id },
          payload: { user_email: friends[0]!.user.email, permission: "read" }
        })
        yield* Effect.forEach(friends, (friend) =>
          owner.client.workflows.createShare({
            path: { id: large.id },
            payload: { user_email: friend.user.email, permission: "write" }
          }))
        yield* owner.client.workflows.list({ urlParams: {} }) // warm the authentication cache

        const versions = (id: number) =>
          countQueries(owner.client.workflows.listVersions({ path: { id }, urlParams: { page_size: 100 } }))
        const [fewVersions, manyVersions] = [yield* versions(small.id), yield* versions(large.id)]
        expect(fewVersions.result.items).toHaveLength(2)
        expect(manyVersions.result.items).toHaveLength(12)
        expect(fewVersions.queries).toBeGreaterThan(0)
        expect(manyVersions.queries).toBe(fewVersions.queries)

        const shares = (id: number) =>
          countQueries(owner.client.workflows.listShares({ path: { id }, urlParams: { page_size: 100 } }))
        const [fewShares, manyShares] = [yield* shares(small.id), yield* shares(large.id)]
        expect(fewShares.result.items).toHaveLength(1)
        expect(manyShares.result.items).toHaveLength(8)
        expect(fewShares.queries).toBeGreaterThan(0)
        expect(manyShares.queries).toBe(fewShares.queries)
      }))
  })
})

/** What the service caches under CURRENT_KEY and activeKey(id). */
const Schema_Current = Schema.Option(CurrentWorkflow)
const Schema_Version = Schema.Option(WorkflowVersion)
