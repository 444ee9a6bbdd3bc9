import { mkdirSync } from "node:fs"
import { resolve } from "node:path"
import { Worker } from "node:worker_threads"

import { SqlClient, SqlSchema, type Statement } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqlError } from "@effect/sql/SqlError"
import { type Duration, Effect, Layer, Option, ParseResult, Redacted, Runtime, Schedule, Schema } from "effect"
import pg from "pg"

import { AppConfig } from "./Config.js"
import { dbQueriesTotal } from "./Metrics.js"

/** The database could not be reached at start, after every retry; the message names no secret. */
const unreachable = (target: string, error: unknown) =>
  new SqlError({ message: `Database unreachable at ${target} after retrying: ${errorReason(error)}`, cause: error })

export interface DatabaseOptions {
  /** Schema to create and put first on the search_path (tests isolate files this way). */
  readonly schema?: string
  /** Connection attempts at start before giving up (default: DATABASE_CONNECT_ATTEMPTS). */
  readonly connectAttempts?: number
}

/** Where the connection goes, without credentials, for log lines and error messages. */
const describeTarget = (url: string) => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`
  } catch {
    return "the configured DATABASE_URL"
  }
}

const safeIdentifier = (name: string) => {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid schema name ${name}`)
  return name
}

/** Exponential from 200 ms, capped at 5 s between tries, each retry logged. */
const connectSchedule = (attempts: number, target: string) =>
  Schedule.exponential("200 millis").pipe(
    Schedule.either(Schedule.spaced("5 seconds")),
    Schedule.intersect(Schedule.recurs(attempts - 1)),
    Schedule.tapInput((error: unknown) =>
      Effect.logWarning("database connection failed, retrying").pipe(
        Effect.annotateLogs({ target, reason: errorReason(error) })
      )
    )
  )

const errorReason = (error: unknown): string => {
  const cause = (error as { cause?: unknown })?.cause ?? error
  if (cause instanceof Error) return (cause as { code?: string }).code ?? cause.message
  return String(cause)
}

/** Session settings travel in the startup packet, so no statement races the pool's first query. */
const sessionOptions = (statementTimeoutMs: number, schema: string | undefined) =>
  [
    `-c statement_timeout=${Math.floor(statementTimeoutMs)}`,
    ...(schema === undefined ? [] : [`-c search_path=${schema},public`])
  ]
    .join(" ")

const INT8_OID = 20

/** bigint columns (bigserial ids, counts) as numbers: every id of this API fits in 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary"
      ? Number
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser
}

const makePool = (config: pg.PoolConfig, statementTimeoutMs: number, schema: string | undefined) => {
  const pool = new pg.Pool({ ...config, types, options: sessionOptions(statementTimeoutMs, schema) })
  pool.on("connect", (client) => {
    const query = client.query.bind(client) as (...args: Array<unknown>) => unknown // Counting here sees every statement, whichever code path issued it.
    ;(client as unknown as { query: typeof query }).query = (...args) => {
      dbQueriesTotal.unsafeUpdate(1, [])
      return query(...args)
    }
  })
  pool.on("error", () => undefined)
  return pool
}

/** A PgClient over a pool whose first query is retried with `connectSchedule`. */
const pgClientLayer = (
  config: pg.PoolConfig,
  options: { target: string; statementTimeoutMs: number; schema?: string | undefined; attempts: number }
) =>
  PgClient.layerFromPool({
    acquire: Effect.gen(function*() {
      if (options.schema !== undefined) {
        yield* Effect.tryPromise(async () => {
          // a fresh client per attempt: a pg.Client that failed to connect cannot be reused
          const admin = new pg.Client({ ...config })
          await admin.connect()
          try {
            await admin.query(`CREATE SCHEMA IF NOT EXISTS ${options.schema}`)
          } finally {
            await admin.end()
          }
        }).pipe(Effect.retry(connectSchedule(options.attempts, options.target)))
      }
      const pool = yield* Effect.acquireRelease(
        Effect.sync(() => makePool(config, options.statementTimeoutMs, options.schema)),
        (pool) => Effect.promise(() => pool.end())
      )
      yield* Effect.tryPromise(() => pool.query("SELECT 1")).pipe(
        Effect.retry(connectSchedule(options.attempts, options.target))
      )
      return pool
    }).pipe(Effect.mapError((error) => unreachable(options.target, error))),
    applicationName: "chatkit-backend"
  })

/** PostgreSQL at `url`: pool size and statement timeout from the configuration. */
export const layerPostgres = (url: Redacted.Redacted, options: DatabaseOptions = {}) =>
  Layer.unwrapEffect(
    Effect.map(AppConfig, (config) =>
      pgClientLayer(
        {
          connectionString: Redacted.value(url),
          max: config.databasePoolMax,
          connectionTimeoutMillis: 5_000,
          idleTimeoutMillis: 30_000
        },
        {
          target: describeTarget(Redacted.value(url)),
          statementTimeoutMs: config.databaseStatementTimeoutMs,
          schema: options.schema === undefined ? undefined : safeIdentifier(options.schema),
          attempts: options.connectAttempts ?? config.databaseConnectAttempts
        }
      ))
  )

/** The embedded database's thread did not start (its reason, which names no secret), or died. */
const embeddedFailed = (message: string) => new SqlError({ message: `The embedded database did not start: ${message}` })

/** How long the embedded database's thread may take to stop (write its data out) before it is ended. */
const EMBEDDED_STOP_TIMEOUT = "10 seconds"

/** What the embedded database's thread tells once it started (EmbeddedDatabaseWorker.mjs). */
type EmbeddedStarted =
  | { readonly type: "ready"; readonly host: string; readonly port: number }
  | { readonly type: "failed"; readonly message: string }

/** Its loopback address once the thread is ready, or why it could not start. */
const embeddedReady = (worker: Worker) =>
  Effect.async<{ readonly host: string; readonly port: number }, SqlError>((resume) => {
    const detach = () => worker.off("message", onMessage).off("error", onError).off("exit", onExit)
    const settle = (result: Effect.Effect<{ readonly host: string; readonly port: number }, SqlError>) => {
      detach()
      resume(result)
    }
    const onMessage = (message: EmbeddedStarted) =>
      settle(
        message.type === "ready"
          ? Effect.succeed({ host: message.host, port: message.port })
          : Effect.fail(embeddedFailed(message.message))
      )
    const onError = (error: Error) => settle(Effect.fail(embeddedFailed(error.message)))
    const onExit = (code: number) => settle(Effect.fail(embeddedFailed(`its thread exited (${code})`)))
    worker.on("message", onMessage).on("error", onError).on("exit", onExit)
    return Effect.sync(detach)
  })

/** The embedded database's thread, and when it ends (known from its start, so a thread already gone is not waited for). */
const startEmbedded = (workerData: { readonly path: string; readonly setup: string }) =>
  Effect.sync(() => {
    const worker = new Worker(new URL("./EmbeddedDatabaseWorker.mjs", import.meta.url), { workerData })
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()))
    return { worker, exited }
  })

/** Asks the thread to stop and waits for it to end, or ends it after EMBEDDED_STOP_TIMEOUT. */
const stopEmbedded = ({ exited, worker }: Effect.Effect.Success<ReturnType<typeof startEmbedded>>) =>
  Effect.sync(() => worker.postMessage("stop")).pipe(
    Effect.zipRight(Effect.promise(() => exited)),
    Effect.timeout(EMBEDDED_STOP_TIMEOUT),
    Effect.catchAll(() =>
      Effect.logWarning("the embedded database did not stop in time: its thread was ended").pipe(
        Effect.zipRight(Effect.promise(() => worker.terminate()))
      )
    )
  )

/**
 * Embedded PostgreSQL: PGlite (with pgvector) in a thread of its own (EmbeddedDatabaseWorker.mjs,
 * as its statements run synchronously) behind a loopback socket, so the same pg driver is used in
 * every mode. PGlite has one connection, hence pool and server both limited to 1.
 * `dataDir` "memory://" keeps everything in memory (tests).
 */
export const layerEmbedded = (dataDir: string, options: DatabaseOptions = {}) =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const config = yield* AppConfig
      const inMemory = dataDir.startsWith("memory://")
      const path = inMemory ? dataDir : resolve(dataDir, "pglite")
      if (!inMemory) mkdirSync(path, { recursive: true })
      const started = Date.now()
      // PGlite is one session that ignores startup options: settings are applied to it directly.
      const schema = options.schema === undefined ? undefined : safeIdentifier(options.schema)
      const setup =
        `CREATE EXTENSION IF NOT EXISTS vector; SET statement_timeout = ${config.databaseStatementTimeoutMs};` +
        // its pages are in memory: a random read costs what a sequential one does, so index
        // lookups (nested loops) are not priced as if from disk against hashing whole tables
        "SET random_page_cost = 1.1;" +
        (schema === undefined ? "" : `CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}, public;`)
      const { worker } = yield* Effect.acquireRelease(startEmbedded({ path, setup }), stopEmbedded)
      const { host, port } = yield* embeddedReady(worker)
      // a thread that fails later (its queries then fail, and /health/ready with them) is logged, not thrown
      const runtime = yield* Effect.runtime<never>()
      worker.on("error", (error) => Runtime.runFork(runtime)(Effect.logError("the embedded database failed", error)))
      yield* Effect.logInfo("embedded database ready").pipe(
        Effect.annotateLogs({ data_dir: inMemory ? "memory" : path, startup_ms: Date.now() - started })
      )
      return pgClientLayer(
        { host, port, user: "postgres", database: "postgres", max: 1 },
        {
          target: "embedded",
          statementTimeoutMs: config.databaseStatementTimeoutMs,
          attempts: options.connectAttempts ?? 3
        }
      )
    })
  )

/** PostgreSQL when DATABASE_URL is set, the embedded database otherwise. */
export const DatabaseLive: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError, AppConfig> = Layer
  .unwrapEffect(
    Effect.map(AppConfig, (config) =>
      Option.match(config.databaseUrl, {
        onNone: () => layerEmbedded(config.dataDir),
        onSome: (url) => layerPostgres(url)
      }))
  )

/** Round trip used by /health/ready. */
export const pingDatabase = (timeout: Duration.DurationInput) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`.pipe(Effect.timeout(timeout)))

/**
 * Database failures are not the caller's fault: they become defects, which the platform answers
 * with 503 (connection lost) or 500, and logs once with the request id.
 */
export const orDieOnSqlError = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.catchIf(self, (error) => error instanceof SqlError, (error) => Effect.die(error)) as Effect.Effect<
    A,
    Exclude<E, SqlError>,
    R
  >

/**
 * A row that does not decode with its schema is a bug, never the caller's fault: the schema has
 * drifted from the migrations. It becomes a defect, logged with the parse issue and answered 500.
 */
export const orDieOnBadRow = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.catchIf(self, ParseResult.isParseError, (error) => Effect.die(error)) as Effect.Effect<
    A,
    Exclude<E, ParseResult.ParseError>,
    R
  >

interface RowQuery<IR, II, IA, AR, AI, A, R, E> {
  readonly Request: Schema.Schema<IA, II, IR>
  readonly Result: Schema.Schema<A, AI, AR>
  readonly execute: (request: II) => Effect.Effect<ReadonlyArray<unknown>, E, R>
}

/** `SqlSchema.findOne`: the first row decoded with `Result`, `None` when there is none; a bad row dies. */
export const findOneRow = <IR, II, IA, AR, AI, A, R, E>(options: RowQuery<IR, II, IA, AR, AI, A, R, E>) => {
  const query = SqlSchema.findOne(options)
  return (request: IA) => orDieOnBadRow(query(request))
}

/**
 * `SqlSchema.single`, for a statement that always returns a row (`INSERT ... RETURNING`): the row
 * decoded with `Result`; no row, like a bad one, is a defect.
 */
export const singleRow = <IR, II, IA, AR, AI, A, R, E>(options: RowQuery<IR, II, IA, AR, AI, A, R, E>) => {
  const query = SqlSchema.single(options)
  return (request: IA) =>
    orDieOnBadRow(query(request)).pipe(
      Effect.catchTag("NoSuchElementException", () => Effect.dieMessage("the statement returned no row"))
    )
}

/** `SqlSchema.findAll`: every row decoded with `Result`; a bad row dies. */
export const findAllRows = <IR, II, IA, AR, AI, A, R, E>(options: RowQuery<IR, II, IA, AR, AI, A, R, E>) => {
  const query = SqlSchema.findAll(options)
  return (request: IA) => orDieOnBadRow(query(request))
}

/** The select list of a row schema: its field names, so the columns read are the fields decoded. */
export const columnsOf = (row: { readonly fields: Readonly<Record<string, unknown>> }) =>
  Object.keys(row.fields).join(", ")

/** What `countedPageQuery` selects: the rows of `from` (`FROM ... WHERE ...`), in `orderBy` (output column names). */
export interface CountedPageQuery {
  readonly columns: Statement.Fragment
  readonly from: Statement.Fragment
  readonly orderBy: string
  readonly limit: number
  readonly offset: number
}

/**
 * One page and the total of the rows it is taken from, in one statement: the lateral join yields one
 * row of NULLs past the end, so a page past the end is empty with the true total. Decode the rows
 * with `countedPage<Row>` or `decodedCountedPage`.
 */
export const countedPageQuery = <Row extends object = object>(sql: SqlClient.SqlClient, query: CountedPageQuery) => {
  const orderBy = sql.literal(query.orderBy)
  return sql<CountedPageRows<Row>[number]>`
    SELECT c.total, p.*
    FROM (SELECT count(*)::int AS total ${query.from}) c
    LEFT JOIN LATERAL (
      SELECT ${query.columns} ${query.from} ORDER BY ${orderBy} LIMIT ${query.limit} OFFSET ${query.offset}
    ) p ON true
    ORDER BY ${orderBy}`
}

/** The rows of a `SELECT c.total, p.* FROM (count) c LEFT JOIN LATERAL (page) p ON true` query. */
export type CountedPageRows<Row> = ReadonlyArray<
  { readonly total: number | string } & { readonly [K in keyof Row]: Row[K] | null }
>

/**
 * Splits the rows of a one-statement "count + page" query: every row carries the total, and a page
 * past the end is a single row of NULLs (its `key` column is null), dropped from the items; the
 * items come without the `total` column.
 */
export const countedPage = <Row>(key: keyof Row) => (rows: CountedPageRows<Row>) => ({
  total: Number(rows[0]?.total ?? 0),
  items: rows.filter((row) => row[key] !== null).map(({ total: _, ...row }) => row) as unknown as ReadonlyArray<Row>
})

/**
 * `countedPage` with the items decoded by `Row` (the row of NULLs past the end is dropped first, so
 * it is never decoded); an item that does not decode dies, as a bad row of `findOneRow` does.
 */
export const decodedCountedPage = <A, I, R>(Row: Schema.Schema<A, I, R>, key: keyof I) => {
  const decodeItems = Schema.decodeUnknown(Schema.Array(Row))
  return (rows: ReadonlyArray<unknown>) => {
    const page = countedPage<I>(key)(rows as CountedPageRows<I>)
    return orDieOnBadRow(Effect.map(decodeItems(page.items), (items) => ({ total: page.total, items })))
  }
}

/**
 * The SET list of a PATCH: `column = value` for each field of `changes` whose value is defined, in
 * order. A value is bound as a parameter unless it is a fragment (`sql\`now()\``), which is
 * spliced in as SQL. Field names are column names written in code, never keys of a request.
 */
export const patchColumns = (sql: SqlClient.SqlClient, changes: object): Statement.Fragment =>
  sql.csv(
    Object.entries(changes)
      .filter(([, value]) => value !== undefined)
      .map(([column, value]) => sql`${sql(column)} = ${value}`)
  )

/**
 * Runs a write in a transaction and, only once it has committed, `afterCommit` with its result.
 * Cache invalidation goes there: dropped before the commit, an entry could be refilled from the old
 * row by a read that overlaps the write.
 */
export const commitThen = <A, E2, R2>(
  sql: SqlClient.SqlClient,
  afterCommit: (result: A) => Effect.Effect<unknown, E2, R2>
) =>
<B extends A, E, R>(write: Effect.Effect<B, E, R>): Effect.Effect<B, E | E2 | SqlError, R | R2> =>
  sql.withTransaction(write).pipe(Effect.tap(afterCommit))

/**
 * A unique violation (23505) on `constraint`: the caller maps it to a 409. When the driver does
 * not name the constraint, any unique violation counts.
 */
export const isUniqueViolation = (constraint: string) => (error: unknown): error is SqlError => {
  if (!(error instanceof SqlError)) return false
  const cause = error.cause as { code?: unknown; constraint?: unknown } | undefined
  return cause?.code === "23505" && (cause.constraint === undefined || cause.constraint === constraint)
}
