import { describe, expect, it } from "vitest"

import { freePort } from "./support/network.js"
import { collect, startServer, threadNices, waitFor } from "./support/process.js"

describe("server start-up", () => {
  it("refuses a bad configuration before listening: every problem in one message on stderr, exit 1", async () => {
    const child = startServer({
      NODE_ENV: "production",
      PORT: "nope",
      AUTH_SECRET_KEY: "too-short-secret",
      ALLOWED_ORIGINS: "*"
    })
    const { exited, output } = collect(child)
    expect(await exited).toBe(1)
    expect(output.stderr).toContain("Invalid configuration (5 problems)")
    for (const name of ["PORT", "DATABASE_URL", "REDIS_URL", "AUTH_SECRET_KEY", "ALLOWED_ORIGINS"]) {
      expect(output.stderr).toContain(`  - ${name}:`)
    }
    expect(output.stderr + output.stdout).not.toContain("too-short-secret")
    expect(output.stderr).not.toMatch(/\n\s+at /)
    expect(output.stdout).not.toContain("listening")
  })

  it("gives up on an unreachable database after its retries, with a clear message and exit 1", async () => {
    const child = startServer({
      DATABASE_URL: "postgres://admin:hunter2@127.0.0.1:1/chatkit",
      DATABASE_CONNECT_ATTEMPTS: "3"
    })
    const { exited, output } = collect(child)
    expect(await exited).toBe(1)
    expect(output.stderr).toContain("Database unreachable at 127.0.0.1:1/chatkit after retrying: ECONNREFUSED")
    expect(output.stdout).toContain("database connection failed, retrying")
    expect(output.stderr + output.stdout).not.toContain("hunter2")
    expect(output.stderr).not.toMatch(/\n\s+at /)
  })

  it("serves on the embedded database, then on SIGTERM stops accepting, closes everything and exits 0", async () => {
    const port = await freePort()
    const child = startServer({ PORT: String(port) })
    const { exited, output } = collect(child)
    await waitFor(() => output.stdout.includes("listening on"), 60_000)
    expect(output.stdout).toContain(`http://127.0.0.1:${port}/docs`)
    const health = await fetch(`http://127.0.0.1:${port}/health`)
    expect(health.status).toBe(200)
    child.kill("SIGTERM")
    expect(await exited).toBe(0)
    expect(output.stdout).toContain("shutting down")
    for (const line of output.stdout.trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow()
  })

  it.runIf(process.platform === "linux")(
    "runs every thread but the event loop's at the lowest priority, so the loop wins the cores (HELPER_THREADS_NICE)",
    async () => {
      const port = await freePort()
      const child = startServer({ PORT: String(port) })
      const { exited, output } = collect(child)
      await waitFor(() => output.stdout.includes("listening on"), 60_000)
      const { loop, others } = threadNices(child.pid!)
      expect(loop).toBe(0)
      // V8's 4 helpers, libuv's pool and the embedded database's thread at least
      expect(others.length).toBeGreaterThan(5)
      expect(others).toEqual(others.map(() => 19))
      child.kill("SIGTERM")
      expect(await exited).toBe(0)
    }
  )
})
