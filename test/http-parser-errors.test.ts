import * as net from "node:net"

import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { Effect, Exit, Layer, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

import { testConfig } from "../src/platform/Config.js"
import { makeServer } from "../src/platform/Server.js"
import { freePort } from "./support/network.js"

/**
 * Requests node's own HTTP parser refuses never reach the app: the production server (makeServer)
 * still answers them with the problem body of API.md and a request id.
 */

let port = 0
const scope = Effect.runSync(Scope.make())

beforeAll(async () => {
  port = await freePort()
  const served = Layer.unwrapEffect(
    Effect.map(
      makeServer,
      ({ ServerLive }) =>
        HttpServer.serve(HttpRouter.empty.pipe(HttpRouter.get("/ok", HttpServerResponse.text("ok")))).pipe(
          Layer.provide(ServerLive)
        )
    )
  ).pipe(Layer.provide(testConfig({ PORT: String(port) })))
  await Effect.runPromise(Layer.buildWithScope(served, scope))
})
afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

/** Writes `raw` on a fresh connection and reads until the server closes it. */
const exchange = (raw: string) =>
  new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(raw))
    let answer = ""
    socket.setTimeout(5_000, () => reject(new Error("no answer within 5 s")))
    socket.on("data", (chunk) => (answer += String(chunk)))
    socket.on("end", () => resolve(answer))
    socket.on("error", reject)
  })

const parse = (answer: string) => {
  const [head = "", body = ""] = answer.split("\r\n\r\n")
  const [statusLine = "", ...lines] = head.split("\r\n")
  const headers = Object.fromEntries(lines.map((line) => {
    const at = line.indexOf(":")
    return [line.slice(0, at).toLowerCase(), line.slice(at + 1).trim()]
  }))
  return { statusLine, headers, body: JSON.parse(body) as Record<string, unknown> }
}

describe("requests node's HTTP parser refuses", () => {
  it("headers over 16 KiB: a 431 problem with its request id, never echoing them", async () => {
    const secret = "s".repeat(20_000)
    const answer = await exchange(`GET /ok HTTP/1.1\r\nHost: x\r\nX-Secret: ${secret}\r\n\r\n`)
    const { body, headers, statusLine } = parse(answer)
    expect(statusLine).toBe("HTTP/1.1 431 Request Header Fields Too Large")
    expect(headers["content-type"]).toBe("application/problem+json")
    expect(headers["connection"]).toBe("close")
    expect(body).toMatchObject({ status: 431, error: "headers_too_large", type: "urn:chatkit:error:headers_too_large" })
    expect(body.request_id).toBe(headers["x-request-id"])
    expect(answer).not.toContain("sss")
  })

  it("bytes that are not HTTP: a 400 validation_error problem", async () => {
    const { body, headers, statusLine } = parse(await exchange("HELLO\u0000 THERE\r\n\r\n"))
    expect(statusLine).toBe("HTTP/1.1 400 Bad Request")
    expect(headers["x-content-type-options"]).toBe("nosniff")
    expect(body).toMatchObject({ status: 400, error: "validation_error", detail: "The request is not valid HTTP/1.1" })
    expect(body.request_id).toBe(headers["x-request-id"])
  })

  it("a well-formed request on the same server is served as usual", async () => {
    const answer = await exchange("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(answer.startsWith("HTTP/1.1 200 OK")).toBe(true)
  })
})
