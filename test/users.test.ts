import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import { SqlClient } from "@effect/sql"
import { describe, expect, it as vitestIt, layer } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"

import { Conflict, Forbidden, NotFound, Unauthorized } from "../src/domain/errors.js"
import type { UserId } from "../src/domain/User.js"
import { Passwords } from "../src/features/auth/Passwords.js"
import { BootstrapAdmin, createAdminIfAbsent } from "../src/features/users/Bootstrap.js"
import { containsPattern } from "../src/features/users/Repo.js"
import { testConfig } from "../src/platform/Config.js"
import { chatkitClient, TestApp } from "./support/app.js"
import { clientAs, emailOf, login, PASSWORD, raw, runId, seedLayer, seedUser, session } from "./support/session.js"

const adminSession = (name: string) => session(name, { isAdmin: true })

interface AuditRow {
  readonly action: string
  readonly user_id: number | null
  readonly resource_id: string | null
  readonly changes: Record<string, unknown>
}

const auditRowsFor = (id: number) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<AuditRow>`SELECT action, user_id, resource_id, changes FROM audit_logs
      WHERE resource_type = 'user' AND resource_id = ${String(id)} AND action LIKE 'user.%' ORDER BY id`
  )

layer(TestApp("users", { TRUST_PROXY: "1" }), { timeout: 120_000 })("admin user management", (it) => {
  it.effect("refuses non-admins with 403 on every endpoint, and anonymous callers with 401", () =>
    Effect.gen(function*() {
      const { client, user } = yield* session("plain")
      const forbidden = [
        yield* Effect.flip(client.users.list({ urlParams: {} })),
        yield* Effect.flip(client.users.get({ path: { id: user.id } })),
        yield* Effect.flip(
          client.users.create({ payload: { email: emailOf("nope"), password: Redacted.make(PASSWORD) }, headers: {} })
        ),
        yield* Effect.flip(client.users.update({ path: { id: user.id }, payload: { is_admin: true } })),
        yield* Effect.flip(client.users.delete({ path: { id: user.id } })),
        yield* Effect.flip(client.users.restore({ path: { id: user.id } }))
      ]
      for (const error of forbidden) expect(error).toBeInstanceOf(Forbidden)
      const anonymous = yield* clientAs()
      expect(yield* Effect.flip(anonymous.users.list({ urlParams: {} }))).toBeInstanceOf(Unauthorized)
    }))

  it.effect("creates, reads, updates, deletes and restores a user, each change audited with secrets masked", () =>
    Effect.gen(function*() {
      const { client, user: admin } = yield* adminSession("crud-admin")
      const email = emailOf("Crud-User").toUpperCase()
      const [created, response] = yield* client.users.create({
        payload: { email, password: Redacted.make(PASSWORD), display_name: "Crud User" },
        headers: {},
        withResponse: true
      })
      expect(response.status).toBe(201)
      expect(created).toMatchObject({
        email: email.toLowerCase(),
        display_name: "Crud User",
        is_admin: false,
        is_lti: false
      })
      expect(created.deleted_at).toBeNull()
      expect(yield* client.users.get({ path: { id: created.id } })).toEqual(created)

      // the new user can log in with the password the admin set
      expect((yield* login(created.email)).user.id).toBe(created.id)

      const updated = yield* client.users.update({
        path: { id: created.id },
        payload: { display_name: "Renamed", is_admin: true }
      })
      expect(updated).toMatchObject({ display_name: "Renamed", is_admin: true })
      expect(updated.updated_at.getTime()).toBeGreaterThanOrEqual(created.updated_at.getTime())
      // a PATCH that changes nothing writes nothing
      expect(yield* client.users.update({ path: { id: created.id }, payload: { display_name: "Renamed" } })).toEqual(
        updated
      )
      const cleared = yield* client.users.update({ path: { id: created.id }, payload: { display_name: null } })
      expect(cleared.display_name).toBeNull()

      yield* client.users.delete({ path: { id: created.id } })
      const deleted = yield* client.users.get({ path: { id: created.id } })
      expect(deleted.deleted_at).toBeInstanceOf(Date)
      expect(yield* Effect.flip(client.users.delete({ path: { id: created.id } }))).toBeInstanceOf(NotFound)
      expect(yield* Effect.flip(client.users.update({ path: { id: created.id }, payload: { display_name: "x" } })))
        .toBeInstanceOf(NotFound)
      expect(yield* Effect.flip(login(created.email))).toBeInstanceOf(Unauthorized)

      const restored = yield* client.users.restore({ path: { id: created.id } })
      expect(restored).toMatchObject({ id: created.id, deleted_at: null, display_name: null, is_admin: true })
      // restoring a live user is a no-op
      expect((yield* client.users.restore({ path: { id: created.id } })).deleted_at).toBeNull()
      expect((yield* login(created.email)).user.id).toBe(created.id)

      expect(yield* Effect.flip(client.users.get({ path: { id: 987654 as UserId } }))).toBeInstanceOf(NotFound)

      const rows = yield* auditRowsFor(created.id)
      expect(rows.map((r) => r.action)).toEqual([
        "user.create",
        "user.update",
        "user.update",
        "user.delete",
        "user.restore"
      ])
      for (const row of rows) expect(row.user_id).toBe(admin.id)
      expect(rows[0]?.changes).toEqual({
        email: { from: null, to: email.toLowerCase() },
        display_name: { from: null, to: "Crud User" },
        is_admin: { from: null, to: false },
        password: "***"
      })
      expect(rows[1]?.changes).toEqual({
        display_name: { from: "Crud User", to: "Renamed" },
        is_admin: { from: false, to: true }
      })
      expect(rows[3]?.changes).toMatchObject({ deleted_at: { from: null } })
      expect(rows[4]?.changes).toMatchObject({ deleted_at: { to: null } })
      const text = JSON.stringify(rows)
      expect(text).not.toContain(PASSWORD)
      expect(text).not.toContain("$argon2")
    }))

  it.effect("paginates in id order with the true total, also past the end", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("page-admin")
      const tag = `pg${runId}`
      const ids: Array<number> = []
      for (let i = 0; i < 7; i++) ids.push((yield* seedUser(`page-${i}`, { displayName: `${tag} member ${i}` })).id)

      const first = yield* client.users.list({ urlParams: { q: tag, page: 1, page_size: 3 } })
      expect(first).toMatchObject({ total: 7, page: 1, page_size: 3, total_pages: 3 })
      expect(first.items.map((u) => u.id)).toEqual(ids.slice(0, 3))
      const last = yield* client.users.list({ urlParams: { q: tag, page: 3, page_size: 3 } })
      expect(last.items.map((u) => u.id)).toEqual(ids.slice(6))
      const past = yield* client.users.list({ urlParams: { q: tag, page: 9, page_size: 3 } })
      expect(past).toEqual({ items: [], total: 7, page: 9, page_size: 3, total_pages: 3 })

      const everyone = yield* client.users.list({ urlParams: {} })
      expect(everyone.page_size).toBe(20)
      const order = everyone.items.map((u) => u.id)
      expect(order).toEqual([...order].sort((a, b) => a - b))

      const empty = yield* client.users.list({ urlParams: { q: `nobody-${runId}` } })
      expect(empty).toEqual({ items: [], total: 0, page: 1, page_size: 20, total_pages: 0 })
    }))

  it.effect("refuses page_size 0 or 101, page 0 and q over 200 characters with 400", () =>
    Effect.gen(function*() {
      const { tokens } = yield* adminSession("bad-params-admin")
      for (
        const query of [
          "page_size=0",
          "page_size=101",
          "page=0",
          "page=abc",
          `q=${"a".repeat(201)}`,
          "include_deleted=maybe"
        ]
      ) {
        const response = yield* raw("GET", `/api/v1/admin/users?${query}`, { token: tokens.access_token })
        expect(response.status, query).toBe(400)
        expect(response.body.error).toBe("validation_error")
      }
      const longest = yield* raw("GET", `/api/v1/admin/users?q=${"a".repeat(200)}`, { token: tokens.access_token })
      expect(longest.status).toBe(200)
      const huge = yield* raw("GET", `/api/v1/admin/users?q=${"%25".repeat(5000)}`, { token: tokens.access_token })
      expect(huge.status).toBe(400)
    }))

  it.effect("searches email and display name case-insensitively, taking %, _, \\ and SQL-ish text literally", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("search-admin")
      const tag = `sr${runId}`
      const percent = yield* seedUser(`${tag}-pct`, { displayName: "100% Sure" })
      const underscore = yield* seedUser(`${tag}-und`, { displayName: "snake_case" })
      const backslash = yield* seedUser(`${tag}-bsl`, { displayName: "back\\slash" })
      const quote = yield* seedUser(`${tag}-quo`, { displayName: "O'Brien'; DROP TABLE users; --" })
      const mixed = yield* seedUser(`${tag}-MiXeD`, { displayName: "Zoë Ünïcode" })
      const search = (q: string) =>
        Effect.map(client.users.list({ urlParams: { q, page_size: 100 } }), (page) => page.items.map((u) => u.id))

      expect(yield* search(`${tag}-pct`)).toEqual([percent.id])
      expect(yield* search(tag.toUpperCase())).toEqual([percent.id, underscore.id, backslash.id, quote.id, mixed.id])
      expect(yield* search("100%")).toEqual([percent.id])
      expect(yield* search("%")).toEqual([percent.id])
      expect(yield* search("e_c")).toEqual([underscore.id])
      expect(yield* search("_")).toEqual([underscore.id])
      expect(yield* search("\\")).toEqual([backslash.id])
      expect(yield* search("k\\s")).toEqual([backslash.id])
      expect(yield* search("'; DROP TABLE users; --")).toEqual([quote.id])
      expect(yield* search("' OR '1'='1")).toEqual([])
      expect(yield* search("zoë ünï")).toEqual([mixed.id])
      expect(yield* search("x".repeat(200))).toEqual([])
      // the table survived
      expect((yield* client.users.list({ urlParams: {} })).total).toBeGreaterThan(5)
      expect(containsPattern("a%b_c\\d")).toBe("%a\\%b\\_c\\\\d%")
    }))

  it.effect("lists soft-deleted users only with include_deleted=true", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("deleted-admin")
      const tag = `dl${runId}`
      const kept = yield* seedUser(`${tag}-kept`)
      const gone = yield* seedUser(`${tag}-gone`)
      yield* client.users.delete({ path: { id: gone.id } })
      const live = yield* client.users.list({ urlParams: { q: tag } })
      expect(live.items.map((u) => u.id)).toEqual([kept.id])
      expect(live.total).toBe(1)
      const all = yield* client.users.list({ urlParams: { q: tag, include_deleted: true } })
      expect(all.items.map((u) => [u.id, u.deleted_at === null])).toEqual([[kept.id, true], [gone.id, false]])
      expect(all.total).toBe(2)
      expect((yield* client.users.list({ urlParams: { q: tag, include_deleted: false } })).total).toBe(1)
    }))

  it.effect("answers 409 for an email taken by a live user, whatever its case", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("dup-admin")
      const email = emailOf("dup")
      yield* client.users.create({ payload: { email, password: Redacted.make(PASSWORD) }, headers: {} })
      const error = yield* Effect.flip(
        client.users.create({ payload: { email: email.toUpperCase(), password: Redacted.make(PASSWORD) }, headers: {} })
      )
      expect(error).toBeInstanceOf(Conflict)
      const page = yield* client.users.list({ urlParams: { q: email } })
      expect(page.total).toBe(1)
    }))

  it.effect("refuses to let an admin delete or demote themself (409), but not another admin", () =>
    Effect.gen(function*() {
      const { client, user: admin } = yield* adminSession("self-admin")
      expect(yield* Effect.flip(client.users.delete({ path: { id: admin.id } }))).toBeInstanceOf(Conflict)
      expect(yield* Effect.flip(client.users.update({ path: { id: admin.id }, payload: { is_admin: false } })))
        .toBeInstanceOf(Conflict)
      // the rest of a self-update is fine
      expect(
        (yield* client.users.update({ path: { id: admin.id }, payload: { is_admin: true, display_name: "Me" } }))
          .display_name
      ).toBe("Me")
      expect((yield* client.users.get({ path: { id: admin.id } })).is_admin).toBe(true)

      const other = yield* seedUser("self-other", { isAdmin: true })
      expect((yield* client.users.update({ path: { id: other.id }, payload: { is_admin: false } })).is_admin).toBe(
        false
      )
    }))

  it.effect("answers 409 when restoring a user whose email a live user took meanwhile", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("restore-admin")
      const email = emailOf("restore")
      const first = yield* client.users.create({ payload: { email, password: Redacted.make(PASSWORD) }, headers: {} })
      yield* client.users.delete({ path: { id: first.id } })
      const second = yield* client.users.create({ payload: { email, password: Redacted.make(PASSWORD) }, headers: {} })
      expect(second.id).not.toBe(first.id)

      const error = yield* Effect.flip(client.users.restore({ path: { id: first.id } }))
      expect(error).toBeInstanceOf(Conflict)
      expect((yield* client.users.get({ path: { id: first.id } })).deleted_at).toBeInstanceOf(Date)
      expect((yield* auditRowsFor(first.id)).map((r) => r.action)).toEqual(["user.create", "user.delete"])

      // once the other one is gone, the restore goes through
      yield* client.users.delete({ path: { id: second.id } })
      expect((yield* client.users.restore({ path: { id: first.id } })).deleted_at).toBeNull()
    }))

  it.effect("a password change revokes the user's refresh tokens and is audited without the password", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("pw-admin")
      const { tokens, user } = yield* session("pw-user")
      const anonymous = yield* clientAs()
      const newPassword = "an entirely new passphrase"
      yield* client.users.update({ path: { id: user.id }, payload: { password: Redacted.make(newPassword) } })

      const refused = yield* Effect.flip(
        anonymous.auth.refresh({ payload: { refresh_token: Redacted.make(tokens.refresh_token) } })
      )
      expect(refused).toBeInstanceOf(Unauthorized)
      expect(yield* Effect.flip(login(user.email))).toBeInstanceOf(Unauthorized)
      expect((yield* login(user.email, newPassword)).user.id).toBe(user.id)

      const rows = yield* auditRowsFor(user.id)
      expect(rows.map((r) => r.action)).toEqual(["user.password.change"])
      expect(rows[0]?.changes).toEqual({ password: "***", sessions_revoked: 1 })
      expect(JSON.stringify(rows)).not.toContain(newPassword)
    }))

  it.effect("a deleted user loses access at once, and so does a demoted admin's admin access", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("access-admin")
      const victim = yield* session("access-victim")
      expect((yield* victim.client.auth.me()).id).toBe(victim.user.id) // now cached
      yield* client.users.delete({ path: { id: victim.user.id } })
      expect(yield* Effect.flip(victim.client.auth.me())).toBeInstanceOf(Unauthorized)
      const anonymous = yield* clientAs()
      expect(
        yield* Effect.flip(
          anonymous.auth.refresh({ payload: { refresh_token: Redacted.make(victim.tokens.refresh_token) } })
        )
      ).toBeInstanceOf(Unauthorized)

      const demoted = yield* adminSession("access-demoted")
      expect((yield* demoted.client.users.list({ urlParams: {} })).total).toBeGreaterThan(0)
      yield* client.users.update({ path: { id: demoted.user.id }, payload: { is_admin: false } })
      expect(yield* Effect.flip(demoted.client.users.list({ urlParams: {} }))).toBeInstanceOf(Forbidden)
      expect((yield* demoted.client.auth.me()).is_admin).toBe(false)
    }))

  it.effect("replays a create sent again with the same Idempotency-Key and body; another body is a 409", () =>
    Effect.gen(function*() {
      const { client } = yield* adminSession("idem-admin")
      const key = `key-${runId}`
      const payload = { email: emailOf("idem"), password: Redacted.make(PASSWORD), display_name: "Idem" }
      const [first, firstResponse] = yield* client.users.create({
        payload,
        headers: { "idempotency-key": key },
        withResponse: true
      })
      const [again, againResponse] = yield* client.users.create({
        payload,
        headers: { "idempotency-key": key },
        withResponse: true
      })
      expect(firstResponse.status).toBe(201)
      expect(againResponse.status).toBe(201)
      expect(again).toEqual(first)
      expect(againResponse.headers["idempotent-replayed"]).toBe("true")
      expect((yield* client.users.list({ urlParams: { q: payload.email } })).total).toBe(1)
      expect((yield* auditRowsFor(first.id)).map((r) => r.action)).toEqual(["user.create"])

      // same body but another password: not the same request
      const otherPassword = yield* Effect.flip(client.users.create({
        payload: { ...payload, password: Redacted.make(`${PASSWORD}!`) },
        headers: { "idempotency-key": key }
      }))
      expect(otherPassword).toBeInstanceOf(Conflict)
      const otherBody = yield* Effect.flip(client.users.create({
        payload: { ...payload, email: emailOf("idem-other") },
        headers: { "idempotency-key": key }
      }))
      expect(otherBody).toBeInstanceOf(Conflict)
      expect((yield* client.users.list({ urlParams: { q: emailOf("idem-other") } })).total).toBe(0)

      // the stored request fingerprint holds no plain password
      const stored = yield* Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql<{ row: string }>`SELECT row_to_json(k)::text AS row FROM idempotency_keys k WHERE key = ${key}`
      )
      expect(stored).toHaveLength(1)
      expect(stored[0]?.row).not.toContain(PASSWORD)
    }))

  describe("bootstrap admin", () => {
    const bootstrapLayer = (email: string) =>
      BootstrapAdmin.pipe(
        Layer.provide(testConfig({ ADMIN_EMAIL: email, ADMIN_PASSWORD: PASSWORD })),
        Layer.provide(Passwords.layerTest)
      )
    const bootstrapOnce = (email: string) => Effect.scoped(Layer.build(bootstrapLayer(email)))
    const adminsWith = (email: string) =>
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql<{ id: number; is_admin: boolean }>`SELECT id, is_admin FROM users WHERE email = ${email}`
      )
    const bootstrapAudits = (email: string) =>
      Effect.flatMap(
        SqlClient.SqlClient,
        (sql) =>
          sql<{ changes: Record<string, unknown> }>`SELECT changes FROM audit_logs
          WHERE action = 'user.create' AND changes -> 'email' ->> 'to' = ${email}`
      )

    it.effect("creates the configured admin once, however often it runs", () =>
      Effect.gen(function*() {
        const email = emailOf("boot")
        yield* bootstrapOnce(email.toUpperCase())
        yield* bootstrapOnce(email)
        const rows = yield* adminsWith(email)
        expect(rows).toHaveLength(1)
        expect(rows[0]?.is_admin).toBe(true)
        const audits = yield* bootstrapAudits(email)
        expect(audits).toHaveLength(1)
        expect(audits[0]?.changes).toMatchObject({ source: "bootstrap", password: "***", is_admin: { to: true } })
        expect((yield* login(email)).user.is_admin).toBe(true)
      }))

    it.effect("creates exactly one admin when two instances start at once", () =>
      Effect.gen(function*() {
        const email = emailOf("boot-race")
        yield* Effect.all([bootstrapOnce(email), bootstrapOnce(email), bootstrapOnce(email)], {
          concurrency: "unbounded"
        })
        expect(yield* adminsWith(email)).toHaveLength(1)
        expect(yield* bootstrapAudits(email)).toHaveLength(1)

        const direct = emailOf("boot-direct")
        const results = yield* Effect.all(
          [1, 2].map(() =>
            createAdminIfAbsent({ email: direct, password: Redacted.make(PASSWORD), source: "bootstrap" })
          ),
          { concurrency: "unbounded" }
        ).pipe(Effect.provide(seedLayer))
        expect(results.filter(Option.isSome)).toHaveLength(1)
        expect(yield* adminsWith(direct)).toHaveLength(1)
      }))

    it.effect("refuses a password outside 12-256 characters without echoing it", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Effect.scoped(Layer.build(
            BootstrapAdmin.pipe(
              Layer.provide(testConfig({ ADMIN_EMAIL: emailOf("boot-short"), ADMIN_PASSWORD: "short-pw" })),
              Layer.provide(Passwords.layerTest)
            )
          ))
        )
        expect(error.message).toContain("12 to 256")
        expect(error.message).not.toContain("short-pw")
        expect(yield* adminsWith(emailOf("boot-short"))).toHaveLength(0)
      }))
  })
})

const bootEmail = emailOf("started")
layer(TestApp("users_bootstrap", { ADMIN_EMAIL: bootEmail, ADMIN_PASSWORD: PASSWORD, TRUST_PROXY: "1" }), {
  timeout: 120_000
})(
  "with ADMIN_EMAIL and ADMIN_PASSWORD set",
  (it) => {
    it.effect("the server starts with that admin, who can use the admin API", () =>
      Effect.gen(function*() {
        const tokens = yield* login(bootEmail)
        expect(tokens.user.is_admin).toBe(true)
        const admin = yield* clientAs(tokens.access_token)
        const page = yield* admin.users.list({ urlParams: {} })
        expect(page.items.map((u) => u.email)).toEqual([bootEmail])
        const plain = yield* chatkitClient
        expect((yield* plain.operations.health()).status).toBe("ok")
      }))
  }
)

interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a CLI script with tsx, on the embedded database in `dataDir`. */
const cli = (dataDir: string, script: string, args: ReadonlyArray<string>, input?: string) =>
  new Promise<Ran>((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, CHATKIT_DATA_DIR: dataDir, LOG_LEVEL: "warning" }
    for (const name of ["DATABASE_URL", "REDIS_URL", "ADMIN_EMAIL", "ADMIN_PASSWORD", "NODE_ENV"]) delete env[name]
    // node with tsx's loader: one process (`npx tsx` starts three, a second more a run)
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
      cwd: process.cwd(),
      env,
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(input ?? "")
  })

describe("users CLI", () => {
  vitestIt(
    "creates an admin from a password file or stdin and lists users; errors exit 1 without a stack",
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "chatkit-cli-"))
      try {
        const passwordFile = join(dataDir, "admin-password")
        writeFileSync(passwordFile, `${PASSWORD}\nignored second line\n`)

        const early = await cli(dataDir, "src/cli/main.ts", ["users", "list"])
        expect(early.code).toBe(1)
        expect(early.stderr).toContain("run npm run migrate -- up first")
        expect(early.stderr).not.toMatch(/\n\s+at /)

        expect((await cli(dataDir, "src/cli/migrate.ts", ["up"])).code).toBe(0)

        const created = await cli(dataDir, "src/cli/main.ts", [
          "users",
          "create-admin",
          "--email",
          "Root@Example.com",
          "--password-file",
          passwordFile
        ])
        expect(created.stderr).toBe("")
        expect(created.code).toBe(0)
        expect(created.stdout).toContain("Created administrator root@example.com (id 1)")

        const again = await cli(dataDir, "src/cli/main.ts", [
          "users",
          "create-admin",
          "--email",
          "root@example.com",
          "--password-file",
          passwordFile
        ])
        expect(again.code).toBe(1)
        expect(again.stderr).toContain("already exists")

        const short = await cli(
          dataDir,
          "src/cli/main.ts",
          ["users", "create-admin", "--email", "other@example.com"],
          "too-short\n"
        )
        expect(short.code).toBe(1)
        expect(short.stderr).toContain("12 to 256")
        expect(short.stderr).not.toContain("too-short")

        const piped = await cli(
          dataDir,
          "src/cli/main.ts",
          ["users", "create-admin", "--email", "second@example.com"],
          "a password from stdin\nnot this line\n"
        )
        expect(piped.code).toBe(0)
        expect(piped.stdout).toContain("Created administrator second@example.com (id 2)")

        const listed = await cli(dataDir, "src/cli/main.ts", ["users", "list", "--page-size", "10"])
        expect(listed.code).toBe(0)
        const lines = listed.stdout.trim().split("\n")
        expect(lines[0]).toMatch(/^ID\s+EMAIL\s+DISPLAY NAME\s+ADMIN\s+CREATED AT\s+DELETED AT$/)
        expect(lines[1]).toMatch(/^1\s+root@example\.com\s+-\s+yes\s+\d{4}-/)
        expect(lines[2]).toMatch(/^2\s+second@example\.com\s+-\s+yes\s+/)
        expect(listed.stdout).toContain("Page 1 of 1, 2 users.")

        const filtered = await cli(dataDir, "src/cli/main.ts", ["users", "list", "--q", "SECOND"])
        expect(filtered.stdout).toContain("second@example.com")
        expect(filtered.stdout).not.toContain("root@example.com")
      } finally {
        rmSync(dataDir, { recursive: true, force: true })
      }
    },
    240_000
  )
})
