import { pbkdf2, timingSafeEqual } from "node:crypto"
import { promisify } from "node:util"

import { Algorithm, hash as argon2Hash, verify as argon2Verify } from "@node-rs/argon2"
import { Effect, Layer, Redacted } from "effect"

const pbkdf2Async = promisify(pbkdf2)

export interface Argon2Params {
  readonly memoryCost: number
  readonly timeCost: number
  readonly parallelism: number
}

/** API.md section 2: argon2id, m=19456 KiB, t=2, p=1. */
export const PRODUCTION_ARGON2: Argon2Params = { memoryCost: 19456, timeCost: 2, parallelism: 1 }

/** test-chatkit's format: "<32 hex salt>$<64 hex PBKDF2-HMAC-SHA256, 390000 iterations>". */
const LEGACY_HASH = /^([0-9a-f]{32})\$([0-9a-f]{64})$/i
const LEGACY_ITERATIONS = 390_000

export interface PasswordCheck {
  readonly valid: boolean
  /** true when the stored hash is legacy or uses other argon2 parameters: store a new hash */
  readonly needsRehash: boolean
}

const verifyLegacy = async (password: string, salt: string, expectedHex: string) => {
  // the salt is the UTF-8 bytes of the hex string itself, as test-chatkit did
  const derived = await pbkdf2Async(password, Buffer.from(salt, "utf8"), LEGACY_ITERATIONS, 32, "sha256")
  return timingSafeEqual(derived, Buffer.from(expectedHex, "hex"))
}

const paramsOf = (stored: string) => /\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(stored)

const make = (params: Argon2Params) => {
  const options = { algorithm: Algorithm.Argon2id, ...params }
  // Hashing and verifying run on libuv's thread pool (the library's async API), off the event loop.
  const hash = (password: Redacted.Redacted<string>) =>
    Effect.promise(() => argon2Hash(Redacted.value(password), options)).pipe(Effect.withSpan("Passwords.hash"))

  const verify = (password: Redacted.Redacted<string>, stored: string): Effect.Effect<PasswordCheck> =>
    Effect.promise(async () => {
      const plain = Redacted.value(password)
      const legacy = LEGACY_HASH.exec(stored)
      if (legacy !== null) {
        return { valid: await verifyLegacy(plain, legacy[1]!, legacy[2]!), needsRehash: true }
      }
      if (!stored.startsWith("$argon2")) return { valid: false, needsRehash: false }
      const valid = await argon2Verify(stored, plain).catch(() => false)
      const current = paramsOf(stored)
      const needsRehash = !stored.startsWith("$argon2id$") || current === null ||
        Number(current[1]) !== params.memoryCost || Number(current[2]) !== params.timeCost ||
        Number(current[3]) !== params.parallelism
      return { valid, needsRehash }
    }).pipe(Effect.withSpan("Passwords.verify"))

  // Verified when the email is unknown, so that answer takes as long as a wrong password.
  const dummyHash = Effect.runSync(Effect.cached(hash(Redacted.make("dummy password for timing equalization"))))
  const verifyDummy = (password: Redacted.Redacted<string>) =>
    Effect.flatMap(dummyHash, (stored) => verify(password, stored)).pipe(Effect.asVoid)

  return { hash, verify, verifyDummy } as const
}

/** Password hashing (argon2id) and verification, including test-chatkit's legacy hashes. */
export class Passwords extends Effect.Tag("chatkit/Passwords")<Passwords, ReturnType<typeof make>>() {
  static readonly layer = (params: Argon2Params = PRODUCTION_ARGON2) => Layer.sync(Passwords, () => make(params))
  /** Cheap parameters for tests that do not check the cost itself. */
  static readonly layerTest = Passwords.layer({ memoryCost: 1024, timeCost: 1, parallelism: 1 })
}
