import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"

import {
  type FieldIssue,
  PayloadTooLarge,
  type ProblemError,
  UnsupportedMediaType,
  ValidationError
} from "../domain/errors.js"
import { isStorableText, NOT_STORABLE_TEXT, pathKey } from "../domain/Text.js"

/**
 * Checks every request makes before any route sees it, so that no schema, formatter or SQL
 * statement is ever handed input it cannot bound: headers first (415, 413), then the URL's text,
 * then, when a route reads the JSON body, its text before it is parsed.
 */

/** 1 MiB: the largest JSON body accepted (API.md section 0). */
export const MAX_JSON_BODY_BYTES = 1024 * 1024
/** Deepest nesting of arrays and objects in a body; deeper input would overflow recursive formatters. */
export const MAX_JSON_DEPTH = 64
/** Most keys in one object: schema decoding and its error list grow with them. */
export const MAX_OBJECT_KEYS = 1_000
/** Most object keys in a whole body (the largest graph has 500 nodes and 2,000 edges). */
export const MAX_BODY_KEYS = 50_000

/** How much body a route accepts: its bytes, and the keys of one object and of the whole body. */
export interface BodyLimits {
  readonly maxBytes: number
  readonly maxObjectKeys: number
  readonly maxBodyKeys: number
}

/** Every route's limits but those declared larger (a vector store document). */
export const DEFAULT_BODY_LIMITS: BodyLimits = {
  maxBytes: MAX_JSON_BODY_BYTES,
  maxObjectKeys: MAX_OBJECT_KEYS,
  maxBodyKeys: MAX_BODY_KEYS
}

const BODY_METHODS = new Set(["POST", "PUT", "PATCH"])
const JSON_CONTENT_TYPE = /^application\/json\s*(?:;.*)?$/i

const hasBody = (request: HttpServerRequest.HttpServerRequest) => {
  const length = request.headers["content-length"]
  return (length !== undefined && length !== "0") || request.headers["transfer-encoding"] !== undefined
}

/** 415 / 413 decided from the headers, before the body is read. */
export const checkBodyHeaders = (
  request: HttpServerRequest.HttpServerRequest,
  limits: BodyLimits = DEFAULT_BODY_LIMITS
): ProblemError | undefined => {
  if (!BODY_METHODS.has(request.method)) return undefined
  const contentType = request.headers["content-type"]
  // a declared type picks the route's body parser even for an empty body: an empty multipart one never ends
  if (contentType === undefined ? hasBody(request) : !JSON_CONTENT_TYPE.test(contentType)) {
    return new UnsupportedMediaType({
      detail: `A ${request.method} body must be sent as application/json${
        contentType === undefined ? "" : `, not ${contentType.slice(0, 100)}`
      }`
    })
  }
  const length = Number(request.headers["content-length"] ?? 0)
  if (length > limits.maxBytes) {
    return new PayloadTooLarge({ detail: `The body is ${length} bytes; the limit is ${limits.maxBytes} bytes` })
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
    return invalid("The URL path is not valid percent-encoded UTF-8", {
      path: "path",
      message: "must be percent-encoded UTF-8"
    })
  }
  if (!isStorableText(decodedPath)) {
    return invalid("The URL path is not valid text", { path: "path", message: NOT_STORABLE_TEXT })
  }
  if (queryAt === -1) return undefined
  for (const [name, value] of new URLSearchParams(url.slice(queryAt + 1))) {
    if (!isStorableText(name) || !isStorableText(value)) {
      return invalid("A query parameter is not valid text", {
        path: isStorableText(name) ? pathKey(name) : "query",
        message: NOT_STORABLE_TEXT
      })
    }
  }
  return undefined
}

const formatPath = (path: ReadonlyArray<string | number>) =>
  path.length === 0 ? "body" : path.map((p, i) => typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`).join("")

interface Frame {
  readonly isObject: boolean
  keys: number
  /** the current array index, or the last key of an object */
  at: string | number
  expectsKey: boolean
}

const hexAt = (text: string, i: number) =>
  /^[0-9a-fA-F]{4}$/.test(text.slice(i, i + 4)) ? Number.parseInt(text.slice(i, i + 4), 16) : -1

/**
 * One pass over a JSON body's text, before `JSON.parse` builds anything (parsing an object of
 * 100,000 keys alone costs tens of milliseconds): the first place the body nests deeper than
 * MAX_JSON_DEPTH, holds too many keys, or escapes a character PostgreSQL cannot store (`\u0000`,
 * an unpaired surrogate). Raw NULs are invalid JSON and decoded UTF-8 has no lone surrogate, so
 * escapes are the only way such text gets in. Malformed JSON is left to `JSON.parse`.
 */
export const scanJsonText = (text: string, limits: BodyLimits = DEFAULT_BODY_LIMITS): ValidationError | undefined => {
  const { maxBodyKeys, maxObjectKeys } = limits
  const frames: Array<Frame> = []
  let totalKeys = 0
  const here = () => formatPath(frames.slice(0, 8).map((frame) => frame.at)) + (frames.length > 8 ? "…" : "")
  const notText = () =>
    invalid("The body holds a string that is not valid text", { path: here(), message: NOT_STORABLE_TEXT })
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) { // a string: find its end, checking \u escapes
      let j = i + 1
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j)
        if (d === 0x22) break
        if (d !== 0x5c) continue
        if (text.charCodeAt(j + 1) !== 0x75) { // \n, \", \\ ...
          j++
          continue
        }
        const code = hexAt(text, j + 2)
        if (code === 0 || (code >= 0xdc00 && code <= 0xdfff)) return notText()
        if (code >= 0xd800 && code <= 0xdbff) {
          const low = text.charCodeAt(j + 6) === 0x5c && text.charCodeAt(j + 7) === 0x75 ? hexAt(text, j + 8) : -1
          if (low < 0xdc00 || low > 0xdfff) return notText()
          j += 6
        }
        j += 5
      }
      const top = frames[frames.length - 1]
      if (top !== undefined && top.isObject && top.expectsKey) {
        top.at = pathKey(text.slice(i + 1, j))
        top.expectsKey = false
        if (++top.keys > maxObjectKeys) {
          return invalid(`An object in the body has more than ${maxObjectKeys} keys`, {
            path: formatPath(frames.slice(0, -1).map((frame) => frame.at)),
            message: `must have at most ${maxObjectKeys} keys`
          })
        }
        if (++totalKeys > maxBodyKeys) {
          return invalid(`The body has more than ${maxBodyKeys} keys in all`, {
            path: "body",
            message: `must have at most ${maxBodyKeys} keys in all`
          })
        }
      }
      i = j
    } else if (c === 0x7b || c === 0x5b) { // { [
      if (frames.length >= MAX_JSON_DEPTH) {
        return invalid(`The body is nested deeper than ${MAX_JSON_DEPTH} levels`, {
          path: here(),
          message: `must be nested at most ${MAX_JSON_DEPTH} levels deep`
        })
      }
      frames.push({ isObject: c === 0x7b, keys: 0, at: c === 0x7b ? "(key)" : 0, expectsKey: true })
    } else if (c === 0x7d || c === 0x5d) { // } ]
      frames.pop()
    } else if (c === 0x2c) { // ,
      const top = frames[frames.length - 1]
      if (top === undefined) continue
      if (top.isObject) top.expectsKey = true
      else if (typeof top.at === "number") top.at++
    }
  }
  return undefined
}

/** The parse of a body the headers announced as JSON: a value, or the 400 a client should see. */
export const parseJsonBody = (
  text: string,
  limits: BodyLimits = DEFAULT_BODY_LIMITS
): { readonly body: unknown } | { readonly problem: ValidationError } => {
  const problem = scanJsonText(text, limits)
  if (problem !== undefined) return { problem }
  try {
    return { body: text === "" ? null : JSON.parse(text) }
  } catch {
    return { problem: invalid("The body is not valid JSON", { path: "body", message: "malformed JSON" }) }
  }
}
