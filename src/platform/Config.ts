import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"

import { Config, ConfigError, ConfigProvider, Context, Data, Effect, Either, Layer, Option, Redacted } from "effect"

export type NodeEnv = "development" | "production" | "test"
export type LogFormat = "json" | "pretty"

/** The validated configuration of one process (API.md section 11). Secrets stay `Redacted`. */
export interface AppConfigShape {
  readonly nodeEnv: NodeEnv
  readonly port: number
  readonly host: string
  readonly databaseUrl: Option.Option<Redacted.Redacted>
  readonly databasePoolMax: number
  readonly databaseStatementTimeoutMs: number
  /** connection attempts at start before giving up (exponential backoff capped at 5 s) */
  readonly databaseConnectAttempts: number
  readonly dataDir: string
  readonly redisUrl: Option.Option<Redacted.Redacted>
  readonly authSecretKey: Redacted.Redacted
  /** true when no AUTH_SECRET_KEY was given and a random one was generated for this start */
  readonly authSecretKeyGenerated: boolean
  readonly appSettingsSecretKey: Option.Option<Redacted.Redacted>
  readonly accessTokenTtlMinutes: number
  readonly refreshTokenTtlDays: number
  readonly allowedOrigins: ReadonlyArray<string>
  /** number of reverse-proxy hops whose X-Forwarded-For entries are trusted (0 = use the socket address) */
  readonly trustProxyHops: number
  readonly adminEmail: Option.Option<string>
  readonly adminPassword: Option.Option<Redacted.Redacted>
  readonly llmProvider: "local" | "openai"
  readonly openaiApiKey: Option.Option<Redacted.Redacted>
  readonly openaiBaseUrl: string
  /** the resilience of every LLM call (API.md section 7): timeouts, retries, the breaker per provider */
  readonly llmFirstTokenTimeoutSeconds: number
  readonly llmTotalTimeoutSeconds: number
  readonly llmRetryAttempts: number
  readonly llmCircuitFailures: number
  readonly llmCircuitCooldownSeconds: number
  /** pause between the local model's words (0: as fast as it can), to watch a stream on a laptop */
  readonly localLlmDelayMs: number
  /** the nice value of the process's threads but the event loop's (ThreadPriority.ts); 0 leaves them be */
  readonly helperThreadsNice: number
  readonly embeddingsProvider: "local" | "openai"
  readonly logLevel: "trace" | "debug" | "info" | "warning" | "error" | "fatal" | "none"
  readonly logFormat: LogFormat
  readonly metricsToken: Option.Option<Redacted.Redacted>
  readonly otelExporterOtlpEndpoint: Option.Option<string>
  /** `off`: this server process runs no job consumers (`chatkit worker` processes do); needs REDIS_URL */
  readonly workerMode: "on" | "off"
  /** the largest document body the ingest endpoint accepts (API.md section 8: 10 MiB) */
  readonly vectorDocumentMaxBytes: number
  /** documents up to this size (their JSON) ingest inline (201); larger ones become a job (202) */
  readonly vectorInlineMaxBytes: number
  /** jobs one process runs at once */
  readonly jobConcurrency: number
  /** delay before a failed job's second attempt, doubling after (3 attempts in all) */
  readonly jobBackoffMs: number
  /** how long a BullMQ worker's lock on a running job lasts without renewal (a killed worker's job is retaken after it) */
  readonly jobLockDurationMs: number
  /** how often BullMQ workers look for jobs whose worker died (stalled) */
  readonly jobStalledIntervalMs: number
  /** finished jobs' records (`jobs` rows) are deleted once this many days old */
  readonly jobRetentionDays: number
  readonly migrateOnStart: boolean
  readonly shutdownGraceMs: number
  /** how long readiness answers 503 while the server still accepts, before it drains (load balancers take it out meanwhile) */
  readonly shutdownDelayMs: number
  readonly cacheTtlSeconds: number
  /** CACHE_DISABLED=true: every cache read goes to the source (benchmarks, debugging) */
  readonly cacheDisabled: boolean
  /** requests per minute per user on the authenticated API (API.md section 0) */
  readonly rateLimitApiPerMinute: number
  /** keeps this deployment's Redis keys apart when several deployments (or test files) share one Redis */
  readonly redisNamespace: Option.Option<string>
}

export class AppConfig extends Context.Tag("chatkit/AppConfig")<AppConfig, AppConfigShape>() {}

/** Every problem found in the environment, reported together before the server listens. */
export class InvalidConfig extends Data.TaggedError("InvalidConfig")<{ readonly problems: ReadonlyArray<string> }> {
  override get message() {
    return `Invalid configuration (${this.problems.length} problem${this.problems.length === 1 ? "" : "s"}):\n` +
      this.problems.map((p) => `  - ${p}`).join("\n")
  }
}

const DEV_ORIGINS = ["http://localhost:5173", "http://127.0.0.1:5173"]

const oneOf = <const A extends string>(name: string, values: ReadonlyArray<A>, fallback: A) =>
  Config.string(name).pipe(
    Config.withDefault(fallback),
    Config.map((s) => s.trim().toLowerCase()),
    Config.validate({
      message: `${name}: must be one of ${values.join(", ")}`,
      validation: (s): s is A => (values as ReadonlyArray<string>).includes(s)
    })
  ) as Config.Config<A>

const boundedInt = (name: string, fallback: number, min: number, max: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({
      message: `${name}: must be an integer between ${min} and ${max}`,
      validation: (n) => n >= min && n <= max
    })
  )

const positiveInt = (name: string, fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  boundedInt(name, fallback, 1, max)

const optionalSecret = (name: string) =>
  Config.option(Config.redacted(name)).pipe(
    Config.map(Option.filter((r) => Redacted.value(r).trim() !== ""))
  )

const optionalString = (name: string) =>
  Config.option(Config.string(name)).pipe(Config.map(Option.filter((s) => s.trim() !== "")))

const booleanFlag = (name: string, fallback: boolean) =>
  Config.string(name).pipe(
    Config.withDefault(String(fallback)),
    Config.map((s) => s.trim().toLowerCase()),
    Config.validate({
      message: `${name}: must be true or false`,
      validation: (s) => ["true", "false", "1", "0", "yes", "no"].includes(s)
    }),
    Config.map((s) => s === "true" || s === "1" || s === "yes")
  )

const trustProxy = Config.string("TRUST_PROXY").pipe(
  Config.withDefault("false"),
  Config.map((s) => s.trim().toLowerCase()),
  Config.validate({
    message: "TRUST_PROXY: must be true, false or a number of proxy hops (0-10)",
    validation: (s) => s === "true" || s === "false" || /^(?:[0-9]|10)$/.test(s)
  }),
  Config.map((s) => (s === "true" ? 1 : s === "false" ? 0 : Number(s)))
)

/** Parses every variable; errors of several variables accumulate into one ConfigError. */
const rawConfig = (nodeEnv: NodeEnv) => {
  const production = nodeEnv === "production"
  return Config.all({
    port: Config.port("PORT").pipe(Config.withDefault(8000)),
    host: Config.string("HOST").pipe(Config.withDefault(production ? "0.0.0.0" : "127.0.0.1")),
    databaseUrl: optionalSecret("DATABASE_URL"),
    databasePoolMax: positiveInt("DATABASE_POOL_MAX", 10, 1000),
    databaseStatementTimeoutMs: positiveInt("DATABASE_STATEMENT_TIMEOUT_MS", 10_000),
    databaseConnectAttempts: positiveInt("DATABASE_CONNECT_ATTEMPTS", 8, 100),
    dataDir: Config.string("CHATKIT_DATA_DIR").pipe(Config.withDefault("./.data")),
    redisUrl: optionalSecret("REDIS_URL"),
    authSecretKey: optionalSecret("AUTH_SECRET_KEY"),
    appSettingsSecretKey: optionalSecret("APP_SETTINGS_SECRET_KEY"),
    accessTokenTtlMinutes: positiveInt("ACCESS_TOKEN_TTL_MINUTES", 15, 24 * 60),
    refreshTokenTtlDays: positiveInt("REFRESH_TOKEN_TTL_DAYS", 7, 365),
    allowedOrigins: optionalString("ALLOWED_ORIGINS"),
    trustProxyHops: trustProxy,
    adminEmail: optionalString("ADMIN_EMAIL"),
    adminPassword: optionalSecret("ADMIN_PASSWORD"),
    llmProvider: oneOf("LLM_PROVIDER", ["local", "openai"], "local"),
    openaiApiKey: optionalSecret("OPENAI_API_KEY"),
    openaiBaseUrl: Config.string("OPENAI_BASE_URL").pipe(Config.withDefault("https://api.openai.com/v1")),
    llmFirstTokenTimeoutSeconds: positiveInt("LLM_FIRST_TOKEN_TIMEOUT_SECONDS", 30, 600),
    llmTotalTimeoutSeconds: positiveInt("LLM_TOTAL_TIMEOUT_SECONDS", 120, 3600),
    llmRetryAttempts: positiveInt("LLM_RETRY_ATTEMPTS", 3, 10),
    llmCircuitFailures: positiveInt("LLM_CIRCUIT_FAILURES", 5, 1000),
    llmCircuitCooldownSeconds: positiveInt("LLM_CIRCUIT_COOLDOWN_SECONDS", 30, 3600),
    localLlmDelayMs: boundedInt("LOCAL_LLM_DELAY_MS", 0, 0, 10_000),
    // 19, the lowest priority: the event loop's thread wins the cores (ThreadPriority.ts)
    helperThreadsNice: boundedInt("HELPER_THREADS_NICE", 19, 0, 19),
    embeddingsProvider: oneOf("EMBEDDINGS_PROVIDER", ["local", "openai"], "local"),
    logLevel: oneOf("LOG_LEVEL", ["trace", "debug", "info", "warning", "error", "fatal", "none"], "info"),
    logFormat: oneOf("LOG_FORMAT", ["json", "pretty"], "json"),
    metricsToken: optionalSecret("METRICS_TOKEN"),
    otelExporterOtlpEndpoint: optionalString("OTEL_EXPORTER_OTLP_ENDPOINT"),
    workerMode: oneOf("WORKER_MODE", ["on", "off"], "on"),
    vectorDocumentMaxBytes: boundedInt("VECTOR_DOCUMENT_MAX_BYTES", 10 * 1024 * 1024, 1024, 100 * 1024 * 1024),
    vectorInlineMaxBytes: boundedInt("VECTOR_INLINE_MAX_BYTES", 64 * 1024, 0, 100 * 1024 * 1024),
    jobConcurrency: positiveInt("JOB_CONCURRENCY", 2, 100),
    jobBackoffMs: boundedInt("JOB_BACKOFF_MS", 1_000, 10, 600_000),
    jobLockDurationMs: boundedInt("JOB_LOCK_DURATION_MS", 30_000, 500, 600_000),
    jobStalledIntervalMs: boundedInt("JOB_STALLED_INTERVAL_MS", 30_000, 500, 600_000),
    jobRetentionDays: positiveInt("JOB_RETENTION_DAYS", 30, 3_650),
    migrateOnStart: booleanFlag("MIGRATE_ON_START", !production),
    shutdownGraceMs: positiveInt("SHUTDOWN_GRACE_MS", 10_000, 600_000),
    shutdownDelayMs: boundedInt("SHUTDOWN_DELAY_MS", production ? 5_000 : 0, 0, 600_000),
    cacheTtlSeconds: positiveInt("CACHE_TTL_SECONDS", 300, 86_400),
    cacheDisabled: booleanFlag("CACHE_DISABLED", false),
    rateLimitApiPerMinute: positiveInt("RATE_LIMIT_API_PER_MINUTE", 300, 10_000_000),
    redisNamespace: optionalString("REDIS_NAMESPACE").pipe(
      Config.validate({
        message: "REDIS_NAMESPACE: must be 1-64 of [A-Za-z0-9_.-]",
        validation: Option.match({ onNone: () => true, onSome: (s) => /^[A-Za-z0-9_.-]{1,64}$/.test(s) })
      })
    )
  })
}

/** The inputs of the cross-variable rules: plain optional strings, so they always parse. */
const ruleInputs = Config.all({
  databaseUrl: optionalSecret("DATABASE_URL"),
  redisUrl: optionalSecret("REDIS_URL"),
  authSecretKey: optionalSecret("AUTH_SECRET_KEY"),
  allowedOrigins: optionalString("ALLOWED_ORIGINS"),
  llmProvider: optionalString("LLM_PROVIDER"),
  embeddingsProvider: optionalString("EMBEDDINGS_PROVIDER"),
  openaiApiKey: optionalSecret("OPENAI_API_KEY"),
  workerMode: optionalString("WORKER_MODE")
})

/** Rules that need several variables at once; never echoes a secret's value. */
const crossChecks = (nodeEnv: NodeEnv, raw: Config.Config.Success<typeof ruleInputs>): Array<string> => {
  const problems: Array<string> = []
  const production = nodeEnv === "production"
  const secretLength = Option.map(raw.authSecretKey, (k) => Redacted.value(k).length)
  if (Option.isSome(secretLength) && secretLength.value < 32) {
    problems.push(`AUTH_SECRET_KEY: is ${secretLength.value} characters long; expected at least 32`)
  }
  if (production) {
    if (Option.isNone(raw.databaseUrl)) {
      problems.push("DATABASE_URL: is required in production (the embedded database is for development only)")
    }
    if (Option.isNone(raw.redisUrl)) {
      problems.push("REDIS_URL: is required in production (limits and cache must be shared by every instance)")
    }
    if (Option.isNone(raw.authSecretKey)) {
      problems.push("AUTH_SECRET_KEY: is required in production; expected at least 32 characters")
    }
    const origins = Option.getOrElse(raw.allowedOrigins, () => "")
    if (origins.trim() === "" || origins.split(",").some((o) => o.trim() === "*")) {
      problems.push("ALLOWED_ORIGINS: must list the allowed origins in production (empty or * is refused)")
    }
  }
  for (const origin of Option.match(raw.allowedOrigins, { onNone: () => [], onSome: splitList })) {
    if (origin !== "*" && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      problems.push(`ALLOWED_ORIGINS: "${origin}" is not an origin; expected scheme://host[:port]`)
    }
  }
  if (Option.contains(raw.llmProvider, "openai") && Option.isNone(raw.openaiApiKey)) {
    problems.push("OPENAI_API_KEY: is required when LLM_PROVIDER=openai")
  }
  if (Option.contains(raw.embeddingsProvider, "openai") && Option.isNone(raw.openaiApiKey)) {
    problems.push("OPENAI_API_KEY: is required when EMBEDDINGS_PROVIDER=openai")
  }
  if (Option.exists(raw.workerMode, (mode) => mode.trim().toLowerCase() === "off") && Option.isNone(raw.redisUrl)) {
    problems.push(
      "WORKER_MODE: off needs REDIS_URL (without Redis, jobs run in this process only, so it must consume them)"
    )
  }
  return problems
}

const splitList = (s: string) => s.split(",").map((o) => o.trim()).filter((o) => o !== "")

/** Validation messages already start with the variable's name (Config.validate drops the path). */
const describeProblem = (
  path: ReadonlyArray<string>,
  message: string
) => [path.length === 0 ? message : `${path.join(".")}: ${message}`]

const describeConfigError = (error: ConfigError.ConfigError): Array<string> =>
  ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, left: Array<string>, right: Array<string>) => [...left, ...right],
    orCase: (_, left: Array<string>, right: Array<string>) => [...left, ...right],
    invalidDataCase: (_, path, message) => describeProblem(path, message),
    missingDataCase: (_, path, message) => describeProblem(path, message),
    sourceUnavailableCase: (_, path, message) => describeProblem(path, message),
    unsupportedCase: (_, path, message) => describeProblem(path, message)
  })

/**
 * Reads the configuration from `provider`, applying every rule, and fails with all problems at once.
 */
export const loadConfig = (provider: ConfigProvider.ConfigProvider): Effect.Effect<AppConfigShape, InvalidConfig> =>
  Effect.gen(function*() {
    const problems: Array<string> = []
    const env = yield* Effect.either(oneOf("NODE_ENV", ["development", "production", "test"], "development"))
    if (Either.isLeft(env)) problems.push(...describeConfigError(env.left))
    const nodeEnv: NodeEnv = Either.getOrElse(env, () => "production" as const)
    const raw = yield* Effect.either(rawConfig(nodeEnv))
    if (Either.isLeft(raw)) problems.push(...describeConfigError(raw.left))
    problems.push(...crossChecks(nodeEnv, yield* Effect.orDie(ruleInputs)))
    if (Either.isRight(raw) && raw.right.vectorInlineMaxBytes > raw.right.vectorDocumentMaxBytes) {
      problems.push(
        `VECTOR_INLINE_MAX_BYTES: is ${raw.right.vectorInlineMaxBytes}, above VECTOR_DOCUMENT_MAX_BYTES ` +
          `(${raw.right.vectorDocumentMaxBytes}); expected at most the document limit`
      )
    }
    if (Either.isLeft(raw) || problems.length > 0) return yield* new InvalidConfig({ problems })
    const { allowedOrigins, authSecretKey, ...rest } = raw.right
    return {
      ...rest,
      nodeEnv,
      allowedOrigins: Option.match(allowedOrigins, { onNone: () => DEV_ORIGINS, onSome: splitList }),
      authSecretKey: Option.getOrElse(authSecretKey, () => Redacted.make(randomBytes(48).toString("base64url"))),
      authSecretKeyGenerated: Option.isNone(authSecretKey)
    }
  }).pipe(Effect.withConfigProvider(provider))

/** The variables of API.md section 11; each may instead be read from the file named by `NAME_FILE`. */
export const CONFIG_VARIABLES = [
  "NODE_ENV",
  "PORT",
  "HOST",
  "DATABASE_URL",
  "DATABASE_POOL_MAX",
  "DATABASE_STATEMENT_TIMEOUT_MS",
  "DATABASE_CONNECT_ATTEMPTS",
  "CHATKIT_DATA_DIR",
  "REDIS_URL",
  "REDIS_NAMESPACE",
  "AUTH_SECRET_KEY",
  "APP_SETTINGS_SECRET_KEY",
  "ACCESS_TOKEN_TTL_MINUTES",
  "REFRESH_TOKEN_TTL_DAYS",
  "ALLOWED_ORIGINS",
  "TRUST_PROXY",
  "ADMIN_EMAIL",
  "ADMIN_PASSWORD",
  "LLM_PROVIDER",
  "OPENAI_API_KEY",
  "OPENAI_BASE_URL",
  "LLM_FIRST_TOKEN_TIMEOUT_SECONDS",
  "LLM_TOTAL_TIMEOUT_SECONDS",
  "LLM_RETRY_ATTEMPTS",
  "LLM_CIRCUIT_FAILURES",
  "LLM_CIRCUIT_COOLDOWN_SECONDS",
  "LOCAL_LLM_DELAY_MS",
  "HELPER_THREADS_NICE",
  "EMBEDDINGS_PROVIDER",
  "LOG_LEVEL",
  "LOG_FORMAT",
  "METRICS_TOKEN",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "WORKER_MODE",
  "VECTOR_DOCUMENT_MAX_BYTES",
  "VECTOR_INLINE_MAX_BYTES",
  "JOB_CONCURRENCY",
  "JOB_BACKOFF_MS",
  "JOB_LOCK_DURATION_MS",
  "JOB_STALLED_INTERVAL_MS",
  "JOB_RETENTION_DAYS",
  "MIGRATE_ON_START",
  "SHUTDOWN_GRACE_MS",
  "SHUTDOWN_DELAY_MS",
  "CACHE_TTL_SECONDS",
  "CACHE_DISABLED",
  "RATE_LIMIT_API_PER_MINUTE"
] as const

/**
 * The configuration variables of `env`, with `NAME_FILE` resolved: the file's content (one
 * trailing newline removed) becomes `NAME`. An unreadable file is reported like any other problem.
 */
export const resolveFileVariables = (env: Record<string, string | undefined>) => {
  const values = new Map<string, string>()
  const problems: Array<string> = []
  for (const name of CONFIG_VARIABLES) {
    const path = env[`${name}_FILE`]
    const value = env[name]
    if (path !== undefined && path !== "") {
      try {
        values.set(name, readFileSync(path, "utf8").replace(/\r?\n$/, ""))
      } catch {
        problems.push(`${name}_FILE: cannot read the file named by this variable`)
      }
    } else if (value !== undefined) {
      values.set(name, value)
    }
  }
  return { values, problems }
}

/** Loads the configuration from an environment object (process.env in production). */
export const loadConfigFromEnv = (env: Record<string, string | undefined>) => {
  const { problems, values } = resolveFileVariables(env)
  return loadConfig(ConfigProvider.fromMap(values)).pipe(
    Effect.catchAll((e) => Effect.fail(new InvalidConfig({ problems: [...problems, ...e.problems] }))),
    Effect.filterOrFail(() => problems.length === 0, () => new InvalidConfig({ problems }))
  )
}

export const AppConfigLive = Layer.effect(AppConfig, loadConfigFromEnv(process.env))

/** A configuration for tests: the embedded defaults of the `test` environment plus `overrides`. */
export const testConfig = (overrides: Record<string, string> = {}) =>
  Layer.effect(
    AppConfig,
    loadConfigFromEnv({ NODE_ENV: "test", AUTH_SECRET_KEY: "test-secret-key-0123456789-abcdefghijkl", ...overrides })
      .pipe(Effect.orDie)
  )
