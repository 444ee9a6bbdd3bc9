import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"

import { testConfig } from "../src/platform/Config.js"
import { HelperThreadsLowered, lowerHelperThreads } from "../src/platform/ThreadPriority.js"
import { threadNices } from "./support/process.js"

/** Builds the layer as the server does, with HELPER_THREADS_NICE set to `nice`. */
const buildWith = (nice: string) =>
  Effect.runPromise(
    Layer.build(HelperThreadsLowered).pipe(
      Effect.provide(testConfig({ HELPER_THREADS_NICE: nice })),
      Effect.scoped
    )
  )

// Lowers this file's own process's threads: vitest runs each file in a fork of its own.
describe.runIf(process.platform === "linux")("the helper threads' priority", () => {
  it("HELPER_THREADS_NICE=0 leaves every thread as it is", async () => {
    const before = threadNices(process.pid)
    await buildWith("0")
    expect(threadNices(process.pid)).toEqual(before)
  })

  it("lowers every thread of the process but the event loop's to the nice value, and counts them", async () => {
    await buildWith("7")
    const { loop, others } = threadNices(process.pid)
    expect(loop).toBe(0)
    expect(others.length).toBeGreaterThan(0)
    expect(others).toEqual(others.map(() => 7))
    expect(lowerHelperThreads(19)).toBe(threadNices(process.pid).others.length)
    expect(threadNices(process.pid).others).toEqual(others.map(() => 19))
  })
})
