import type { IntervalHistogram } from "node:perf_hooks"
import { monitorEventLoopDelay, performance } from "node:perf_hooks"

import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import type { MetricPair } from "effect"
import {
  Cause,
  Effect,
  FiberRef,
  HashMap,
  HashSet,
  Layer,
  List,
  Logger,
  LogLevel,
  Metric,
  MetricKeyType,
  MetricState,
  Option,
  Redacted
} from "effect"

import type { AppConfigShape, LogFormat } from "./Config.js"
import { AppConfig } from "./Config.js"

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

const SECRET_KEY = /authorization|cookie|password|token|secret|api[-_]?key/i
const MASK = "***"
const MAX_DEPTH = 16

/** True for a property or annotation name whose value must never be printed. */
export const isSecretKey = (key: string): boolean => SECRET_KEY.test(key)

/**
 * A deep, JSON-friendly copy of `value` in which the value of every key that names a secret, and
 * every `Redacted`, is "***". Cycles become "[Circular]"; errors and class instances become plain
 * objects of their own enumerable properties, so nothing here throws on odd input.
 */
export const redact = (value: unknown): unknown => redactValue(value, new WeakSet(), 0)

const redactValue = (value: unknown, ancestors: WeakSet<object>, depth: number): unknown => {
  if (value === null || (typeof value !== "object" && typeof value !== "function")) return value
  if (typeof value === "function") return `[Function ${value.name || "anonymous"}]`
  if (Redacted.isRedacted(value)) return MASK
  if (ancestors.has(value)) return "[Circular]"
  if (depth >= MAX_DEPTH) return "[Truncated]"
  if (value instanceof Date) return new Date(value.getTime())
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return `[${value.constructor.name} ${value.byteLength} bytes]`
  }
  ancestors.add(value)
  try {
    const next = (v: unknown) => redactValue(v, ancestors, depth + 1)
    const entry = (key: string, v: unknown) => (isSecretKey(key) ? MASK : next(v))
    if (Array.isArray(value)) return value.map(next)
    if (Option.isOption(value)) {
      return Option.isSome(value)
        ? { _id: "Option", _tag: "Some", value: next(value.value) }
        : { _id: "Option", _tag: "None" }
    }
    if (value instanceof Map) {
      const out: Record<string, unknown> = {}
      for (const [k, v] of value) out[String(k)] = entry(String(k), v)
      return out
    }
    if (value instanceof Set) return Array.from(value, next)
    if (value instanceof Error) {
      const out: Record<string, unknown> = { name: value.name, message: value.message }
      for (const [k, v] of Object.entries(value)) out[k] = entry(k, v)
      if (value.cause !== undefined) out["cause"] = next(value.cause)
      return out
    }
    const proto: unknown = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null && "toJSON" in value && typeof value.toJSON === "function") {
      // Effect data types (Data.Class, DateTime, Exit, ...) describe themselves with toJSON.
      const json: unknown = (value.toJSON as () => unknown)()
      if (json !== value) return next(json)
    }
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = entry(k, v)
    return out
  } catch {
    return "[Unserializable]"
  } finally {
    ancestors.delete(value)
  }
}

const redactAnnotations = (annotations: HashMap.HashMap<string, unknown>) =>
  HashMap.map(annotations, (value, key) => (isSecretKey(key) ? MASK : redact(value)))

const redactMessage = (message: unknown): unknown => Array.isArray(message) ? message.map(redact) : redact(message)

/** The same logger, but every message and annotation goes through `redact` first. */
const redacting = <A>(logger: Logger.Logger<unknown, A>): Logger.Logger<unknown, A> =>
  Logger.mapInputOptions(logger, (options) => ({
    ...options,
    message: redactMessage(options.message),
    annotations: redactAnnotations(options.annotations)
  }))

// ---------------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------------

const RESERVED_FIELDS = new Set(["timestamp", "level", "message", "cause", "spans"])

const messageText = (message: unknown): unknown => {
  const parts = Array.isArray(message) ? message : [message]
  if (parts.every((part) => typeof part === "string")) return parts.join(" ")
  return parts.length === 1 ? parts[0] : parts
}

const jsonReplacer = (_key: string, value: unknown) => (typeof value === "bigint" ? value.toString() : value)

/** One JSON object per log call: timestamp, level, message, the annotations as top-level keys, cause. */
export const makeJsonLogger = (write: (line: string) => void): Logger.Logger<unknown, void> =>
  redacting(Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
    const entry: Record<string, unknown> = {}
    for (const [key, value] of annotations) {
      // The core fields win so that an annotation can neither hide nor forge them.
      if (!RESERVED_FIELDS.has(key)) entry[key] = value
    }
    entry["timestamp"] = date.toISOString()
    entry["level"] = logLevel.label
    entry["message"] = messageText(message)
    if (List.isCons(spans)) {
      const now = date.getTime()
      const rendered: Record<string, number> = {}
      for (const span of spans) rendered[span.label] = now - span.startTime
      entry["spans"] = rendered
    }
    if (!Cause.isEmpty(cause)) entry["cause"] = Cause.pretty(cause, { renderErrorCause: true })
    let line: string
    try {
      line = JSON.stringify(entry, jsonReplacer)
    } catch {
      line = JSON.stringify({
        timestamp: entry["timestamp"],
        level: entry["level"],
        message: "[unserializable log entry]"
      })
    }
    write(line)
  }))

const writeStdout = (line: string) => {
  process.stdout.write(line + "\n")
}

const LOG_LEVELS: Record<AppConfigShape["logLevel"], LogLevel.LogLevel> = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

export interface LoggerOptions {
  readonly logFormat: LogFormat
  readonly logLevel: AppConfigShape["logLevel"]
  /** where JSON lines go (without the trailing newline); stdout by default */
  readonly write?: (line: string) => void
}

/**
 * Sets the loggers to exactly one printing logger (plus Effect's tracer logger, which only turns
 * log lines into span events, redacted too). Setting the whole set, rather than replacing
 * `Logger.defaultLogger`, also drops a pretty logger installed around us (`runMain` without
 * `disablePrettyLogger`), so no line is ever printed twice.
 */
export const makeLoggerLayer = (options: LoggerOptions): Layer.Layer<never> => {
  const printer = options.logFormat === "json"
    ? makeJsonLogger(options.write ?? writeStdout)
    : redacting(Logger.prettyLoggerDefault)
  return Layer.mergeAll(
    Layer.locallyScoped(FiberRef.currentLoggers, HashSet.make(printer, redacting(Logger.tracerLogger))),
    Logger.minimumLogLevel(LOG_LEVELS[options.logLevel])
  )
}

export const LoggerLive: Layer.Layer<never, never, AppConfig> = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => makeLoggerLayer({ logFormat: config.logFormat, logLevel: config.logLevel }))
)

// ---------------------------------------------------------------------------------------------
// Tracing
// ---------------------------------------------------------------------------------------------

export const SERVICE_NAME = "chatkit-backend"

/**
 * OTLP/HTTP trace export when OTEL_EXPORTER_OTLP_ENDPOINT is set. Export is asynchronous and
 * bounded (batch queue, request timeout, shutdown timeout), so an unreachable collector loses
 * spans but neither fails nor holds up the server.
 */
export const makeTracingLayer = (endpoint: Option.Option<string>): Layer.Layer<never> =>
  Option.match(endpoint, {
    onNone: () => Layer.empty,
    onSome: (base) =>
      Layer.discard(NodeSdk.layer(() => ({
        resource: { serviceName: SERVICE_NAME },
        spanProcessor: new BatchSpanProcessor(
          new OTLPTraceExporter({ url: `${base.replace(/\/+$/, "")}/v1/traces`, timeoutMillis: 10_000 }),
          { maxQueueSize: 2048, scheduledDelayMillis: 2_000, exportTimeoutMillis: 10_000 }
        ),
        shutdownTimeout: "5 seconds"
      })))
  })

export const TracingLive: Layer.Layer<never, never, AppConfig> = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => makeTracingLayer(config.otelExporterOtlpEndpoint))
)

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------
//
// Rendered from `Metric.unsafeSnapshot()` rather than through NodeSdk's PrometheusExporter +
// PrometheusSerializer. That path was tried (exporter-prometheus 0.223, one sdk-metrics 2.12.1)
// and its output is not what /metrics promises: every family gets a `# UNIT name 1` line and an
// `otel_scope_name` label, a `target_info` family is added, Effect summaries become a
// `<name>_quantiles` gauge with quantile="min"/"max" samples plus `<name>_count_total` and
// `<name>_sum_total` counters instead of a Prometheus summary, and it needs a running layer for a
// value that is a pure read of the process-wide registry.

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

type PrometheusType = "counter" | "gauge" | "histogram" | "summary"

interface Sample {
  readonly suffix: string
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly value: number | bigint
}

interface Family {
  readonly name: string
  readonly help: string | undefined
  readonly type: PrometheusType
  readonly samples: Array<Sample>
}

const sanitizeName = (name: string) => {
  const clean = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[0-9]/.test(clean) ? `_${clean}` : clean
}
const sanitizeLabelName = (name: string) => {
  const clean = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[0-9]/.test(clean) ? `_${clean}` : clean
}
const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const escapeLabelValue = (text: string) => text.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const formatValue = (value: number | bigint) => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Infinity) return "+Inf"
  if (value === -Infinity) return "-Inf"
  return String(value)
}
const formatBound = (bound: number) => (bound === Infinity ? "+Inf" : String(bound))

const renderFamily = (family: Family): string => {
  let out = family.help === undefined ? "" : `# HELP ${family.name} ${escapeHelp(family.help)}\n`
  out += `# TYPE ${family.name} ${family.type}\n`
  for (const sample of family.samples) {
    const labels = sample.labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")
    out += `${family.name}${sample.suffix}${labels === "" ? "" : `{${labels}}`} ${formatValue(sample.value)}\n`
  }
  return out
}

const sortedLabels = (pair: MetricPair.MetricPair.Untyped, reserved: string) => {
  const byName = new Map<string, string>()
  for (const label of pair.metricKey.tags) {
    const name = sanitizeLabelName(label.key)
    if (name !== reserved) byName.set(name, label.value)
  }
  return Array.from(byName).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

const familyType = (pair: MetricPair.MetricPair.Untyped): PrometheusType => {
  const keyType: unknown = pair.metricKey.keyType
  if (MetricKeyType.isHistogramKey(keyType)) return "histogram"
  if (MetricKeyType.isSummaryKey(keyType)) return "summary"
  if (MetricKeyType.isFrequencyKey(keyType)) return "counter"
  if (MetricKeyType.isCounterKey(keyType)) return keyType.incremental ? "counter" : "gauge"
  return "gauge"
}

const samplesOf = (pair: MetricPair.MetricPair.Untyped): Array<Sample> => {
  const state: unknown = pair.metricState
  if (MetricState.isCounterState(state)) return [{ suffix: "", labels: sortedLabels(pair, ""), value: state.count }]
  if (MetricState.isGaugeState(state)) return [{ suffix: "", labels: sortedLabels(pair, ""), value: state.value }]
  if (MetricState.isFrequencyState(state)) {
    const labels = sortedLabels(pair, "key")
    return Array.from(state.occurrences, ([key, count]) => ({
      suffix: "",
      labels: [...labels, ["key", key] as const],
      value: count
    }))
  }
  if (MetricState.isHistogramState(state)) {
    const labels = sortedLabels(pair, "le")
    // Effect's buckets are already cumulative and end with +Inf (MetricBoundaries appends it).
    const buckets: Array<Sample> = state.buckets
      .filter(([bound]) => bound !== Infinity)
      .map(([bound, count]) => ({
        suffix: "_bucket",
        labels: [...labels, ["le", formatBound(bound)] as const],
        value: count
      }))
    buckets.push({ suffix: "_bucket", labels: [...labels, ["le", "+Inf"] as const], value: state.count })
    return [
      ...buckets,
      { suffix: "_sum", labels, value: state.sum },
      { suffix: "_count", labels, value: state.count }
    ]
  }
  if (MetricState.isSummaryState(state)) {
    const labels = sortedLabels(pair, "quantile")
    return [
      ...state.quantiles.map(([q, value]) => ({
        suffix: "",
        labels: [...labels, ["quantile", String(q)] as const],
        value: Option.getOrElse(value, () => NaN)
      })),
      { suffix: "_sum", labels, value: state.sum },
      { suffix: "_count", labels, value: state.count }
    ]
  }
  return []
}

const effectFamilies = (): Array<Family> => {
  const families = new Map<string, Family>()
  for (const pair of Metric.unsafeSnapshot()) {
    const name = sanitizeName(pair.metricKey.name)
    const type = familyType(pair)
    const existing = families.get(name)
    // One family per name; a second metric reusing a name with another type cannot be expressed.
    if (existing !== undefined && existing.type !== type) continue
    const family = existing ?? { name, help: Option.getOrUndefined(pair.metricKey.description), type, samples: [] }
    family.samples.push(...samplesOf(pair))
    families.set(name, family)
  }
  return Array.from(families.values())
}

// --- process metrics, read at scrape time ---

const ELD_RESOLUTION_MS = 10
let eventLoopDelay: IntervalHistogram | undefined
let lastEventLoopLagSeconds = 0
const processStartTimeSeconds = performance.timeOrigin / 1000

/** Mean event-loop lag since the previous scrape (the monitor's samples include its own period). */
const eventLoopLagSeconds = () => {
  if (eventLoopDelay === undefined) {
    eventLoopDelay = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS })
    eventLoopDelay.enable()
  }
  if (eventLoopDelay.count > 0) {
    lastEventLoopLagSeconds = Math.max(0, eventLoopDelay.mean / 1e6 - ELD_RESOLUTION_MS) / 1000
    eventLoopDelay.reset()
  }
  return lastEventLoopLagSeconds
}

const gauge = (name: string, help: string, value: number): Family => ({
  name,
  help,
  type: "gauge",
  samples: [{ suffix: "", labels: [], value }]
})

const processFamilies = (): Array<Family> => {
  const cpu = process.cpuUsage()
  const memory = process.memoryUsage()
  return [
    {
      name: "process_cpu_user_seconds_total",
      help: "User CPU time spent in seconds",
      type: "counter",
      samples: [{ suffix: "", labels: [], value: cpu.user / 1e6 }]
    },
    {
      name: "process_cpu_system_seconds_total",
      help: "System CPU time spent in seconds",
      type: "counter",
      samples: [{ suffix: "", labels: [], value: cpu.system / 1e6 }]
    },
    gauge("process_resident_memory_bytes", "Resident memory size in bytes", memory.rss),
    gauge("process_heap_bytes", "V8 heap in use in bytes", memory.heapUsed),
    gauge(
      "process_start_time_seconds",
      "Start time of the process since the Unix epoch in seconds",
      processStartTimeSeconds
    ),
    gauge("process_uptime_seconds", "Time since the process started in seconds", process.uptime()),
    gauge(
      "nodejs_eventloop_lag_seconds",
      "Mean event loop lag since the previous scrape in seconds",
      eventLoopLagSeconds()
    )
  ]
}

/** Every Effect metric of the process plus process metrics, in Prometheus text format 0.0.4. */
export const renderPrometheusText = (): string => {
  const processMetrics = processFamilies()
  const reserved = new Set(processMetrics.map((f) => f.name))
  const families = effectFamilies()
    .filter((f) => !reserved.has(f.name) && f.samples.length > 0)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return [...families, ...processMetrics].map(renderFamily).join("")
}

export const prometheusText: Effect.Effect<string> = Effect.sync(renderPrometheusText)
