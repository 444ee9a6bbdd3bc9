import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"

import { GcMetricsLive } from "../src/platform/GcMetrics.js"
import { prometheusText } from "../src/platform/Prometheus.js"

/* nodejs_gc_duration_seconds: the main thread's GC pauses by kind, while GcMetricsLive runs. */

/** Enough short-lived garbage for several young-generation collections (kept a moment, so not optimized away). */
const makeGarbage = () => {
  const recent: Array<unknown> = new Array(1_000)
  for (let i = 0; i < 1_000_000; i++) recent[i % 1_000] = { i, text: `item ${i}` }
  return recent.length
}

/** V8 reports pauses in batches after them: a turn of the timers lets the observer see them. */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))

const minorCount = Effect.map(prometheusText, (text) => {
  const line = text.split("\n").find((l) => l.startsWith("nodejs_gc_duration_seconds_count{kind=\"minor\"}"))
  return line === undefined ? 0 : Number(line.split(" ").at(-1))
})

describe("GC metrics", () => {
  it.effect("count the pauses while the layer runs, and none after it is released", () =>
    Effect.gen(function*() {
      const before = yield* minorCount
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.buildWithScope(GcMetricsLive, yield* Effect.scope)
        makeGarbage()
        yield* settle
      }))
      const during = yield* minorCount
      expect(during).toBeGreaterThan(before)
      const text = yield* prometheusText
      expect(text).toContain("# TYPE nodejs_gc_duration_seconds histogram")
      expect(text).toMatch(/^nodejs_gc_duration_seconds_sum\{kind="minor"\} \d/m)

      makeGarbage()
      yield* settle
      expect(yield* minorCount).toBe(during)
    }))
})
