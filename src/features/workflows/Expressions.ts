import { Data, Either } from "effect"

/**
 * The safe expression evaluator of workflow graphs (API.md section 6). A small tokenizer and a
 * recursive-descent parser with a depth counter; never `eval` or `Function`, and no access to
 * JavaScript objects: an expression reads JSON values under two roots only, `input` and `state`.
 *
 * Grammar (lowest precedence first):
 *
 *     or      := and (("or" | "||") and)*
 *     and     := not (("and" | "&&") not)*
 *     not     := ("not" | "!") not | compare
 *     compare := primary (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") primary)?
 *     primary := literal | "-" number | "[" (or ("," or)*)? "]" | "(" or ")" | path
 *     literal := number | string | "true" | "false" | "null"
 *     path    := ("input" | "state") ("." name | "[" string "]" | "[" integer "]")*
 *
 * - Strings are single- or double-quoted, with the JSON escapes (`\n`, `\t`, `\uXXXX`, ...) and `\'`.
 * - Comparisons do not chain (`a < b < c` is an error: write `a < b and b < c`).
 * - A path root other than `input` / `state`, or a segment `constructor`, `__proto__`, `prototype`,
 *   is refused when parsing. Bracket keys are literals only (no computed lookups).
 * - Bounds: an expression is at most 1,000 characters and nests at most 32 levels (parentheses,
 *   arrays, `not`), so hostile input is a clear error, never a stack overflow.
 *
 * Evaluation (values are JSON values only):
 * - A path reads own properties of plain objects (`Object.hasOwn`) and integer indexes of arrays;
 *   anything missing (or a lookup into a string, number, ...) is `null`.
 * - `==` / `!=` are strict, deep JSON equality (`1 == "1"` is false).
 * - `<`, `<=`, `>`, `>=` compare two numbers or two strings (by UTF-16 code units); other operands
 *   are an error.
 * - `and`, `or`, `not` take booleans, `null` (a missing path) counting as false; they short-circuit
 *   (`false and X` never evaluates X) and give a boolean. Other operand types are an error.
 * - `x in array`: some item equals x; `s in string`: s (a string) is a substring; `x in null` is
 *   false (a missing list contains nothing); any other right operand is an error.
 *
 * Templates (`agent.parameters.instructions`, `assistant_message.parameters.text`): text with
 * `{{ expression }}` parts; each part ends at the first `}}` (so `}}` cannot appear inside one), an
 * unclosed `{{` is an error. Values are rendered as strings as is, anything else as JSON.
 *
 * Which node parameters are expressions (checked by `validateGraph` when a graph is saved):
 * - every edge `condition` (usually a literal such as `"true"`, `"false"` or `"approved"`): the
 *   runtime takes the edge whose condition value equals the value of the condition node's
 *   `parameters.expression`, and the edge with a null condition otherwise;
 * - `condition` node `parameters.expression`;
 * - `state` node `parameters.assignments`: an object `{ "state.x": "<expression>", ... }`, each key a
 *   path rooted at `state` with at least one segment, each value an expression (applied in order);
 * - templates: `agent.parameters.instructions`, `assistant_message.parameters.text`.
 */

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | ReadonlyArray<JsonValue>
  | { readonly [key: string]: JsonValue }

export interface Scope {
  readonly input: JsonValue
  readonly state: JsonValue
}

export const MAX_EXPRESSION_LENGTH = 1_000
export const MAX_EXPRESSION_DEPTH = 32
export const ROOTS = ["input", "state"] as const
export const FORBIDDEN_SEGMENTS = ["constructor", "__proto__", "prototype"] as const

/** A problem of an expression: its message states the problem and the position (from 0), never more than a token. */
export class ExpressionError extends Data.TaggedError("ExpressionError")<{
  readonly message: string
  readonly position: number
}> {}

export type CompareOp = "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in"

export type Expression =
  | { readonly _tag: "Literal"; readonly position: number; readonly value: JsonValue }
  | { readonly _tag: "List"; readonly position: number; readonly items: ReadonlyArray<Expression> }
  | {
    readonly _tag: "Path"
    readonly position: number
    readonly root: (typeof ROOTS)[number]
    readonly segments: ReadonlyArray<string | number>
  }
  | { readonly _tag: "Not"; readonly position: number; readonly operand: Expression }
  | {
    readonly _tag: "Logical"
    readonly position: number
    readonly op: "and" | "or"
    readonly left: Expression
    readonly right: Expression
  }
  | {
    readonly _tag: "Compare"
    readonly position: number
    readonly op: CompareOp
    readonly left: Expression
    readonly right: Expression
  }

const TOKEN_ECHO = 20

/** A token as a message may show it: at most 20 characters, JSON-quoted (so control characters are escaped). */
const shown = (text: string) => JSON.stringify(text.length > TOKEN_ECHO ? `${text.slice(0, TOKEN_ECHO)}…` : text)

const fail = (message: string, position: number) =>
  new ExpressionError({ message: `${message} at position ${position}`, position })

// ---------------------------------------------------------------------------------------------
// Tokenizer

type Token =
  | { readonly kind: "number"; readonly value: number; readonly text: string; readonly pos: number }
  | { readonly kind: "string"; readonly value: string; readonly text: string; readonly pos: number }
  | { readonly kind: "name"; readonly text: string; readonly pos: number }
  | { readonly kind: "punct"; readonly text: string; readonly pos: number }
  | { readonly kind: "end"; readonly text: string; readonly pos: number }

const PUNCT = ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ",", ".", "-"]
const ESCAPES: Record<string, string> = {
  "\"": "\"",
  "'": "'",
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t"
}
const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9"
const isNameStart = (c: string | undefined) => c !== undefined && /[A-Za-z_$]/.test(c)
const isNamePart = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_$]/.test(c)

const tokenize = (text: string, base: number): Either.Either<Array<Token>, ExpressionError> => {
  const tokens: Array<Token> = []
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    const pos = base + i
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++
      continue
    }
    if (isDigit(c)) {
      const match = /^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(i))
      const numberText = match?.[0] ?? c
      const value = Number(numberText)
      if (isNamePart(text[i + numberText.length]) || !Number.isFinite(value)) {
        const bad = /^[A-Za-z0-9_$.]+/.exec(text.slice(i))?.[0] ?? numberText
        return Either.left(fail(`invalid number ${shown(bad)}`, pos))
      }
      tokens.push({ kind: "number", value, text: numberText, pos })
      i += numberText.length
      continue
    }
    if (c === "\"" || c === "'") {
      let value = ""
      let j = i + 1
      let closed = false
      while (j < text.length) {
        const d = text[j]!
        if (d === c) {
          closed = true
          j++
          break
        }
        if (d === "\\") {
          const e = text[j + 1]
          if (e === "u") {
            const hex = text.slice(j + 2, j + 6)
            if (!/^[0-9A-Fa-f]{4}$/.test(hex)) return Either.left(fail("invalid \\u escape in a string", base + j))
            value += String.fromCharCode(parseInt(hex, 16))
            j += 6
            continue
          }
          const escaped = e === undefined ? undefined : ESCAPES[e]
          if (escaped === undefined) {
            return Either.left(fail(`invalid escape ${shown(`\\${e ?? ""}`)} in a string`, base + j))
          }
          value += escaped
          j += 2
          continue
        }
        value += d
        j++
      }
      if (!closed) return Either.left(fail("unterminated string", pos))
      tokens.push({ kind: "string", value, text: text.slice(i, j), pos })
      i = j
      continue
    }
    if (isNameStart(c)) {
      let j = i + 1
      while (isNamePart(text[j])) j++
      tokens.push({ kind: "name", text: text.slice(i, j), pos })
      i = j
      continue
    }
    const punct = PUNCT.find((p) => text.startsWith(p, i))
    if (punct !== undefined) {
      tokens.push({ kind: "punct", text: punct, pos })
      i += punct.length
      continue
    }
    if (c === "=") return Either.left(fail("unexpected \"=\" (use == to compare)", pos))
    // a whole code point, so a surrogate pair is never split in the message
    const cp = String.fromCodePoint(text.codePointAt(i)!)
    return Either.left(fail(`unexpected character ${shown(cp)}`, pos))
  }
  tokens.push({ kind: "end", text: "", pos: base + text.length })
  return Either.right(tokens)
}

// ---------------------------------------------------------------------------------------------
// Parser

const KEYWORDS = new Set(["true", "false", "null", "and", "or", "not", "in"])

class Parser {
  private index = 0
  private depth = 0
  constructor(private readonly tokens: ReadonlyArray<Token>) {}

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.index + offset, this.tokens.length - 1)]!
  }
  private next(): Token {
    const token = this.peek()
    if (this.index < this.tokens.length - 1) this.index++
    return token
  }
  private is(text: string, offset = 0): boolean {
    const token = this.peek(offset)
    return (token.kind === "punct" || token.kind === "name") && token.text === text
  }
  private unexpected(token: Token, expected?: string): ExpressionError {
    const what = token.kind === "end" ? "unexpected end of expression" : `unexpected ${shown(token.text)}`
    return fail(expected === undefined ? what : `${what} (expected ${expected})`, token.pos)
  }
  private enter(token: Token): void {
    if (++this.depth > MAX_EXPRESSION_DEPTH) {
      throw fail(`nesting deeper than ${MAX_EXPRESSION_DEPTH} levels`, token.pos)
    }
  }

  parseAll(): Expression {
    if (this.peek().kind === "end") throw fail("empty expression", this.peek().pos)
    const expr = this.parseOr()
    const rest = this.peek()
    if (rest.kind !== "end") throw this.unexpected(rest, "an operator or the end of the expression")
    return expr
  }

  private parseOr(): Expression {
    let left = this.parseAnd()
    while (this.is("or") || this.is("||")) {
      const op = this.next()
      left = { _tag: "Logical", position: op.pos, op: "or", left, right: this.parseAnd() }
    }
    return left
  }

  private parseAnd(): Expression {
    let left = this.parseNot()
    while (this.is("and") || this.is("&&")) {
      const op = this.next()
      left = { _tag: "Logical", position: op.pos, op: "and", left, right: this.parseNot() }
    }
    return left
  }

  private parseNot(): Expression {
    if (this.is("not") || this.is("!")) {
      const op = this.next()
      this.enter(op)
      const operand = this.parseNot()
      this.depth--
      return { _tag: "Not", position: op.pos, operand }
    }
    return this.parseCompare()
  }

  private compareOp(): { readonly op: CompareOp; readonly size: number } | undefined {
    const token = this.peek()
    if (token.kind === "punct" && ["==", "!=", "<", "<=", ">", ">="].includes(token.text)) {
      return { op: token.text as CompareOp, size: 1 }
    }
    if (this.is("in")) return { op: "in", size: 1 }
    if (this.is("not") && this.is("in", 1)) return { op: "not in", size: 2 }
    return undefined
  }

  private parseCompare(): Expression {
    const left = this.parsePrimary()
    const found = this.compareOp()
    if (found === undefined) return left
    const opToken = this.peek()
    for (let k = 0; k < found.size; k++) this.next()
    const right = this.parsePrimary()
    if (this.compareOp() !== undefined) {
      throw fail("comparisons cannot be chained (use and)", this.peek().pos)
    }
    return { _tag: "Compare", position: opToken.pos, op: found.op, left, right }
  }

  private parsePrimary(): Expression {
    const token = this.next()
    switch (token.kind) {
      case "number":
      case "string":
        return { _tag: "Literal", position: token.pos, value: token.value }
      case "end":
        throw this.unexpected(token, "a value")
      case "punct": {
        if (token.text === "-") {
          const number = this.next()
          if (number.kind !== "number") throw this.unexpected(number, "a number after -")
          return { _tag: "Literal", position: token.pos, value: -number.value }
        }
        if (token.text === "(") {
          this.enter(token)
          const inner = this.parseOr()
          const close = this.next()
          if (!(close.kind === "punct" && close.text === ")")) throw this.unexpected(close, "\")\"")
          this.depth--
          return inner
        }
        if (token.text === "[") {
          this.enter(token)
          const items: Array<Expression> = []
          if (!this.is("]")) {
            for (;;) {
              items.push(this.parseOr())
              if (!this.is(",")) break
              this.next()
            }
          }
          const close = this.next()
          if (!(close.kind === "punct" && close.text === "]")) throw this.unexpected(close, "\",\" or \"]\"")
          this.depth--
          return { _tag: "List", position: token.pos, items }
        }
        throw this.unexpected(token, "a value")
      }
      case "name": {
        switch (token.text) {
          case "true":
            return { _tag: "Literal", position: token.pos, value: true }
          case "false":
            return { _tag: "Literal", position: token.pos, value: false }
          case "null":
            return { _tag: "Literal", position: token.pos, value: null }
        }
        if (KEYWORDS.has(token.text)) throw this.unexpected(token, "a value")
        if (token.text !== "input" && token.text !== "state") {
          throw fail(`unknown name ${shown(token.text)}: expressions read only input.* and state.*`, token.pos)
        }
        return this.parsePath(token.text, token.pos)
      }
    }
  }

  private parsePath(root: "input" | "state", position: number): Expression {
    const segments: Array<string | number> = []
    const checked = (segment: string, pos: number) => {
      if ((FORBIDDEN_SEGMENTS as ReadonlyArray<string>).includes(segment)) {
        throw fail(`the property ${shown(segment)} is not allowed`, pos)
      }
      return segment
    }
    for (;;) {
      if (this.is(".")) {
        this.next()
        const name = this.next()
        if (name.kind !== "name") throw this.unexpected(name, "a property name after \".\"")
        segments.push(checked(name.text, name.pos))
      } else if (this.is("[")) {
        this.next()
        const key = this.next()
        if (key.kind === "string") segments.push(checked(key.value, key.pos))
        else if (key.kind === "number" && Number.isSafeInteger(key.value)) segments.push(key.value)
        else throw this.unexpected(key, "a string or an integer index in [ ]")
        const close = this.next()
        if (!(close.kind === "punct" && close.text === "]")) throw this.unexpected(close, "\"]\"")
      } else {
        return { _tag: "Path", position, root, segments }
      }
    }
  }
}

const parseAt = (text: string, base: number): Either.Either<Expression, ExpressionError> => {
  if (text.length > MAX_EXPRESSION_LENGTH) {
    return Either.left(
      fail(`an expression is at most ${MAX_EXPRESSION_LENGTH} characters (got ${text.length})`, base)
    )
  }
  return Either.flatMap(tokenize(text, base), (tokens) => {
    try {
      return Either.right(new Parser(tokens).parseAll())
    } catch (error) {
      if (error instanceof ExpressionError) return Either.left(error)
      throw error
    }
  })
}

/** Parses an expression; every problem (syntax, bounds, a refused name) is a Left, never a throw. */
export const parseExpression = (text: string): Either.Either<Expression, ExpressionError> => parseAt(text, 0)

// ---------------------------------------------------------------------------------------------
// Evaluation

const isPlainObject = (value: unknown): value is { readonly [key: string]: JsonValue } => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** A JSON value, or null for anything else (undefined, functions, class instances). */
const asJson = (value: unknown): JsonValue => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value
    case "number":
      return Number.isFinite(value) ? value : null
    case "object":
      return value === null || Array.isArray(value) || isPlainObject(value) ? (value as JsonValue) : null
    default:
      return null
  }
}

const lookup = (scope: Scope, root: "input" | "state", segments: ReadonlyArray<string | number>): JsonValue => {
  let current: JsonValue = asJson(root === "input" ? scope.input : scope.state)
  for (const segment of segments) {
    if (Array.isArray(current)) {
      const index = typeof segment === "number" ? segment : /^(?:0|[1-9][0-9]*)$/.test(segment) ? Number(segment) : -1
      current = index >= 0 && index < current.length ? asJson(current[index]) : null
    } else if (isPlainObject(current)) {
      const key = String(segment)
      current = Object.hasOwn(current, key) ? asJson(current[key]) : null
    } else {
      return null
    }
  }
  return current
}

/** Strict, deep JSON equality; iterative, whatever the depth of the values. */
export const jsonEquals = (a: JsonValue, b: JsonValue): boolean => {
  const stack: Array<readonly [JsonValue, JsonValue]> = [[a, b]]
  while (stack.length > 0) {
    const [x, y] = stack.pop()!
    if (x === y) continue
    if (typeof x !== "object" || typeof y !== "object" || x === null || y === null) return false
    if (Array.isArray(x) || Array.isArray(y)) {
      if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false
      for (let i = 0; i < x.length; i++) stack.push([x[i], y[i]])
      continue
    }
    const ox = x as { readonly [key: string]: JsonValue }
    const oy = y as { readonly [key: string]: JsonValue }
    const keys = Object.keys(ox)
    if (keys.length !== Object.keys(oy).length) return false
    for (const key of keys) {
      if (!Object.hasOwn(oy, key)) return false
      stack.push([ox[key]!, oy[key]!])
    }
  }
  return true
}

const typeName = (value: JsonValue) =>
  value === null ? "null" : Array.isArray(value) ? "array" : typeof value === "object" ? "object" : typeof value

const truth = (value: JsonValue, op: string, position: number): boolean => {
  if (value === null) return false
  if (typeof value === "boolean") return value
  throw fail(`${op} needs true, false or null, not a ${typeName(value)}`, position)
}

const evaluateNode = (expr: Expression, scope: Scope): JsonValue => {
  switch (expr._tag) {
    case "Literal":
      return expr.value
    case "List":
      return expr.items.map((item) => evaluateNode(item, scope))
    case "Path":
      return lookup(scope, expr.root, expr.segments)
    case "Not":
      return !truth(evaluateNode(expr.operand, scope), "not", expr.position)
    case "Logical": {
      const left = truth(evaluateNode(expr.left, scope), expr.op, expr.position)
      if (expr.op === "and" ? !left : left) return left
      return truth(evaluateNode(expr.right, scope), expr.op, expr.position)
    }
    case "Compare": {
      const left = evaluateNode(expr.left, scope)
      const right = evaluateNode(expr.right, scope)
      switch (expr.op) {
        case "==":
          return jsonEquals(left, right)
        case "!=":
          return !jsonEquals(left, right)
        case "in":
        case "not in": {
          let found: boolean
          if (right === null) found = false
          else if (Array.isArray(right)) found = right.some((item) => jsonEquals(left, item))
          else if (typeof right === "string" && typeof left === "string") found = right.includes(left)
          else {
            throw fail(
              `${expr.op} needs an array, or two strings, on its right (got ${typeName(left)} ${expr.op} ${
                typeName(right)
              })`,
              expr.position
            )
          }
          return expr.op === "in" ? found : !found
        }
        default: {
          const bothNumbers = typeof left === "number" && typeof right === "number"
          const bothStrings = typeof left === "string" && typeof right === "string"
          if (!bothNumbers && !bothStrings) {
            throw fail(
              `cannot compare ${typeName(left)} with ${typeName(right)} using ${expr.op} (two numbers or two strings)`,
              expr.position
            )
          }
          const l = left as number | string
          const r = right as number | string
          return expr.op === "<" ? l < r : expr.op === "<=" ? l <= r : expr.op === ">" ? l > r : l >= r
        }
      }
    }
  }
}

/** Evaluates a parsed expression against `input` and `state`; a type error is a Left, never a throw. */
export const evaluate = (expr: Expression, scope: Scope): Either.Either<JsonValue, ExpressionError> => {
  try {
    return Either.right(evaluateNode(expr, scope))
  } catch (error) {
    if (error instanceof ExpressionError) return Either.left(error)
    throw error
  }
}

/** Parses then evaluates. */
export const evaluateText = (text: string, scope: Scope): Either.Either<JsonValue, ExpressionError> =>
  Either.flatMap(parseExpression(text), (expr) => evaluate(expr, scope))

// ---------------------------------------------------------------------------------------------
// Templates

export type TemplatePart = string | Expression

/** Splits a template into text and parsed `{{ }}` parts; positions in errors are offsets into the whole text. */
export const parseTemplate = (text: string): Either.Either<ReadonlyArray<TemplatePart>, ExpressionError> => {
  const parts: Array<TemplatePart> = []
  let i = 0
  while (i < text.length) {
    const open = text.indexOf("{{", i)
    if (open < 0) {
      parts.push(text.slice(i))
      break
    }
    if (open > i) parts.push(text.slice(i, open))
    const close = text.indexOf("}}", open + 2)
    if (close < 0) return Either.left(fail("unclosed \"{{\" (expected \"}}\")", open))
    const parsed = parseAt(text.slice(open + 2, close), open + 2)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    parts.push(parsed.right)
    i = close + 2
  }
  return Either.right(parts)
}

/** A value as a template shows it: strings as is, anything else as JSON. */
export const stringify = (value: JsonValue): string => typeof value === "string" ? value : JSON.stringify(value)

/** Renders `{{ expression }}` parts of `text` against the scope. */
export const renderTemplate = (text: string, scope: Scope): Either.Either<string, ExpressionError> =>
  Either.flatMap(parseTemplate(text), (parts) => {
    let out = ""
    for (const part of parts) {
      if (typeof part === "string") {
        out += part
        continue
      }
      const value = evaluate(part, scope)
      if (Either.isLeft(value)) return Either.left(value.left)
      out += stringify(value.right)
    }
    return Either.right(out)
  })

/** A `state` assignment target (`state.x`, `state.a.b`, `state["k"]`): its segments, or the problem. */
export const parseAssignmentTarget = (
  text: string
): Either.Either<ReadonlyArray<string | number>, ExpressionError> =>
  Either.flatMap(
    parseExpression(text),
    (expr) =>
      expr._tag === "Path" && expr.root === "state" && expr.segments.length > 0
        ? Either.right(expr.segments)
        : Either.left(fail("an assignment target must be a path under state (state.x)", 0))
  )
