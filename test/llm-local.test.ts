import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Stream, TestClock } from "effect"
import fc from "fast-check"

import { complete, localAnswer, makeLocalLlm, wordDeltas } from "../src/platform/LlmProvider.js"
import { deltaStream } from "./support/llm.js"

const conversation = (said: string) => ({
  model: "local",
  messages: [
    { role: "system" as const, content: "You are a helpful assistant." },
    { role: "user" as const, content: said }
  ]
})

describe("the local model", () => {
  it.effect("streams, word by word, the same answer for the same conversation, quoting the user", () =>
    Effect.gen(function*() {
      const llm = makeLocalLlm()
      const deltas = Chunk.toReadonlyArray(
        yield* Stream.runCollect(deltaStream(llm, conversation("Hello there, model")))
      )
      expect(deltas.length).toBeGreaterThan(10)
      expect(deltas.join("")).toBe(localAnswer(conversation("Hello there, model")))
      expect(deltas.join("")).toContain("\"Hello there, model\"")
      expect(yield* complete(llm, conversation("Hello there, model"))).toBe(deltas.join(""))
    }))

  it("splits any text into deltas that concatenate back to it exactly", () => {
    fc.assert(fc.property(fc.string({ unit: "binary" }), (text) => wordDeltas(text).join("") === text), {
      numRuns: 500
    })
  })

  it.effect("waits the configured delay between words, and stops when the reader stops", () =>
    Effect.gen(function*() {
      const llm = makeLocalLlm({ delay: "20 millis" })
      const fiber = yield* Effect.fork(
        Stream.runCollect(Stream.take(deltaStream(llm, conversation("one two three")), 3))
      )
      yield* TestClock.adjust("40 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("20 millis")
      expect(Chunk.size(yield* Fiber.join(fiber))).toBe(3)
    }))
})
