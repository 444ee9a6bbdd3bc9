import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import { Effect, Exit, Option, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"

import { type Event, type Item, say, sseReader } from "./support/chatkit.js"
import { freshDatabase, testDatabaseUrl } from "./support/database.js"
import { FAKE_OPENAI_KEY, fakeOpenAi } from "./support/fakeOpenAi.js"
import { adminToken, bootServer, send } from "./support/serverProcess.js"

/*
 * The language model failing in the middle of a conversation, on a server process: an answer cut
 * mid-stream and failed calls end their turns with retryable error events; three failed calls open
 * the breaker, which then answers at once without calling the provider, and one success after the
 * cool-down closes it. A turn still streaming at SIGTERM ends with an error event too. The server
 * is then started again over the same database: the thread holds every message in order, what was
 * cut is `failed` or `incomplete`, nothing is left `in_progress`, and the conversation goes on.
 * (conversations-resilience.test.ts covers timeouts and the breaker in process, in more detail.)
 * On a database of its own on TEST_DATABASE_URL when set, else on an embedded one on disk.
 */

const METRICS_TOKEN = "metrics-token-for-llm-faults"

const database = freshDatabase("chatkit_faults_llm")
const dataDir = mkdtempSync(join(tmpdir(), "chatkit-faults-llm-"))
afterAll(async () => {
  rmSync(dataDir, { recursive: true, force: true })
  if (Option.isSome(testDatabaseUrl)) await database.drop()
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** One ChatKit request: its events, and how long the whole answer took. */
const chatkit = async (port: number, token: string, body: unknown) => {
  const answer = await send(port, "/api/v1/chatkit", { method: "POST", token, body, timeoutMs: 15_000 })
  expect(answer.status).toBe(200)
  const events: ReadonlyArray<Event> = sseReader()(Buffer.from(answer.body, "utf8"))
  return { events, ms: answer.ms, text: answer.body }
}

const deltas = (events: ReadonlyArray<Event>) =>
  events.filter((e) => e.type === "thread.item.updated").map((e) => e.update.delta).join("")

const endsWithRetryableError = (events: ReadonlyArray<Event>) =>
  expect(events.at(-1)).toMatchObject({ type: "error", code: "stream.error", allow_retry: true })

const breakerState = async (port: number) => {
  const metrics = await send(port, "/metrics", { token: METRICS_TOKEN })
  const line = metrics.body.split("\n").find((l) => l.startsWith(`circuit_breaker_state{provider="openai"} `))
  return Number(line?.split(" ").at(-1))
}

/**
 * Resolves once the thread's background title (queued when its first turn ended) is stored: its
 * model call is over, and its success (which resets the breaker's count) recorded.
 */
const titleStored = async (port: number, token: string, threadId: unknown) => {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const thread = await send(port, "/api/v1/chatkit", {
      method: "POST",
      token,
      body: { type: "threads.get_by_id", params: { thread_id: threadId } }
    })
    if ((JSON.parse(thread.body) as { title?: string }).title !== undefined) return
    await sleep(20)
  }
  throw new Error("the thread got no title within 10 s")
}

describe("the language model failing mid-conversation", () => {
  it(
    "ends each failed turn with a retryable error, opens and closes the breaker, and leaves a consistent thread after a restart",
    async () => {
      const scope = Effect.runSync(Scope.make())
      const fake = await Effect.runPromise(Scope.extend(fakeOpenAi(), scope))
      const env = {
        ...(Option.isSome(testDatabaseUrl) ? { DATABASE_URL: await database.create() } : { CHATKIT_DATA_DIR: dataDir }),
        LLM_PROVIDER: "openai",
        OPENAI_API_KEY: FAKE_OPENAI_KEY,
        OPENAI_BASE_URL: fake.baseUrl,
        LLM_RETRY_ATTEMPTS: "1",
        LLM_CIRCUIT_FAILURES: "3",
        LLM_CIRCUIT_COOLDOWN_SECONDS: "1",
        SHUTDOWN_GRACE_MS: "1500",
        METRICS_TOKEN
      }
      const first = await bootServer(env)
      let second: Awaited<ReturnType<typeof bootServer>> | undefined
      try {
        const token = await adminToken(first.port)
        const ask = (text: string) =>
          chatkit(first.port, token, {
            type: "threads.add_user_message",
            params: { thread_id: threadId, input: say(text) }
          })

        fake.script({ type: "stream", tokens: ["hello", " there"] })
        const opened = await chatkit(first.port, token, { type: "threads.create", params: { input: say("turn 1") } })
        const threadId = opened.events.find((e) => e.type === "thread.created")?.thread.id
        expect(deltas(opened.events)).toBe("hello there")
        await titleStored(first.port, token, threadId)

        // the provider drops the connection after two tokens: what was streamed stays, marked failed
        fake.script({ type: "stream", tokens: ["cut", " short", " here"], dropAfterTokens: 2 })
        const cut = await ask("turn 2")
        expect(deltas(cut.events)).toBe("cut short")
        endsWithRetryableError(cut.events)

        fake.script({ type: "status", status: 500 })
        for (const turn of [3, 4, 5]) endsWithRetryableError((await ask(`turn ${turn}`)).events)
        expect(await breakerState(first.port)).toBe(2)
        const calls = fake.requests.length
        const whileOpen = await ask("turn 6")
        endsWithRetryableError(whileOpen.events)
        expect(fake.requests.length).toBe(calls)
        expect(whileOpen.ms).toBeLessThan(500)

        await sleep(1_200)
        fake.script({ type: "stream", tokens: ["back", " again"] })
        expect(deltas((await ask("turn 7")).events)).toBe("back again")
        expect(await breakerState(first.port)).toBe(0)

        // a turn still streaming when the server is told to stop
        fake.script({ type: "stream", tokens: Array.from({ length: 50 }, (_, i) => `w${i} `), tokenDelayMs: 100 })
        const streaming = ask("turn 8")
        await sleep(800)
        first.kill("SIGTERM")
        const stopped = await streaming
        endsWithRetryableError(stopped.events)
        expect(await first.exited).toBe(0)
        console.log(
          `LLM faults: the open breaker answered in ${whileOpen.ms} ms without a call; ` +
            `the stream cut by SIGTERM ended with its error event after ${
              deltas(stopped.events).split(" ").length - 1
            } tokens`
        )

        second = await bootServer(env)
        const listed = await send(second.port, "/api/v1/chatkit", {
          method: "POST",
          token,
          body: { type: "items.list", params: { thread_id: threadId, order: "asc", limit: 50 } }
        })
        expect(listed.status).toBe(200)
        const items = (JSON.parse(listed.body) as { data: ReadonlyArray<Item> }).data
        const users = items.filter((i) => i.type === "user_message").map((i) => i.content[0]?.text)
        expect(users).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => `turn ${n}`))
        const answers = items.filter((i) => i.type === "assistant_message")
          .map((i) => ({ text: i.content[0]?.text, status: i.status }))
        // turns 3 to 6 failed before a token: no answer item; the cut answers keep what was streamed
        expect(answers).toMatchObject([
          { text: "hello there", status: undefined },
          { text: "cut short", status: "failed" },
          { text: "back again", status: undefined },
          { text: expect.stringMatching(/^w0 w1 /), status: "incomplete" }
        ])
        expect(items.filter((i) => i.status === "in_progress")).toEqual([])

        fake.script({ type: "stream", tokens: ["still", " here"] })
        const resumed = await chatkit(second.port, token, {
          type: "threads.add_user_message",
          params: { thread_id: threadId, input: say("turn 9") }
        })
        expect(deltas(resumed.events)).toBe("still here")
      } finally {
        await first.stop()
        if (second !== undefined) expect(await second.stop()).toBe(0)
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }
    },
    45_000
  )
})
