import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Redacted } from "effect"

import { InvalidConfig, loadConfigFromEnv } from "../src/platform/Config.js"

const problemsOf = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(loadConfigFromEnv(env))
    if (Exit.isSuccess(exit)) return []
    const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    expect(error).toBeInstanceOf(InvalidConfig)
    return [...(error as InvalidConfig).problems]
  })

const PRODUCTION_SECRET = "prod-secret-value-that-must-never-be-printed-0123"

describe("configuration", () => {
  it.effect("runs on embedded defaults in development, with a generated secret and the dev origins", () =>
    Effect.gen(function*() {
      const config = yield* loadConfigFromEnv({})
      expect(config.nodeEnv).toBe("development")
      expect(config.port).toBe(8000)
      expect(config.host).toBe("127.0.0.1")
      expect(Option.isNone(config.databaseUrl)).toBe(true)
      expect(config.dataDir).toBe("./.data")
      expect(config.databasePoolMax).toBe(10)
      expect(config.databaseStatementTimeoutMs).toBe(10_000)
      expect(config.authSecretKeyGenerated).toBe(true)
      expect(Redacted.value(config.authSecretKey).length).toBeGreaterThanOrEqual(32)
      expect(config.allowedOrigins).toEqual(["http://localhost:5173", "http://127.0.0.1:5173"])
      expect(config.migrateOnStart).toBe(true)
      expect(config.shutdownGraceMs).toBe(10_000)
      expect(config.shutdownDelayMs).toBe(0)
    }))

  it.effect("gives LLM calls the documented timeouts, retries and breaker unless told otherwise, within bounds", () =>
    Effect.gen(function*() {
      const defaults = yield* loadConfigFromEnv({})
      expect(defaults).toMatchObject({
        llmFirstTokenTimeoutSeconds: 30,
        llmTotalTimeoutSeconds: 120,
        llmRetryAttempts: 3,
        llmCircuitFailures: 5,
        llmCircuitCooldownSeconds: 30,
        localLlmDelayMs: 0
      })
      const tuned = yield* loadConfigFromEnv({
        LLM_FIRST_TOKEN_TIMEOUT_SECONDS: "2",
        LLM_RETRY_ATTEMPTS: "1",
        LLM_CIRCUIT_COOLDOWN_SECONDS: "1",
        LOCAL_LLM_DELAY_MS: "40"
      })
      expect(tuned).toMatchObject({
        llmFirstTokenTimeoutSeconds: 2,
        llmRetryAttempts: 1,
        llmCircuitCooldownSeconds: 1,
        localLlmDelayMs: 40
      })
      const problems = yield* problemsOf({
        LLM_RETRY_ATTEMPTS: "0",
        LOCAL_LLM_DELAY_MS: "-5",
        LLM_CIRCUIT_FAILURES: "x"
      })
      expect(problems.join("\n")).toContain("LLM_RETRY_ATTEMPTS: must be an integer between 1 and 10")
      expect(problems.join("\n")).toContain("LOCAL_LLM_DELAY_MS: must be an integer between 0 and 10000")
      expect(problems.join("\n")).toMatch(/LLM_CIRCUIT_FAILURES/)
      expect(problems).toHaveLength(3)
    }))

  it.effect("keeps accepting for SHUTDOWN_DELAY_MS after a SIGTERM: 5 s in production, none elsewhere, within bounds", () =>
    Effect.gen(function*() {
      expect((yield* loadConfigFromEnv({ NODE_ENV: "test" })).shutdownDelayMs).toBe(0)
      expect((yield* loadConfigFromEnv({ SHUTDOWN_DELAY_MS: "1500" })).shutdownDelayMs).toBe(1_500)
      expect(yield* problemsOf({ SHUTDOWN_DELAY_MS: "-1" })).toEqual([
        "SHUTDOWN_DELAY_MS: must be an integer between 0 and 600000"
      ])
    }))

  it.effect("runs the helper threads at nice 19 unless HELPER_THREADS_NICE says otherwise (0 leaves them be), within 0-19", () =>
    Effect.gen(function*() {
      expect((yield* loadConfigFromEnv({})).helperThreadsNice).toBe(19)
      expect((yield* loadConfigFromEnv({ HELPER_THREADS_NICE: "0" })).helperThreadsNice).toBe(0)
      expect(yield* problemsOf({ HELPER_THREADS_NICE: "20" })).toEqual([
        "HELPER_THREADS_NICE: must be an integer between 0 and 19"
      ])
    }))

  it.effect("reports every problem at once, naming each variable and what is expected", () =>
    Effect.gen(function*() {
      const problems = yield* problemsOf({
        PORT: "eighty",
        DATABASE_POOL_MAX: "0",
        LOG_LEVEL: "loud",
        AUTH_SECRET_KEY: "short",
        ALLOWED_ORIGINS: "not an origin"
      })
      expect(problems.join("\n")).toMatch(/PORT/)
      expect(problems.join("\n")).toMatch(/DATABASE_POOL_MAX: must be an integer between 1 and 1000/)
      expect(problems.join("\n")).toMatch(/LOG_LEVEL: must be one of trace, debug, info/)
      expect(problems.join("\n")).toContain("AUTH_SECRET_KEY: is 5 characters long; expected at least 32")
      expect(problems.join("\n")).toContain(`ALLOWED_ORIGINS: "not an origin" is not an origin`)
      expect(problems).toHaveLength(5)
    }))

  it.effect("lists rule violations of several variables together", () =>
    Effect.gen(function*() {
      const problems = yield* problemsOf({
        AUTH_SECRET_KEY: "short",
        ALLOWED_ORIGINS: "not an origin",
        LLM_PROVIDER: "openai"
      })
      expect(problems).toHaveLength(3)
      expect(problems.join("\n")).toContain("AUTH_SECRET_KEY: is 5 characters long; expected at least 32")
      expect(yield* problemsOf({ EMBEDDINGS_PROVIDER: "openai" })).toEqual([
        "OPENAI_API_KEY: is required when EMBEDDINGS_PROVIDER=openai"
      ])
      expect(problems.join("\n")).toContain("ALLOWED_ORIGINS")
      expect(problems.join("\n")).toContain("OPENAI_API_KEY")
    }))

  it.effect("refuses production on the embedded defaults and insecure settings, all in one message", () =>
    Effect.gen(function*() {
      const problems = yield* problemsOf({ NODE_ENV: "production", ALLOWED_ORIGINS: "*" })
      const text = problems.join("\n")
      expect(text).toContain("DATABASE_URL: is required in production")
      expect(text).toContain("REDIS_URL: is required in production")
      expect(text).toContain("AUTH_SECRET_KEY: is required in production")
      expect(text).toContain("ALLOWED_ORIGINS: must list the allowed origins in production")
      const empty = yield* problemsOf({
        NODE_ENV: "production",
        DATABASE_URL: "postgres://db/x",
        REDIS_URL: "redis://cache",
        AUTH_SECRET_KEY: PRODUCTION_SECRET
      })
      expect(empty).toEqual(["ALLOWED_ORIGINS: must list the allowed origins in production (empty or * is refused)"])
    }))

  it.effect("never prints a secret's value, even when it is wrong", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        loadConfigFromEnv({
          NODE_ENV: "production",
          AUTH_SECRET_KEY: "tiny-secret-xyz",
          DATABASE_URL: "postgres://user:hunter2@db/x"
        })
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const text = JSON.stringify(exit)
      expect(text).not.toContain("tiny-secret-xyz")
      expect(text).not.toContain("hunter2")
    }))

  it.effect("accepts a complete production configuration with production defaults", () =>
    Effect.gen(function*() {
      const config = yield* loadConfigFromEnv({
        NODE_ENV: "production",
        DATABASE_URL: "postgres://db/x",
        REDIS_URL: "redis://cache",
        AUTH_SECRET_KEY: PRODUCTION_SECRET,
        ALLOWED_ORIGINS: "https://chat.example.com, https://admin.example.com"
      })
      expect(config.host).toBe("0.0.0.0")
      expect(config.migrateOnStart).toBe(false)
      expect(config.shutdownDelayMs).toBe(5_000)
      expect(config.logFormat).toBe("json")
      expect(config.allowedOrigins).toEqual(["https://chat.example.com", "https://admin.example.com"])
      expect(String(config.authSecretKey)).not.toContain(PRODUCTION_SECRET)
    }))

  it.effect("reads NAME_FILE variables and reports unreadable files", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "chatkit-config-"))
      writeFileSync(join(dir, "secret"), `${PRODUCTION_SECRET}\n`)
      const config = yield* loadConfigFromEnv({ AUTH_SECRET_KEY_FILE: join(dir, "secret") })
      expect(Redacted.value(config.authSecretKey)).toBe(PRODUCTION_SECRET)
      expect(config.authSecretKeyGenerated).toBe(false)
      const problems = yield* problemsOf({ DATABASE_URL_FILE: join(dir, "missing") })
      expect(problems).toEqual(["DATABASE_URL_FILE: cannot read the file named by this variable"])
    }))

  it.effect("ignores unrelated *_FILE variables of the environment", () =>
    Effect.gen(function*() {
      const config = yield* loadConfigFromEnv({ SOME_TOOL_CONFIG_FILE: "/does/not/exist" })
      expect(config.nodeEnv).toBe("development")
    }))
  it.effect("runs job consumers and sizes vector documents as documented unless told otherwise, within bounds", () =>
    Effect.gen(function*() {
      const defaults = yield* loadConfigFromEnv({})
      expect(defaults).toMatchObject({
        workerMode: "on",
        vectorDocumentMaxBytes: 10_485_760,
        vectorInlineMaxBytes: 65_536,
        jobConcurrency: 2,
        jobBackoffMs: 1_000,
        jobLockDurationMs: 30_000,
        jobStalledIntervalMs: 30_000,
        jobRetentionDays: 30
      })
      const tuned = yield* loadConfigFromEnv({
        WORKER_MODE: "OFF",
        REDIS_URL: "redis://cache",
        VECTOR_DOCUMENT_MAX_BYTES: "2048",
        VECTOR_INLINE_MAX_BYTES: "0",
        JOB_LOCK_DURATION_MS: "1000",
        JOB_STALLED_INTERVAL_MS: "500",
        JOB_RETENTION_DAYS: "7"
      })
      expect(tuned).toMatchObject({
        workerMode: "off",
        vectorDocumentMaxBytes: 2048,
        vectorInlineMaxBytes: 0,
        jobLockDurationMs: 1000,
        jobStalledIntervalMs: 500,
        jobRetentionDays: 7
      })
      const problems = yield* problemsOf({
        WORKER_MODE: "sometimes",
        VECTOR_DOCUMENT_MAX_BYTES: "10",
        VECTOR_INLINE_MAX_BYTES: "-1",
        JOB_LOCK_DURATION_MS: "0",
        JOB_RETENTION_DAYS: "0"
      })
      const text = problems.join("\n")
      expect(text).toContain("WORKER_MODE: must be one of on, off")
      expect(text).toContain("VECTOR_DOCUMENT_MAX_BYTES: must be an integer between 1024 and 104857600")
      expect(text).toContain("VECTOR_INLINE_MAX_BYTES: must be an integer between 0 and 104857600")
      expect(text).toContain("JOB_LOCK_DURATION_MS: must be an integer between 500 and 600000")
      expect(text).toContain("JOB_RETENTION_DAYS: must be an integer between 1 and 3650")
      expect(problems).toHaveLength(5)
    }))

  it.effect("refuses an inline limit above the document limit, and WORKER_MODE=off without Redis", () =>
    Effect.gen(function*() {
      expect(yield* problemsOf({ VECTOR_DOCUMENT_MAX_BYTES: "100000", VECTOR_INLINE_MAX_BYTES: "100001" })).toEqual([
        "VECTOR_INLINE_MAX_BYTES: is 100001, above VECTOR_DOCUMENT_MAX_BYTES (100000); expected at most the document limit"
      ])
      expect(yield* problemsOf({ WORKER_MODE: "off" })).toEqual([
        "WORKER_MODE: off needs REDIS_URL (without Redis, jobs run in this process only, so it must consume them)"
      ])
    }))
})
