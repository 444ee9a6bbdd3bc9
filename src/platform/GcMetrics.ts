import { constants, PerformanceObserver } from "node:perf_hooks"

import { Effect, Layer } from "effect"

import { gcDurationSecondsKey, labelled } from "./Metrics.js"

const KINDS = new Map([
  [constants.NODE_PERFORMANCE_GC_MINOR, "minor"],
  [constants.NODE_PERFORMANCE_GC_MAJOR, "major"],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, "incremental"],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, "weakcb"]
])

const gcDuration = labelled(gcDurationSecondsKey)

/**
 * Every garbage collection pause of this thread goes to `nodejs_gc_duration_seconds` by kind, for
 * the life of the layer: a pause holds up every request and every token of a streamed answer.
 * (V8 reports them after the fact, in batches, so observing costs the pauses nothing.)
 */
export const GcMetricsLive: Layer.Layer<never> = Layer.scopedDiscard(
  Effect.acquireRelease(
    Effect.sync(() => {
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          const kind = KINDS.get((entry as { readonly detail?: { readonly kind?: number } }).detail?.kind ?? -1) ??
            "other"
          gcDuration({ kind }).unsafeUpdate(entry.duration / 1000, [])
        }
      })
      observer.observe({ entryTypes: ["gc"] })
      return observer
    }),
    (observer) => Effect.sync(() => observer.disconnect())
  )
)
