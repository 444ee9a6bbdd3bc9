import { type ChildProcess, spawn } from "node:child_process"

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

export const waitFor = async (predicate: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the server")
    await new Promise((r) => setTimeout(r, 50))
  }
}
