import { Option, Redacted } from "effect"

/** What never reaches a log line, a span or an audit row: the values of secret-looking keys and Redacted values. */

const SECRET_KEY = /authorization|cookie|password|token|secret|api[-_]?key/i
export const MASK = "***"
const MAX_DEPTH = 16

/** True for a property or annotation name whose value must never be printed. */
export const isSecretKey = (key: string): boolean => SECRET_KEY.test(key)

/**
 * A deep, JSON-friendly copy of `value` in which the value of every key that names a secret, and
 * every `Redacted`, is "***". Cycles become "[Circular]"; errors and class instances become plain
 * objects of their own enumerable properties, so nothing here throws on odd input. A scalar (most
 * log annotations) is answered as it is, with no set of ancestors made for it.
 */
export const redact = (value: unknown): unknown => isComposite(value) ? redactValue(value, new WeakSet(), 0) : value

/** An object or a function: what redaction walks or renders; anything else is printed as it is. */
const isComposite = (value: unknown): value is object =>
  value !== null && (typeof value === "object" || typeof value === "function")

const redactValue = (value: unknown, ancestors: WeakSet<object>, depth: number): unknown => {
  if (!isComposite(value)) return value
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

/** How far a provider's error body may reach into a debug log line. */
const MAX_LOGGED_BODY = 500

/**
 * A provider's error body for a debug line (it can echo the key): the key, bearer tokens and
 * `sk-` keys masked, truncated.
 */
export const maskProviderBody = (body: string, apiKey: Redacted.Redacted | undefined) => {
  const key = apiKey === undefined ? "" : Redacted.value(apiKey)
  const masked = (key === "" ? body : body.split(key).join(MASK))
    .replace(/(bearer\s+)\S+/gi, `$1${MASK}`)
    .replace(/\bsk-[A-Za-z0-9_-]{4,}/g, `sk-${MASK}`)
  return masked.length > MAX_LOGGED_BODY ? `${masked.slice(0, MAX_LOGGED_BODY)}…` : masked
}
