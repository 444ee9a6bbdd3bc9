import { execFile, spawn } from "node:child_process"
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

import { afterAll, describe, expect, it } from "vitest"

import { freePort } from "./support/network.js"
import { collect } from "./support/process.js"

/**
 * `npm start`, `npm run migrate` and `npm run cli` run the compiled dist/ through
 * scripts/run-built.mjs, which compiles src/ first when dist/ is missing or older than it.
 */

const repoRoot = fileURLToPath(new URL("..", import.meta.url))

/** The outer environment without what would pick a database, a Redis, a secret file or a loader. */
const childEnv = (env: Record<string, string>) => ({
  ...Object.fromEntries(
    Object.entries(process.env).filter(([key]) =>
      !key.endsWith("_FILE") && !["DATABASE_URL", "REDIS_URL", "NODE_OPTIONS"].includes(key)
    )
  ),
  NODE_ENV: "test",
  CHATKIT_DATA_DIR: "memory://",
  ...env
})

const run = (command: string, args: ReadonlyArray<string>, cwd: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(command, args, { cwd, env: childEnv({}) }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })
    })
  })

const waitFor = async (predicate: () => boolean, timeoutMs: number, what: string) => {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The direct children of `pid`, from the parent pid field of every /proc/<pid>/stat. */
const childrenOf = (pid: number): Array<number> =>
  readdirSync("/proc").filter((name) => /^\d+$/.test(name)).flatMap((name) => {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8")
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      return ppid === pid ? [Number(name)] : []
    } catch {
      return [] // gone meanwhile
    }
  })

const commandLine = (pid: number) =>
  readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((arg) => arg !== "")

const descendantsOf = (pid: number): Array<number> =>
  childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child)])

describe("the compiled server", () => {
  it("`npm start` serves from dist/main.js in one process, without tsx, and exits 0 on SIGTERM", async () => {
    const port = await freePort()
    const child = spawn("npm", ["start"], {
      cwd: repoRoot,
      env: childEnv({ PORT: String(port) }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    const { exited, output } = collect(child)
    try {
      await waitFor(() => output.stdout.includes("listening on"), 150_000, `the server (stderr: ${output.stderr})`)
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200)

      // npm execs the script's command: the server is npm's only child and has no children of its own.
      const [server, ...others] = childrenOf(child.pid!)
      expect(others).toEqual([])
      expect(commandLine(server!).slice(1)).toEqual(["--enable-source-maps", "scripts/run-built.mjs", "dist/main.js"])
      expect(descendantsOf(server!)).toEqual([])
      for (const pid of [child.pid!, server!]) expect(commandLine(pid).join(" ")).not.toContain("tsx")

      child.kill("SIGTERM")
      expect(await exited).toBe(0)
      expect(output.stdout).toContain("shutting down")
    } finally {
      if (child.exitCode === null) child.kill("SIGTERM")
    }
  }, 180_000)

  it("`npm run migrate -- status` runs from dist/ on the embedded database", async () => {
    const result = await run("npm", ["run", "migrate", "--", "status"], repoRoot)
    expect(result.stderr).not.toContain("tsx")
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("exec node --enable-source-maps scripts/run-built.mjs dist/cli/migrate.js status")
    expect(result.stdout).toMatch(/^0001\s+audit_and_idempotency\s+pending\s+-$/m)
  }, 180_000)
})

describe("scripts/run-built.mjs", () => {
  // A two-file project with the repository's script and compiler settings: real tsc, in seconds,
  // and nothing of the repository's own src/ or dist/ is touched.
  const project = mkdtempSync(join(tmpdir(), "chatkit-run-built-"))
  afterAll(() => rmSync(project, { recursive: true, force: true }))
  for (const name of ["scripts", "package.json", "tsconfig.json", "tsconfig.build.json"]) {
    cpSync(join(repoRoot, name), join(project, name), { recursive: true })
  }
  symlinkSync(join(repoRoot, "node_modules"), join(project, "node_modules"))
  const source = (path: string, text: string) => {
    mkdirSync(dirname(join(project, "src", path)), { recursive: true })
    writeFileSync(join(project, "src", path), text)
  }
  source(
    "main.ts",
    [
      `import { answer } from "./lib/answer.js"`,
      `console.log(JSON.stringify({ argv: process.argv.slice(1), answer }))`,
      `process.exitCode = Number(process.argv[2] ?? 0)`,
      ``
    ].join("\n")
  )
  source("lib/answer.ts", "export const answer: number = 42\n")
  const dist = (path: string) => join(project, "dist", path)
  const runBuilt = (...args: Array<string>) =>
    run(process.execPath, ["--enable-source-maps", "scripts/run-built.mjs", "dist/main.js", ...args], project)

  it("compiles when dist/ is missing, then runs the entry in-process with its arguments and exit code", async () => {
    const first = await runBuilt("3", "--flag")
    expect(first.stderr).toContain("Compiling src/ into dist/ (dist/main.js is missing)")
    expect(first.code).toBe(3)
    expect(JSON.parse(first.stdout)).toEqual({ argv: [dist("main.js"), "3", "--flag"], answer: 42 })
    expect(existsSync(dist("lib/answer.js.map"))).toBe(true)

    const second = await runBuilt("0")
    expect(second.stderr).toBe("")
    expect(second.code).toBe(0)
    expect(JSON.parse(second.stdout).answer).toBe(42)
  }, 60_000)

  it("recompiles when a source is newer than dist/, replacing every output and removing orphans", async () => {
    const editedAt = Date.now()
    source("lib/answer.ts", "export const answer: number = 43\n")
    writeFileSync(dist("Removed.js"), "export {}\n")
    rmSync(dist("lib/answer.js.map"))

    const result = await runBuilt()
    expect(result.stderr).toContain("Compiling src/ into dist/ (src/ changed since the last build)")
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout).answer).toBe(43)
    expect(existsSync(dist("lib/answer.js.map"))).toBe(true)
    expect(existsSync(dist("Removed.js"))).toBe(false)
    expect(statSync(dist("main.js")).mtimeMs).toBeGreaterThanOrEqual(editedAt - 1000)
    expect(readdirSync(project).filter((name) => name.startsWith(".dist-build-"))).toEqual([])
  }, 60_000)

  it("refuses to run on a type error, leaving dist/ as it was", async () => {
    source("lib/answer.ts", `export const answer: number = "forty-four"\n`)
    const result = await runBuilt()
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("error TS2322")
    expect(result.stderr).toContain("Compilation failed")
    expect(result.stdout).toBe("")
    expect(readFileSync(dist("lib/answer.js"), "utf8")).toContain("43")
    expect(readdirSync(project).filter((name) => name.startsWith(".dist-build-"))).toEqual([])
  }, 60_000)
})
