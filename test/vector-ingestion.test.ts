import fc from "fast-check"
import { describe, expect, it } from "vitest"

import {
  chunk,
  CHUNK_LINES,
  CHUNK_OVERLAP,
  flatten,
  ingestionMetadata,
  linearizedText,
  MAX_CHUNK_CHARS,
  MAX_VALUE_CHARS,
  windows
} from "../src/features/vectors/Ingestion.js"
import type { JsonValue } from "../src/features/workflows/Expressions.js"

const linesOf = (n: number, width = 10) => Array.from({ length: n }, (_, i) => `k${i}: ${"x".repeat(width)}`)

/** Undoes the `path (part k): ` labels of a split line's chunks. */
const unlabel = (text: string) => text.replace(/^.*? \(part \d+\): /s, "")

const isLoneSurrogateAt = (text: string, i: number) => {
  const c = text.charCodeAt(i)
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = text.charCodeAt(i + 1)
    return !(next >= 0xdc00 && next <= 0xdfff)
  }
  if (c >= 0xdc00 && c <= 0xdfff) {
    const previous = text.charCodeAt(i - 1)
    return !(previous >= 0xd800 && previous <= 0xdbff)
  }
  return false
}
const hasLoneSurrogate = (text: string) => {
  for (let i = 0; i < text.length; i++) if (isLoneSurrogateAt(text, i)) return true
  return false
}

describe("flatten: the line format of test-chatkit", () => {
  it("writes object paths with dots, array items with brackets, in document order", () => {
    const document: JsonValue = {
      title: "Guide",
      author: { name: "Ada", roles: ["admin", "editor"] },
      pages: [{ n: 1, text: "intro" }, { n: 2.5, text: "more" }],
      draft: false,
      published: true,
      reviewer: null
    }
    expect(flatten(document).lines).toEqual([
      "title: Guide",
      "author.name: Ada",
      "author.roles[0]: admin",
      "author.roles[1]: editor",
      "pages[0].n: 1",
      "pages[0].text: intro",
      "pages[1].n: 2.5",
      "pages[1].text: more",
      "draft: false",
      "published: true",
      "reviewer: null"
    ])
  })

  it("writes a root array as [i], nested arrays as [i][j], a scalar root as root", () => {
    expect(flatten([1, [2, 3], { a: "b" }]).lines).toEqual(["[0]: 1", "[1][0]: 2", "[1][1]: 3", "[2].a: b"])
    expect(flatten("hello").lines).toEqual(["root: hello"])
    expect(flatten(42).lines).toEqual(["root: 42"])
    expect(flatten(null).lines).toEqual(["root: null"])
    expect(flatten(true).lines).toEqual(["root: true"])
  })

  it("writes empty objects and arrays as {} and [] leaves, an empty document as root", () => {
    expect(flatten({ a: {}, b: [], c: [{}], d: 1 }).lines).toEqual(["a: {}", "b: []", "c[0]: {}", "d: 1"])
    expect(flatten({}).lines).toEqual(["root: {}"])
    expect(flatten([]).lines).toEqual(["root: []"])
  })

  it("keeps strings as they are: no quotes, newlines, colons, unicode", () => {
    const text = "line one\nline \"two\": ok 😀 e\u0301 👩‍👩‍👧"
    expect(flatten({ s: text, empty: "" }).lines).toEqual([`s: ${text}`, "empty: "])
  })

  it("writes keys unescaped, and the empty key at the root as root (as test-chatkit)", () => {
    expect(flatten({ "a.b": 1, "c d": 2, "": 3 }).lines).toEqual(["a.b: 1", "c d: 2", "root: 3"])
    expect(flatten({ "": { x: 1 } }).lines).toEqual(["x: 1"])
  })

  it("treats __proto__, constructor and prototype as plain keys", () => {
    const document = JSON.parse(`{"__proto__": {"polluted": true}, "constructor": {"prototype": 1}, "toString": 2}`)
    expect(flatten(document).lines).toEqual([
      "__proto__.polluted: true",
      "constructor.prototype: 1",
      "toString: 2"
    ])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it("omits a value over 60,000 characters and records it", () => {
    const big = "y".repeat(70_000)
    const flattened = flatten({ before: 1, body: { text: big }, after: "z" })
    expect(flattened.lines).toEqual(["before: 1", "body.text: <value omitted, original length 70000>", "after: z"])
    expect(flattened.redactions).toEqual([
      { path: "body.text", original_length: 70_000, strategy: "omitted", reasons: ["max_value_length"] }
    ])
    expect(ingestionMetadata(flattened)).toEqual({
      line_count: 3,
      redactions: flattened.redactions,
      redactions_count: 1
    })
    expect(ingestionMetadata(flatten({ a: 1 }))).toEqual({ line_count: 1 })
  })

  it("keeps a value of exactly 60,000 characters, and counts characters as code points", () => {
    expect(flatten({ v: "a".repeat(MAX_VALUE_CHARS) }).redactions).toEqual([])
    expect(flatten({ v: "a".repeat(MAX_VALUE_CHARS + 1) }).redactions).toHaveLength(1)
    // 40,000 emoji are 80,000 UTF-16 units but 40,000 characters: kept, as test-chatkit (Python len) keeps them
    const emoji = "😀".repeat(40_000)
    expect(flatten({ v: emoji }).lines).toEqual([`v: ${emoji}`])
    expect(flatten({ v: "😀".repeat(60_001) }).redactions[0]?.original_length).toBe(60_001)
  })

  it("flattens 100,000 keys in well under a second", () => {
    const document: Record<string, JsonValue> = {}
    for (let i = 0; i < 100_000; i++) document[`key_${i}`] = i % 2 === 0 ? `value ${i}` : i
    const started = performance.now()
    const { lines } = flatten(document)
    const chunks = chunk(lines)
    expect(performance.now() - started).toBeLessThan(1_000)
    expect(lines).toHaveLength(100_000)
    expect(lines[0]).toBe("key_0: value 0")
    expect(lines[99_999]).toBe("key_99999: 99999")
    expect(chunks).toHaveLength(Math.ceil((100_000 - CHUNK_LINES) / (CHUNK_LINES - CHUNK_OVERLAP)) + 1)
  })

  it("flattens a 64-deep document fast, and a 100,000-deep one without overflowing the stack", () => {
    const nest = (depth: number): JsonValue => {
      let value: JsonValue = { leaf: "bottom" }
      for (let i = 1; i < depth; i++) value = i % 2 === 0 ? { a: value } : [value]
      return value
    }
    const started = performance.now()
    const shallow = flatten(nest(64))
    expect(performance.now() - started).toBeLessThan(1_000)
    expect(shallow.lines).toHaveLength(1)
    expect(shallow.lines[0]).toMatch(/^\[0\]\.a\[0\]\.a.*\.leaf: bottom$/)
    const deep = flatten(nest(100_000))
    expect(deep.lines).toHaveLength(1)
    expect(deep.lines[0]!.endsWith(".leaf: bottom")).toBe(true)
  })
})

describe("chunk: windows of 40 lines stepping by 32", () => {
  it("gives 0, 1, 2 and 3 chunks for 0, 40, 41 and 100 lines", () => {
    expect(chunk([])).toEqual([])
    expect(chunk(linesOf(1)).map((c) => [c.lineStart, c.lineEnd])).toEqual([[0, 1]])
    expect(chunk(linesOf(40)).map((c) => [c.lineStart, c.lineEnd])).toEqual([[0, 40]])
    expect(chunk(linesOf(41)).map((c) => [c.lineStart, c.lineEnd])).toEqual([[0, 40], [32, 41]])
    expect(chunk(linesOf(72)).map((c) => [c.lineStart, c.lineEnd])).toEqual([[0, 40], [32, 72]])
    expect(chunk(linesOf(100)).map((c) => [c.lineStart, c.lineEnd])).toEqual([[0, 40], [32, 72], [64, 100]])
    expect(windows(100)).toEqual([[0, 40], [32, 72], [64, 100]])
  })

  it("joins a window's lines with newlines, indexes chunks from 0, and shares 8 lines between windows", () => {
    const lines = linesOf(100)
    const chunks = chunk(lines)
    expect(chunks.map((c) => c.index)).toEqual([0, 1, 2])
    for (const c of chunks) expect(c.text).toBe(lines.slice(c.lineStart, c.lineEnd).join("\n"))
    for (let i = 1; i < chunks.length; i++) {
      const previous = chunks[i - 1]!.text.split("\n")
      const current = chunks[i]!.text.split("\n")
      expect(current.slice(0, CHUNK_OVERLAP)).toEqual(previous.slice(-CHUNK_OVERLAP))
      expect(current[CHUNK_OVERLAP]).not.toBe(previous[previous.length - 1])
    }
  })

  it("packs a window over 20,000 characters into consecutive chunks of whole lines", () => {
    const lines = linesOf(40, 1_000) // 40 lines of 1,010 characters: 40,439 with newlines
    const chunks = chunk(lines)
    expect(chunks.map((c) => [c.lineStart, c.lineEnd])).toEqual([[0, 19], [19, 38], [38, 40]])
    for (const c of chunks) {
      expect(c.text.length).toBeLessThanOrEqual(MAX_CHUNK_CHARS)
      expect(c.text).toBe(lines.slice(c.lineStart, c.lineEnd).join("\n"))
    }
  })

  it("cuts a line over 20,000 characters into labelled parts of its own", () => {
    const value = "v".repeat(50_000)
    const lines = ["a: 1", `body.text: ${value}`, "b: 2"]
    const chunks = chunk(lines)
    expect(chunks.map((c) => [c.lineStart, c.lineEnd])).toEqual([[0, 1], [1, 2], [1, 2], [1, 2], [2, 3]])
    expect(chunks[1]!.text.startsWith("body.text (part 1): vvv")).toBe(true)
    expect(chunks[3]!.text.startsWith("body.text (part 3): vvv")).toBe(true)
    expect(chunks.slice(1, 4).map((c) => unlabel(c.text)).join("")).toBe(value)
    for (const c of chunks) expect(c.text.length).toBeLessThanOrEqual(MAX_CHUNK_CHARS)
    expect(chunks.map((c) => c.index)).toEqual([0, 1, 2, 3, 4])
  })

  it("never cuts inside a surrogate pair or a grapheme", () => {
    for (
      const [unit, key] of ["😀", "e\u0301", "👩‍👩‍👧", "🇫🇷", "👍🏽"].flatMap((u) =>
        ["k", "kk", "kkk"].map((k) => [u, k])
      )
    ) {
      const value = unit!.repeat(Math.ceil(45_000 / unit!.length))
      const chunks = chunk([`${key}: ${value}`])
      expect(chunks.length).toBeGreaterThan(1)
      const pieces = chunks.map((c) => unlabel(c.text))
      expect(pieces.join("")).toBe(value)
      for (const piece of pieces) {
        expect(piece.length).toBeGreaterThan(0)
        expect(piece.length % unit!.length).toBe(0)
        expect(piece.startsWith(unit!)).toBe(true)
        expect(hasLoneSurrogate(piece)).toBe(false)
      }
    }
  })

  it("cuts a grapheme longer than a chunk between code points, and a line without a path plainly", () => {
    const giant = "e" + "\u0301".repeat(30_000) + "😀".repeat(15_000)
    const pieces = chunk([`k: ${giant}`]).map((c) => c.text)
    expect(pieces.map(unlabel).join("")).toBe(giant)
    for (const piece of pieces) {
      expect(piece.length).toBeLessThanOrEqual(MAX_CHUNK_CHARS)
      expect(hasLoneSurrogate(piece)).toBe(false)
    }
    const plain = "😀".repeat(25_000)
    const plainChunks = chunk([plain]).map((c) => c.text)
    expect(plainChunks.join("")).toBe(plain)
    expect(plainChunks.map((t) => t.length)).toEqual([20_000, 20_000, 10_000])
  })

  it("bounds the repeated path: a path over 1,000 characters is not repeated in each part", () => {
    const path = "p".repeat(19_990)
    const line = `${path}: ${"v".repeat(30_000)}`
    const chunks = chunk([line])
    expect(chunks.map((c) => c.text).join("")).toBe(line)
    for (const c of chunks) expect(c.text.length).toBeLessThanOrEqual(MAX_CHUNK_CHARS)
  })
})

const bigString = fc
  .tuple(fc.constantFrom("a", "é", "😀", "e\u0301", "👩‍👩‍👧", " ", "\n"), fc.integer({ min: 0, max: 70_000 }))
  .map(([unit, n]) => unit.repeat(Math.ceil(n / unit.length)))

const documents: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<JsonValue>,
  fc.dictionary(fc.string({ maxLength: 30 }), fc.oneof(bigString, fc.jsonValue({ maxDepth: 2 })), {
    maxKeys: 12
  }) as fc.Arbitrary<JsonValue>,
  fc.array(fc.oneof(bigString, fc.string()), { maxLength: 100 })
)

describe("properties over random documents", () => {
  it("every chunk is at most 20,000 characters, whole, in order, and covers every line", () => {
    fc.assert(
      fc.property(documents, (document) => {
        const { lines, redactions } = flatten(document)
        const chunks = chunk(lines)
        expect(lines.length).toBeGreaterThan(0)
        expect(linearizedText(lines)).toBe(lines.join("\n"))
        const covered = new Set<number>()
        const spans = windows(lines.length)
        chunks.forEach((c, i) => {
          expect(c.index).toBe(i)
          expect(c.text.length).toBeLessThanOrEqual(MAX_CHUNK_CHARS)
          expect(hasLoneSurrogate(c.text)).toBe(false)
          expect(c.lineEnd).toBeGreaterThan(c.lineStart)
          expect(spans.some(([start, end]) => start <= c.lineStart && c.lineEnd <= end)).toBe(true)
          if (c.lineEnd - c.lineStart > 1 || lines[c.lineStart]!.length <= MAX_CHUNK_CHARS) {
            expect(c.text).toBe(lines.slice(c.lineStart, c.lineEnd).join("\n"))
          }
          for (let l = c.lineStart; l < c.lineEnd; l++) covered.add(l)
        })
        expect(covered.size).toBe(lines.length)
        for (const r of redactions) expect(r.original_length).toBeGreaterThan(MAX_VALUE_CHARS)
        for (const line of lines) expect(line.length).toBeLessThan(MAX_VALUE_CHARS * 2 + 1_000)
      }),
      { numRuns: 100 }
    )
  })

  it("chunk counts follow the window rule for any number of short lines", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2_000 }), (n) => {
        const expected = n === 0 ? 0 : n <= CHUNK_LINES ? 1 : Math.ceil((n - CHUNK_LINES) / 32) + 1
        const chunks = chunk(linesOf(n, 3))
        expect(chunks).toHaveLength(expected)
        if (n > 0) expect(chunks[chunks.length - 1]!.lineEnd).toBe(n)
      })
    )
  })
})
