import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as net from "node:net"

import { Effect, Schedule, type Scope } from "effect"
import { Redis as IORedis } from "ioredis"

import { freePort } from "./network.js"

/** `redis-server` is on PATH: the suites that start a Redis of their own need nothing else. */
export const hasRedisServer = spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0

export interface PrivateRedis {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** kills the server (SIGKILL: an outage, not a clean stop); resolves once it has exited */
  readonly kill: Effect.Effect<void>
  /** starts it again, empty, on the same port; resolves once it answers PING */
  readonly start: Effect.Effect<void>
  /** the keys matching `pattern` (SCAN, so never a blocking KEYS) */
  readonly keys: (pattern: string) => Effect.Effect<ReadonlyArray<string>>
}

/** Resolves when a PING on a fresh connection to `port` gets +PONG; retried every 20 ms for 5 s. */
const answersPing = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.setTimeout(500)
    const finish = (up: boolean) => {
      socket.destroy()
      resume(Effect.succeed(up))
    }
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", (data) => finish(String(data).startsWith("+PONG")))
    socket.once("error", () => finish(false))
    socket.once("timeout", () => finish(false))
  }).pipe(
    Effect.filterOrFail((up) => up),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("5 seconds"))),
    Effect.orDieWith(() => new Error(`the private redis-server on port ${port} does not answer`))
  )

const launch = (port: number) => {
  // no persistence: a restarted server starts empty, so a key found after it was written after it
  const child = spawn("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no"
  ], {
    stdio: "ignore"
  })
  // a test process that dies before its scope closes (a hung layer, a timeout) takes its server with it
  const orphaned = () => child.kill("SIGKILL")
  process.once("exit", orphaned)
  child.once("exit", () => process.off("exit", orphaned))
  return child
}

const killed = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

/**
 * A `redis-server` of the scope's own on a free loopback port (the machine's shared Redis is never
 * touched), killed when the scope closes.
 */
export const privateRedis: Effect.Effect<PrivateRedis, never, Scope.Scope> = Effect.gen(function*() {
  const port = yield* Effect.promise(freePort)
  let child = launch(port)
  yield* Effect.addFinalizer(() => Effect.suspend(() => killed(child)))
  yield* answersPing(port)
  const url = `redis://127.0.0.1:${port}`
  const admin = yield* Effect.acquireRelease(
    Effect.sync(() => new IORedis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 })),
    (client) => Effect.sync(() => client.disconnect())
  )
  admin.on("error", () => undefined) // it sees the outages this test causes
  return {
    port,
    url,
    kill: Effect.suspend(() => killed(child)),
    start: Effect.suspend(() => {
      child = launch(port)
      return answersPing(port)
    }),
    keys: (pattern) =>
      Effect.promise(async () => {
        const found: Array<string> = []
        let cursor = "0"
        do {
          const [next, batch] = await admin.scan(cursor, "MATCH", pattern, "COUNT", 1000)
          cursor = next
          found.push(...batch)
        } while (cursor !== "0")
        return found
      })
  }
})
