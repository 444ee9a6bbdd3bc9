import { readdirSync } from "node:fs"
import { setPriority } from "node:os"

import { Effect, Layer } from "effect"

import { AppConfig } from "./Config.js"

/**
 * The event loop's thread first. It relays every token of every streamed answer as it comes; the
 * process's other threads (V8's compiler and garbage-collector helpers, libuv's pool, which also
 * hashes passwords, the embedded database's thread) do work that can wait a few milliseconds. At
 * the same priority, while the cores were busy, a token waited behind their time slices: in 3 s of
 * the chat bench (50 streams on 2 cores, `perf sched`) the event loop was preempted for 345 ms,
 * 197 ms of it by this process's own threads; at nice 19, 47 ms.
 */

/**
 * Sets every thread of this process but the event loop's to `nice`, and gives how many. Linux
 * only (there a thread id names one thread to `setpriority`; elsewhere nothing is done); a thread
 * that ended meanwhile is skipped. Raising a nice value needs no privilege. Threads started later
 * inherit their creator's priority.
 */
export const lowerHelperThreads = (nice: number): number => {
  if (process.platform !== "linux") return 0
  let lowered = 0
  for (const entry of readdirSync("/proc/self/task")) {
    const tid = Number(entry)
    if (tid === process.pid) continue
    try {
      setPriority(tid, nice)
      lowered++
    } catch {
      // the thread ended between the listing and now
    }
  }
  return lowered
}

/**
 * Lowers the helper threads once the server is built (the embedded database's thread and libuv's
 * pool exist by then); HELPER_THREADS_NICE=0 leaves them as they are.
 */
export const HelperThreadsLowered = Layer.effectDiscard(
  Effect.flatMap(AppConfig, ({ helperThreadsNice }) =>
    helperThreadsNice === 0
      ? Effect.void
      : Effect.flatMap(
        Effect.sync(() => lowerHelperThreads(helperThreadsNice)),
        (lowered) => Effect.logDebug(`${lowered} helper threads lowered to nice ${helperThreadsNice}`)
      ))
)
