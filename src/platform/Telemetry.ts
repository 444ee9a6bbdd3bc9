import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Cause, Effect, FiberRef, HashMap, HashSet, Layer, List, Logger, LogLevel, Option } from "effect"

import type { AppConfigShape, LogFormat } from "./Config.js"
import { AppConfig } from "./Config.js"
import { isSecretKey, MASK, redact } from "./Redaction.js"

/** Logging (JSON lines, every message and annotation redacted) and tracing (OTLP when configured). */

/** An annotation as logged: masked when its name says secret, redacted otherwise. */
const redactedAnnotation = (key: string, value: unknown) => (isSecretKey(key) ? MASK : redact(value))

const redactAnnotations = (annotations: HashMap.HashMap<string, unknown>) =>
  HashMap.map(annotations, (value, key) => redactedAnnotation(key, value))

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

/**
 * One JSON object per log call: timestamp, level, message, the annotations as top-level keys,
 * cause; the message and annotations redacted as they are copied into it (not through `redacting`,
 * whose copy of the annotations' map cost more than the line: it runs for every request).
 */
export const makeJsonLogger = (write: (line: string) => void): Logger.Logger<unknown, void> =>
  Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
    const entry: Record<string, unknown> = {}
    for (const [key, value] of annotations) {
      // The core fields win so that an annotation can neither hide nor forge them.
      if (!RESERVED_FIELDS.has(key)) entry[key] = redactedAnnotation(key, value)
    }
    entry["timestamp"] = date.toISOString()
    entry["level"] = logLevel.label
    entry["message"] = messageText(redactMessage(message))
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
  })

/** Lines waiting for the next write; past this many they go out at once (a bounded buffer). */
const MAX_PENDING_LINES = 1_000
let pendingLines: Array<string> = []
let flushScheduled = false
let flushOnExit = false

const flushStdout = () => {
  flushScheduled = false
  if (pendingLines.length === 0) return
  const text = pendingLines.join("\n") + "\n"
  pendingLines = []
  process.stdout.write(text)
}

/**
 * Log lines to stdout, one write per turn of the event loop rather than one per line (stdout to a
 * file or a pipe is a synchronous system call per write on Linux). What is pending when the
 * process exits is written then (synchronously, as stdout is), so no line is lost.
 */
const writeStdout = (line: string) => {
  pendingLines.push(line)
  if (pendingLines.length >= MAX_PENDING_LINES) return flushStdout()
  if (flushScheduled) return
  if (!flushOnExit) {
    flushOnExit = true
    process.once("exit", flushStdout)
  }
  flushScheduled = true
  setImmediate(flushStdout)
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
  /** log lines also become events of the current span (when spans are exported) */
  readonly spanEvents?: boolean
}

/**
 * Sets the loggers to exactly one printing logger, plus, when spans are exported (`spanEvents`),
 * Effect's tracer logger, which turns log lines into events of the current span, redacted too
 * (unexported spans' events would only cost each request). Setting the whole set, rather than
 * replacing `Logger.defaultLogger`, also drops a pretty logger installed around us (`runMain`
 * without `disablePrettyLogger`), so no line is ever printed twice.
 */
export const makeLoggerLayer = (options: LoggerOptions): Layer.Layer<never> => {
  const printer = options.logFormat === "json"
    ? makeJsonLogger(options.write ?? writeStdout)
    : redacting(Logger.prettyLoggerDefault)
  const loggers = options.spanEvents === true
    ? HashSet.make(printer, redacting(Logger.tracerLogger))
    : HashSet.make<Array<Logger.Logger<unknown, unknown>>>(printer)
  return Layer.mergeAll(
    Layer.locallyScoped(FiberRef.currentLoggers, loggers),
    Logger.minimumLogLevel(LOG_LEVELS[options.logLevel])
  )
}

export const LoggerLive: Layer.Layer<never, never, AppConfig> = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    makeLoggerLayer({
      logFormat: config.logFormat,
      logLevel: config.logLevel,
      spanEvents: Option.isSome(config.otelExporterOtlpEndpoint)
    }))
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
