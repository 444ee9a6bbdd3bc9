import { request } from "node:http"

import { freePort } from "./network.js"
import { collect, startServer, waitFor } from "./process.js"

/* The server as a real process on loopback, and requests to it on connections of their own. */

export const ADMIN_EMAIL = "faults-admin@example.com"
export const ADMIN_PASSWORD = "correct horse battery staple"
const AUTH_SECRET_KEY = "faults-test-secret-0123456789-abcdefghij"

export interface ServerProcess {
  readonly port: number
  readonly output: { readonly stdout: string; readonly stderr: string }
  /** the exit code once the process has exited */
  readonly exited: Promise<number | null>
  /** SIGTERM, and the exit code */
  readonly stop: () => Promise<number | null>
  readonly kill: (signal: NodeJS.Signals) => void
}

/** `src/main.ts` on a free port with an admin to log in as, resolved once it listens. */
export const bootServer = async (env: Record<string, string>): Promise<ServerProcess> => {
  const port = await freePort()
  const child = startServer({ PORT: String(port), AUTH_SECRET_KEY, ADMIN_EMAIL, ADMIN_PASSWORD, ...env })
  const { exited, output } = collect(child)
  const exitedEarly = exited.then((code) => {
    throw new Error(`the server exited (${code}) before listening: ${output.stderr.slice(-500)}`)
  })
  await Promise.race([waitFor(() => output.stdout.includes("listening on"), 60_000), exitedEarly])
  exitedEarly.catch(() => undefined)
  return {
    port,
    output,
    exited,
    kill: (signal) => child.kill(signal),
    stop: () => {
      if (child.exitCode === null) child.kill("SIGTERM")
      return exited
    }
  }
}

export interface Outcome {
  /** the HTTP status, or 0 when the request failed (see `error`) */
  readonly status: number
  readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
  readonly body: string
  /** the socket's error code (ECONNRESET, ECONNREFUSED, ...) */
  readonly error?: string
  /** when the request was sent, and when its connection was established (undefined if never) */
  readonly sentAt: number
  readonly connectedAt?: number
  readonly ms: number
}

/** One request on a connection of its own (no agent, so no reuse); never rejects, never outlives `timeoutMs`. */
export const send = (
  port: number,
  path: string,
  options: {
    readonly method?: string
    readonly token?: string
    readonly body?: unknown
    readonly timeoutMs?: number
    /** asks the server to keep the connection open (it says `Connection: close` once draining) */
    readonly keepAlive?: boolean
    /** called once the TCP connection is established (before the server necessarily accepted it) */
    readonly onConnect?: () => void
  } = {}
): Promise<Outcome> =>
  new Promise((resolve) => {
    const sentAt = Date.now()
    let connectedAt: number | undefined
    const done = (outcome: Omit<Outcome, "sentAt" | "connectedAt" | "ms">) =>
      resolve({
        ...outcome,
        sentAt,
        ms: Date.now() - sentAt,
        ...(connectedAt === undefined ? {} : { connectedAt })
      })
    const req = request({
      host: "127.0.0.1",
      port,
      path,
      method: options.method ?? "GET",
      agent: false,
      timeout: options.timeoutMs ?? 10_000,
      headers: {
        ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        ...(options.body === undefined ? {} : { "content-type": "application/json" }),
        ...(options.keepAlive === true ? { connection: "keep-alive" } : {})
      }
    }, (response) => {
      let body = ""
      response.on("data", (chunk) => (body += String(chunk)))
      response.on("end", () => done({ status: response.statusCode ?? 0, headers: response.headers, body }))
      response.on("error", (error: NodeJS.ErrnoException) =>
        done({ status: 0, headers: {}, body, error: error.code ?? error.message }))
    })
    req.on("socket", (socket) =>
      socket.once("connect", () => {
        connectedAt = Date.now()
        options.onConnect?.()
      }))
    req.on("timeout", () =>
      req.destroy(Object.assign(new Error("timed out"), { code: "TIMEOUT" })))
    req.on("error", (error: NodeJS.ErrnoException) =>
      done({ status: 0, headers: {}, body: "", error: error.code ?? error.message }))
    req.end(options.body === undefined ? undefined : JSON.stringify(options.body))
  })

/** An access token of the admin `bootServer` creates. */
export const adminToken = async (port: number) => {
  const login = await send(port, "/api/v1/auth/login", {
    method: "POST",
    body: { email: ADMIN_EMAIL, password: ADMIN_PASSWORD }
  })
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${login.body}`)
  return (JSON.parse(login.body) as { access_token: string }).access_token
}

/**
 * `workers` loops sending `next()` back to back until `stop()` is called (or `maxRequests` were
 * sent): the outcomes, in the order they finished.
 */
export const load = (workers: number, next: () => Promise<Outcome>, maxRequests = 2_000) => {
  const outcomes: Array<Outcome> = []
  let running = true
  let sent = 0
  const loops = Array.from({ length: workers }, async () => {
    while (running && sent < maxRequests) {
      sent++
      outcomes.push(await next())
      // a pause between requests keeps the load to a few hundred requests a second
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })
  return {
    outcomes,
    stop: async () => {
      running = false
      await Promise.all(loops)
      return outcomes
    }
  }
}

/** How many outcomes had each status (or error code). */
export const histogram = (outcomes: ReadonlyArray<Outcome>) => {
  const counts: Record<string, number> = {}
  for (const outcome of outcomes) {
    const key = outcome.error ?? String(outcome.status)
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}
