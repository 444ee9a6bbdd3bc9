import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/**
 * Load with `wrk` (Debian's package, installed when missing): a JavaScript load generator would
 * saturate these 2 cores before the servers do. A Lua script gives each request its own
 * X-Forwarded-For (per-IP limits behave as with many clients) and prints the figures as JSON.
 */

export interface WrkResult {
  readonly requestsPerSecond: number
  readonly requests: number
  /** socket errors, timeouts and answers that are not 2xx */
  readonly errors: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  /** CPU time (user + system) the server spent per measured request, when its pid was given */
  readonly cpuUsPerRequest?: number
}

export interface WrkRequest {
  readonly url: string
  readonly headers?: Readonly<Record<string, string>>
  /** a JSON POST of this body, with `{{i}}` replaced by a random index below `indexBelow` */
  readonly postBody?: string
  readonly indexBelow?: number
}

export const ensureWrk = () => {
  try {
    execFileSync("wrk", ["--version"], { stdio: "ignore" })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") return // wrk --version exits 1 but exists
    console.log("installing wrk (apt-get install -y wrk) ...")
    execFileSync("apt-get", ["install", "-y", "wrk"], { stdio: "inherit" })
  }
}

const lua = (request: WrkRequest) => {
  const headers = Object.entries(request.headers ?? {})
    .map(([name, value]) => `headers[${JSON.stringify(name)}] = ${JSON.stringify(value)}`)
    .join("\n")
  return `
math.randomseed(os.time())
local headers = {}
${headers}
request = function()
  headers["X-Forwarded-For"] = "10." .. math.random(0, 255) .. "." .. math.random(0, 255) .. "." .. math.random(1, 254)
  ${
    request.postBody === undefined
      ? "return wrk.format(\"GET\", nil, headers)"
      : `headers["Content-Type"] = "application/json"
  local body = string.gsub(${JSON.stringify(request.postBody)}, "{{i}}", tostring(math.random(0, ${
        (request.indexBelow ?? 1) - 1
      })))
  return wrk.format("POST", nil, headers, body)`
  }
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,\\"p50\\":%.3f,\\"p95\\":%.3f,\\"p99\\":%.3f}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
`
}

const run = (request: WrkRequest, seconds: number, connections: number) =>
  new Promise<WrkResult>((resolve, reject) => {
    const script = join(mkdtempSync(join(tmpdir(), "chatkit-wrk-")), "script.lua")
    writeFileSync(script, lua(request))
    const child = spawn("wrk", [
      "-t2",
      `-c${connections}`,
      `-d${seconds}s`,
      "--timeout",
      "10s",
      "-s",
      script,
      request.url
    ])
    let output = ""
    child.stdout.on("data", (chunk) => (output += String(chunk)))
    child.stderr.on("data", (chunk) => (output += String(chunk)))
    child.on("exit", () => {
      const line = output.split("\n").find((l) => l.startsWith("WRK_JSON "))
      if (line === undefined) return reject(new Error(`wrk printed no result:\n${output}`))
      const parsed = JSON.parse(line.slice("WRK_JSON ".length)) as {
        requests: number
        duration_us: number
        errors: number
        p50: number
        p95: number
        p99: number
      }
      resolve({
        requestsPerSecond: parsed.requests / (parsed.duration_us / 1e6),
        requests: parsed.requests,
        errors: parsed.errors,
        p50: parsed.p50,
        p95: parsed.p95,
        p99: parsed.p99
      })
    })
  })

/** CPU time (user + system) of process `pid` so far, in µs (/proc counts clock ticks of 10 ms). */
const cpuUs = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

/**
 * A warm-up of `warmupSeconds` (not counted), then the measured run; with the server's pid, the
 * CPU it spent per request too, which other work on the machine disturbs far less than req/s.
 */
export const wrk = async (
  request: WrkRequest,
  options: { readonly seconds: number; readonly warmupSeconds: number; readonly connections: number },
  serverPid?: number
): Promise<WrkResult> => {
  await run(request, options.warmupSeconds, options.connections)
  const before = serverPid === undefined ? 0 : cpuUs(serverPid)
  const result = await run(request, options.seconds, options.connections)
  if (serverPid === undefined) return result
  return { ...result, cpuUsPerRequest: (cpuUs(serverPid) - before) / Math.max(1, result.requests) }
}
