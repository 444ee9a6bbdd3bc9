/**
 * What the three servers of the spike share, independent of any Effect version: the bodies, the
 * bearer token, the request id, the standard headers, the batched stdout writer and the JSON line.
 * The Effect 3 and Effect 4 servers differ only in how they reach these through Effect.
 */
import { randomUUID } from "node:crypto"
import { setImmediate } from "node:timers"

/** The one bearer the models endpoint accepts (no JWT: a fixed string compared as is). */
export const TOKEN = "spike-effect4-bench-token"

export const HEALTH_BODY = JSON.stringify({ status: "ok" })

/** A models page like chatkit-backend's (20 items of 180, about 6 KB), rendered once: "the cache". */
export const MODELS_KEY = "models:page:1:20"
export const MODELS_BODY = JSON.stringify({
  items: Array.from({ length: 20 }, (_, i) => ({
    id: i + 1,
    name: `model-${String(i + 1).padStart(3, "0")}`,
    display_name: `Model ${i + 1}`,
    description: `A language model for the bench, number ${i + 1}, with a description of a realistic length.`,
    provider_id: 1 + (i % 3),
    provider_slug: ["openai", "anthropic", "local"][i % 3],
    supports_reasoning: i % 2 === 0,
    supports_streaming: true,
    created_at: "2026-11-01T12:00:00.000Z",
    updated_at: "2026-11-01T12:00:00.000Z"
  })),
  total: 180,
  page: 1,
  page_size: 20,
  total_pages: 9
})

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The caller's X-Request-ID when it is safe to echo, else a new UUID (the app uses a UUIDv7). */
export const requestIdFrom = (header) => header !== undefined && SAFE_REQUEST_ID.test(header) ? header : randomUUID()

/** The headers every response carries (src/platform/Http.ts's standardHeaders, development mode, no CORS origin). */
export const standardHeaders = (requestId) => ({
  "cache-control": "no-store",
  "x-request-id": requestId,
  "api-version": "1",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  vary: "Origin"
})

/** The histogram's buckets (src/platform/Metrics.ts). */
export const DURATION_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

const RESERVED_FIELDS = new Set(["timestamp", "level", "message", "cause", "spans"])

/** One JSON object per log call (src/platform/Telemetry.ts's makeJsonLogger, without redaction). */
export const jsonLine = (annotations, date, level, message, spans) => {
  const entry = {}
  for (const [key, value] of annotations) {
    if (!RESERVED_FIELDS.has(key)) entry[key] = value
  }
  entry["timestamp"] = date.toISOString()
  entry["level"] = level
  const parts = Array.isArray(message) ? message : [message]
  entry["message"] = parts.every((part) => typeof part === "string") ? parts.join(" ") : parts
  if (spans.length > 0) {
    const now = date.getTime()
    const rendered = {}
    for (const [label, startTime] of spans) rendered[label] = now - startTime
    entry["spans"] = rendered
  }
  return JSON.stringify(entry)
}

const MAX_PENDING_LINES = 1_000
let pendingLines = []
let flushScheduled = false
let flushOnExit = false

const flushStdout = () => {
  flushScheduled = false
  if (pendingLines.length === 0) return
  const text = pendingLines.join("\n") + "\n"
  pendingLines = []
  process.stdout.write(text)
}

/** Log lines to stdout in one write per turn of the event loop (src/platform/Telemetry.ts's writeStdout). */
export const writeStdout = (line) => {
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

export const PORT = Number(process.env.PORT ?? 9100)
export const HOST = "127.0.0.1"
