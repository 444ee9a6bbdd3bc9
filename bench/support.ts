import { type ChildProcess, spawn } from "node:child_process"

import autocannon from "autocannon"

import { freePort } from "../test/support/network.js"

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10)

/** Starts `src/main.ts` and resolves once it logs that it listens, with the elapsed time. */
export const startApp = async (env: Record<string, string>) => {
  const port = await freePort()
  const started = performance.now()
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), NODE_ENV: "development", ...env },
    stdio: ["ignore", "pipe", "inherit"]
  })
  await new Promise<void>((resolve, reject) => {
    let output = ""
    child.stdout?.on("data", (chunk) => {
      output += String(chunk)
      if (output.includes("listening")) resolve()
    })
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)))
  })
  child.stdout?.resume()
  return { child, port, url: `http://127.0.0.1:${port}`, startupMs: performance.now() - started }
}

export const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    child.on("exit", () => resolve())
    child.kill("SIGTERM")
  })

export interface LoadResult {
  readonly requestsPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
}

export const load = (url: string, headers: Record<string, string> = {}): Promise<LoadResult> =>
  autocannon({ url, headers, connections: CONNECTIONS, duration: SECONDS, pipelining: 1 }).then((result) => ({
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx
  }))

export const formatLoad = (name: string, r: LoadResult) =>
  `${name.padEnd(24)} ${r.requestsPerSecond.toFixed(0).padStart(8)} req/s   p50 ${String(r.p50).padStart(3)} ms   p99 ${
    String(r.p99).padStart(3)
  } ms   non-2xx/errors ${r.errors}`

export const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}
