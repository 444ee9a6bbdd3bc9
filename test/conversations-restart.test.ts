import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import { Option } from "effect"
import { afterAll, describe, expect, it } from "vitest"

import { freshDatabase, testDatabaseUrl } from "./support/database.js"
import { freePort } from "./support/network.js"
import { collect, startServer, waitFor } from "./support/process.js"

/*
 * A workflow paused at wait_for_user_input keeps its place in the thread row: the server is
 * stopped and started again on the same database, and the next message resumes after the pause.
 */

const ADMIN_EMAIL = "restart-admin@example.com"
const ADMIN_PASSWORD = "correct horse battery staple"
const AUTH_SECRET_KEY = "restart-test-secret-0123456789-abcdefghij"

const PAUSING_GRAPH = {
  nodes: [
    { slug: "start", kind: "start", display_name: "Start" },
    { slug: "ask", kind: "assistant_message", display_name: "Ask", parameters: { text: "What is your name?" } },
    { slug: "wait", kind: "wait_for_user_input", display_name: "Wait" },
    {
      slug: "remember",
      kind: "state",
      display_name: "Remember",
      parameters: { assignments: { "state.name": "input.user_message" } }
    },
    {
      slug: "greet",
      kind: "assistant_message",
      display_name: "Greet",
      parameters: { text: "Hello, {{ state.name }}!" }
    },
    { slug: "end", kind: "end", display_name: "End" }
  ],
  edges: [
    { source: "start", target: "ask" },
    { source: "ask", target: "wait" },
    { source: "wait", target: "remember" },
    { source: "remember", target: "greet" },
    { source: "greet", target: "end" }
  ]
}

/** The server as a real process on `env`'s database; `stop` sends SIGTERM and expects exit 0. */
const boot = async (env: Record<string, string>) => {
  const port = await freePort()
  const child = startServer({ PORT: String(port), AUTH_SECRET_KEY, ADMIN_EMAIL, ADMIN_PASSWORD, ...env })
  const { exited, output } = collect(child)
  await waitFor(() => output.stdout.includes("listening on"), 60_000)
  return {
    base: `http://127.0.0.1:${port}/api/v1`,
    stop: async () => {
      child.kill("SIGTERM")
      expect(await exited).toBe(0)
    }
  }
}

const post = async (url: string, body: unknown, token?: string) => {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
    },
    body: JSON.stringify(body)
  })
  return { status: response.status, text: await response.text() }
}

/** The assistant texts of a ChatKit stream, and the thread it created (if any). */
const turn = async (base: string, token: string, body: unknown) => {
  const { status, text } = await post(`${base}/chatkit`, body, token)
  expect(status).toBe(200)
  const events = text.split("\n\n").filter((block) => block.startsWith("data: ")).map((block) =>
    JSON.parse(block.slice(6)) as {
      type: string
      thread?: { id: string }
      item?: { type: string; content: Array<{ text: string }> }
    }
  )
  expect(events.filter((e) => e.type === "error")).toEqual([])
  return {
    threadId: events.find((e) => e.type === "thread.created")?.thread?.id,
    answers: events.filter((e) => e.type === "thread.item.done" && e.item?.type === "assistant_message")
      .map((e) => e.item?.content.map((part) => part.text).join(""))
  }
}

const resumesAfterRestart = async (env: Record<string, string>) => {
  const first = await boot(env)
  const login = await post(`${first.base}/auth/login`, { email: ADMIN_EMAIL, password: ADMIN_PASSWORD })
  expect(login.status).toBe(200)
  const token = (JSON.parse(login.text) as { access_token: string }).access_token
  const created = await post(`${first.base}/workflows`, {
    slug: "ask-name",
    display_name: "Ask the name",
    graph: PAUSING_GRAPH
  }, token)
  expect(created.status).toBe(201)
  const workflowId = (JSON.parse(created.text) as { id: number }).id
  const opened = await turn(first.base, token, {
    type: "threads.create",
    params: { input: { content: [{ type: "input_text", text: "hi" }] } },
    metadata: { workflow_id: workflowId }
  })
  expect(opened.answers).toEqual(["What is your name?"])
  await first.stop()

  const second = await boot(env)
  try {
    const say = (text: string) => ({
      type: "threads.add_user_message",
      params: { thread_id: opened.threadId, input: { content: [{ type: "input_text", text }] } }
    })
    // the access token is still valid (same AUTH_SECRET_KEY); the thread resumes at the pause
    expect((await turn(second.base, token, say("Ada"))).answers).toEqual(["Hello, Ada!"])
    // the workflow ended: the next message starts it over
    expect((await turn(second.base, token, say("again"))).answers).toEqual(["What is your name?"])
  } finally {
    await second.stop()
  }
}

describe("a paused workflow after a restart", () => {
  it("resumes where it paused on the embedded database", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chatkit-restart-"))
    try {
      await resumesAfterRestart({ CHATKIT_DATA_DIR: dataDir })
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  describe.runIf(Option.isSome(testDatabaseUrl))("on PostgreSQL", () => {
    const database = freshDatabase("chatkit_restart")
    afterAll(() => database.drop())

    it("resumes where it paused on a PostgreSQL database", async () => {
      await resumesAfterRestart({ DATABASE_URL: await database.create() })
    })
  })
})
