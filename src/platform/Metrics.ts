import { Metric, MetricBoundaries, MetricKey, type MetricKeyType, MetricLabel } from "effect"

/** The metrics every part of the platform updates; exported at /metrics in Prometheus text. */

/**
 * The metric of `key` for each set of label values, built once and kept: a tagged Metric rebuilds
 * and hashes its key on every update. For label values from a bounded set (routes, statuses, cache names).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as Effect's own signatures: a key type's input is invariant
export const labelled = <Type extends MetricKeyType.MetricKeyType<any, any>>(key: MetricKey.MetricKey<Type>) => {
  type Labelled = Metric.Metric<
    Type,
    MetricKeyType.MetricKeyType.InType<Type>,
    MetricKeyType.MetricKeyType.OutType<Type>
  >
  const built = new Map<string, Labelled>()
  return (labels: Readonly<Record<string, string>>): Labelled => {
    const id = Object.entries(labels).map(([name, value]) => `${name}=${value}`).join("\u0000")
    const known = built.get(id)
    if (known !== undefined) return known
    const metric: Labelled = Metric.fromMetricKey(
      MetricKey.taggedWithLabels(key, Object.entries(labels).map(([name, value]) => MetricLabel.make(name, value)))
    )
    built.set(id, metric)
    return metric
  }
}

export const httpRequestsTotalKey = MetricKey.counter("http_requests_total", {
  description: "HTTP requests served, by method, route template and status",
  incremental: true
})
export const httpRequestsTotal = Metric.fromMetricKey(httpRequestsTotalKey)

export const httpRequestDurationSecondsKey = MetricKey.histogram(
  "http_request_duration_seconds",
  MetricBoundaries.fromIterable([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
  "HTTP request duration in seconds, by method and route template"
)
export const httpRequestDurationSeconds = Metric.fromMetricKey(httpRequestDurationSecondsKey)

export const dbQueriesTotal = Metric.counter("db_queries_total", {
  description: "SQL statements sent to the database",
  incremental: true
})

export const cacheRequestsTotalKey = MetricKey.counter("cache_requests_total", {
  description: "Cache lookups, by cache name and result (hit|miss)",
  incremental: true
})
export const cacheRequestsTotal = Metric.fromMetricKey(cacheRequestsTotalKey)

export const cacheErrorsTotal = Metric.counter("cache_errors_total", {
  description: "Cache operations that failed and fell back to the source of truth",
  incremental: true
})

export const rateLimitRejectionsTotal = Metric.counter("rate_limit_rejections_total", {
  description: "Requests refused with 429, by limit (the rate-limit rule's name)",
  incremental: true
})

export const circuitBreakerState = Metric.gauge("circuit_breaker_state", {
  description:
    "Circuit breaker state by provider: 0 closed, 1 half-open (cool-down over, until the trial's result), 2 open"
})

export const llmRequestsTotal = Metric.counter("llm_requests_total", {
  description:
    "LLM calls, by provider, model and outcome (ok, the error reason http|connection|timeout|malformed|circuit_open, cancelled when the reader stopped, defect)",
  incremental: true
})

export const llmTimeToFirstTokenSeconds = Metric.histogram(
  "llm_time_to_first_token_seconds",
  MetricBoundaries.fromIterable([0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30]),
  "Seconds from the start of an LLM call (retries included) to its first text delta, by provider and model"
)

export const gcDurationSecondsKey = MetricKey.histogram(
  "nodejs_gc_duration_seconds",
  MetricBoundaries.fromIterable([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1]),
  "Garbage collection pauses of the main thread in seconds, by kind (minor, major, incremental, weakcb)"
)

export const llmTokensTotal = Metric.counter("llm_tokens_total", {
  description: "Tokens the LLM providers reported, by provider, model and kind (prompt|completion)",
  incremental: true
})

export const embeddingsRequestsTotal = Metric.counter("embeddings_requests_total", {
  description:
    "Embeddings calls (one embed of any number of texts, batches and retries inside), by provider and outcome (ok, the error reason http|connection|timeout|malformed|dimension|circuit_open, cancelled, defect)",
  incremental: true
})

export const embeddingsInputsTotal = Metric.counter("embeddings_inputs_total", {
  description: "Texts embedded by calls that succeeded, by provider",
  incremental: true
})
