import type { ChildProcess } from "node:child_process"

/** A child's stdout and stderr as they accumulate, and its exit code once it exits. */
export const collect = (child: ChildProcess) => {
  const output = { stdout: "", stderr: "" }
  child.stdout?.on("data", (chunk) => (output.stdout += String(chunk)))
  child.stderr?.on("data", (chunk) => (output.stderr += String(chunk)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return { output, exited }
}
