import type { IntervalHistogram } from "node:perf_hooks"
import { monitorEventLoopDelay, performance } from "node:perf_hooks"

import type { MetricPair } from "effect"
import { Effect, Metric, MetricKeyType, MetricState, Option } from "effect"

/** The Effect metrics of the process (see Metrics.ts) plus process metrics, as Prometheus text for /metrics. */

//
// Rendered from `Metric.unsafeSnapshot()` rather than through NodeSdk's PrometheusExporter +
// PrometheusSerializer. That path was tried (exporter-prometheus 0.223, one sdk-metrics 2.12.1)
// and its output is not what /metrics promises: every family gets a `# UNIT name 1` line and an
// `otel_scope_name` label, a `target_info` family is added, Effect summaries become a
// `<name>_quantiles` gauge with quantile="min"/"max" samples plus `<name>_count_total` and
// `<name>_sum_total` counters instead of a Prometheus summary, and it needs a running layer for a
// value that is a pure read of the process-wide registry.

type PrometheusType = "counter" | "gauge" | "histogram" | "summary"

interface Sample {
  readonly suffix: string
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly value: number | bigint
}

interface Family {
  readonly name: string
  readonly help: string | undefined
  readonly type: PrometheusType
  readonly samples: Array<Sample>
}

const sanitizeName = (name: string) => {
  const clean = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[0-9]/.test(clean) ? `_${clean}` : clean
}
const sanitizeLabelName = (name: string) => {
  const clean = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[0-9]/.test(clean) ? `_${clean}` : clean
}
const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const escapeLabelValue = (text: string) => text.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const formatValue = (value: number | bigint) => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Infinity) return "+Inf"
  if (value === -Infinity) return "-Inf"
  return String(value)
}
const formatBound = (bound: number) => (bound === Infinity ? "+Inf" : String(bound))

const renderFamily = (family: Family): string => {
  let out = family.help === undefined ? "" : `# HELP ${family.name} ${escapeHelp(family.help)}\n`
  out += `# TYPE ${family.name} ${family.type}\n`
  for (const sample of family.samples) {
    const labels = sample.labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")
    out += `${family.name}${sample.suffix}${labels === "" ? "" : `{${labels}}`} ${formatValue(sample.value)}\n`
  }
  return out
}

const sortedLabels = (pair: MetricPair.MetricPair.Untyped, reserved: string) => {
  const byName = new Map<string, string>()
  for (const label of pair.metricKey.tags) {
    const name = sanitizeLabelName(label.key)
    if (name !== reserved) byName.set(name, label.value)
  }
  return Array.from(byName).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

const familyType = (pair: MetricPair.MetricPair.Untyped): PrometheusType => {
  const keyType: unknown = pair.metricKey.keyType
  if (MetricKeyType.isHistogramKey(keyType)) return "histogram"
  if (MetricKeyType.isSummaryKey(keyType)) return "summary"
  if (MetricKeyType.isFrequencyKey(keyType)) return "counter"
  if (MetricKeyType.isCounterKey(keyType)) return keyType.incremental ? "counter" : "gauge"
  return "gauge"
}

const samplesOf = (pair: MetricPair.MetricPair.Untyped): Array<Sample> => {
  const state: unknown = pair.metricState
  if (MetricState.isCounterState(state)) return [{ suffix: "", labels: sortedLabels(pair, ""), value: state.count }]
  if (MetricState.isGaugeState(state)) return [{ suffix: "", labels: sortedLabels(pair, ""), value: state.value }]
  if (MetricState.isFrequencyState(state)) {
    const labels = sortedLabels(pair, "key")
    return Array.from(state.occurrences, ([key, count]) => ({
      suffix: "",
      labels: [...labels, ["key", key] as const],
      value: count
    }))
  }
  if (MetricState.isHistogramState(state)) {
    const labels = sortedLabels(pair, "le")
    // Effect's buckets are already cumulative and end with +Inf (MetricBoundaries appends it).
    const buckets: Array<Sample> = state.buckets
      .filter(([bound]) => bound !== Infinity)
      .map(([bound, count]) => ({
        suffix: "_bucket",
        labels: [...labels, ["le", formatBound(bound)] as const],
        value: count
      }))
    buckets.push({ suffix: "_bucket", labels: [...labels, ["le", "+Inf"] as const], value: state.count })
    return [
      ...buckets,
      { suffix: "_sum", labels, value: state.sum },
      { suffix: "_count", labels, value: state.count }
    ]
  }
  if (MetricState.isSummaryState(state)) {
    const labels = sortedLabels(pair, "quantile")
    return [
      ...state.quantiles.map(([q, value]) => ({
        suffix: "",
        labels: [...labels, ["quantile", String(q)] as const],
        value: Option.getOrElse(value, () => NaN)
      })),
      { suffix: "_sum", labels, value: state.sum },
      { suffix: "_count", labels, value: state.count }
    ]
  }
  return []
}

const effectFamilies = (): Array<Family> => {
  const families = new Map<string, Family>()
  for (const pair of Metric.unsafeSnapshot()) {
    const name = sanitizeName(pair.metricKey.name)
    const type = familyType(pair)
    const existing = families.get(name)
    // One family per name; a second metric reusing a name with another type cannot be expressed.
    if (existing !== undefined && existing.type !== type) continue
    const family = existing ?? { name, help: Option.getOrUndefined(pair.metricKey.description), type, samples: [] }
    family.samples.push(...samplesOf(pair))
    families.set(name, family)
  }
  return Array.from(families.values())
}

// --- process metrics, read at scrape time ---

const ELD_RESOLUTION_MS = 10
let eventLoopDelay: IntervalHistogram | undefined
let lastEventLoopLagSeconds = 0
const processStartTimeSeconds = performance.timeOrigin / 1000

/** Mean event-loop lag since the previous scrape (the monitor's samples include its own period). */
const eventLoopLagSeconds = () => {
  if (eventLoopDelay === undefined) {
    eventLoopDelay = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS })
    eventLoopDelay.enable()
  }
  if (eventLoopDelay.count > 0) {
    lastEventLoopLagSeconds = Math.max(0, eventLoopDelay.mean / 1e6 - ELD_RESOLUTION_MS) / 1000
    eventLoopDelay.reset()
  }
  return lastEventLoopLagSeconds
}

const gauge = (name: string, help: string, value: number): Family => ({
  name,
  help,
  type: "gauge",
  samples: [{ suffix: "", labels: [], value }]
})

const processFamilies = (): Array<Family> => {
  const cpu = process.cpuUsage()
  const memory = process.memoryUsage()
  return [
    {
      name: "process_cpu_user_seconds_total",
      help: "User CPU time spent in seconds",
      type: "counter",
      samples: [{ suffix: "", labels: [], value: cpu.user / 1e6 }]
    },
    {
      name: "process_cpu_system_seconds_total",
      help: "System CPU time spent in seconds",
      type: "counter",
      samples: [{ suffix: "", labels: [], value: cpu.system / 1e6 }]
    },
    gauge("process_resident_memory_bytes", "Resident memory size in bytes", memory.rss),
    gauge("process_heap_bytes", "V8 heap in use in bytes", memory.heapUsed),
    gauge(
      "process_start_time_seconds",
      "Start time of the process since the Unix epoch in seconds",
      processStartTimeSeconds
    ),
    gauge("process_uptime_seconds", "Time since the process started in seconds", process.uptime()),
    gauge(
      "nodejs_eventloop_lag_seconds",
      "Mean event loop lag since the previous scrape in seconds",
      eventLoopLagSeconds()
    )
  ]
}

/** Every Effect metric of the process plus process metrics, in Prometheus text format 0.0.4. */
export const renderPrometheusText = (): string => {
  const processMetrics = processFamilies()
  const reserved = new Set(processMetrics.map((f) => f.name))
  const families = effectFamilies()
    .filter((f) => !reserved.has(f.name) && f.samples.length > 0)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return [...families, ...processMetrics].map(renderFamily).join("")
}

export const prometheusText: Effect.Effect<string> = Effect.sync(renderPrometheusText)
