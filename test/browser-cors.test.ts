import { existsSync } from "node:fs"
import { createServer, type Server } from "node:http"

import { HttpServer } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { type Browser, chromium } from "playwright-core"
import { afterAll, beforeAll } from "vitest"

import { TestApp } from "./support/app.js"
import { freePort } from "./support/network.js"
import { PASSWORD, seedUser } from "./support/session.js"

/*
 * A front end on another origin, in a real browser: headless Chromium loads a page from one
 * origin and calls the API on another with fetch, exactly as a ChatKit web app would.
 */

const CHROMIUM = "/usr/bin/chromium"

const allowedPort = await freePort()
const refusedPort = await freePort()
const allowedOrigin = `http://127.0.0.1:${allowedPort}`

/** A blank page: the test drives it with `page.evaluate`. */
const servePage = (port: number) =>
  new Promise<Server>((resolve) => {
    const server = createServer((_, response) => {
      response.writeHead(200, { "content-type": "text/html" }).end(
        "<!doctype html><title>front end</title><p>front end</p>"
      )
    })
    server.listen(port, "127.0.0.1", () => resolve(server))
  })

let browser: Browser
const pages: Array<Server> = []

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) to run the browser tests`
    )
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run"
    ]
  })
  pages.push(await servePage(allowedPort), await servePage(refusedPort))
})

afterAll(async () => {
  await browser?.close()
  await Promise.all(pages.map((server) => new Promise((resolve) => server.close(resolve))))
})

interface BrowserResult {
  readonly login?: { readonly status: number; readonly requestId: string | null; readonly hasToken: boolean }
  readonly me?: { readonly status: number; readonly email: string }
  readonly error?: string
}

/** From a page of `origin`, logs in to the API with fetch and calls /auth/me with the token. */
const loginFromBrowser = (origin: string, api: string, email: string) =>
  Effect.promise(async (): Promise<BrowserResult> => {
    const page = await browser.newPage()
    try {
      await page.goto(origin)
      return await page.evaluate(async ({ api, email, password }) => {
        try {
          const login = await fetch(`${api}/api/v1/auth/login`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "accept-language": "fr",
              "chatkit-frame-instance-id": "frame-1"
            },
            body: JSON.stringify({ email, password })
          })
          const tokens = await login.json()
          const me = await fetch(`${api}/api/v1/auth/me`, {
            headers: { authorization: `Bearer ${tokens.access_token}` }
          })
          return {
            login: {
              status: login.status,
              requestId: login.headers.get("x-request-id"),
              hasToken: typeof tokens.access_token === "string"
            },
            me: { status: me.status, email: (await me.json()).email }
          }
        } catch (error) {
          return { error: String(error) }
        }
      }, { api, email, password: PASSWORD })
    } finally {
      await page.close()
    }
  })

const apiUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP server")
  return `http://127.0.0.1:${address.port}`
})

layer(TestApp("browser_cors", { ALLOWED_ORIGINS: allowedOrigin }))("a front end in Chromium", (it) => {
  it.effect("logs in from an allowed origin, reads the exposed request id, and calls /auth/me with its token", () =>
    Effect.gen(function*() {
      const user = yield* seedUser("browser")
      const result = yield* loginFromBrowser(allowedOrigin, yield* apiUrl, user.email)
      expect(result.error).toBeUndefined()
      expect(result.login?.status).toBe(200)
      expect(result.login?.hasToken).toBe(true)
      expect(result.login?.requestId).toMatch(/^[0-9a-f-]{36}$/)
      expect(result.me).toEqual({ status: 200, email: user.email })
    }))

  it.effect("is refused by the browser from an origin that is not allowed", () =>
    Effect.gen(function*() {
      const user = yield* seedUser("browser-refused")
      const result = yield* loginFromBrowser(`http://127.0.0.1:${refusedPort}`, yield* apiUrl, user.email)
      expect(result.login).toBeUndefined()
      expect(result.error).toContain("Failed to fetch")
    }))
})
