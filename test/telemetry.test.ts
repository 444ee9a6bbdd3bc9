import { spawnSync } from "node:child_process"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { afterEach, describe, expect, it, vi } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Cause, Effect, Layer, Logger, Metric, MetricBoundaries, MetricLabel, Option, Redacted } from "effect"

import { METRICS_CONTENT_TYPE } from "../src/api/OperationsApi.js"
import { testConfig } from "../src/platform/Config.js"
import { httpRequestDurationSeconds, httpRequestsTotal } from "../src/platform/Metrics.js"
import { prometheusText } from "../src/platform/Prometheus.js"
import { redact } from "../src/platform/Redaction.js"
import {
  LoggerLive,
  makeJsonLogger,
  makeLoggerLayer,
  makeTracingLayer,
  TracingLive
} from "../src/platform/Telemetry.js"

afterEach(() => {
  vi.restoreAllMocks()
})

describe("redact", () => {
  it("masks secret keys at any depth and inside arrays, case-insensitively", () => {
    const input = {
      user: "ada",
      Password: "hunter2",
      nested: { AUTHORIZATION: "Bearer abc", deeper: { refresh_token: "r", keep: 1 } },
      headers: [{ "Set-Cookie": "sid=1" }, { "x-api-key": "k" }, { accept: "json" }],
      ApiKey: "k2",
      api_key: "k3",
      clientSecret: "s"
    }
    expect(redact(input)).toEqual({
      user: "ada",
      Password: "***",
      nested: { AUTHORIZATION: "***", deeper: { refresh_token: "***", keep: 1 } },
      headers: [{ "Set-Cookie": "***" }, { "x-api-key": "***" }, { accept: "json" }],
      ApiKey: "***",
      api_key: "***",
      clientSecret: "***"
    })
    // a copy: the input is untouched
    expect(input.Password).toBe("hunter2")
    expect(input.nested.deeper.refresh_token).toBe("r")
  })

  it("masks a secret key's value whatever its shape", () => {
    expect(redact({ token: { value: "x" }, cookie: ["a", "b"], secret: 42 })).toEqual({
      token: "***",
      cookie: "***",
      secret: "***"
    })
  })

  it("prints Redacted values as ***, wherever they are", () => {
    expect(redact(Redacted.make("pw"))).toBe("***")
    expect(redact({ db: Redacted.make("postgres://u:p@h/db"), list: [Redacted.make("x")] })).toEqual({
      db: "***",
      list: ["***"]
    })
    expect(redact({ url: Option.some(Redacted.make("x")) })).toEqual({
      url: { _id: "Option", _tag: "Some", value: "***" }
    })
  })

  it("survives cycles, errors, class instances, maps, sets and primitives", () => {
    const cyclic: Record<string, unknown> = { name: "a" }
    cyclic["self"] = cyclic
    cyclic["list"] = [cyclic]
    expect(redact(cyclic)).toEqual({ name: "a", self: "[Circular]", list: ["[Circular]"] })

    const shared = { n: 1 }
    expect(redact({ a: shared, b: shared })).toEqual({ a: { n: 1 }, b: { n: 1 } })

    class Credentials {
      constructor(readonly user: string, readonly password: string) {}
      get upper() {
        return this.user.toUpperCase()
      }
    }
    expect(redact(new Credentials("ada", "pw"))).toEqual({ user: "ada", password: "***" })

    const error = Object.assign(new Error("boom", { cause: { token: "t" } }), { code: "E1", apiKey: "k" })
    expect(redact(error)).toEqual({
      name: "Error",
      message: "boom",
      code: "E1",
      apiKey: "***",
      cause: { token: "***" }
    })

    expect(redact(new Map<string, unknown>([["Cookie", "c"], ["x", { password: "p" }]]))).toEqual({
      Cookie: "***",
      x: { password: "***" }
    })
    expect(redact(new Set([1, { secret: 1 }]))).toEqual([1, { secret: "***" }])
    expect(redact(Buffer.from("secret bytes"))).toBe("[Buffer 12 bytes]")
    expect(redact(null)).toBe(null)
    expect(redact(undefined)).toBe(undefined)
    expect(redact("token")).toBe("token")
    expect(redact(10n)).toBe(10n)
    const date = new Date("2024-01-01T00:00:00Z")
    expect(redact({ at: date })).toEqual({ at: date })
  })
})

const capture = () => {
  const lines: Array<string> = []
  return { lines, write: (line: string) => lines.push(line) }
}

const parse = (line: string | undefined): Record<string, unknown> =>
  JSON.parse(line ?? "null") as Record<string, unknown>

describe("JSON logger", () => {
  it("writes one JSON line per log call with annotations flattened and secrets masked", async () => {
    const sink = capture()
    await Effect.runPromise(
      Effect.log("user logged in").pipe(
        Effect.annotateLogs({
          request_id: "req-1",
          authorization: "Bearer abc",
          body: { email: "a@b.c", password: "pw" }
        }),
        Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "info", write: sink.write }))
      )
    )
    expect(sink.lines).toHaveLength(1)
    const entry = parse(sink.lines[0])
    expect(entry).toMatchObject({
      level: "INFO",
      message: "user logged in",
      request_id: "req-1",
      authorization: "***",
      body: { email: "a@b.c", password: "***" }
    })
    expect(new Date(String(entry["timestamp"])).toISOString()).toBe(entry["timestamp"])
    expect(entry).not.toHaveProperty("cause")
    expect(sink.lines[0]).not.toContain("Bearer abc")
    expect(sink.lines[0]).not.toContain("\n")
  })

  it("redacts structured messages and joins several string parts", async () => {
    const sink = capture()
    await Effect.runPromise(
      Effect.gen(function*() {
        yield* Effect.log("two", "parts")
        yield* Effect.log({ event: "config", secretKey: "s", db: Redacted.make("url") })
      }).pipe(Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "info", write: sink.write })))
    )
    expect(sink.lines.map(parse).map((e) => e["message"])).toEqual([
      "two parts",
      { event: "config", secretKey: "***", db: "***" }
    ])
  })

  it("pretty-prints the cause of a failure", async () => {
    const sink = capture()
    await Effect.runPromise(
      Effect.logError("request failed", Cause.fail(new Error("database down"))).pipe(
        Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "info", write: sink.write }))
      )
    )
    expect(sink.lines).toHaveLength(1)
    const entry = parse(sink.lines[0])
    expect(entry["level"]).toBe("ERROR")
    expect(entry["message"]).toBe("request failed")
    expect(String(entry["cause"])).toContain("database down")
  })

  it("keeps reserved fields from being overwritten by annotations and prints bigints and cycles", async () => {
    const sink = capture()
    const cyclic: Record<string, unknown> = {}
    cyclic["me"] = cyclic
    await Effect.runPromise(
      Effect.logWarning("real").pipe(
        Effect.annotateLogs({ level: "FAKE", message: "forged", big: 12n, cyclic }),
        Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "info", write: sink.write }))
      )
    )
    expect(parse(sink.lines[0])).toMatchObject({
      level: "WARN",
      message: "real",
      big: "12",
      cyclic: { me: "[Circular]" }
    })
  })

  it("turns log lines into events of the current span, redacted, only when spans are exported", async () => {
    const eventsOf = async (spanEvents: boolean) => {
      const exporter = new InMemorySpanExporter()
      return await Effect.runPromise(
        Effect.logInfo("calling the provider").pipe(
          Effect.annotateLogs({ api_key: "sk-live-0123456789", attempt: 2 }),
          Effect.withSpan("request"),
          // read before the SDK's shutdown empties the exporter
          Effect.andThen(() => exporter.getFinishedSpans().flatMap((span) => span.events)),
          Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "info", write: () => {}, spanEvents })),
          Effect.provide(NodeSdk.layer(() => ({
            resource: { serviceName: "telemetry-test" },
            spanProcessor: new SimpleSpanProcessor(exporter)
          })))
        )
      )
    }
    const events = await eventsOf(true)
    expect(events.map((event) => event.name)).toEqual(["calling the provider"])
    expect(events[0]?.attributes).toMatchObject({ api_key: "***", attempt: 2 })
    expect(JSON.stringify(events)).not.toContain("sk-live")
    expect(await eventsOf(false)).toEqual([])
  })

  it("honours the minimum level", async () => {
    const sink = capture()
    const program = Effect.all([
      Effect.logDebug("d"),
      Effect.logInfo("i"),
      Effect.logWarning("w"),
      Effect.logError("e")
    ])
    await Effect.runPromise(
      program.pipe(Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "warning", write: sink.write })))
    )
    expect(sink.lines.map(parse).map((e) => e["message"])).toEqual(["w", "e"])

    const debug = capture()
    await Effect.runPromise(
      program.pipe(Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "debug", write: debug.write })))
    )
    expect(debug.lines).toHaveLength(4)

    const none = capture()
    await Effect.runPromise(
      program.pipe(Effect.provide(makeLoggerLayer({ logFormat: "json", logLevel: "none", write: none.write })))
    )
    expect(none.lines).toHaveLength(0)
  })

  it("makeJsonLogger can be installed on its own", async () => {
    const sink = capture()
    await Effect.runPromise(
      Effect.log("alone").pipe(Effect.provide(Logger.replace(Logger.defaultLogger, makeJsonLogger(sink.write))))
    )
    expect(sink.lines).toHaveLength(1)
  })
})

/** Everything the process would print: stdout writes and console calls (vitest reroutes console). */
/** Log lines go out once per turn of the event loop: after this one, they are written. */
const logsWritten = () => new Promise((resolve) => setImmediate(resolve))

const spyOutput = () => {
  const stdout: Array<string> = []
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"))
    return true
  })
  const consoleCalls: Array<ReadonlyArray<unknown>> = []
  for (const method of ["log", "info", "warn", "error", "debug", "trace", "group", "groupCollapsed"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: Array<unknown>) => {
      consoleCalls.push(args)
    })
  }
  return { stdout, consoleCalls }
}

describe("LoggerLive", () => {
  it("prints exactly one JSON line on stdout for one log call, replacing Effect's default logger", async () => {
    const output = spyOutput()
    await Effect.runPromise(
      Effect.log("hello").pipe(Effect.provide(LoggerLive.pipe(Layer.provide(testConfig({ LOG_FORMAT: "json" })))))
    )
    await logsWritten()
    vi.restoreAllMocks()
    expect(output.consoleCalls).toEqual([])
    expect(output.stdout).toHaveLength(1)
    expect(output.stdout[0]?.endsWith("\n")).toBe(true)
    expect(output.stdout.join("").trimEnd().split("\n")).toHaveLength(1)
    expect(parse(output.stdout[0])).toMatchObject({ level: "INFO", message: "hello" })
  })

  it("still prints once when a pretty logger was installed around it (runMain without disablePrettyLogger)", async () => {
    const output = spyOutput()
    await Effect.runPromise(
      Effect.log("once").pipe(
        Effect.provide(LoggerLive.pipe(Layer.provide(testConfig({ LOG_FORMAT: "json" })))),
        Effect.provide(Logger.pretty)
      )
    )
    await logsWritten()
    vi.restoreAllMocks()
    expect(output.consoleCalls).toEqual([])
    expect(output.stdout).toHaveLength(1)
  })

  it("writes the lines of one turn of the event loop together, and at most 1,000 at a time", async () => {
    const output = spyOutput()
    const logger = LoggerLive.pipe(Layer.provide(testConfig({ LOG_FORMAT: "json" })))
    await Effect.runPromise(
      Effect.all([Effect.log("one"), Effect.log("two"), Effect.log("three")]).pipe(Effect.provide(logger))
    )
    await logsWritten()
    expect(output.stdout).toHaveLength(1)
    expect(output.stdout[0]?.split("\n").filter((line) => line !== "").map(parse).map((e) => e["message"])).toEqual([
      "one",
      "two",
      "three"
    ])
    output.stdout.length = 0
    await Effect.runPromise(
      Effect.forEach(Array.from({ length: 2_500 }, (_, i) => i), (i) => Effect.log(`line ${i}`)).pipe(
        Effect.provide(logger)
      )
    )
    await logsWritten()
    vi.restoreAllMocks()
    expect(output.stdout.map((chunk) => chunk.split("\n").filter((line) => line !== "").length)).toEqual([
      1_000,
      1_000,
      500
    ])
  })

  it("writes what is pending when the process exits at once", () => {
    const script = [
      `import { Effect, Layer } from "effect"`,
      `import { LoggerLive } from "./src/platform/Telemetry.ts"`,
      `import { testConfig } from "./src/platform/Config.ts"`,
      `await Effect.runPromise(Effect.log("last words").pipe(Effect.provide(LoggerLive.pipe(Layer.provide(testConfig({ LOG_FORMAT: "json" }))))))`,
      `process.exit(3)`
    ].join("\n")
    const result = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8"
    })
    expect(result.status).toBe(3)
    expect(result.stdout.trim().split("\n").map(parse).map((e) => e["message"])).toEqual(["last words"])
  })

  it("uses LOG_LEVEL as the minimum level", async () => {
    const output = spyOutput()
    await Effect.runPromise(
      Effect.all([Effect.logInfo("quiet"), Effect.logError("loud")]).pipe(
        Effect.provide(LoggerLive.pipe(Layer.provide(testConfig({ LOG_FORMAT: "json", LOG_LEVEL: "error" }))))
      )
    )
    await logsWritten()
    vi.restoreAllMocks()
    expect(output.stdout.map(parse).map((e) => e["message"])).toEqual(["loud"])
  })

  it("pretty format prints through one logger and masks secrets too", async () => {
    const output = spyOutput()
    await Effect.runPromise(
      Effect.log("pretty line").pipe(
        Effect.annotateLogs({ password: "hunter2", user: "ada" }),
        Effect.provide(LoggerLive.pipe(Layer.provide(testConfig({ LOG_FORMAT: "pretty" }))))
      )
    )
    await logsWritten()
    vi.restoreAllMocks()
    const printed = [...output.stdout, ...output.consoleCalls.map((args) => args.map(String).join(" "))].join("\n")
    expect(printed).toContain("pretty line")
    expect(printed).toContain("ada")
    expect(printed).not.toContain("hunter2")
    expect(printed.split("pretty line")).toHaveLength(2)
  })
})

describe("TracingLive", () => {
  it("is empty without OTEL_EXPORTER_OTLP_ENDPOINT", async () => {
    const result = await Effect.runPromise(
      Effect.succeed(1).pipe(
        Effect.withSpan("no-export"),
        Effect.provide(TracingLive.pipe(Layer.provide(testConfig())))
      )
    )
    expect(result).toBe(1)
    expect(makeTracingLayer(Option.none())).toBe(Layer.empty)
  })

  it("exports spans to <endpoint>/v1/traces", async () => {
    const received: Array<{ url: string | undefined; body: string }> = []
    const server = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        received.push({ url: req.url, body: Buffer.concat(chunks).toString("utf8") })
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const { port } = server.address() as AddressInfo
      const endpoint = `http://127.0.0.1:${port}/`
      await Effect.runPromise(
        Effect.void.pipe(
          Effect.withSpan("telemetry-test-span"),
          Effect.provide(TracingLive.pipe(Layer.provide(testConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }))))
        )
      )
      // the layer's release flushes the batch processor
      expect(received.map((r) => r.url)).toContain("/v1/traces")
      const body = received.map((r) => r.body).join("")
      expect(body).toContain("telemetry-test-span")
      expect(body).toContain("chatkit-backend")
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })

  it("neither fails nor hangs when the collector is unreachable", async () => {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as AddressInfo
    await new Promise<void>((resolve) => server.close(() => resolve()))
    const started = Date.now()
    const result = await Effect.runPromise(
      Effect.succeed("done").pipe(
        Effect.withSpan("lost-span"),
        Effect.provide(makeTracingLayer(Option.some(`http://127.0.0.1:${port}`)))
      )
    )
    expect(result).toBe("done")
    expect(Date.now() - started).toBeLessThan(8_000)
  })
})

const SAMPLE_LINE =
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*",?)*\})? (NaN|[+-]Inf|-?[0-9.e+-]+)$/

describe("prometheusText", () => {
  it("has the 0.0.4 content type", () => {
    expect(METRICS_CONTENT_TYPE).toBe("text/plain; version=0.0.4; charset=utf-8")
  })

  it.effect("renders a tagged counter under its own name, without a second _total", () =>
    Effect.gen(function*() {
      yield* Metric.increment(
        Metric.taggedWithLabels(httpRequestsTotal, [
          MetricLabel.make("status", "200"),
          MetricLabel.make("method", "GET"),
          MetricLabel.make("route", "/health")
        ])
      )
      const lines = (yield* prometheusText).split("\n")
      expect(lines).toContain("# HELP http_requests_total HTTP requests served, by method, route template and status")
      expect(lines).toContain("# TYPE http_requests_total counter")
      expect(lines).toContain("http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1")
      expect(lines.some((l) => l.includes("_total_total"))).toBe(false)
    }))

  it.effect("renders a histogram with cumulative buckets, +Inf, _sum and _count", () =>
    Effect.gen(function*() {
      const observed = httpRequestDurationSeconds.pipe(
        Metric.tagged("route", "/health"),
        Metric.tagged("method", "GET")
      )
      yield* Metric.update(observed, 0.03)
      yield* Metric.update(observed, 0.2)
      yield* Metric.update(observed, 20)
      const lines = (yield* prometheusText).split("\n")
      const series = (le: string) => `http_request_duration_seconds_bucket{method="GET",route="/health",le="${le}"}`
      expect(lines).toContain("# TYPE http_request_duration_seconds histogram")
      expect(lines).toContain(`${series("0.025")} 0`)
      expect(lines).toContain(`${series("0.05")} 1`)
      expect(lines).toContain(`${series("0.1")} 1`)
      expect(lines).toContain(`${series("0.25")} 2`)
      expect(lines).toContain(`${series("10")} 2`)
      expect(lines).toContain(`${series("+Inf")} 3`)
      expect(lines).toContain("http_request_duration_seconds_count{method=\"GET\",route=\"/health\"} 3")
      const sum = lines.find((l) =>
        l.startsWith("http_request_duration_seconds_sum{method=\"GET\",route=\"/health\"} ")
      )
      expect(Number(sum?.split(" ")[1])).toBeCloseTo(20.23)
      expect(lines.filter((l) => l.startsWith(series("+Inf")))).toHaveLength(1)
      // buckets are in increasing order and cumulative
      const counts = lines.filter((l) => l.startsWith("http_request_duration_seconds_bucket{method=\"GET\"")).map((l) =>
        Number(l.split(" ")[1])
      )
      expect(counts).toEqual([...counts].sort((a, b) => a - b))
      expect(counts).toHaveLength(12)
    }))

  it.effect("escapes label values and help text", () =>
    Effect.gen(function*() {
      const counter = Metric.counter("telemetry_test_escapes_total", {
        description: "help with \\ backslash\nand newline",
        incremental: true
      })
      yield* Metric.increment(Metric.tagged(counter, "path", "a\"b\\c\nd"))
      const lines = (yield* prometheusText).split("\n")
      expect(lines).toContain("# HELP telemetry_test_escapes_total help with \\\\ backslash\\nand newline")
      expect(lines).toContain("telemetry_test_escapes_total{path=\"a\\\"b\\\\c\\nd\"} 1")
    }))

  it.effect("renders gauges, non-incremental counters, summaries and frequencies", () =>
    Effect.gen(function*() {
      yield* Metric.set(
        Metric.gauge("telemetry_test_gauge", { description: "a gauge" }).pipe(Metric.tagged("dependency", "llm")),
        2
      )
      yield* Metric.incrementBy(Metric.counter("telemetry_test_updown", { description: "an up-down counter" }), 5)
      const summary = Metric.summary({
        name: "telemetry_test_summary",
        maxAge: "1 hour",
        maxSize: 100,
        error: 0.01,
        quantiles: [0.5, 0.99],
        description: "a summary"
      })
      yield* Metric.update(summary, 1)
      yield* Metric.update(summary, 3)
      const frequency = Metric.frequency("telemetry_test_frequency", { description: "a frequency" })
      yield* Metric.update(frequency, "a")
      yield* Metric.update(frequency, "a")
      yield* Metric.update(frequency, "b")
      yield* Metric.update(
        Metric.histogram("telemetry_test_linear", MetricBoundaries.linear({ start: 0, width: 1, count: 4 })),
        1.5
      )

      const text = yield* prometheusText
      const lines = text.split("\n")
      expect(lines).toContain("# TYPE telemetry_test_gauge gauge")
      expect(lines).toContain("telemetry_test_gauge{dependency=\"llm\"} 2")
      expect(lines).toContain("# TYPE telemetry_test_updown gauge")
      expect(lines).toContain("telemetry_test_updown 5")
      expect(lines).toContain("# TYPE telemetry_test_summary summary")
      expect(lines).toContain("telemetry_test_summary_count 2")
      expect(lines).toContain("telemetry_test_summary_sum 4")
      expect(lines.filter((l) => l.startsWith("telemetry_test_summary{quantile="))).toHaveLength(2)
      expect(lines).toContain("# TYPE telemetry_test_frequency counter")
      expect(lines).toContain("telemetry_test_frequency{key=\"a\"} 2")
      expect(lines).toContain("telemetry_test_frequency{key=\"b\"} 1")
      expect(lines).toContain("telemetry_test_linear_bucket{le=\"1\"} 0")
      expect(lines).toContain("telemetry_test_linear_bucket{le=\"2\"} 1")
      expect(lines).toContain("telemetry_test_linear_bucket{le=\"+Inf\"} 1")
    }))

  it.effect("adds process metrics computed at scrape time, and every line is valid exposition format", () =>
    Effect.gen(function*() {
      const text = yield* prometheusText
      const lines = text.split("\n")
      const value = (name: string) => {
        const line = lines.find((l) => l.startsWith(`${name} `))
        expect(line, name).toBeDefined()
        return Number(line?.split(" ")[1])
      }
      expect(lines).toContain("# TYPE process_cpu_user_seconds_total counter")
      expect(value("process_cpu_user_seconds_total")).toBeGreaterThan(0)
      expect(value("process_cpu_system_seconds_total")).toBeGreaterThanOrEqual(0)
      expect(value("process_resident_memory_bytes")).toBeGreaterThan(1_000_000)
      expect(value("process_heap_bytes")).toBeGreaterThan(100_000)
      expect(value("process_start_time_seconds")).toBeLessThanOrEqual(Date.now() / 1000)
      expect(value("process_start_time_seconds")).toBeGreaterThan(Date.now() / 1000 - 3600)
      expect(value("process_uptime_seconds")).toBeGreaterThan(0)
      expect(value("nodejs_eventloop_lag_seconds")).toBeGreaterThanOrEqual(0)

      expect(text.endsWith("\n")).toBe(true)
      const types = new Map<string, number>()
      for (const line of lines.filter((l) => l !== "")) {
        if (line.startsWith("# TYPE ")) {
          const name = line.split(" ")[2] ?? ""
          types.set(name, (types.get(name) ?? 0) + 1)
        } else if (!line.startsWith("# HELP ")) {
          expect(line).toMatch(SAMPLE_LINE)
        }
      }
      // one TYPE line per family
      expect([...types.values()].every((n) => n === 1)).toBe(true)
    }))
})
