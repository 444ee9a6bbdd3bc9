/**
 * The spike's whole measurement: the same small HttpApi server on Effect 3 (effect3.mjs, the root
 * project's packages) and on Effect 4 (effect4.mjs, this folder's), and bare node:http (bare.mjs),
 * each in a process of its own, all three started first and then loaded in turn with wrk:
 * for each round, for each scenario, E3 then E4 then bare (a warm-up, then the measured run).
 * Prints every run (req/s, p50, p99, errors, the server's CPU time per request), the medians,
 * the median of the per-round ratios E4/E3 and each/bare, and the RSS of each server before and
 * after; writes it all to results/latest.json.
 *
 *   cd bench/spike-effect4 && npm ci && node run.mjs [--rounds 3 --seconds 10 --warmup 3 --connections 64]
 *
 * Needs wrk (Debian's package) and the root project's node_modules (npm ci at the root).
 */
/* global fetch */
import { execFileSync, spawn } from "node:child_process"
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { createServer } from "node:net"
import { loadavg, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { clearTimeout, setTimeout } from "node:timers"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

import { HEALTH_BODY, MODELS_BODY, TOKEN } from "./shared.mjs"

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, "..", "..")

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "3" },
    connections: { type: "string", default: "64" }
  }
})
const rounds = Number(args.rounds)
const seconds = Number(args.seconds)
const warmupSeconds = Number(args.warmup)
const connections = Number(args.connections)

const versionOf = (dir, name) =>
  JSON.parse(readFileSync(join(dir, "node_modules", name, "package.json"), "utf8")).version
for (
  const [dir, name, hint] of [
    [root, "@effect/platform-node", "npm ci at the root"],
    [here, "@effect/platform-node", "npm ci in bench/spike-effect4"]
  ]
) {
  if (!existsSync(join(dir, "node_modules", name, "package.json"))) {
    console.error(`${join(dir, "node_modules", name)} is missing: run ${hint}`)
    process.exit(1)
  }
}
try {
  execFileSync("wrk", ["--version"], { stdio: "ignore" })
} catch (error) {
  if (error.code === "ENOENT") {
    console.error("wrk is missing: apt-get install -y wrk")
    process.exit(1)
  } // wrk --version exits 1 but exists
}

const versions = {
  node: process.version,
  effect3: `effect ${versionOf(root, "effect")}, @effect/platform ${
    versionOf(root, "@effect/platform")
  }, @effect/platform-node ${versionOf(root, "@effect/platform-node")}`,
  effect4: `effect ${versionOf(here, "effect")}, @effect/platform-node ${versionOf(here, "@effect/platform-node")}`
}

const SERVERS = [
  { name: "E3", script: "effect3.mjs" },
  { name: "E4", script: "effect4.mjs" },
  { name: "bare", script: "bare.mjs" }
]
const SCENARIOS = [
  { name: "GET /health", path: "/health", headers: {}, body: HEALTH_BODY },
  {
    name: "GET /api/v1/models (bearer)",
    path: "/api/v1/models",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: MODELS_BODY
  }
]

const work = mkdtempSync(join(tmpdir(), "spike-effect4-"))

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

const procStatus = (pid, field) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`))
  return Number(line?.replace(/\D+/g, "")) / 1024
}

/** user + system CPU seconds of a process so far */
const cpuSeconds = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ = 100)
}

const start = async (server) => {
  const port = await freePort()
  const log = join(work, `${server.name}.log`)
  const out = openSync(log, "w")
  const started = performance.now()
  const child = spawn(process.execPath, [join(here, server.script)], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port) },
    stdio: ["ignore", out, out]
  })
  closeSync(out)
  const base = `http://127.0.0.1:${port}`
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${server.name} exited with ${child.exitCode}; see ${log}`)
    if (await fetch(`${base}/health`).then((r) => r.ok, () => false)) break
    await sleep(20)
  }
  return { ...server, child, base, log, startupMs: performance.now() - started }
}

const stop = (child) =>
  new Promise((resolve) => {
    if (child.exitCode !== null) return resolve()
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.on("exit", () => {
      clearTimeout(kill)
      resolve()
    })
    child.kill("SIGTERM")
  })

/** Each server answers each scenario with the same body; the models page needs the bearer. */
const checkAnswers = async (server) => {
  for (const scenario of SCENARIOS) {
    const response = await fetch(`${server.base}${scenario.path}`, { headers: scenario.headers })
    const body = await response.text()
    if (response.status !== 200 || body !== scenario.body) {
      throw new Error(`${server.name} ${scenario.path}: ${response.status} ${body.slice(0, 200)}`)
    }
  }
  const refused = await fetch(`${server.base}/api/v1/models`, { headers: { authorization: "Bearer wrong" } })
  await refused.text()
  if (refused.status !== 401) throw new Error(`${server.name}: a wrong bearer got ${refused.status}`)
}

const LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,\\"p50\\":%.3f,\\"p99\\":%.3f}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
`
const luaScript = join(work, "report.lua")
writeFileSync(luaScript, LUA)

const wrk = (url, headers, duration) =>
  new Promise((resolve, reject) => {
    const headerArgs = Object.entries(headers).flatMap(([name, value]) => ["-H", `${name}: ${value}`])
    const child = spawn("wrk", [
      "-t2",
      `-c${connections}`,
      `-d${duration}s`,
      "--timeout",
      "10s",
      ...headerArgs,
      "-s",
      luaScript,
      url
    ])
    let output = ""
    child.stdout.on("data", (chunk) => (output += String(chunk)))
    child.stderr.on("data", (chunk) => (output += String(chunk)))
    child.on("exit", () => {
      const line = output.split("\n").find((l) => l.startsWith("WRK_JSON "))
      if (line === undefined) return reject(new Error(`wrk printed no result:\n${output}`))
      const parsed = JSON.parse(line.slice("WRK_JSON ".length))
      resolve({
        requests: parsed.requests,
        requestsPerSecond: parsed.requests / (parsed.duration_us / 1e6),
        errors: parsed.errors,
        p50: parsed.p50,
        p99: parsed.p99
      })
    })
  })

/** The last "metrics at exit" line of a server's log, and how many "http request" lines it wrote. */
const readLog = async (log) => {
  let requestLines = 0
  let counted
  for await (const line of createInterface({ input: createReadStream(log) })) {
    if (line.includes("\"message\":\"http request\"")) requestLines++
    else if (line.includes("\"message\":\"metrics at exit\"")) counted = JSON.parse(line).http_requests_total
  }
  return { requestLines, counted }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
const fixed = (n, digits = 0) => n.toFixed(digits)
const pad = (text, width) => String(text).padStart(width)

// ---------------------------------------------------------------------------------------------

const startedAt = new Date()
console.log(`spike-effect4: ${startedAt.toISOString()}, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`)
console.log(`  Node ${versions.node}; E3 = ${versions.effect3}; E4 = ${versions.effect4}`)
console.log(
  `  wrk -t2 -c${connections}, ${warmupSeconds} s warm-up + ${seconds} s measured, ${rounds} rounds, E3 E4 bare interleaved\n`
)

const servers = []
for (const server of SERVERS) servers.push(await start(server))
for (const server of servers) {
  await checkAnswers(server)
  server.rssStartMb = procStatus(server.child.pid, "VmRSS")
}
console.log(
  "started and checked (same bodies, 401 without the bearer): " +
    servers.map((s) => `${s.name} ${fixed(s.startupMs)} ms, RSS ${fixed(s.rssStartMb, 1)} MB`).join("; ")
)

const runs = []
console.log(
  `\n${"round".padEnd(6)}${"scenario".padEnd(30)}${"server".padEnd(7)}${pad("req/s", 9)}${pad("p50 ms", 9)}${
    pad("p99 ms", 9)
  }${pad("errors", 8)}${pad("CPU µs/req", 12)}${pad("load1", 7)}`
)
for (let round = 1; round <= rounds; round++) {
  for (const scenario of SCENARIOS) {
    for (const server of servers) {
      const url = `${server.base}${scenario.path}`
      if (warmupSeconds > 0) await wrk(url, scenario.headers, warmupSeconds)
      const load1 = loadavg()[0]
      const cpuBefore = cpuSeconds(server.child.pid)
      const result = await wrk(url, scenario.headers, seconds)
      const cpuUsPerRequest = ((cpuSeconds(server.child.pid) - cpuBefore) * 1e6) / result.requests
      const run = { round, scenario: scenario.name, server: server.name, ...result, cpuUsPerRequest, load1 }
      runs.push(run)
      console.log(
        `${String(round).padEnd(6)}${scenario.name.padEnd(30)}${server.name.padEnd(7)}${
          pad(fixed(run.requestsPerSecond), 9)
        }${pad(fixed(run.p50, 2), 9)}${pad(fixed(run.p99, 2), 9)}${pad(run.errors, 8)}${
          pad(fixed(cpuUsPerRequest, 1), 12)
        }${pad(load1.toFixed(2), 7)}`
      )
    }
  }
}

for (const server of servers) {
  server.rssEndMb = procStatus(server.child.pid, "VmRSS")
  server.rssPeakMb = procStatus(server.child.pid, "VmHWM")
}
await Promise.all(servers.map((server) => stop(server.child)))
for (const server of servers) {
  if (server.name !== "bare") Object.assign(server, await readLog(server.log))
}

const find = (round, scenario, server) =>
  runs.find((r) => r.round === round && r.scenario === scenario && r.server === server)
const summary = []
console.log(
  `\n${"medians".padEnd(36)}${pad("req/s", 9)}${pad("p50 ms", 9)}${pad("p99 ms", 9)}${pad("CPU µs/req", 12)}`
)
for (const scenario of SCENARIOS) {
  for (const server of servers) {
    const own = runs.filter((r) => r.scenario === scenario.name && r.server === server.name)
    const row = {
      scenario: scenario.name,
      server: server.name,
      requestsPerSecond: median(own.map((r) => r.requestsPerSecond)),
      p50: median(own.map((r) => r.p50)),
      p99: median(own.map((r) => r.p99)),
      cpuUsPerRequest: median(own.map((r) => r.cpuUsPerRequest))
    }
    summary.push(row)
    console.log(
      `${scenario.name.padEnd(30)}${server.name.padEnd(6)}${pad(fixed(row.requestsPerSecond), 9)}${
        pad(fixed(row.p50, 2), 9)
      }${pad(fixed(row.p99, 2), 9)}${pad(fixed(row.cpuUsPerRequest, 1), 12)}`
    )
  }
}

/** the median over rounds of a/b, each round's runs being neighbours in time */
const ratio = (scenario, a, b, key) => {
  const values = []
  for (let round = 1; round <= rounds; round++) {
    values.push(find(round, scenario, a)[key] / find(round, scenario, b)[key])
  }
  return median(values)
}
const ratios = []
console.log(`\n${"median of per-round ratios".padEnd(36)}${pad("E4/E3", 8)}${pad("E3/bare", 9)}${pad("E4/bare", 9)}`)
for (const scenario of SCENARIOS) {
  for (
    const [label, key] of [["req/s", "requestsPerSecond"], ["p50", "p50"], ["p99", "p99"], [
      "CPU/req",
      "cpuUsPerRequest"
    ]]
  ) {
    const row = {
      scenario: scenario.name,
      measure: label,
      e4OverE3: ratio(scenario.name, "E4", "E3", key),
      e3OverBare: ratio(scenario.name, "E3", "bare", key),
      e4OverBare: ratio(scenario.name, "E4", "bare", key)
    }
    ratios.push(row)
    console.log(
      `${scenario.name.padEnd(28)}${label.padEnd(8)}${pad(row.e4OverE3.toFixed(2), 8)}${
        pad(row.e3OverBare.toFixed(2), 9)
      }${pad(row.e4OverBare.toFixed(2), 9)}`
    )
  }
}

console.log(`\n${"RSS (MB)".padEnd(10)}${pad("started", 9)}${pad("after", 9)}${pad("peak", 9)}`)
for (const server of servers) {
  console.log(
    `${server.name.padEnd(10)}${pad(fixed(server.rssStartMb, 1), 9)}${pad(fixed(server.rssEndMb, 1), 9)}${
      pad(fixed(server.rssPeakMb, 1), 9)
    }`
  )
}
for (const server of servers) {
  if (server.name === "bare") continue
  const measured = runs.filter((r) => r.server === server.name).reduce((n, r) => n + r.requests, 0)
  console.log(
    `${server.name}: ${server.requestLines} "http request" log lines, http_requests_total ${server.counted} at exit (wrk counted ${measured} in the measured runs, plus warm-ups)`
  )
}
const finishedAt = new Date()
console.log(`\nfinished ${finishedAt.toISOString()}, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`)

mkdirSync(join(here, "results"), { recursive: true })
writeFileSync(
  join(here, "results", "latest.json"),
  JSON.stringify(
    {
      startedAt,
      finishedAt,
      versions,
      load: { connections, seconds, warmupSeconds, rounds },
      servers: servers.map((s) => ({
        name: s.name,
        startupMs: s.startupMs,
        rssStartMb: s.rssStartMb,
        rssEndMb: s.rssEndMb,
        rssPeakMb: s.rssPeakMb,
        requestLogLines: s.requestLines,
        httpRequestsTotalAtExit: s.counted
      })),
      runs,
      medians: summary,
      ratios
    },
    null,
    2
  ) + "\n"
)
rmSync(work, { recursive: true, force: true })
console.log("written to bench/spike-effect4/results/latest.json")
