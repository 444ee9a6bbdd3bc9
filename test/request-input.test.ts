import fc from "fast-check"
import { describe, expect, it } from "vitest"

import { MAX_JSON_DEPTH, MAX_OBJECT_KEYS, scanJsonText } from "../src/platform/RequestInput.js"

/** What the scanner must decide, computed on the parsed value instead of the text. */
const reference = (value: unknown): "ok" | "deep" | "keys" | "text" => {
  const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
  const badText = (s: string) => s.includes("\u0000") || loneSurrogate.test(s)
  let verdict: "ok" | "deep" | "keys" | "text" = "ok"
  const walk = (v: unknown, depth: number): void => {
    if (verdict !== "ok") return
    if (typeof v === "string") {
      if (badText(v)) verdict = "text"
      return
    }
    if (typeof v !== "object" || v === null) return
    if (depth >= MAX_JSON_DEPTH) {
      verdict = "deep"
      return
    }
    const entries = Array.isArray(v) ? v.map((x) => ["", x] as const) : Object.entries(v)
    if (!Array.isArray(v) && entries.length > MAX_OBJECT_KEYS) verdict = "keys"
    for (const [key, x] of entries) {
      if (!Array.isArray(v) && badText(key)) verdict = "text"
      walk(x, depth + 1)
    }
  }
  walk(value, 0)
  return verdict
}

const verdictOf = (text: string) => {
  const problem = scanJsonText(text)
  if (problem === undefined) return "ok"
  if (problem.detail.includes("deeper")) return "deep"
  if (problem.detail.includes("keys")) return "keys"
  return "text"
}

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth)

describe("scanJsonText", () => {
  it("accepts nesting up to the limit and refuses one level more, with a short path", () => {
    expect(scanJsonText(nested(MAX_JSON_DEPTH))).toBeUndefined()
    const problem = scanJsonText(nested(MAX_JSON_DEPTH + 1))
    expect(problem?.errors?.[0]?.message).toBe(`must be nested at most ${MAX_JSON_DEPTH} levels deep`)
    expect(scanJsonText(nested(100_000))?.errors?.[0]?.path).toBe("[0][0][0][0][0][0][0][0]…")
  })

  it("refuses \\u0000 and unpaired surrogate escapes, in values and keys, and names the path", () => {
    expect(scanJsonText("{\"email\":\"a\\u0000@x.com\"}")?.errors?.[0]?.path).toBe("email")
    expect(scanJsonText("{\"a\":[\"ok\",\"\\ud800b\"]}")?.errors?.[0]?.path).toBe("a[1]")
    expect(scanJsonText("{\"a\":\"\\udc00\"}")).toBeDefined()
    expect(scanJsonText("{\"a\":\"\\ud800\\u0041\"}")).toBeDefined()
    expect(scanJsonText("{\"\\u0000\":1}")).toBeDefined()
  })

  it("accepts what only looks like those: a surrogate pair, an escaped backslash before u0000, escaped quotes", () => {
    expect(scanJsonText("{\"a\":\"\\ud83d\\ude00\"}")).toBeUndefined()
    expect(scanJsonText("{\"a\":\"\\\\u0000\"}")).toBeUndefined()
    expect(scanJsonText("{\"a\\\"{[\":\"\\\"[[[[\"}")).toBeUndefined()
  })

  it("counts keys per object, not across siblings", () => {
    const object = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":0`).join(",")}}`
    expect(scanJsonText(object(MAX_OBJECT_KEYS))).toBeUndefined()
    expect(scanJsonText(`[${object(MAX_OBJECT_KEYS)},${object(MAX_OBJECT_KEYS)}]`)).toBeUndefined()
    expect(scanJsonText(`{"a":${object(MAX_OBJECT_KEYS + 1)}}`)?.errors?.[0]?.path).toBe("a")
  })

  it("agrees with a walk over the parsed value, for any JSON", () => {
    const text = fc.oneof(
      fc.string({ unit: "binary", maxLength: 6 }),
      fc.constantFrom("\u0000", "\ud800", "\udfff", "\ud83d\ude00", "\\", "\"", "\\u0000")
    )
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: "small" }, text, fc.integer(), fc.constant(null), tie("array"), tie("object")),
      array: fc.array(tie("node"), { maxLength: 4 }),
      object: fc.dictionary(text, tie("node"), { maxKeys: 4 })
    })).node
    const deep = fc.tuple(value, fc.integer({ min: 0, max: 2 * MAX_JSON_DEPTH })).map(([v, depth]) => {
      let out: unknown = v
      for (let i = 0; i < depth; i++) out = i % 2 === 0 ? [out] : { d: out }
      return out
    })
    fc.assert(fc.property(fc.oneof(value, deep), (v) => verdictOf(JSON.stringify(v)) === reference(v)), {
      numRuns: 2_000,
      seed: 8
    })
  })
})
