import { HttpClient, type HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Stream } from "effect"
import fc from "fast-check"

import type { LlmError } from "../src/platform/LlmProvider.js"
import { makeOpenAiLlm, parseSseData, SseDataParser } from "../src/platform/OpenAiLlm.js"
import { deltaStream } from "./support/llm.js"

/**
 * The chunk-level SSE parser (one stateful stage per stream, not an Effect stage per line): any
 * cut of a body gives the events of the whole body, which are those of a plain reading of the
 * server-sent events format (lines end with LF, CRLF or CR; `data` lines of one event joined with
 * LF; comments and other fields skipped; the last event dispatched without its blank line).
 */

const encoder = new TextEncoder()

/** The format read the plain way: the whole text, split with a regular expression. */
const reference = (text: string): Array<string> => {
  const events: Array<string> = []
  let data: string | undefined
  for (const line of [...text.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/), ""]) {
    if (line === "") {
      if (data !== undefined) events.push(data)
      data = undefined
      continue
    }
    if (line.startsWith(":")) continue
    const colon = line.indexOf(":")
    if ((colon === -1 ? line : line.slice(0, colon)) !== "data") continue
    const raw = colon === -1 ? "" : line.slice(colon + 1)
    const value = raw.startsWith(" ") ? raw.slice(1) : raw
    data = data === undefined ? value : `${data}\n${value}`
  }
  return events
}

/** The bytes cut at `cuts` (positions, any order, duplicates allowed). */
const cut = (bytes: Uint8Array, cuts: ReadonlyArray<number>) => {
  const points = [...new Set([0, ...cuts.map((c) => Math.min(c, bytes.length)), bytes.length])].sort((a, b) => a - b)
  return points.slice(1).map((end, i) => bytes.subarray(points[i]!, end))
}

const parsePieces = (pieces: ReadonlyArray<Uint8Array>) => {
  const parser = new SseDataParser()
  const out: Array<string> = []
  for (const piece of pieces) parser.push(piece, out)
  parser.end(out)
  return out
}

const newline = fc.constantFrom("\n", "\r\n", "\r")
const value = fc.constantFrom("", "x", " y", "  two spaces", "é🌍", "日本語", "a:b", "{\"k\":\"v\"}", "[DONE]", "✓ ok")
/** A line of an SSE body: data (with or without colon or space), a comment, another field, or blank. */
const line = fc.oneof(
  value.map((v) => `data: ${v}`),
  value.map((v) => `data:${v}`),
  fc.constant("data"),
  value.map((v) => `: ${v}`),
  value.map((v) => `event: ${v}`),
  value.map((v) => `id:${v}`),
  fc.constant("datax: no"),
  fc.constant("")
)
const body = fc.array(fc.tuple(line, newline), { maxLength: 25 }).chain((lines) =>
  fc.boolean().map((unterminated) => {
    const text = lines.map(([l, nl]) => l + nl).join("")
    return unterminated ? `${text}data: last` : text
  })
)

describe("SSE parsing by chunk", () => {
  it("any cut of any body gives the events of the plain reading", () => {
    fc.assert(
      fc.property(body, fc.array(fc.nat({ max: 2000 }), { maxLength: 40 }), (text, cuts) => {
        const bytes = encoder.encode(text)
        const expected = reference(text)
        expect(parsePieces([bytes])).toEqual(expected)
        expect(parsePieces(cut(bytes, cuts))).toEqual(expected)
        // one byte at a time: every multi-byte character and every CRLF is split
        expect(parsePieces(cut(bytes, Array.from({ length: bytes.length }, (_, i) => i)))).toEqual(expected)
      }),
      { numRuns: 400 }
    )
  })

  it("CR, LF and CRLF end lines, a CRLF cut between pieces is one break, the last event needs no blank line", () => {
    expect(parsePieces([encoder.encode("data: a\r"), encoder.encode("\ndata: b\r\n\r\n")])).toEqual(["a\nb"])
    expect(parsePieces([encoder.encode("data: a\r"), encoder.encode("\r"), encoder.encode("data: b")])).toEqual([
      "a",
      "b"
    ])
    expect(parsePieces([encoder.encode("data: a\rdata: b\r\rdata:  c\n\ndata\n\n: c\n\n")])).toEqual([
      "a\nb",
      " c",
      ""
    ])
    // a multi-byte character cut anywhere
    const bytes = encoder.encode("data: 🌍\n\n")
    for (let i = 1; i < bytes.length; i++) {
      expect(parsePieces([bytes.subarray(0, i), bytes.subarray(i)])).toEqual(["🌍"])
    }
  })

  it.effect("parseSseData over a stream of pieces gives the same events", () =>
    Effect.sync(() => {
      fc.assert(
        fc.property(body, fc.array(fc.nat({ max: 2000 }), { maxLength: 20 }), (text, cuts) => {
          const pieces = cut(encoder.encode(text), cuts)
          const events = Effect.runSync(Stream.runCollect(parseSseData(Stream.fromIterable(pieces))))
          expect(Chunk.toReadonlyArray(events)).toEqual(reference(text))
        }),
        { numRuns: 200 }
      )
    }))
})

// --- the provider over a body cut anywhere ------------------------------------------------------

const chunkEvent = (content: string) =>
  `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`

/** A provider whose every answer is `text`, delivered in `pieces` (one stream chunk per piece). */
const providerOver = (text: string, cuts: ReadonlyArray<number>, grouped: boolean) => {
  const pieces = cut(encoder.encode(text), cuts)
  const client = HttpClient.make((request) =>
    Effect.succeed(
      {
        status: 200,
        headers: {},
        request,
        // grouped: several pieces in one chunk, as a Node stream read can give them
        stream: grouped ? Stream.fromChunks(Chunk.unsafeFromArray(pieces)) : Stream.fromIterable(pieces)
      } as unknown as HttpClientResponse.HttpClientResponse
    )
  )
  return makeOpenAiLlm({ baseUrl: "http://provider.invalid/v1" }).pipe(
    Effect.provideService(HttpClient.HttpClient, client)
  )
}

const answer = (text: string, cuts: ReadonlyArray<number>, grouped: boolean) =>
  Effect.gen(function*() {
    const llm = yield* providerOver(text, cuts, grouped)
    const delivered: Array<string> = []
    const result = yield* Stream.runForEach(
      deltaStream(llm, { model: "m", messages: [{ role: "user", content: "hi" }] }),
      (delta) => Effect.sync(() => delivered.push(delta))
    ).pipe(Effect.either)
    return { delivered, reason: Either.isLeft(result) ? (result.left as LlmError).reason : undefined }
  })

const tokens = fc.array(fc.constantFrom("Hél", "lo", " 🌍", " 日本語", "\n", "✓", "done."), {
  minLength: 1,
  maxLength: 12
})

describe("the OpenAI-compatible provider, bytes cut anywhere", () => {
  it.effect("the same deltas and the same end whatever the cuts: [DONE] (rest ignored), an unreadable event, no [DONE]", () =>
    Effect.gen(function*() {
      const ending = fc.constantFrom(
        { tail: "data: [DONE]\n\ndata: {\"after\": true}\n\n", reason: undefined, extra: [] as Array<string> },
        { tail: "data: {not json\n\n" + chunkEvent("never"), reason: "malformed", extra: [] },
        { tail: "data: {\"error\":{\"message\":\"overloaded\"}}\n\n", reason: "http", extra: [] },
        { tail: chunkEvent("last"), reason: "connection", extra: ["last"] }
      )
      // run as a server runs it (the call's steps go on in microtasks, its drain has a timer), not synchronously
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            tokens,
            ending,
            fc.array(fc.nat({ max: 3000 }), { maxLength: 30 }),
            fc.boolean(),
            async (ts, end, cuts, grouped) => {
              const text = ts.map(chunkEvent).join("") + end.tail
              const { delivered, reason } = await Effect.runPromise(answer(text, cuts, grouped))
              expect(delivered).toEqual([...ts, ...end.extra])
              expect(reason).toBe(end.reason)
            }
          ),
          { numRuns: 200 }
        )
      )
    }))
})
