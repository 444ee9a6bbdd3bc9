import type { HttpServerRequest } from "@effect/platform"
import { type FieldIssue, PayloadTooLarge, type ProblemError, UnsupportedMediaType, ValidationError } from "../api/errors.js"

/**
 * Checks every request makes before any route sees it, so that no schema, formatter or SQL
 * statement is ever handed input it cannot bound: headers first (415, 413), then the URL's text,
 * then the parsed JSON body's shape.
 */

/** 1 MiB: the largest JSON body accepted (API.md section 0). */
export const MAX_JSON_BODY_BYTES = 1024 * 1024
/** Deepest nesting of arrays and objects in a body; deeper input would overflow recursive formatters. */
export const MAX_JSON_DEPTH = 64
/** Most keys in one object: schema decoding and its error list grow with them. */
export const MAX_OBJECT_KEYS = 1_000
/** Most object keys in a whole body (the largest graph has 500 nodes and 2,000 edges). */
export const MAX_BODY_KEYS = 50_000

const BODY_METHODS = new Set(["POST", "PUT", "PATCH"])
const JSON_CONTENT_TYPE = /^application\/json\s*(?:;.*)?$/i
// a UTF-16 surrogate without its partner: not text, and PostgreSQL refuses it
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Text PostgreSQL can store and every client can read: no U+0000, no unpaired surrogate. */
export const isStorableText = (text: string) => !text.includes("\u0000") && !LONE_SURROGATE.test(text)

const NOT_TEXT = "must be text without NUL characters or unpaired surrogates"

const hasBody = (request: HttpServerRequest.HttpServerRequest) => {
  if (!BODY_METHODS.has(request.method)) return false
  const length = request.headers["content-length"]
  return (length !== undefined && length !== "0") || request.headers["transfer-encoding"] !== undefined
}

/** 415 / 413 decided from the headers, before the body is read. */
export const checkBodyHeaders = (request: HttpServerRequest.HttpServerRequest): ProblemError | undefined => {
  if (!hasBody(request)) return undefined
  const contentType = request.headers["content-type"]
  if (contentType === undefined || !JSON_CONTENT_TYPE.test(contentType)) {
    return new UnsupportedMediaType({
      detail: `A ${request.method} body must be sent as application/json${contentType === undefined ? "" : `, not ${contentType.slice(0, 100)}`}`
    })
  }
  const length = Number(request.headers["content-length"] ?? 0)
  if (length > MAX_JSON_BODY_BYTES) {
    return new PayloadTooLarge({ detail: `The body is ${length} bytes; the limit is ${MAX_JSON_BODY_BYTES} bytes` })
  }
  return undefined
}

const invalid = (detail: string, issue: FieldIssue) => new ValidationError({ detail, errors: [issue] })

/** The query string's names and values, and the path's segments, must be storable text. */
export const checkUrlText = (url: string): ValidationError | undefined => {
  const queryAt = url.indexOf("?")
  const path = queryAt === -1 ? url : url.slice(0, queryAt)
  let decodedPath: string
  try {
    decodedPath = decodeURIComponent(path)
  } catch {
    return invalid("The URL path is not valid percent-encoded UTF-8", { path: "path", message: "must be percent-encoded UTF-8" })
  }
  if (!isStorableText(decodedPath)) return invalid("The URL path is not valid text", { path: "path", message: NOT_TEXT })
  if (queryAt === -1) return undefined
  for (const [name, value] of new URLSearchParams(url.slice(queryAt + 1))) {
    if (!isStorableText(name) || !isStorableText(value)) {
      const shown = isStorableText(name) && name.length <= 100 ? name : "query"
      return invalid("A query parameter is not valid text", { path: shown, message: NOT_TEXT })
    }
  }
  return undefined
}

const formatPath = (path: ReadonlyArray<string | number>) =>
  path.length === 0 ? "body" : path.map((p, i) => typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`).join("")

/** A key is named in a path only when it is short, printable text; anything else might be a secret or a trap. */
export const safeKey = (key: string) => key.length <= 64 && /^[A-Za-z0-9_.-]+$/.test(key) ? key : "(key)"

/**
 * Walks a parsed body without recursion and reports the first place it breaks a bound: nesting
 * deeper than MAX_JSON_DEPTH, too many keys, or a key or string that is not storable text.
 */
export const checkJsonShape = (body: unknown): ValidationError | undefined => {
  const stack: Array<{ readonly value: unknown; readonly path: ReadonlyArray<string | number> }> = [{ value: body, path: [] }]
  let keys = 0
  while (stack.length > 0) {
    const { path, value } = stack.pop()!
    if (typeof value === "string") {
      if (!isStorableText(value)) return invalid("The body holds a string that is not valid text", { path: formatPath(path), message: NOT_TEXT })
      continue
    }
    if (typeof value !== "object" || value === null) continue
    if (path.length >= MAX_JSON_DEPTH) {
      return invalid(`The body is nested deeper than ${MAX_JSON_DEPTH} levels`, {
        path: formatPath(path.slice(0, 8)) + "…",
        message: `must be nested at most ${MAX_JSON_DEPTH} levels deep`
      })
    }
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: [...path, i] })
      continue
    }
    const entries = Object.keys(value)
    keys += entries.length
    if (entries.length > MAX_OBJECT_KEYS) {
      return invalid(`An object in the body has more than ${MAX_OBJECT_KEYS} keys`, {
        path: formatPath(path),
        message: `must have at most ${MAX_OBJECT_KEYS} keys`
      })
    }
    if (keys > MAX_BODY_KEYS) {
      return invalid(`The body has more than ${MAX_BODY_KEYS} keys in all`, { path: "body", message: `must have at most ${MAX_BODY_KEYS} keys in all` })
    }
    for (let i = entries.length - 1; i >= 0; i--) {
      const key = entries[i]!
      if (!isStorableText(key)) return invalid("The body holds a key that is not valid text", { path: formatPath(path), message: `keys ${NOT_TEXT}` })
      stack.push({ value: (value as Record<string, unknown>)[key], path: [...path, safeKey(key)] })
    }
  }
  return undefined
}

/** The parse of a body the headers announced as JSON: a value, or the 400 a client should see. */
export const parseJsonBody = (text: string): { readonly body: unknown } | { readonly problem: ValidationError } => {
  let body: unknown
  try {
    body = text === "" ? null : JSON.parse(text)
  } catch {
    return { problem: invalid("The body is not valid JSON", { path: "body", message: "malformed JSON" }) }
  }
  const problem = checkJsonShape(body)
  return problem === undefined ? { body } : { problem }
}
