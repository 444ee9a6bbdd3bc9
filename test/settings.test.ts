import { HttpClient, HttpClientResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { afterAll, describe, expect, layer } from "@effect/vitest"
import { Effect, Either, Redacted } from "effect"

import { Forbidden, Unauthorized } from "../src/domain/errors.js"
import { makeSecretBox } from "../src/features/settings/SecretBox.js"
import { chatkitClient, TestApp } from "./support/app.js"
import { freePort } from "./support/network.js"
import { countQueries } from "./support/queries.js"
import { clientAs as sharedClientAs, raw as sharedRaw, runId, session as sharedSession } from "./support/session.js"

/** testConfig's AUTH_SECRET_KEY: with no APP_SETTINGS_SECRET_KEY, the key the app seals with. */
const AUTH_SECRET = "test-secret-key-0123456789-abcdefghijkl"
/** A raw API key no response body of this file may ever contain. */
const RAW_KEY = `sk-RAWKEY-${runId}-never-returned-0001`
const RAW_KEY_2 = `sk-RAWKEY-${runId}-never-returned-0002`

/** Every response body this file receives, checked for the raw keys by the last test. */
const bodies: Array<string> = []

const recordBodies = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
  HttpClient.transformResponse(client, (response) =>
    Effect.flatMap(response, (res) =>
      Effect.map(res.text, (text) => {
        bodies.push(text)
        return HttpClientResponse.fromWeb(
          res.request,
          new Response(text === "" ? null : text, {
            status: res.status,
            headers: res.headers as Record<string, string>
          })
        )
      })))

/** The shared helpers of ./support/session.js, with every response recorded in `bodies`. */
const clientAs = (token?: string) => sharedClientAs(token, { transformClient: recordBodies })
const raw = (
  method: "GET" | "PATCH",
  path: string,
  options: { readonly token?: string; readonly body?: unknown } = {}
) => sharedRaw(method, path, { ...options, transformClient: recordBodies })
const session = (name: string, options: { readonly isAdmin?: boolean } = {}) =>
  sharedSession(name, { ...options, transformClient: recordBodies })

const auditRows = (resourceType: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ action: string; user_id: number | null; changes: unknown }>`
      SELECT action, user_id, changes FROM audit_logs WHERE resource_type = ${resourceType} ORDER BY id`)

const storedProviders = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql<{ model_providers: unknown }>`SELECT model_providers FROM app_settings WHERE id = 1`.pipe(
      Effect.map((rows) => {
        const value = rows[0]?.model_providers
        return (typeof value === "string" ? JSON.parse(value) : value) as Array<Record<string, string | null>>
      })
    )
)

afterAll(() => {
  // belt and braces: the last test of the first suite checks this already
  const leaked = bodies.filter((body) => body.includes(RAW_KEY) || body.includes(RAW_KEY_2))
  expect(leaked).toEqual([])
})

layer(TestApp("settings", { TRUST_PROXY: "1" }), { timeout: 120_000 })("settings", (it) => {
  it.effect("admin endpoints answer 403 to non-admins and 401 without a token; the public appearance needs none", () =>
    Effect.gen(function*() {
      const { client } = yield* session("plain")
      const forbidden = [
        yield* Effect.flip(client.settings.getAppSettings()),
        yield* Effect.flip(client.settings.updateAppSettings({ payload: { default_model: "x" } })),
        yield* Effect.flip(client.settings.getAdminAppearance()),
        yield* Effect.flip(client.settings.updateAppearance({ payload: { greeting: "x" } }))
      ]
      for (const error of forbidden) expect(error).toBeInstanceOf(Forbidden)
      const anonymous = yield* clientAs()
      expect(yield* Effect.flip(anonymous.settings.getAppSettings())).toBeInstanceOf(Unauthorized)
      expect(yield* Effect.flip(anonymous.settings.updateAppearance({ payload: { greeting: "x" } }))).toBeInstanceOf(
        Unauthorized
      )
      const publicAppearance = yield* anonymous.settings.getAppearance()
      expect(publicAppearance).toEqual({
        color_scheme: "system",
        accent_color: "#2563EB",
        radius_style: "medium",
        greeting: "How can I help you today?",
        placeholder: "Send a message",
        disclaimer: ""
      })
      // the derived client (no transform) works too
      expect(yield* Effect.flatMap(chatkitClient, (c) => c.settings.getAppearance())).toEqual(publicAppearance)
    }))

  it.effect("appearance: GET, PATCH, GET shows the new value on both endpoints; audited; cached reads issue no SQL", () =>
    Effect.gen(function*() {
      const { client, user } = yield* session("appearance-admin", { isAdmin: true })
      const anonymous = yield* clientAs()
      yield* client.auth.me() // warms the caller's cached user record
      yield* anonymous.settings.getAppearance()
      const warm = yield* countQueries(anonymous.settings.getAppearance())
      expect(warm.queries).toBe(0)
      expect((yield* countQueries(client.settings.getAdminAppearance())).queries).toBe(0)

      const updated = yield* client.settings.updateAppearance({
        payload: {
          color_scheme: "dark",
          accent_color: "#10b981",
          radius_style: "full",
          greeting: "Bonjour",
          disclaimer: "Mind the AI."
        }
      })
      expect(updated).toEqual({
        color_scheme: "dark",
        accent_color: "#10b981",
        radius_style: "full",
        greeting: "Bonjour",
        placeholder: "Send a message",
        disclaimer: "Mind the AI."
      })
      expect(yield* anonymous.settings.getAppearance()).toEqual(updated)
      expect(yield* client.settings.getAdminAppearance()).toEqual(updated)

      // a PATCH that changes nothing writes nothing (no audit row)
      expect(yield* client.settings.updateAppearance({ payload: { greeting: "Bonjour" } })).toEqual(updated)
      const rows = yield* auditRows("appearance_settings")
      expect(rows).toHaveLength(1)
      expect(rows[0]).toMatchObject({
        action: "appearance_settings.update",
        user_id: user.id,
        changes: {
          color_scheme: { from: "system", to: "dark" },
          accent_color: { from: "#2563EB", to: "#10b981" },
          radius_style: { from: "medium", to: "full" },
          greeting: { from: "How can I help you today?", to: "Bonjour" },
          disclaimer: { from: "", to: "Mind the AI." }
        }
      })
    }))

  it.effect("appearance PATCH refuses unknown fields, bad colours, unknown enums and long texts with 400", () =>
    Effect.gen(function*() {
      const { token } = yield* session("appearance-bad", { isAdmin: true })
      const bad = [
        { greeting: "hi", font: "Comic Sans" },
        { accent_color: "red" },
        { accent_color: "#12345" },
        { accent_color: "#GGGGGG" },
        { color_scheme: "purple" },
        { radius_style: "huge" },
        { greeting: "x".repeat(201) },
        { disclaimer: "x".repeat(1001) },
        { placeholder: 42 }
      ]
      for (const body of bad) {
        const response = yield* raw("PATCH", "/api/v1/admin/appearance-settings", { token, body })
        expect(response.status, JSON.stringify(body)).toBe(400)
        expect(response.body.error).toBe("validation_error")
      }
      const unknown = yield* raw("PATCH", "/api/v1/admin/appearance-settings", {
        token,
        body: { font: "x", accent_color: "blue" }
      })
      expect([...new Set((unknown.body.errors as Array<{ path: string }>).map((e) => e.path))].sort()).toEqual([
        "accent_color",
        "font"
      ])
      // nothing changed
      expect((yield* raw("GET", "/api/v1/appearance-settings")).body.greeting).toBe("Bonjour")
    }))

  it.effect("app settings: keys are sealed at rest, only hints come back, ids keep their key; audited without keys", () =>
    Effect.gen(function*() {
      const { client, user } = yield* session("app-admin", { isAdmin: true })
      const initial = yield* client.settings.getAppSettings()
      expect(initial).toMatchObject({
        thread_title_model: "gpt-4o-mini",
        default_model: "gpt-4o-mini",
        model_providers: []
      })

      const first = yield* client.settings.updateAppSettings({
        payload: {
          default_model: "gpt-4.1",
          model_providers: [
            { provider: "openai", api_key: Redacted.make(RAW_KEY), is_default: true },
            { provider: "openai_compatible", api_base: "https://llm.example.com/v1", api_key: Redacted.make("short") }
          ]
        }
      })
      expect(first.default_model).toBe("gpt-4.1")
      expect(first.updated_at.getTime()).toBeGreaterThanOrEqual(initial.updated_at.getTime())
      expect(first.model_providers).toEqual([
        {
          id: expect.any(String),
          provider: "openai",
          api_base: null,
          api_key_hint: `••••${RAW_KEY.slice(-4)}`,
          is_default: true
        },
        {
          id: expect.any(String),
          provider: "openai_compatible",
          api_base: "https://llm.example.com/v1",
          api_key_hint: "••••",
          is_default: false
        }
      ])
      // GET after PATCH shows the new value (the cached entry was invalidated)
      expect(yield* client.settings.getAppSettings()).toEqual(first)

      const stored = yield* storedProviders
      expect(JSON.stringify(stored)).not.toContain(RAW_KEY)
      const box = makeSecretBox(AUTH_SECRET)
      const opened = box.open(stored[0]?.api_key_ciphertext ?? "")
      expect(Either.isRight(opened) && Redacted.value(opened.right)).toBe(RAW_KEY)
      expect(stored[0]?.api_key_key_id).toBe(box.keyId)

      const [openai, compatible] = first.model_providers
      // keep the first by id (its key stays), delete the second's key, add a third, move the default
      const second = yield* client.settings.updateAppSettings({
        payload: {
          model_providers: [
            { id: openai!.id, provider: "openai" },
            { id: compatible!.id, provider: "openai_compatible", delete_api_key: true, is_default: true },
            { provider: "openai", api_key: Redacted.make(RAW_KEY_2) }
          ]
        }
      })
      expect(second.model_providers).toEqual([
        { ...openai, is_default: false },
        { ...compatible, api_key_hint: null, is_default: true },
        {
          id: expect.any(String),
          provider: "openai",
          api_base: null,
          api_key_hint: `••••${RAW_KEY_2.slice(-4)}`,
          is_default: false
        }
      ])
      const storedAfter = yield* storedProviders
      expect(storedAfter[0]?.api_key_ciphertext).toBe(stored[0]?.api_key_ciphertext)
      expect(storedAfter[1]?.api_key_ciphertext).toBeNull()
      expect(yield* client.settings.getAppSettings()).toEqual(second)

      // dropping a provider from the list removes it
      const third = yield* client.settings.updateAppSettings({
        payload: { model_providers: [{ id: openai!.id, provider: "openai" }] }
      })
      expect(third.model_providers.map((p) => p.id)).toEqual([openai!.id])
      expect(yield* client.settings.getAppSettings()).toEqual(third)
      // a PATCH that changes nothing writes nothing
      const same = yield* client.settings.updateAppSettings({
        payload: { model_providers: [{ id: openai!.id, provider: "openai" }] }
      })
      expect(same).toEqual(third)

      const rows = yield* auditRows("app_settings")
      expect(rows.map((r) => r.action)).toEqual(["app_settings.update", "app_settings.update", "app_settings.update"])
      for (const row of rows) expect(row.user_id).toBe(user.id)
      expect(rows[0]?.changes).toMatchObject({ default_model: { from: "gpt-4o-mini", to: "gpt-4.1" } })
      const text = JSON.stringify(rows)
      expect(text).not.toContain(RAW_KEY)
      expect(text).not.toContain(RAW_KEY_2)
      expect(text).not.toContain("v1.")
    }))

  it.effect("app settings PATCH: 400 for two defaults, unknown ids, key plus delete, missing api_base, unknown fields", () =>
    Effect.gen(function*() {
      const { token } = yield* session("app-bad", { isAdmin: true })
      const before = (yield* raw("GET", "/api/v1/admin/app-settings", { token })).body
      const bad: Array<[unknown, string]> = [
        [
          { model_providers: [{ provider: "openai", is_default: true }, { provider: "openai", is_default: true }] },
          "model_providers"
        ],
        [{ model_providers: [{ id: "nope", provider: "openai" }] }, "model_providers.0.id"],
        [
          { model_providers: [{ provider: "openai", api_key: "k", delete_api_key: true }] },
          "model_providers.0.delete_api_key"
        ],
        [{ model_providers: [{ provider: "openai_compatible" }] }, "model_providers.0.api_base"],
        [{ model_providers: [{ provider: "anthropic" }] }, "model_providers.0.provider"],
        [{ model_providers: [{ provider: "openai", api_base: "ftp://x" }] }, "model_providers.0.api_base"],
        [{ model_providers: [{ provider: "openai", secret: "x" }] }, "model_providers.0.secret"],
        [{ default_model: "" }, "default_model"],
        [{ theme: "dark" }, "theme"]
      ]
      for (const [body, path] of bad) {
        const response = yield* raw("PATCH", "/api/v1/admin/app-settings", { token, body })
        expect(response.status, JSON.stringify(body)).toBe(400)
        expect((response.body.errors as Array<{ path: string }>).map((e) => e.path), JSON.stringify(body)).toContain(
          path
        )
      }
      expect((yield* raw("GET", "/api/v1/admin/app-settings", { token })).body).toEqual(before)
    }))

  it.effect("each cache entry is invalidated exactly by the writes that change it", () =>
    Effect.gen(function*() {
      const { client } = yield* session("exact-admin", { isAdmin: true })
      const anonymous = yield* clientAs()
      yield* client.auth.me()
      yield* client.settings.getAppSettings()
      yield* anonymous.settings.getAppearance()
      // an appearance write leaves the cached app settings alone, and the other way round
      yield* client.settings.updateAppearance({ payload: { placeholder: `Ask me ${runId}` } })
      expect((yield* countQueries(client.settings.getAppSettings())).queries).toBe(0)
      const miss = yield* countQueries(anonymous.settings.getAppearance())
      expect(miss.queries).toBe(1)
      expect(miss.result.placeholder).toBe(`Ask me ${runId}`)
      yield* client.settings.updateAppSettings({ payload: { thread_title_model: `m-${runId}` } })
      expect((yield* countQueries(anonymous.settings.getAppearance())).queries).toBe(0)
      const appMiss = yield* countQueries(client.settings.getAppSettings())
      expect(appMiss.queries).toBe(1)
      expect(appMiss.result.thread_title_model).toBe(`m-${runId}`)
    }))

  it.effect("no response body of this file contains a raw API key", () =>
    Effect.sync(() => {
      expect(bodies.length).toBeGreaterThan(20)
      for (const body of bodies) {
        expect(body).not.toContain(RAW_KEY)
        expect(body).not.toContain(RAW_KEY_2)
      }
    }))
})

describe("settings with Redis down", async () => {
  const deadPort = await freePort()
  layer(TestApp("settings_redis_down", { TRUST_PROXY: "1", REDIS_URL: `redis://127.0.0.1:${deadPort}` }), {
    timeout: 120_000
  })(
    "a Redis outage",
    (it) => {
      it.effect("degrades to database reads: GET, PATCH, GET still answer with the new value", () =>
        Effect.gen(function*() {
          const { client } = yield* session("redis-down-admin", { isAdmin: true })
          const anonymous = yield* clientAs()
          expect((yield* anonymous.settings.getAppearance()).greeting).toBe("How can I help you today?")
          yield* client.settings.updateAppearance({ payload: { greeting: "Still here" } })
          expect((yield* anonymous.settings.getAppearance()).greeting).toBe("Still here")
          const settings = yield* client.settings.updateAppSettings({ payload: { default_model: "gpt-redis-down" } })
          expect(settings.default_model).toBe("gpt-redis-down")
          expect((yield* client.settings.getAppSettings()).default_model).toBe("gpt-redis-down")
        }))
    }
  )
})
