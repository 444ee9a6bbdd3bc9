/**
 * How a JSON document becomes text for a vector store (API.md section 8, issue 12 "Ingestion"), after
 * test-chatkit `backend/app/vector_store/service.py` (`_format_value`, `_flatten_json`,
 * `_sanitize_entries_for_indexing`, `_chunk_entries`, `_split_entry_for_max_length`,
 * `_split_chunk_by_text_length`, `linearize_json`). Pure functions: no services, no I/O.
 *
 * Line format (one `path: value` line per leaf, in document order):
 * - object keys join with `.` (`a.b.c`), array items with brackets (`items[0].name`, a root array
 *   `[0]`); keys are written as they are, never quoted or escaped (as test-chatkit does);
 * - a leaf at the root is `root` (`root: 42`); `__proto__` and `constructor` are ordinary keys;
 * - strings as they are (no quotes, newlines kept), numbers as JavaScript writes them, `true`/`false`,
 *   `null`; an empty object or array is a leaf written `{}` / `[]`;
 * - a value longer than MAX_VALUE_CHARS is replaced by `<value omitted, original length N>` and recorded in
 *   `redactions` (`{path, original_length, strategy: "omitted", reasons: ["max_value_length"]}`).
 */
import type { JsonValue } from "../workflows/Expressions.js"

/** A value longer than this (in Unicode code points, as Python's `len`) is omitted from the text. */
export const MAX_VALUE_CHARS = 60_000
/** Lines per window. */
export const CHUNK_LINES = 40
/** Lines shared by two consecutive windows: windows step by CHUNK_LINES - CHUNK_OVERLAP = 32. */
export const CHUNK_OVERLAP = 8
/** The longest chunk text, in UTF-16 code units (so also at most this many code points). */
export const MAX_CHUNK_CHARS = 20_000
/** A line split into parts repeats its path in each part only when the path is at most this long. */
export const MAX_PART_LABEL_CHARS = 1_000

export interface Redaction {
  readonly path: string
  readonly original_length: number
  readonly strategy: "omitted"
  readonly reasons: ReadonlyArray<"max_value_length">
}

export interface Flattened {
  /** One `path: value` line per leaf, in document order. */
  readonly lines: ReadonlyArray<string>
  readonly redactions: ReadonlyArray<Redaction>
}

export interface Chunk {
  /** From 0, consecutive over the whole document. */
  readonly index: number
  readonly text: string
  /** The lines this chunk holds: `lines.slice(lineStart, lineEnd)` (one line for a part of a split line). */
  readonly lineStart: number
  readonly lineEnd: number
}

const omitted = (length: number) => `<value omitted, original length ${length}>`

/** The length in code points, counted only when the UTF-16 length could exceed the limit. */
const exceedsValueLimit = (text: string): number | undefined => {
  if (text.length <= MAX_VALUE_CHARS) return undefined
  let count = 0
  for (const _ of text) count++
  return count > MAX_VALUE_CHARS ? count : undefined
}

const render = (value: JsonValue): string => {
  if (value === null) return "null"
  if (typeof value === "string") return value
  if (typeof value === "number" || typeof value === "boolean") return String(value)
  return Array.isArray(value) ? "[]" : "{}"
}

type Frame =
  | { readonly kind: "array"; readonly prefix: string; readonly items: ReadonlyArray<JsonValue>; next: number }
  | {
    readonly kind: "object"
    readonly prefix: string
    readonly object: { readonly [key: string]: JsonValue }
    readonly keys: ReadonlyArray<string>
    next: number
  }

const childPath = (prefix: string, key: string) => prefix === "" ? key : `${prefix}.${key}`
const itemPath = (prefix: string, index: number) => `${prefix}[${index}]`

const frameOf = (value: JsonValue, prefix: string): Frame | undefined => {
  if (value === null || typeof value !== "object") return undefined
  if (Array.isArray(value)) {
    const items = value as ReadonlyArray<JsonValue>
    return items.length === 0 ? undefined : { kind: "array", prefix, items, next: 0 }
  }
  const object = value as { readonly [key: string]: JsonValue }
  const keys = Object.keys(object)
  return keys.length === 0 ? undefined : { kind: "object", prefix, object, keys, next: 0 }
}

/**
 * The document's `path: value` lines and the values left out. Iterative (an explicit stack), so
 * depth costs heap, not call stack. Key order is the object's own order (JavaScript puts integer-like
 * keys first, ascending, in every object: `JSON.parse` has already done so).
 */
export const flatten = (document: JsonValue): Flattened => {
  const lines: Array<string> = []
  const redactions: Array<Redaction> = []
  const leaf = (path: string, value: JsonValue) => {
    const text = render(value)
    const length = exceedsValueLimit(text)
    if (length === undefined) {
      lines.push(`${path}: ${text}`)
    } else {
      lines.push(`${path}: ${omitted(length)}`)
      redactions.push({ path, original_length: length, strategy: "omitted", reasons: ["max_value_length"] })
    }
  }
  const root = frameOf(document, "")
  if (root === undefined) {
    leaf("root", document)
    return { lines, redactions }
  }
  const stack: Array<Frame> = [root]
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!
    let value: JsonValue
    let path: string
    if (frame.kind === "array") {
      if (frame.next >= frame.items.length) {
        stack.pop()
        continue
      }
      path = itemPath(frame.prefix, frame.next)
      value = frame.items[frame.next]!
    } else {
      if (frame.next >= frame.keys.length) {
        stack.pop()
        continue
      }
      const key = frame.keys[frame.next]!
      path = childPath(frame.prefix, key)
      value = frame.object[key]!
    }
    frame.next++
    const child = frameOf(value, path)
    if (child === undefined) leaf(path === "" ? "root" : path, value)
    else stack.push(child)
  }
  return { lines, redactions }
}

/** The document's linearized text, as test-chatkit stores it (`linearize_json`): the lines joined by newlines. */
export const linearizedText = (lines: ReadonlyArray<string>): string => lines.join("\n")

/** The document metadata ingestion adds (test-chatkit `ingest`): the caller's own metadata goes over it. */
export const ingestionMetadata = (flattened: Flattened): {
  readonly line_count: number
  readonly redactions?: ReadonlyArray<Redaction>
  readonly redactions_count?: number
} =>
  flattened.redactions.length === 0
    ? { line_count: flattened.lines.length }
    : {
      line_count: flattened.lines.length,
      redactions: flattened.redactions,
      redactions_count: flattened.redactions.length
    }

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" })
/** How far back from a cut the grapheme boundaries are looked for (segmenting is slow: ~10 µs a character). */
const GRAPHEME_LOOKBACK = 64
const GRAPHEME_LOOKAHEAD = 16

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff
/** U+1F1E6..U+1F1FF: two of them make a flag. */
const isRegionalIndicatorAt = (text: string, i: number) =>
  text.charCodeAt(i) === 0xd83c && text.charCodeAt(i + 1) >= 0xdde6 && text.charCodeAt(i + 1) <= 0xddff

/**
 * The last grapheme boundary after `start` (itself a boundary) and at most `limit`, found by segmenting only
 * the few characters before `limit`; when one grapheme covers them all, the last code point boundary.
 */
const boundaryBefore = (text: string, start: number, limit: number): number => {
  let from = Math.max(start, limit - GRAPHEME_LOOKBACK)
  if (from > start && isLowSurrogate(text.charCodeAt(from)) && isHighSurrogate(text.charCodeAt(from - 1))) from--
  // a run of regional indicators pairs up from its first one: start the window on a pair
  let before = 0
  while (from - 2 * before - 2 >= 0 && isRegionalIndicatorAt(text, from - 2 * before - 2)) before++
  if (before % 2 === 1 && isRegionalIndicatorAt(text, from)) from = Math.max(start, from - 2)
  let best = -1
  for (const { index } of graphemes.segment(text.slice(from, Math.min(text.length, limit + GRAPHEME_LOOKAHEAD)))) {
    const boundary = from + index
    if (boundary > limit) break
    if (boundary > start && (boundary > from || from === start)) best = boundary
  }
  if (best > start) return best
  const low = isLowSurrogate(text.charCodeAt(limit)) && isHighSurrogate(text.charCodeAt(limit - 1))
  return low ? limit - 1 : limit
}

/** Cuts `text` into pieces, the k-th (from 1) at most `budget(k)` UTF-16 code units, at grapheme boundaries. */
const cut = (text: string, budget: (part: number) => number): Array<string> => {
  const pieces: Array<string> = []
  let start = 0
  while (text.length - start > budget(pieces.length + 1)) {
    const end = boundaryBefore(text, start, start + budget(pieces.length + 1))
    pieces.push(text.slice(start, end))
    start = end
  }
  pieces.push(text.slice(start))
  return pieces
}

/**
 * A line over MAX_CHUNK_CHARS becomes parts written `path (part k): piece` (test-chatkit
 * `_split_entry_for_max_length`); the path is the text before the line's first `: `, and a line without
 * one, or whose path is over MAX_PART_LABEL_CHARS, is cut into plain pieces.
 */
const splitLine = (line: string): Array<string> => {
  const colon = line.indexOf(": ")
  if (colon < 0 || colon > MAX_PART_LABEL_CHARS) return cut(line, () => MAX_CHUNK_CHARS)
  const label = (part: number) => `${line.slice(0, colon)} (part ${part}): `
  const pieces = cut(line.slice(colon + 2), (part) => MAX_CHUNK_CHARS - label(part).length)
  return pieces.map((piece, i) => `${label(i + 1)}${piece}`)
}

/**
 * Windows of CHUNK_LINES lines stepping by CHUNK_LINES - CHUNK_OVERLAP, the last one ending at the last line
 * (no trailing window inside the previous one: 100 lines -> [0,40) [32,72) [64,100)); no lines, no chunks.
 */
export const windows = (lineCount: number): ReadonlyArray<readonly [start: number, end: number]> => {
  const result: Array<readonly [number, number]> = []
  for (let start = 0; start < lineCount; start += CHUNK_LINES - CHUNK_OVERLAP) {
    const end = Math.min(lineCount, start + CHUNK_LINES)
    result.push([start, end])
    if (end >= lineCount) break
  }
  return result
}

/** The document's chunks: each window's lines joined by newlines, the window split when over the limit. */
// Over MAX_CHUNK_CHARS: whole lines packed greedily into consecutive chunks; a longer line gets one chunk per part.
export const chunk = (lines: ReadonlyArray<string>): ReadonlyArray<Chunk> => {
  const chunks: Array<Chunk> = []
  const emit = (text: string, lineStart: number, lineEnd: number) =>
    chunks.push({ index: chunks.length, text, lineStart, lineEnd })
  for (const [start, end] of windows(lines.length)) {
    let text = ""
    let from = start
    for (let i = start; i < end; i++) {
      const line = lines[i]!
      if (line.length > MAX_CHUNK_CHARS) {
        if (i > from) emit(text, from, i)
        for (const part of splitLine(line)) emit(part, i, i + 1)
        text = ""
        from = i + 1
      } else if (i > from && text.length + 1 + line.length > MAX_CHUNK_CHARS) {
        emit(text, from, i)
        text = line
        from = i
      } else {
        text = i > from ? `${text}\n${line}` : line
      }
    }
    if (end > from) emit(text, from, end)
  }
  return chunks
}
