import { randomBytes, randomInt } from "node:crypto"

import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Effect, Layer, Option, Redacted } from "effect"

import { ChatkitApi } from "../../src/api/Api.js"
import { AuditLog } from "../../src/features/audit/AuditLog.js"
import { Passwords } from "../../src/features/auth/Passwords.js"
import { UsersRepo } from "../../src/features/users/Repo.js"

/*
 * Users, logins and requests against `TestApp` (run with TRUST_PROXY=1).
 *
 * Login is limited per client IP and per email, in a Redis that parallel test files (and earlier
 * runs, in CI) share: every request here comes from its own made-up X-Forwarded-For address and
 * every email carries a tag unique to this run, so the limits only count what a test does on purpose.
 */

/** A tag unique to this run of the test file, for emails, names and slugs. */
export const runId = randomBytes(4).toString("hex")

/** The email of the user `name` of this run. */
export const emailOf = (name: string) => `${name}-${runId}@example.com`

/** A random client address in 10/8. */
export const randomIp = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`

/** The password of every seeded user unless told otherwise. */
export const PASSWORD = "correct horse battery staple"

/** Sends `request` from a fresh random client address. */
export const withForwardedFor = (request: HttpClientRequest.HttpClientRequest) =>
  HttpClientRequest.setHeader(request, "x-forwarded-for", randomIp())

/** A change to the app's HttpClient, applied after the address and bearer (e.g. to record responses). */
type TransformClient = (client: HttpClient.HttpClient) => HttpClient.HttpClient

interface RequestOptions {
  /** the X-Forwarded-For address; a fresh random one per request by default */
  readonly ip?: string | undefined
  readonly transformClient?: TransformClient | undefined
}

/** The derived client, sending `token` (if any) as bearer, from `options.ip` or a fresh address per request. */
export const clientAs = (token?: string, options: RequestOptions = {}) =>
  HttpApiClient.make(ChatkitApi, {
    transformClient: (client) => {
      const sending = HttpClient.mapRequest(client, (request) => {
        const from = options.ip === undefined
          ? withForwardedFor(request)
          : HttpClientRequest.setHeader(request, "x-forwarded-for", options.ip)
        return token === undefined ? from : HttpClientRequest.bearerToken(from, token)
      })
      return options.transformClient === undefined ? sending : options.transformClient(sending)
    }
  })

export type Client = Effect.Effect.Success<ReturnType<typeof clientAs>>

export interface RawResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  /** the parsed JSON body; `{}` for an empty one */
  readonly body: Record<string, unknown>
}

/** A raw request through the app's HttpClient, for what the typed client refuses to send. */
export const raw = (
  method: "GET" | "POST" | "PATCH" | "DELETE",
  path: string,
  options: RequestOptions & { readonly token?: string | undefined; readonly body?: unknown } = {}
): Effect.Effect<RawResponse, unknown, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const app = yield* HttpClient.HttpClient
    const client = options.transformClient === undefined ? app : options.transformClient(app)
    let request = HttpClientRequest.make(method)(path).pipe(
      HttpClientRequest.setHeader("x-forwarded-for", options.ip ?? randomIp())
    )
    if (options.token !== undefined) request = HttpClientRequest.bearerToken(request, options.token)
    if (options.body !== undefined) request = HttpClientRequest.bodyUnsafeJson(request, options.body)
    const response = yield* client.execute(request)
    const text = yield* response.text
    return { status: response.status, headers: response.headers, body: text === "" ? {} : JSON.parse(text) }
  })

/** What seeding users needs besides the app's database. */
export const seedLayer = Layer.mergeAll(UsersRepo.Default, AuditLog.Default, Passwords.layerTest)

export interface SeedOptions {
  readonly isAdmin?: boolean | undefined
  readonly displayName?: string | null | undefined
  /** default: `emailOf(name)` */
  readonly email?: string | undefined
  /** default: PASSWORD */
  readonly password?: string | undefined
  /** a stored hash to use instead of hashing `password` */
  readonly passwordHash?: string | undefined
}

/** A user inserted straight into the table (no audit row), with PASSWORD unless told otherwise. */
export const seedUser = (name: string, options: SeedOptions = {}) =>
  Effect.gen(function*() {
    const repo = yield* UsersRepo
    const passwords = yield* Passwords
    const row = yield* repo.insert({
      email: options.email ?? emailOf(name),
      password_hash: options.passwordHash ?? (yield* passwords.hash(Redacted.make(options.password ?? PASSWORD))),
      display_name: options.displayName ?? null,
      is_admin: options.isAdmin ?? false
    })
    return Option.getOrThrow(row)
  }).pipe(Effect.provide(seedLayer))

/** Logs in through POST /auth/login, from `options.ip` or a fresh address. */
export const login = (email: string, password = PASSWORD, options: RequestOptions = {}) =>
  Effect.flatMap(
    clientAs(undefined, options),
    (client) => client.auth.login({ payload: { email, password: Redacted.make(password) } })
  )

/**
 * A seeded user, logged in: its row, tokens (and the access `token` alone) and a client acting as it.
 * `transformClient` also applies to that client.
 */
export const session = (name: string, options: SeedOptions & { readonly transformClient?: TransformClient } = {}) =>
  Effect.gen(function*() {
    const user = yield* seedUser(name, options)
    const tokens = yield* login(user.email, options.password ?? PASSWORD, { transformClient: options.transformClient })
    const client = yield* clientAs(tokens.access_token, { transformClient: options.transformClient })
    return { user, tokens, token: tokens.access_token, client }
  })
