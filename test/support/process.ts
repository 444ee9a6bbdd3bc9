import { type ChildProcess, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"

/** A child's stdout and stderr as they accumulate, and its exit code once it exits. */
export const collect = (child: ChildProcess) => {
  const output = { stdout: "", stderr: "" }
  child.stdout?.on("data", (chunk) => (output.stdout += String(chunk)))
  child.stderr?.on("data", (chunk) => (output.stderr += String(chunk)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return { output, exited }
}

/** Runs `src/main.ts` as `npm start` would, with only the given environment (the embedded database in memory by default). */
export const startServer = (env: Record<string, string>) =>
  spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", NODE_ENV: "test", CHATKIT_DATA_DIR: "memory://", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })

/**
 * Runs `node scripts/run-built.mjs dist/<entry> ...args` to its end, as `npm run migrate` or
 * `npm run cli` do: src/ is compiled first when dist/ is stale, so later `startBuilt` calls need no build.
 */
export const runBuilt = (entry: string, args: ReadonlyArray<string>, env: Record<string, string>) => {
  const child = spawn(process.execPath, ["--enable-source-maps", "scripts/run-built.mjs", `dist/${entry}`, ...args], {
    env: { PATH: process.env.PATH ?? "", NODE_ENV: "test", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const { exited, output } = collect(child)
  return exited.then((code) => ({ code, ...output }))
}

/** Starts the compiled `dist/<entry>` as a deployment runs it (`node dist/main.js`), with only the given environment. */
export const startBuilt = (entry: string, args: ReadonlyArray<string>, env: Record<string, string>) =>
  spawn(process.execPath, ["--enable-source-maps", `dist/${entry}`, ...args], {
    env: { PATH: process.env.PATH ?? "", NODE_ENV: "test", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })

export const waitFor = async (predicate: () => boolean, timeoutMs: number, what = "the server") => {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The nice value of each thread of a process (Linux, /proc), the event loop's (its id is the pid) apart. */
export const threadNices = (pid: number) => {
  const nice = (tid: string) => {
    // the 19th field of stat; the command name before it, in parentheses, may hold spaces
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16])
  }
  const others = readdirSync(`/proc/${pid}/task`).filter((tid) => tid !== String(pid))
  return { loop: nice(String(pid)), others: others.map(nice) }
}
