import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { Effect, Exit, Layer, Scope } from "effect"
import * as net from "node:net"

import { describe, expect, it } from "vitest"

import { testConfig } from "../src/platform/Config.js"
import { makeServer } from "../src/platform/Server.js"
import { freePort } from "./support/network.js"

/** A server whose only route answers after `delayMs`, with the production shutdown wiring. */
const slowServer = (port: number, delayMs: number, graceMs: number) =>
  Layer.unwrapEffect(
    Effect.map(makeServer, ({ GracefulShutdown, ServerLive }) =>
      GracefulShutdown.pipe(
        Layer.provide(
          HttpServer.serve(
            HttpRouter.empty.pipe(
              HttpRouter.get("/slow", Effect.as(Effect.sleep(delayMs), HttpServerResponse.text("done")))
            )
          )
        ),
        Layer.provide(ServerLive)
      ))
  ).pipe(Layer.provide(testConfig({ PORT: String(port), SHUTDOWN_GRACE_MS: String(graceMs) })))

const startAndShutDownDuring = async (delayMs: number, graceMs: number) => {
  const port = await freePort()
  const scope = Effect.runSync(Scope.make())
  await Effect.runPromise(Layer.buildWithScope(slowServer(port, delayMs, graceMs), scope))
  const inFlight = fetch(`http://127.0.0.1:${port}/slow`).then(
    async (response) => ({ status: response.status, body: await response.text() }),
    (error: unknown) => ({ status: 0, body: String(error) })
  )
  await new Promise((resolve) => setTimeout(resolve, 100))
  const started = Date.now()
  const closing = Effect.runPromise(Scope.close(scope, Exit.void))
  await new Promise((resolve) => setTimeout(resolve, 150))
  const lateConnection = await fetch(`http://127.0.0.1:${port}/slow`).then(() => "accepted", () => "refused")
  await closing
  return { result: await inFlight, closeMs: Date.now() - started, lateConnection }
}

describe("graceful shutdown", () => {
  it("stops accepting connections but lets an in-flight request finish", async () => {
    const { closeMs, lateConnection, result } = await startAndShutDownDuring(1_000, 10_000)
    expect(result).toEqual({ status: 200, body: "done" })
    expect(lateConnection).toBe("refused")
    expect(closeMs).toBeGreaterThanOrEqual(600)
    expect(closeMs).toBeLessThan(5_000)
  })

  it("cuts requests still running when the grace period is over", async () => {
    const { closeMs, result } = await startAndShutDownDuring(20_000, 300)
    expect(result.status).toBe(0)
    expect(closeMs).toBeGreaterThanOrEqual(250)
    expect(closeMs).toBeLessThan(5_000)
  })
})

/** Opens `count` connections, each sending one request: when all are established, and each one's status line or error code. */
const openRequests = (port: number, count: number) => {
  const outcomes: Array<Promise<string>> = []
  const connected: Array<Promise<void>> = []
  for (let i = 0; i < count; i++) {
    const socket = net.connect(port, "127.0.0.1")
    connected.push(new Promise((resolve) => socket.once("connect", () => resolve())))
    outcomes.push(
      new Promise((resolve) => {
        let text = ""
        socket.on("data", (chunk) => (text += String(chunk)))
        socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"))
        socket.on("close", () => resolve(text.split("\r\n")[0] ?? ""))
      })
    )
    socket.write(`GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
  }
  return { connected: Promise.all(connected), answers: Promise.all(outcomes) }
}

describe("graceful shutdown of connections still in the accept queue", () => {
  it("answers every connection established before the shutdown began, none reset", async () => {
    const port = await freePort()
    const scope = Effect.runSync(Scope.make())
    await Effect.runPromise(Layer.buildWithScope(slowServer(port, 50, 5_000), scope))
    const { answers, connected } = openRequests(port, 48)
    // the shutdown starts as soon as the connections are established, before the server accepted them all
    await connected
    await Effect.runPromise(Scope.close(scope, Exit.void))
    expect(await answers).toEqual(Array.from({ length: 48 }, () => "HTTP/1.1 200 OK"))
  })
})
