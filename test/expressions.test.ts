import { Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"

import {
  evaluateText,
  ExpressionError,
  type JsonValue,
  MAX_EXPRESSION_DEPTH,
  parseAssignmentTarget,
  parseExpression,
  renderTemplate,
  type Scope
} from "../src/features/workflows/Expressions.js"

const scope: Scope = {
  input: { user_message: "hello world", n: 3 },
  state: {
    x: 2,
    name: "Ada",
    flag: true,
    tags: ["a", "b", 1],
    a: { b: { c: "deep" } },
    "odd key": 7,
    obj: { k: [1, { z: null }] }
  }
}

const value = (text: string, s: Scope = scope): JsonValue => {
  const result = evaluateText(text, s)
  if (Either.isLeft(result)) throw new Error(`${text}: ${result.left.message}`)
  return result.right
}
const error = (text: string, s: Scope = scope): ExpressionError => {
  const result = evaluateText(text, s)
  if (Either.isRight(result)) throw new Error(`${text} evaluated to ${JSON.stringify(result.right)}`)
  expect(result.left).toBeInstanceOf(ExpressionError)
  return result.left
}
const parseError = (text: string) => {
  const result = parseExpression(text)
  expect(result._tag, text).toBe("Left")
  return Either.isLeft(result) ? result.left : new ExpressionError({ message: "", position: -1 })
}

describe("parseExpression", () => {
  it("never throws on random strings, and never on random token soup (property)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 1_200 }), (text) => {
        const result = parseExpression(text)
        expect(["Left", "Right"]).toContain(result._tag)
      }),
      { numRuns: 2_000 }
    )
    const token = fc.constantFrom(
      "(",
      ")",
      "[",
      "]",
      ",",
      ".",
      "-",
      "==",
      "!=",
      "<",
      ">=",
      "and",
      "or",
      "not",
      "in",
      "!",
      "&&",
      "||",
      "1",
      "2.5",
      "\"s\"",
      "'t'",
      "true",
      "null",
      "input",
      "state",
      "x",
      "__proto__",
      "[\"k\"]",
      " "
    )
    fc.assert(
      fc.property(fc.array(token, { maxLength: 200 }), (tokens) => {
        const parsed = parseExpression(tokens.join(" "))
        expect(["Left", "Right"]).toContain(parsed._tag)
        if (Either.isRight(parsed)) {
          const evaluated = evaluateText(tokens.join(" "), scope)
          expect(["Left", "Right"]).toContain(evaluated._tag)
        }
      }),
      { numRuns: 2_000 }
    )
  })

  it("refuses hostile nesting with a clear error, never a stack overflow", () => {
    const deep = "(".repeat(10_000) + "1" + ")".repeat(10_000)
    expect(parseError(deep).message).toContain("at most 1000 characters")
    expect(parseError("(".repeat(10_000)).message).toContain("at most 1000 characters")
    // within the length bound, the depth bound answers
    expect(parseError("(".repeat(400) + "1" + ")".repeat(400)).message).toContain(
      `nesting deeper than ${MAX_EXPRESSION_DEPTH} levels`
    )
    expect(parseError("[".repeat(100) + "]".repeat(100)).message).toContain("nesting deeper")
    expect(parseError("not ".repeat(200) + "true").message).toContain("nesting deeper")
    expect(parseError("!".repeat(500) + "true").message).toContain("nesting deeper")
    const ok = "(".repeat(MAX_EXPRESSION_DEPTH) + "1" + ")".repeat(MAX_EXPRESSION_DEPTH)
    expect(value(ok)).toBe(1)
    // a long flat chain is fine (built iteratively)
    expect(value(Array.from({ length: 160 }, () => "true").join("&&"))).toBe(true)
    // templates too
    const template = renderTemplate("{{ " + "(".repeat(10_000) + " }}", scope)
    expect(template._tag).toBe("Left")
  })

  it("refuses other roots and the prototype segments at parse time", () => {
    for (
      const text of [
        "state.__proto__",
        "state.constructor",
        "input.prototype",
        "state[\"__proto__\"]",
        "state['constructor']",
        "state.a.__proto__.x",
        "state.x == 1 and input.constructor == null",
        "state[\"\\u005f_proto__\"]"
      ]
    ) {
      expect(parseError(text).message, text).toMatch(/is not allowed at position \d+/)
    }
    for (const text of ["process", "globalThis.x", "Object", "this", "constructor", "x == 1", "window.alert"]) {
      expect(parseError(text).message, text).toContain("expressions read only input.* and state.*")
    }
    // no computed keys, no calls, no assignment
    expect(parseError("state[input.k]")._tag).toBe("ExpressionError")
    expect(parseError("state.f()")._tag).toBe("ExpressionError")
    expect(parseError("state.x = 1").message).toContain("use ==")
  })

  it("states the problem and position, and echoes at most a truncated token", () => {
    const long = "a".repeat(500)
    const e = parseError(`state.x == ${long}`)
    expect(e.position).toBe(11)
    expect(e.message).toContain("at position 11")
    expect(e.message.length).toBeLessThan(120)
    expect(e.message).not.toContain("a".repeat(21))
    expect(parseError("state.x ==").message).toContain("unexpected end of expression")
    expect(parseError("\"open").message).toBe("unterminated string at position 0")
    expect(parseError("'\\q'").message).toContain("invalid escape")
    expect(parseError("").message).toContain("empty expression")
    expect(parseError("1 < 2 < 3").message).toContain("cannot be chained")
    expect(parseError("1 2").message).toContain("unexpected \"2\"")
    expect(parseError("#").message).toBe("unexpected character \"#\" at position 0")
    expect(parseError("x".repeat(1_001)).message).toContain("at most 1000 characters (got 1001)")
  })
})

describe("evaluate", () => {
  const table: ReadonlyArray<readonly [string, JsonValue]> = [
    // literals
    ["1", 1],
    ["-2.5", -2.5],
    ["1e3", 1000],
    ["\"a\\\"b\\n\"", "a\"b\n"],
    ["'it\\'s'", "it's"],
    ["\"\\u00e9\"", "é"],
    ["true", true],
    ["null", null],
    ["[1, \"a\", [true], null]", [1, "a", [true], null]],
    ["[]", []],
    // paths
    ["input.user_message", "hello world"],
    ["state.x", 2],
    ["state.a.b.c", "deep"],
    ["state[\"odd key\"]", 7],
    ["state.tags[1]", "b"],
    ["state.obj.k[1].z", null],
    ["state.a", { b: { c: "deep" } }],
    // missing paths are null, and nothing of Object.prototype is reached
    ["state.missing", null],
    ["state.missing.deeper", null],
    ["state.tags[9]", null],
    ["state.tags.length", null],
    ["input.user_message.length", null],
    ["state.toString", null],
    ["state.hasOwnProperty", null],
    ["state[\"valueOf\"]", null],
    ["state.x.toFixed", null],
    // comparisons
    ["state.x == 2", true],
    ["state.x != 2", false],
    ["state.x < 3", true],
    ["state.x <= 2", true],
    ["state.x > 2", false],
    ["state.x >= 2", true],
    ["\"abc\" < \"abd\"", true],
    ["state.name == 'Ada'", true],
    // strict JSON equality
    ["1 == \"1\"", false],
    ["0 == false", false],
    ["null == false", false],
    ["state.missing == null", true],
    ["[1, [2]] == [1, [2]]", true],
    ["[1, 2] == [2, 1]", false],
    ["state.a == state.a", true],
    ["state.a.b == state.obj", false],
    // logic
    ["true and false", false],
    ["true && true", true],
    ["false or true", true],
    ["false || false", false],
    ["not true", false],
    ["!false", true],
    ["not state.missing", true],
    ["state.missing or state.flag", true],
    ["not state.x == 3", true],
    ["state.x > 1 and state.name == \"Ada\" or false", true],
    ["false and true or true", true],
    ["false and (true or true)", false],
    // short-circuit: the right side is never evaluated (it would be a type error)
    ["false and 1 < \"a\"", false],
    ["true or 1 < \"a\"", true],
    ["state.missing and state.x < \"a\"", false],
    // in
    ["\"a\" in state.tags", true],
    ["1 in state.tags", true],
    ["\"1\" in state.tags", false],
    ["\"z\" not in state.tags", true],
    ["\"world\" in input.user_message", true],
    ["\"World\" in input.user_message", false],
    ["\"\" in \"\"", true],
    ["[1] in [[1], 2]", true],
    ["\"a\" in state.missing", false],
    ["\"a\" not in state.missing", true]
  ]

  it.each(table)("%s → %j", (text, expected) => {
    expect(value(text)).toEqual(expected)
  })

  it("reports type errors with the operator's position", () => {
    expect(error("state.name < 3").message).toBe(
      "cannot compare string with number using < (two numbers or two strings) at position 11"
    )
    expect(error("state.missing >= 1").message).toContain("cannot compare null with number")
    expect(error("[1] < [2]").message).toContain("cannot compare array with array")
    expect(error("1 and true").message).toContain("and needs true, false or null, not a number")
    expect(error("true and \"x\"").message).toContain("not a string")
    expect(error("not state.tags").message).toContain("not needs true, false or null, not a array")
    expect(error("1 in \"abc\"").message).toContain("in needs an array, or two strings")
    expect(error("\"a\" in state.a").message).toContain("in needs an array")
  })

  it("reads only own properties of plain JSON, whatever the scope holds", () => {
    const hostile = Object.create({ inherited: 1 }) as Record<string, unknown>
    hostile.own = 2
    const weird: Scope = {
      input: { inherited: hostile, date: new Date(0), fn: (() => 1) as unknown } as unknown as JsonValue,
      state: hostile as unknown as JsonValue
    }
    expect(value("state.inherited", weird)).toBe(null)
    expect(value("state.own", weird)).toBe(null) // not a plain object: nothing is read from it
    expect(value("input.date", weird)).toBe(null)
    expect(value("input.fn", weird)).toBe(null)
    const nullProto = Object.assign(Object.create(null), { k: "v" }) as JsonValue
    expect(value("state.k", { input: null, state: nullProto })).toBe("v")
    expect(value("input.x", { input: "text", state: null })).toBe(null)
  })
})

describe("renderTemplate", () => {
  const render = (text: string) => {
    const result = renderTemplate(text, scope)
    return Either.isRight(result) ? result.right : `ERROR: ${result.left.message}`
  }
  it("renders strings as is and other values as JSON", () => {
    expect(render("You are a helpful assistant.")).toBe("You are a helpful assistant.")
    expect(render("")).toBe("")
    expect(render("Hi {{ state.name }}!")).toBe("Hi Ada!")
    expect(render("{{state.x}}{{ state.x > 1 }}")).toBe("2true")
    expect(render("tags={{ state.tags }} a={{ state.a }} m={{ state.missing }}")).toBe(
      "tags=[\"a\",\"b\",1] a={\"b\":{\"c\":\"deep\"}} m=null"
    )
    expect(render("You said: {{ input.user_message }}")).toBe("You said: hello world")
    expect(render("a }} b { c")).toBe("a }} b { c")
  })
  it("refuses an unclosed {{ and a bad expression, with the position in the whole text", () => {
    expect(render("Hi {{ state.name")).toBe("ERROR: unclosed \"{{\" (expected \"}}\") at position 3")
    expect(render("Hi {{ }}")).toContain("empty expression at position 6")
    expect(render("ab {{ state.__proto__ }}")).toBe("ERROR: the property \"__proto__\" is not allowed at position 12")
    expect(render("{{ state.name < 1 }}")).toContain("cannot compare string with number")
  })
  it("never throws on random templates (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom("{{", "}}", " state.x ", "(")), {
          maxLength: 40
        }),
        (parts) => {
          expect(["Left", "Right"]).toContain(renderTemplate(parts.join(""), scope)._tag)
        }
      ),
      { numRuns: 1_000 }
    )
  })
})

describe("parseAssignmentTarget", () => {
  it("accepts paths under state only", () => {
    expect(parseAssignmentTarget("state.x")).toEqual(Either.right(["x"]))
    expect(parseAssignmentTarget("state.a[\"b c\"]")).toEqual(Either.right(["a", "b c"]))
    for (const bad of ["state", "input.x", "1", "state.x == 1", "state.__proto__"]) {
      expect(parseAssignmentTarget(bad)._tag, bad).toBe("Left")
    }
  })
})
