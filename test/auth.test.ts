import { createHash, pbkdf2Sync, randomBytes, randomUUID } from "node:crypto"
import { performance } from "node:perf_hooks"

import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Either, Layer, Option, Redacted } from "effect"
import { decodeJwt, decodeProtectedHeader, SignJWT, UnsecuredJWT } from "jose"

import { RateLimited, Unauthorized } from "../src/domain/errors.js"
import type { UserId } from "../src/domain/User.js"
import { Passwords } from "../src/features/auth/Passwords.js"
import { UsersRepo } from "../src/features/users/Repo.js"
import { UserLookup } from "../src/features/users/UserLookup.js"
import { AppConfig } from "../src/platform/Config.js"
import { TestApp } from "./support/app.js"
import { clientAs, emailOf, login, PASSWORD, randomIp, raw, seedUser as seedUserAs } from "./support/session.js"

// ---------------------------------------------------------------------------------------------
// Helpers
//
// The app trusts one proxy hop, and every request comes from its own random X-Forwarded-For address
// in 10/8 (./support/session.js) and every test uses its own email addresses: the login limits
// (5/min per IP and per email, shared through Redis with other test files and earlier runs in CI)
// then only count what a test does on purpose.
// ---------------------------------------------------------------------------------------------

const ENV = { TRUST_PROXY: "1", RATE_LIMIT_API_PER_MINUTE: "10000" }

let emails = 0
const nextEmail = (what: string) => emailOf(`${what}-${++emails}`)

const refresh = (token: string) =>
  Effect.flatMap(clientAs(), (client) => client.auth.refresh({ payload: { refresh_token: Redacted.make(token) } }))

const me = (token: string) => Effect.flatMap(clientAs(token), (client) => client.auth.me())

/** Creates a user with a fresh email and `password` (argon2id at the test cost) or a given stored hash. */
const seedUser = (options: { readonly email?: string; readonly password?: string; readonly hash?: string } = {}) => {
  const email = options.email ?? nextEmail("user")
  return Effect.map(
    seedUserAs("user", { email, password: options.password, passwordHash: options.hash }),
    (row) => ({ ...row, email })
  )
}

/** A user and a fresh session of theirs. */
const session = Effect.gen(function*() {
  const user = yield* seedUser()
  const tokens = yield* login(user.email)
  return { user, tokens }
})

/** test-chatkit's stored format: "<32 hex salt>$<hex PBKDF2-HMAC-SHA256, 390000 iterations, salt = the hex's UTF-8 bytes>". */
const legacyHash = (password: string) => {
  const salt = randomBytes(16).toString("hex")
  return `${salt}$${pbkdf2Sync(password, Buffer.from(salt, "utf8"), 390_000, 32, "sha256").toString("hex")}`
}

interface AuditRow {
  readonly user_id: number | null
  readonly resource_id: string | null
  readonly changes: Record<string, unknown>
  readonly request_id: string | null
  readonly ip: string | null
}

const auditRows = (action: string, filter: { readonly email?: string; readonly userId?: number }) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<AuditRow>`SELECT user_id, resource_id, changes, request_id, ip FROM audit_logs
      WHERE action = ${action}
        AND (${filter.email ?? null}::text IS NULL OR changes->>'email' = ${filter.email ?? null})
        AND (${filter.userId ?? null}::bigint IS NULL OR user_id = ${filter.userId ?? null})
      ORDER BY id`
  )

const secretKey = Effect.map(AppConfig, (config) => new TextEncoder().encode(Redacted.value(config.authSecretKey)))

/** A JWT with the app's claims, then `change`d: for the forged-token tests. */
const forge = (
  userId: number,
  key: Uint8Array,
  change: {
    readonly alg?: string
    readonly claims?: Record<string, unknown>
    readonly iss?: string
    readonly aud?: string
    readonly exp?: number
  } = {}
) => {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ type: "access", ...change.claims })
    .setProtectedHeader({ alg: change.alg ?? "HS256", typ: "JWT" })
    .setSubject(String(userId))
    .setIssuer(change.iss ?? "chatkit-backend")
    .setAudience(change.aud ?? "chatkit-api")
    .setIssuedAt(now - 60)
    .setExpirationTime(change.exp ?? now + 600)
    .setJti(randomUUID())
    .sign(key)
}

const expectUnauthorized = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(effect), (error) => expect(error).toBeInstanceOf(Unauthorized))

// ---------------------------------------------------------------------------------------------

const TestLayer = Layer.mergeAll(UsersRepo.Default, UserLookup.Default).pipe(Layer.provideMerge(TestApp("auth", ENV)))

layer(TestLayer, { timeout: 120_000 })("auth", (it) => {
  describe("POST /auth/login", () => {
    it.effect("returns the token pair of API.md, with an HS256 access token carrying the documented claims", () =>
      Effect.gen(function*() {
        const user = yield* seedUser({ email: nextEmail("ada") })
        const tokens = yield* login(user.email)
        expect(tokens).toMatchObject({ token_type: "bearer", expires_in: 900, refresh_expires_in: 604_800 })
        expect(tokens.user).toMatchObject({ id: user.id, email: user.email, is_admin: false, is_lti: false })
        expect(tokens.user).not.toHaveProperty("password_hash")
        expect(decodeProtectedHeader(tokens.access_token)).toEqual({ alg: "HS256", typ: "JWT" })
        const claims = decodeJwt(tokens.access_token)
        expect(claims).toMatchObject({
          sub: String(user.id),
          iss: "chatkit-backend",
          aud: "chatkit-api",
          type: "access"
        })
        expect(claims.exp! - claims.iat!).toBe(900)
        expect(Math.abs(claims.iat! - Date.now() / 1000)).toBeLessThan(60)
        expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/)
        // opaque refresh token: 32 random bytes, base64url; stored only as its SHA-256
        expect(tokens.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/)
        const sql = yield* SqlClient.SqlClient
        const stored = yield* sql<{ token_hash: string; ip: string | null; expires_in_days: number }>`
          SELECT token_hash, ip, round(extract(epoch FROM expires_at - created_at) / 86400)::int AS expires_in_days
          FROM refresh_tokens WHERE user_id = ${user.id}`
        expect(stored).toHaveLength(1)
        expect(stored[0]?.token_hash).toBe(createHash("sha256").update(tokens.refresh_token).digest("hex"))
        expect(stored[0]?.expires_in_days).toBe(7)
        // the token works on the authenticated endpoints
        expect(yield* me(tokens.access_token)).toMatchObject({ id: user.id, email: user.email })
        const alias = yield* Effect.flatMap(clientAs(tokens.access_token), (c) => c.auth.usersMe())
        expect(alias).toEqual(yield* me(tokens.access_token))
        // audited, without any secret
        const rows = yield* auditRows("auth.login", { email: user.email })
        expect(rows).toHaveLength(1)
        expect(rows[0]).toMatchObject({
          user_id: user.id,
          resource_id: String(user.id),
          changes: { email: user.email }
        })
        expect(rows[0]?.request_id).toBeTruthy()
        expect(JSON.stringify(rows)).not.toContain(PASSWORD)
        expect(JSON.stringify(rows)).not.toContain(tokens.refresh_token)
      }))

    it.effect("compares the email lower-cased, surrounding blanks trimmed", () =>
      Effect.gen(function*() {
        const user = yield* seedUser()
        const response = yield* raw("POST", "/api/v1/auth/login", {
          body: { email: `  ${user.email.toUpperCase()} `, password: PASSWORD }
        })
        expect(response.status).toBe(200)
        expect(response.body["user"]).toMatchObject({ id: user.id, email: user.email })
      }))

    it.effect("a wrong password and an unknown email get the same 401 body, both audited without the password", () =>
      Effect.gen(function*() {
        const user = yield* seedUser()
        const unknown = nextEmail("nobody")
        const wrong = yield* raw("POST", "/api/v1/auth/login", {
          body: { email: user.email, password: "not the password" }
        })
        const missing = yield* raw("POST", "/api/v1/auth/login", {
          body: { email: unknown, password: "not the password" }
        })
        for (const response of [wrong, missing]) {
          expect(response.status).toBe(401)
          expect(response.headers["www-authenticate"]).toBe("Bearer")
          expect(response.headers["content-type"]).toContain("application/problem+json")
        }
        const stable = ({ request_id: _, timestamp: __, ...rest }: Record<string, unknown>) => rest
        expect(stable(wrong.body)).toEqual(stable(missing.body))
        expect(wrong.body).toMatchObject({
          error: "unauthorized",
          status: 401,
          detail: "The email or password is incorrect"
        })
        // through the derived client: the tagged error
        yield* expectUnauthorized(login(user.email, "still not the password"))

        const failed = yield* auditRows("auth.login.failed", { email: user.email })
        expect(failed).toHaveLength(2)
        expect(failed[0]).toMatchObject({ user_id: user.id, changes: { email: user.email } })
        const ghost = yield* auditRows("auth.login.failed", { email: unknown })
        expect(ghost).toHaveLength(1)
        expect(ghost[0]).toMatchObject({ user_id: null, resource_id: null, changes: { email: unknown } })
        expect(JSON.stringify([...failed, ...ghost])).not.toContain("not the password")
        expect(yield* auditRows("auth.login", { email: user.email })).toHaveLength(0)
      }))

    it.effect("a malformed email, a missing field or an unknown field is a 400 listing the field", () =>
      Effect.gen(function*() {
        const bad = yield* raw("POST", "/api/v1/auth/login", { body: { email: "not-an-email", password: PASSWORD } })
        expect(bad.status).toBe(400)
        expect(bad.body).toMatchObject({
          error: "validation_error",
          errors: [expect.objectContaining({ path: "email" })]
        })
        const missing = yield* raw("POST", "/api/v1/auth/login", { body: { email: nextEmail("x") } })
        expect(missing.status).toBe(400)
        expect(missing.body["errors"]).toEqual([expect.objectContaining({ path: "password" })])
        const extra = yield* raw("POST", "/api/v1/auth/login", {
          body: { email: nextEmail("x"), password: PASSWORD, admin: true }
        })
        expect(extra.status).toBe(400)
        expect(JSON.stringify(bad.body)).not.toContain(PASSWORD)
      }))

    it.effect("a legacy PBKDF2 hash of test-chatkit logs in and is replaced by an argon2id hash", () =>
      Effect.gen(function*() {
        const user = yield* seedUser({ hash: legacyHash(PASSWORD) })
        yield* expectUnauthorized(login(user.email, "wrong legacy password"))
        const tokens = yield* login(user.email)
        expect(tokens.user.id).toBe(user.id)
        const repo = yield* UsersRepo
        const stored = Option.getOrThrow(yield* repo.findLiveById(user.id)).password_hash
        expect(stored).toMatch(/^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/)
        const check = yield* (yield* Passwords).verify(Redacted.make(PASSWORD), stored)
        expect(check).toEqual({ valid: true, needsRehash: false })
        // the upgraded hash works on the next login; the upgrade is audited, the hash is not
        yield* login(user.email)
        const rows = yield* auditRows("auth.login", { email: user.email })
        expect(rows.map((r) => r.changes["hash_upgraded"] ?? false)).toEqual([true, false])
        expect(JSON.stringify(rows)).not.toContain(stored)
      }))

    describe("rate limits (5 per minute per client IP and per email)", () => {
      it.effect("the 6th attempt in a minute is a 429 with Retry-After and RateLimit-* headers", () =>
        Effect.gen(function*() {
          const user = yield* seedUser()
          const ip = randomIp()
          for (let i = 1; i <= 5; i++) {
            const response = yield* raw("POST", "/api/v1/auth/login", {
              ip,
              body: { email: user.email, password: "wrong password" }
            })
            expect(response.status).toBe(401)
            expect(response.headers["ratelimit-limit"]).toBe("5")
            expect(response.headers["ratelimit-remaining"]).toBe(String(5 - i))
          }
          const limited = yield* raw("POST", "/api/v1/auth/login", {
            ip,
            body: { email: user.email, password: PASSWORD }
          })
          expect(limited.status).toBe(429)
          expect(limited.body).toMatchObject({ error: "rate_limited", status: 429 })
          expect(Number(limited.headers["retry-after"])).toBeGreaterThanOrEqual(1)
          expect(Number(limited.headers["retry-after"])).toBeLessThanOrEqual(60)
          expect(limited.headers["ratelimit-limit"]).toBe("5")
          expect(limited.headers["ratelimit-remaining"]).toBe("0")
          expect(Number(limited.headers["ratelimit-reset"])).toBeGreaterThanOrEqual(1)
          // the refused attempt did not even reach the password check: no audit row for it
          expect(yield* auditRows("auth.login.failed", { email: user.email })).toHaveLength(5)
          expect(yield* auditRows("auth.login", { email: user.email })).toHaveLength(0)
        }))

      it.effect("per email, whatever the address: a correct password from a 6th address is still refused", () =>
        Effect.gen(function*() {
          const user = yield* seedUser()
          for (let i = 0; i < 5; i++) yield* expectUnauthorized(login(user.email, "wrong password"))
          const error = yield* Effect.flip(login(user.email))
          expect(error).toBeInstanceOf(RateLimited)
        }))

      it.effect("per address, whatever the email", () =>
        Effect.gen(function*() {
          const ip = randomIp()
          for (let i = 0; i < 5; i++) yield* expectUnauthorized(login(nextEmail("spray"), "wrong password", { ip }))
          const user = yield* seedUser()
          expect(yield* Effect.flip(login(user.email, PASSWORD, { ip }))).toBeInstanceOf(RateLimited)
          // the same user from elsewhere is fine
          expect((yield* login(user.email)).user.id).toBe(user.id)
        }))
    })
  })

  describe("access tokens", () => {
    it.effect("no token, a malformed one, or a tampered signature is a 401 with WWW-Authenticate: Bearer", () =>
      Effect.gen(function*() {
        const { tokens } = yield* session
        const [header, payload, signature] = tokens.access_token.split(".") as [string, string, string]
        const middle = Math.floor(signature.length / 2)
        const flipped = signature[middle] === "A" ? "B" : "A"
        const tampered = `${header}.${payload}.${signature.slice(0, middle)}${flipped}${signature.slice(middle + 1)}`
        // a payload edited to another user, keeping the original signature
        const claims = decodeJwt(tokens.access_token)
        const otherPayload = Buffer.from(JSON.stringify({ ...claims, sub: "1" })).toString("base64url")
        for (
          const token of [
            undefined,
            "",
            "garbage",
            `${header}.${payload}`,
            tampered,
            `${header}.${otherPayload}.${signature}`
          ]
        ) {
          const response = yield* raw("GET", "/api/v1/auth/me", token === undefined ? {} : { token })
          expect(response.status).toBe(401)
          expect(response.headers["www-authenticate"]).toBe("Bearer")
          expect(response.body).toMatchObject({
            error: "unauthorized",
            detail: "The access token is missing, invalid or expired"
          })
        }
      }))

    it.effect("refuses alg none, other algorithms, another key, expired tokens, wrong iss/aud/type", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        const key = yield* secretKey
        const now = Math.floor(Date.now() / 1000)
        const unsecured = new UnsecuredJWT({ type: "access" })
          .setSubject(String(user.id))
          .setIssuer("chatkit-backend")
          .setAudience("chatkit-api")
          .setIssuedAt(now)
          .setExpirationTime(now + 600)
          .setJti(randomUUID())
          .encode()
        expect(decodeProtectedHeader(unsecured).alg).toBe("none")
        // the real token's header and payload with alg none and no signature
        const [, payload] = tokens.access_token.split(".")
        const noneHeader = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")
        const forged = yield* Effect.promise(() =>
          Promise.all([
            forge(user.id, key, { alg: "HS512" }),
            forge(user.id, key, { alg: "HS384" }),
            forge(user.id, new TextEncoder().encode("another-secret-key-0123456789-abcdefghijkl")),
            forge(user.id, key, { exp: now - 60 }),
            forge(user.id, key, { iss: "someone-else" }),
            forge(user.id, key, { aud: "another-api" }),
            forge(user.id, key, { claims: { type: "refresh" } }),
            forge(user.id, key, { claims: { type: undefined } })
          ])
        )
        for (const token of [unsecured, `${noneHeader}.${payload}.`, ...forged]) {
          const response = yield* raw("GET", "/api/v1/auth/me", { token })
          expect(response.status).toBe(401)
          expect(response.body["detail"]).toBe("The access token is missing, invalid or expired")
        }
        // the control: the same forging code with the right key, algorithm and claims is accepted
        const genuine = yield* Effect.promise(() => forge(user.id, key))
        expect((yield* me(genuine)).id).toBe(user.id)
      }))

    it.effect("a token accepted before is refused once it expires (a verified token is remembered, its expiry checked each time)", () =>
      Effect.gen(function*() {
        const { user } = yield* session
        const key = yield* secretKey
        const expiresAt = Math.floor(Date.now() / 1000) + 2
        const shortLived = yield* Effect.promise(() => forge(user.id, key, { exp: expiresAt }))
        expect((yield* me(shortLived)).id).toBe(user.id)
        expect((yield* me(shortLived)).id).toBe(user.id)
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, expiresAt * 1000 - Date.now() + 50)))
        const response = yield* raw("GET", "/api/v1/auth/me", { token: shortLived })
        expect(response.status).toBe(401)
        expect(response.body["detail"]).toBe("The access token is missing, invalid or expired")
      }))

    it.effect("a refresh token is not a bearer token, and an access token is not a refresh token", () =>
      Effect.gen(function*() {
        const { tokens } = yield* session
        yield* expectUnauthorized(me(tokens.refresh_token))
        yield* expectUnauthorized(refresh(tokens.access_token))
        // neither attempt burned the real refresh token
        expect((yield* refresh(tokens.refresh_token)).refresh_token).not.toBe(tokens.refresh_token)
      }))

    it.effect("a deleted user loses access on the next request", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        expect((yield* me(tokens.access_token)).id).toBe(user.id) // now cached
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE users SET deleted_at = now() WHERE id = ${user.id}`
        yield* (yield* UserLookup).invalidate(user.id as UserId)
        yield* expectUnauthorized(me(tokens.access_token))
        yield* expectUnauthorized(refresh(tokens.refresh_token))
        yield* expectUnauthorized(login(user.email))
      }))

    it.effect("authenticated responses carry the per-user API limit headers", () =>
      Effect.gen(function*() {
        const { tokens } = yield* session
        const response = yield* raw("GET", "/api/v1/users/me", { token: tokens.access_token })
        expect(response.status).toBe(200)
        expect(response.headers["ratelimit-limit"]).toBe(ENV.RATE_LIMIT_API_PER_MINUTE)
        expect(Number(response.headers["ratelimit-remaining"])).toBeLessThan(Number(ENV.RATE_LIMIT_API_PER_MINUTE))
      }))
  })

  describe("POST /auth/refresh", () => {
    it.effect("rotates: a new pair in the same family; the used token then revokes the family, new token included", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        const next = yield* refresh(tokens.refresh_token)
        expect(next).toMatchObject({
          token_type: "bearer",
          expires_in: 900,
          refresh_expires_in: 604_800,
          user: { id: user.id }
        })
        expect(next.refresh_token).not.toBe(tokens.refresh_token)
        expect((yield* me(next.access_token)).id).toBe(user.id)

        const reuse = yield* raw("POST", "/api/v1/auth/refresh", { body: { refresh_token: tokens.refresh_token } })
        expect(reuse.status).toBe(401)
        expect(reuse.headers["www-authenticate"]).toBe("Bearer")
        expect(reuse.body["detail"]).toBe("The refresh token is invalid, expired or revoked")
        // the reuse killed the token issued by the legitimate rotation too
        yield* expectUnauthorized(refresh(next.refresh_token))

        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ family_id: string; revoked: boolean; used: boolean; replaced: boolean }>`
          SELECT family_id, revoked_at IS NOT NULL AS revoked, used_at IS NOT NULL AS used, replaced_by IS NOT NULL AS replaced
          FROM refresh_tokens WHERE user_id = ${user.id} ORDER BY id`
        expect(rows.map(({ family_id: _, ...flags }) => flags)).toEqual([
          { revoked: true, used: true, replaced: true },
          { revoked: true, used: false, replaced: false }
        ])
        expect(new Set(rows.map((r) => r.family_id)).size).toBe(1)
        // the revocation and its audit row committed although the request failed
        const audited = yield* auditRows("auth.refresh.reused", { userId: user.id })
        expect(audited.length).toBeGreaterThanOrEqual(1)
        expect(audited[0]).toMatchObject({ user_id: user.id, resource_id: rows[0]?.family_id })
        expect(JSON.stringify(audited)).not.toContain(tokens.refresh_token)
      }))

    it.effect("two concurrent uses of one token: exactly one succeeds, the other revokes the family", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        const results = yield* Effect.all(
          [Effect.either(refresh(tokens.refresh_token)), Effect.either(refresh(tokens.refresh_token))],
          { concurrency: 2 }
        )
        const wins = results.filter(Either.isRight)
        const losses = results.filter(Either.isLeft)
        expect(wins).toHaveLength(1)
        expect(losses).toHaveLength(1)
        expect(losses[0]?.left).toBeInstanceOf(Unauthorized)
        // the winner's new refresh token belongs to the revoked family
        yield* expectUnauthorized(refresh(wins[0]!.right.refresh_token))
        expect(yield* auditRows("auth.refresh.reused", { userId: user.id })).not.toHaveLength(0)
      }))

    it.effect("an unknown token is a 401 that revokes nothing; other sessions of the user keep working", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        yield* expectUnauthorized(refresh(randomBytes(32).toString("base64url")))
        const other = yield* login(user.email)
        yield* refresh(tokens.refresh_token)
        yield* refresh(other.refresh_token)
        expect(yield* auditRows("auth.refresh.reused", { userId: user.id })).toHaveLength(0)
      }))

    it.effect("an empty or oversized token is a 400", () =>
      Effect.gen(function*() {
        expect((yield* raw("POST", "/api/v1/auth/refresh", { body: { refresh_token: "" } })).status).toBe(400)
        expect((yield* raw("POST", "/api/v1/auth/refresh", { body: { refresh_token: "x".repeat(513) } })).status).toBe(
          400
        )
      }))
  })

  describe("logout", () => {
    it.effect("POST /auth/logout revokes the family (204), is idempotent, and the token no longer refreshes", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        const rotated = yield* refresh(tokens.refresh_token)
        const client = yield* clientAs()
        yield* client.auth.logout({ payload: { refresh_token: Redacted.make(rotated.refresh_token) } })
        const again = yield* raw("POST", "/api/v1/auth/logout", { body: { refresh_token: rotated.refresh_token } })
        expect(again.status).toBe(204)
        const unknown = yield* raw("POST", "/api/v1/auth/logout", { body: { refresh_token: "never-issued" } })
        expect(unknown.status).toBe(204)
        yield* expectUnauthorized(refresh(rotated.refresh_token))
        const rows = yield* auditRows("auth.logout", { userId: user.id })
        expect(rows).toHaveLength(1) // the repeat changed nothing, so recorded nothing
        expect(rows[0]?.changes).toMatchObject({ revoked_count: 2 })
      }))

    it.effect("POST /auth/logout-all ends every session of the caller only", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        const second = yield* login(user.email)
        const bystander = yield* session
        const unauthenticated = yield* raw("POST", "/api/v1/auth/logout-all")
        expect(unauthenticated.status).toBe(401)
        yield* Effect.flatMap(clientAs(tokens.access_token), (c) => c.auth.logoutAll())
        yield* expectUnauthorized(refresh(tokens.refresh_token))
        yield* expectUnauthorized(refresh(second.refresh_token))
        yield* refresh(bystander.tokens.refresh_token)
        const rows = yield* auditRows("auth.logout_all", { userId: user.id })
        expect(rows).toHaveLength(1)
        expect(rows[0]?.changes).toMatchObject({ revoked_count: 2 })
      }))
  })

  describe("POST /auth/password", () => {
    it.effect("changes the password, revokes every refresh token, and audits it", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        const other = yield* login(user.email)
        const newPassword = "a brand new passphrase"
        const client = yield* clientAs(tokens.access_token)
        yield* client.auth.changePassword({
          payload: { current_password: Redacted.make(PASSWORD), new_password: Redacted.make(newPassword) }
        })
        yield* expectUnauthorized(refresh(tokens.refresh_token))
        yield* expectUnauthorized(refresh(other.refresh_token))
        yield* expectUnauthorized(login(user.email, PASSWORD))
        expect((yield* login(user.email, newPassword)).user.id).toBe(user.id)
        const rows = yield* auditRows("user.password.change", { userId: user.id })
        expect(rows).toHaveLength(1)
        expect(rows[0]?.changes).toMatchObject({ revoked_count: 2 })
        expect(JSON.stringify(rows)).not.toContain(newPassword)
      }))

    it.effect("refuses a wrong current password (401) and a new one under 12 or over 256 characters (400)", () =>
      Effect.gen(function*() {
        const { tokens, user } = yield* session
        const change = (current_password: string, new_password: string) =>
          raw("POST", "/api/v1/auth/password", { token: tokens.access_token, body: { current_password, new_password } })
        const wrong = yield* change("not my password", "long enough new password")
        expect(wrong.status).toBe(401)
        const short = yield* change(PASSWORD, "elevenchars")
        expect(short.status).toBe(400)
        expect(short.body["errors"]).toEqual([{ path: "new_password", message: "must be at least 12 characters" }])
        const long = yield* change(PASSWORD, "x".repeat(257))
        expect(long.status).toBe(400)
        expect(long.body["errors"]).toEqual([{ path: "new_password", message: "must be at most 256 characters" }])
        expect(JSON.stringify([short.body, long.body])).not.toContain("elevenchars")
        // exactly 12 and 256 are fine
        expect((yield* change(PASSWORD, "twelve chars")).status).toBe(204)
        expect((yield* change("twelve chars", "y".repeat(256))).status).toBe(204)
        const unauthenticated = yield* raw("POST", "/api/v1/auth/password", {
          body: { current_password: PASSWORD, new_password: "long enough new password" }
        })
        expect(unauthenticated.status).toBe(401)
        expect((yield* login(user.email, "y".repeat(256))).user.id).toBe(user.id)
      }))
  })
})

// ---------------------------------------------------------------------------------------------
// Timing: the unknown-email path verifies the password against a dummy hash, so it costs what a
// wrong password costs. Measured with the production argon2 parameters (API.md: m=19456, t=2,
// p=1; ~7 ms here, up to ~70 ms on slower machines): with the cheap test parameters a verification
// is well under 1 ms, lost in the request's own noise, and the test could not tell a missing dummy
// verification from a present one. (Checked: without it the medians differ by 2.4-2.5x here.)
// ---------------------------------------------------------------------------------------------

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

// real clock: the measurement reads performance.now() around real requests
const TimingLayer = TestApp("auth_timing", ENV, { passwords: Passwords.layer() })

layer(TimingLayer, { timeout: 120_000, excludeTestServices: true })("login timing", (it) => {
  it.effect("unknown email and wrong password take the same time (medians within 30 %)", () =>
    Effect.gen(function*() {
      const passwords = yield* Passwords
      const hash = yield* passwords.hash(Redacted.make(PASSWORD))
      expect(hash).toContain("$m=19456,t=2,p=1$")
      // one user per attempt: the per-email limit is 5 per minute
      const users = yield* Effect.forEach(Array.from({ length: 16 }), () =>
        seedUser({ hash }).pipe(Effect.provide(UsersRepo.Default)))
      const attempt = (email: string) =>
        Effect.gen(function*() {
          const started = performance.now()
          const response = yield* raw("POST", "/api/v1/auth/login", { body: { email, password: "wrong password" } })
          expect(response.status).toBe(401)
          return performance.now() - started
        })
      // warm-up: connections, JIT, and the lazily computed dummy hash
      yield* attempt(nextEmail("warmup"))
      yield* attempt(users[15]!.email)
      const measure = Effect.gen(function*() {
        const unknown: Array<number> = []
        const wrong: Array<number> = []
        // interleaved, alternating which goes first, so drift in machine load hits both series alike
        for (let i = 0; i < 15; i++) {
          const ghost = attempt(nextEmail("ghost"))
          const known = attempt(users[i]!.email)
          const [u, w] = i % 2 === 0 ? yield* Effect.all([ghost, known]) : (yield* Effect.all([known, ghost])).reverse()
          unknown.push(u!)
          wrong.push(w!)
        }
        const [a, b] = [median(unknown), median(wrong)]
        return Math.max(a, b) / Math.min(a, b)
      })
      // A loaded machine (parallel test files) can skew a round with a burst of latency; a missing
      // dummy verification skews every round (2.4-2.5x here, checked), so the best of three counts.
      let ratio = Number.POSITIVE_INFINITY
      for (let round = 0; round < 3 && ratio >= 1.3; round++) {
        ratio = Math.min(ratio, yield* measure)
      }
      expect(ratio).toBeLessThan(1.3)
    }))
})
