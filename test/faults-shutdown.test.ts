import { Effect, Exit, Option, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"

import { openStream, say } from "./support/chatkit.js"
import { freshDatabase, testDatabaseUrl } from "./support/database.js"
import { FAKE_OPENAI_KEY, fakeOpenAi } from "./support/fakeOpenAi.js"
import { adminToken, bootServer, histogram, load, send } from "./support/serverProcess.js"

/*
 * SIGTERM to a real server process while requests flow and two answers stream: readiness turns
 * 503 at once, the instance keeps accepting for SHUTDOWN_DELAY_MS (answering `Connection: close`),
 * then refuses new connections and drains; no request that got a connection is reset, a stream
 * that ends within SHUTDOWN_GRACE_MS completes, one that would not ends with a retryable error
 * event, and the process exits 0. On TEST_DATABASE_URL (a database of its own) when set, else on
 * the embedded database.
 */

const DELAY_MS = 1_000
const GRACE_MS = 3_000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const database = freshDatabase("chatkit_faults_shutdown")
afterAll(() => Option.isSome(testDatabaseUrl) ? database.drop() : undefined)

describe("SIGTERM under load", () => {
  it(
    "stops taking traffic in the documented steps without resetting a request or cutting a stream silently",
    async () => {
      const scope = Effect.runSync(Scope.make())
      const fake = await Effect.runPromise(Scope.extend(fakeOpenAi(), scope))
      const server = await bootServer({
        ...(Option.isSome(testDatabaseUrl) ? { DATABASE_URL: await database.create() } : {}),
        SHUTDOWN_DELAY_MS: String(DELAY_MS),
        SHUTDOWN_GRACE_MS: String(GRACE_MS),
        RATE_LIMIT_API_PER_MINUTE: "1000000",
        LLM_PROVIDER: "openai",
        OPENAI_API_KEY: FAKE_OPENAI_KEY,
        OPENAI_BASE_URL: fake.baseUrl
      })
      try {
        const { port } = server
        const token = await adminToken(port)
        expect((await send(port, "/health/ready")).status).toBe(200)
        fake.script(
          { type: "stream", tokens: Array.from({ length: 8 }, (_, i) => `short${i} `), tokenDelayMs: 150 },
          { type: "stream", tokens: Array.from({ length: 100 }, (_, i) => `long${i} `), tokenDelayMs: 100 }
        )
        const short = openStream(port, token, { type: "threads.create", params: { input: say("a short answer") } })
        await short.until((events) => events.some((e) => e.type === "thread.item.updated"))
        const long = openStream(port, token, { type: "threads.create", params: { input: say("a long answer") } })
        await long.until((events) => events.some((e) => e.type === "thread.item.updated"))

        const traffic = load(6, () => send(port, "/api/v1/auth/me", { token, keepAlive: true }))
        await sleep(300)
        // a burst whose connections are established but not all accepted when the signal arrives
        let connected = 0
        let burstConnected = () => {}
        const connecting = new Promise<void>((resolve) => (burstConnected = resolve))
        const burst = Array.from(
          { length: 24 },
          () => send(port, "/health", { keepAlive: true, onConnect: () => ++connected === 24 && burstConnected() })
        )
        // the signal once every connection of the burst is established (a slow runner needs more than a few ms)
        await Promise.race([connecting, sleep(2_000)])
        const signalledAt = Date.now()
        server.kill("SIGTERM")
        // timed from here: a callback attached later would time when it was attached
        const ends = Promise.all([
          server.exited.then((code) => ({ code, ms: Date.now() - signalledAt })),
          short.ended.then(() => Date.now() - signalledAt),
          long.ended.then(() => Date.now() - signalledAt)
        ])

        // the first probe once the signal is delivered (a few ms) already answers 503
        await sleep(20)
        const ready = await send(port, "/health/ready")
        expect(ready.status).toBe(503)
        expect(JSON.parse(ready.body)).toMatchObject({ status: "unavailable" })

        const sinceSignal = () => Date.now() - signalledAt
        await sleep(DELAY_MS / 2 - sinceSignal())
        const duringDelay = await send(port, "/health", { keepAlive: true })
        // new connections are refused once the delay is over (and the accept queue emptied)
        await sleep(DELAY_MS - sinceSignal())
        let probe = await send(port, "/health")
        while (probe.error !== "ECONNREFUSED" && sinceSignal() < DELAY_MS + 1_500) probe = await send(port, "/health")
        const refusedAfterMs = sinceSignal()
        const outcomes = [...await Promise.all(burst), ...await traffic.stop()]

        const [code, shortEnded, longEnded] = await ends
        console.log(
          `SIGTERM under load: ${outcomes.length} requests, statuses ${JSON.stringify(histogram(outcomes))}; ` +
            `readiness 503 to the first probe (answered in ${ready.ms} ms); new connections refused after ${refusedAfterMs} ms; streams ended after ${shortEnded} and ${longEnded} ms; ` +
            `exit ${code.code} after ${code.ms} ms`
        )
        // accepted during the delay, told to reconnect elsewhere for the next request
        expect(duringDelay).toMatchObject({ status: 200, headers: { connection: "close" } })
        expect(probe.error).toBe("ECONNREFUSED")
        expect(refusedAfterMs).toBeGreaterThanOrEqual(DELAY_MS)
        expect(refusedAfterMs).toBeLessThan(DELAY_MS + 1_000)
        // every connection opened before the signal, or during the delay, is answered
        const early = outcomes.filter((o) => o.connectedAt !== undefined && o.connectedAt < signalledAt + DELAY_MS)
        expect(early.filter((o) => o.status !== 200)).toEqual([])
        expect(early.filter((o) => o.connectedAt! < signalledAt).length).toBeGreaterThanOrEqual(24)
        expect(early.some((o) => o.sentAt > signalledAt + 100 && o.headers.connection === "close")).toBe(true)
        // once the listener closes, a connection is refused (or reset if it reached the kernel's
        // queue in the instant after the last accept); no request is left hanging
        const late = outcomes.filter((o) => o.status !== 200)
        expect(
          late.filter((o) => !["ECONNREFUSED", "ECONNRESET"].includes(o.error!) || o.sentAt < signalledAt + DELAY_MS)
        )
          .toEqual([])

        expect(short.events.at(-1)?.type).not.toBe("error")
        expect(short.events.filter((e) => e.type === "thread.item.done" && e.item.type === "assistant_message"))
          .toHaveLength(1)
        expect(long.events.at(-1)).toMatchObject({ type: "error", allow_retry: true })
        // the grace period starts when the listener closes (just before the refusals began)
        expect(longEnded).toBeLessThan(refusedAfterMs + GRACE_MS)
        expect(code.code).toBe(0)
        expect(code.ms).toBeLessThan(DELAY_MS + GRACE_MS + 2_000)
      } finally {
        await server.stop()
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }
    },
    30_000
  )
})
