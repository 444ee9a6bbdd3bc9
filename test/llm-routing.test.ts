import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"

import { TestApp } from "./support/app.js"
import { answerOf, chatkit, eventsOf, say } from "./support/chatkit.js"
import { type FakeOpenAi, fakeOpenAi } from "./support/fakeOpenAi.js"
import { type Client, session } from "./support/session.js"

/* Which provider and key answer an agent node: the catalog's provider_id, the app settings' providers, then the environment's. */

class Fakes extends Context.Tag("test/Fakes")<Fakes, {
  readonly env: FakeOpenAi
  readonly settings: FakeOpenAi
}>() {}

const ENV_KEY = "sk-env-0123456789abcdef"
const SETTINGS_KEY = "sk-settings-fedcba9876543210"

const App = Layer.unwrapScoped(
  Effect.gen(function*() {
    const env = yield* fakeOpenAi({ type: "stream", tokens: ["from", " env"] })
    const settings = yield* fakeOpenAi({ type: "stream", tokens: ["from", " settings"] })
    return Layer.merge(
      TestApp("llm_routing", {
        TRUST_PROXY: "1",
        LLM_PROVIDER: "openai",
        OPENAI_API_KEY: ENV_KEY,
        OPENAI_BASE_URL: env.baseUrl
      }),
      Layer.succeed(Fakes, { env, settings })
    )
  })
)

/** Replaces the app settings' providers with one at the settings fake; answers its id. */
const useSettingsProvider = (
  admin: Client,
  options: { readonly apiKey?: string; readonly isDefault: boolean; readonly defaultModel: string }
) =>
  Effect.gen(function*() {
    const { settings } = yield* Fakes
    const updated = yield* admin.settings.updateAppSettings({
      payload: {
        default_model: options.defaultModel,
        model_providers: [{
          provider: "openai_compatible",
          api_base: settings.baseUrl,
          is_default: options.isDefault,
          ...(options.apiKey === undefined ? {} : { api_key: Redacted.make(options.apiKey) })
        }]
      }
    })
    return updated.model_providers[0]!.id
  })

/** A workflow whose agent node asks for `model`, readable by its owner. */
const workflowWithModel = (owner: Client, slug: string, model: string) =>
  Effect.map(
    owner.workflows.create({
      payload: {
        slug,
        display_name: slug,
        graph: {
          nodes: [
            { slug: "start", kind: "start", display_name: "Start" },
            { slug: "agent", kind: "agent", display_name: "Agent", parameters: { model, instructions: "Be brief." } },
            { slug: "end", kind: "end", display_name: "End" }
          ],
          edges: [{ source: "start", target: "agent" }, { source: "agent", target: "end" }]
        }
      },
      headers: {}
    }),
    (workflow) => workflow.id
  )

const requestsSince = (fake: FakeOpenAi, before: number) => fake.requests.slice(before)

layer(App)("LLM routing", (it) => {
  it.effect("a catalog model whose provider_id names an app-settings provider is served by it, with its stored key", () =>
    Effect.gen(function*() {
      const { env, settings } = yield* Fakes
      const admin = yield* session("routing-admin", { isAdmin: true })
      const providerId = yield* useSettingsProvider(admin.client, {
        apiKey: SETTINGS_KEY,
        isDefault: false,
        defaultModel: "gpt-4o-mini"
      })
      yield* admin.client.models.create({
        payload: { name: "routed-model", display_name: "Routed", provider_id: providerId }
      })
      const user = yield* session("routing-user")
      const workflowId = yield* workflowWithModel(user.client, "routed-workflow", "routed-model")
      const [envBefore, settingsBefore] = [env.requests.length, settings.requests.length]

      const events = eventsOf(
        yield* chatkit(user.token, {
          type: "threads.create",
          params: { input: say("Hello") },
          metadata: { workflow_id: workflowId }
        })
      )
      expect(answerOf(events)).toBe("from settings")
      const [sent] = requestsSince(settings, settingsBefore)
      expect(sent?.headers.authorization).toBe(`Bearer ${SETTINGS_KEY}`)
      expect(sent?.body).toMatchObject({ model: "routed-model" })
      expect(requestsSince(env, envBefore)).toHaveLength(0)
    }))

  it.effect("the default workflow's agent runs default_model; a catalog model without a provider goes to the default one", () =>
    Effect.gen(function*() {
      const { env, settings } = yield* Fakes
      const admin = yield* session("default-admin", { isAdmin: true })
      yield* useSettingsProvider(admin.client, { apiKey: SETTINGS_KEY, isDefault: true, defaultModel: "plain-model" })
      yield* admin.client.models.create({ payload: { name: "plain-model", display_name: "Plain" } })
      const user = yield* session("default-user")
      const [envBefore, settingsBefore] = [env.requests.length, settings.requests.length]

      const events = eventsOf(yield* chatkit(user.token, { type: "threads.create", params: { input: say("Hi") } }))
      expect(answerOf(events)).toBe("from settings")
      expect(requestsSince(settings, settingsBefore).map((r) => (r.body as { model: string }).model)).toEqual([
        "plain-model"
      ])
      expect(requestsSince(env, envBefore)).toHaveLength(0)
    }))

  it.effect("a model outside the catalog goes to the environment's provider, with the environment's key", () =>
    Effect.gen(function*() {
      const { env, settings } = yield* Fakes
      const admin = yield* session("outside-admin", { isAdmin: true })
      yield* useSettingsProvider(admin.client, {
        apiKey: SETTINGS_KEY,
        isDefault: true,
        defaultModel: "not-in-catalog"
      })
      const user = yield* session("outside-user")
      const [envBefore, settingsBefore] = [env.requests.length, settings.requests.length]

      const events = eventsOf(yield* chatkit(user.token, { type: "threads.create", params: { input: say("Hey") } }))
      expect(answerOf(events)).toBe("from env")
      const [sent] = requestsSince(env, envBefore)
      expect(sent?.headers.authorization).toBe(`Bearer ${ENV_KEY}`)
      expect(sent?.body).toMatchObject({ model: "not-in-catalog" })
      expect(requestsSince(settings, settingsBefore)).toHaveLength(0)
    }))

  it.effect("an app-settings provider without a key is called without an Authorization header", () =>
    Effect.gen(function*() {
      const { settings } = yield* Fakes
      const admin = yield* session("keyless-admin", { isAdmin: true })
      yield* useSettingsProvider(admin.client, { isDefault: true, defaultModel: "keyless-model" })
      yield* admin.client.models.create({ payload: { name: "keyless-model", display_name: "Keyless" } })
      const user = yield* session("keyless-user")
      const before = settings.requests.length

      const events = eventsOf(yield* chatkit(user.token, { type: "threads.create", params: { input: say("Yo") } }))
      expect(answerOf(events)).toBe("from settings")
      expect(requestsSince(settings, before)[0]?.headers.authorization).toBeUndefined()
    }))

  it.effect("catalog edits reach the next call, though each call's catalog lookup is cached", () =>
    Effect.gen(function*() {
      const admin = yield* session("edits-admin", { isAdmin: true })
      const providerId = yield* useSettingsProvider(admin.client, { isDefault: false, defaultModel: "late-model" })
      const user = yield* session("edits-user")
      const answer = Effect.map(
        chatkit(user.token, { type: "threads.create", params: { input: say("Again") } }),
        (response) => answerOf(eventsOf(response))
      )

      // not in the catalog yet (and remembered so), then added with the settings provider
      expect(yield* answer).toBe("from env")
      const model = yield* admin.client.models.create({
        payload: { name: "late-model", display_name: "Late", provider_id: providerId }
      })
      expect(yield* answer).toBe("from settings")
      // its provider taken away: no default provider in the settings, so the environment's
      yield* admin.client.models.update({ path: { id: model.id }, payload: { provider_id: null } })
      expect(yield* answer).toBe("from env")
      yield* admin.client.models.update({ path: { id: model.id }, payload: { provider_id: providerId } })
      expect(yield* answer).toBe("from settings")
      yield* admin.client.models.delete({ path: { id: model.id } })
      expect(yield* answer).toBe("from env")
    }))
})
