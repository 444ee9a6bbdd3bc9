import { existsSync } from "node:fs"
import { request } from "node:http"
import { gunzipSync } from "node:zlib"

import { HttpServer } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { type Browser, chromium } from "playwright-core"
import { afterAll, beforeAll } from "vitest"

import { TestApp } from "./support/app.js"

/*
 * The API readers as a person sees them: Swagger UI at /docs and Scalar at /redoc render the
 * OpenAPI document in headless Chromium, with their bundles served compressed by the server.
 */

const CHROMIUM = "/usr/bin/chromium"
let browser: Browser

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package`)
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] })
})

afterAll(async () => {
  await browser?.close()
})

const apiUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP server")
  return `http://127.0.0.1:${address.port}`
})

interface RawResponse {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: Buffer
}

/** A GET with exactly the headers given (fetch would add and undo gzip on its own). */
const rawGet = (url: string, headers: Record<string, string>) =>
  Effect.async<RawResponse>((resume) => {
    request(url, { headers }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () =>
        resume(
          Effect.succeed({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) })
        ))
    }).end()
  })

/** What the page shows once its reader has rendered `awaited`, and what it failed to load. */
const render = (url: string, awaited: string) =>
  Effect.promise(async () => {
    const page = await browser.newPage()
    const failed: Array<string> = []
    page.on("requestfailed", (request) => {
      if (new URL(request.url()).hostname === "127.0.0.1") failed.push(request.url())
    })
    try {
      await page.goto(url)
      await page.waitForFunction((text) => document.body.innerText.includes(text), awaited, { timeout: 20_000 })
      return { text: await page.locator("body").innerText(), failed }
    } finally {
      await page.close()
    }
  })

layer(TestApp("api_docs"))("the API readers", (it) => {
  it.effect("Swagger UI at /docs renders the operations of the OpenAPI document", () =>
    Effect.gen(function*() {
      const { text, failed } = yield* render(`${yield* apiUrl}/docs`, "/health/ready")
      expect(failed).toEqual([])
      expect(text).toContain("/api/v1/auth/login")
    }), 30_000)

  it.effect("Scalar at /redoc renders the operations of the OpenAPI document", () =>
    Effect.gen(function*() {
      const { text, failed } = yield* render(`${yield* apiUrl}/redoc`, "/health/ready")
      expect(failed).toEqual([])
      expect(text).toContain("/api/v1/auth/login")
    }), 30_000)

  it.effect(
    "serves each bundle gzip-compressed and cacheable, and plain to a client that does not take gzip",
    () =>
      Effect.gen(function*() {
        const base = yield* apiUrl
        for (const path of ["/docs/swagger-ui.js", "/docs/swagger-ui.css", "/redoc/scalar.js"]) {
          const compressed = yield* rawGet(`${base}${path}`, { "accept-encoding": "gzip, deflate, br" })
          expect(compressed.status).toBe(200)
          expect(compressed.headers["content-encoding"]).toBe("gzip")
          expect(compressed.headers["cache-control"]).toBe("public, max-age=86400")
          expect(compressed.headers["vary"]).toContain("Accept-Encoding")
          const plain = yield* rawGet(`${base}${path}`, {})
          expect(plain.headers["content-encoding"]).toBeUndefined()
          expect(plain.body.equals(gunzipSync(compressed.body))).toBe(true)
          // the whole bundle, not a truncated or placeholder file
          expect(plain.body.length).toBeGreaterThan(100_000)
          expect(compressed.body.length).toBeLessThan(plain.body.length / 2)
        }
      }),
    30_000
  )
})
