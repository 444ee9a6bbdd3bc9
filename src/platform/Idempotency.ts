import { createHash } from "node:crypto"

import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Option, Schema } from "effect"

import { Conflict } from "../domain/errors.js"
import { CurrentUser } from "../domain/User.js"

/**
 * The Idempotency-Key mechanism of API.md section 0, over the `idempotency_keys` table: a repeat
 * of a creating POST with the same key and body within 24 h answers the stored response instead
 * of creating twice; the same key with another body is a 409.
 */

/** How long a key and its stored response are kept (API.md: 24 h). */
export const IDEMPOTENCY_TTL_HOURS = 24

/** Header set on a replayed response, so a client can tell it from a fresh one. */
export const REPLAYED_HEADER = "idempotent-replayed"

/** Claims lost to a concurrent expiry or release before we give up with "in progress". */
const MAX_CLAIM_ROUNDS = 3

/** A JSON-friendly copy whose object keys are sorted at every depth, so equal requests print alike. */
const canonical = (value: unknown): unknown => {
  if (typeof value === "bigint") return value.toString()
  if (value === null || typeof value !== "object") return value
  const toJSON = (value as { toJSON?: unknown }).toJSON
  if (typeof toJSON === "function") {
    const json: unknown = toJSON.call(value)
    if (json !== value) return canonical(json)
  }
  if (Array.isArray(value)) return value.map(canonical)
  const source = value as Record<string, unknown>
  const sorted: Record<string, unknown> = {}
  for (const key of Object.keys(source).sort()) sorted[key] = canonical(source[key])
  return sorted
}

/** JSON with sorted keys: the same request gives the same text whatever its key order. */
export const canonicalJson = (value: unknown): string => JSON.stringify(canonical(value)) ?? "null"

/** SHA-256 (hex) of the canonical JSON of a request: what `idempotency_keys.request_hash` holds. */
export const requestHash = (request: unknown): string =>
  createHash("sha256").update(canonicalJson(request)).digest("hex")

interface StoredKey {
  readonly request_hash: string
  readonly response_status: number | null
  readonly response_body: unknown
  readonly expired: boolean
}

const replay = (row: StoredKey & { readonly response_status: number }) => {
  const headers = { [REPLAYED_HEADER]: "true" }
  return row.response_body === null || row.response_status === 204
    ? HttpServerResponse.empty({ status: row.response_status, headers })
    : HttpServerResponse.unsafeJson(row.response_body, { status: row.response_status, headers })
}

/**
 * Runs `effect` at most once per (`scope`, `key`) within 24 h and replays its response to repeats.
 *
 * - `key` undefined: just runs `effect`.
 * - `scope` says who and where (e.g. `user:7:POST /admin/users`), so two callers may use the same key.
 * - `request` is what must be identical for a replay (hashed, never stored): pass the decoded body
 *   without plain secrets (a password must not be part of it; a Redacted value hashes as its mask).
 * - `success` encodes the result for storage; `status` is the status replayed with it.
 *
 * The claim is its own statement, committed at once, so a concurrent repeat sees it; the effect
 * then runs (with its own transaction, if any) and its encoded result is stored. A failure, defect
 * or interruption deletes the claim, so the client may retry. A repeat while the first request is
 * running, or with another body, is a `Conflict`. Must be called outside any transaction: the
 * bookkeeping has to commit on its own (and the embedded database has a single connection).
 */
export const withIdempotency = <A, I, E, R>(
  options: {
    readonly key: string | undefined
    readonly scope: string
    readonly request: unknown
    readonly success: Schema.Schema<A, I>
    readonly status: number
  },
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A | HttpServerResponse.HttpServerResponse, E | Conflict, R | PgClient.PgClient> => {
  const key = options.key
  if (key === undefined) return effect
  const { scope, status } = options
  return Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    if (Option.isSome(yield* Effect.serviceOption(SqlClient.TransactionConnection))) {
      return yield* Effect.dieMessage("withIdempotency must wrap the transaction, not run inside one")
    }
    const hash = requestHash(options.request)

    const claim = sql<{ claimed: number }>`INSERT INTO idempotency_keys (key, scope, request_hash, expires_at)
      VALUES (${key}, ${scope}, ${hash}, now() + make_interval(hours => ${IDEMPOTENCY_TTL_HOURS}))
      ON CONFLICT (scope, key) DO NOTHING
      RETURNING 1 AS claimed`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie)

    const read = sql<StoredKey>`SELECT request_hash, response_status, response_body, expires_at <= now() AS expired
      FROM idempotency_keys WHERE scope = ${scope} AND key = ${key}`.pipe(Effect.map((rows) => rows[0]), Effect.orDie)

    const deleteExpired = sql`DELETE FROM idempotency_keys
      WHERE scope = ${scope} AND key = ${key} AND expires_at <= now()`.pipe(Effect.orDie)

    // Only an unfinished claim of this very request: never a stored response.
    const release = sql`DELETE FROM idempotency_keys
      WHERE scope = ${scope} AND key = ${key} AND request_hash = ${hash} AND response_status IS NULL`.pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("could not release an idempotency key; it expires in 24 h", cause)
      )
    )

    // The effect has committed by now: a failure to store must not turn its success into an error
    // (repeats then get "in progress" until the key expires, which still prevents a duplicate).
    const store = (value: A) =>
      Schema.encode(options.success)(value).pipe(
        Effect.flatMap((body) =>
          sql`UPDATE idempotency_keys
            SET response_status = ${status}, response_body = ${body === undefined ? null : sql.json(body)}
            WHERE scope = ${scope} AND key = ${key} AND request_hash = ${hash}`
        ),
        Effect.catchAllCause((cause) => Effect.logError("could not store an idempotent response", cause))
      )

    // The claim and the release hook are set up without a gap an interruption could fall into.
    const claimAndRun = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(claim, (claimed) =>
        claimed
          ? restore(effect).pipe(
            Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : release)),
            Effect.map(Option.some)
          )
          : Effect.succeed(Option.none<A>()))
    )

    for (let round = 0; round < MAX_CLAIM_ROUNDS; round++) {
      const ran = yield* claimAndRun
      if (Option.isSome(ran)) {
        yield* store(ran.value)
        return ran.value
      }
      const row = yield* read
      if (row === undefined) continue // released by a failed first request in between: claim again
      if (row.expired) {
        yield* deleteExpired
        continue
      }
      if (row.request_hash !== hash) {
        return yield* new Conflict({ detail: "Idempotency-Key reused with a different request" })
      }
      if (row.response_status === null) {
        return yield* new Conflict({ detail: "a request with this Idempotency-Key is still in progress" })
      }
      yield* Effect.annotateCurrentSpan("idempotency.replayed", true)
      return replay({ ...row, response_status: row.response_status })
    }
    return yield* new Conflict({ detail: "a request with this Idempotency-Key is still in progress" })
  }).pipe(Effect.withSpan("Idempotency.run", { attributes: { "idempotency.scope": scope } }))
}

/**
 * A creating POST under its Idempotency-Key (if any), scoped to the current user and the route:
 * `workflows.create(payload).pipe(idempotentCreate("POST /workflows", headers, payload, Workflow))`.
 * `request` is what a repeat must match (see `withIdempotency`: no plain secret in it).
 */
export const idempotentCreate = <A, I>(
  route: string,
  headers: { readonly "idempotency-key"?: string | undefined },
  request: unknown,
  success: Schema.Schema<A, I>
) =>
<E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(CurrentUser, (user) =>
    withIdempotency(
      { key: headers["idempotency-key"], scope: `user:${user.id}:${route}`, request, success, status: 201 },
      effect
    ))
