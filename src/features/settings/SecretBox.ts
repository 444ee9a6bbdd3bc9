import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto"

import { Data, Effect, Either, Option, Redacted } from "effect"

import { AppConfig } from "../../platform/Config.js"

/**
 * Encryption at rest of the model providers' API keys: AES-256-GCM with a random 12-byte nonce
 * per value, under a key derived with HKDF-SHA256 from `APP_SETTINGS_SECRET_KEY` (falling back to
 * `AUTH_SECRET_KEY`).
 *
 * A sealed value is `v1.<key id>.<nonce>.<ciphertext>.<tag>` (base64url parts). The key id (first
 * 8 hex of the SHA-256 of the derived key) says which key sealed it, so keys can rotate: set the new
 * secret and keep the old one among the secrets that still open values; values re-seal when an
 * admin sets the key again.
 */

const VERSION = "v1"
const NONCE_BYTES = 12
const TAG_BYTES = 16
/** Binds every ciphertext to its purpose: a value sealed for something else does not open here. */
const AAD = Buffer.from("chatkit:model-provider-api-key:v1")

export interface DerivedKey {
  readonly id: string
  readonly key: Buffer
}

export class SecretBoxError extends Data.TaggedError("SecretBoxError")<{ readonly reason: string }> {
  override get message() {
    return `cannot open the secret: ${this.reason}`
  }
}

/** The 32-byte AES key of a secret, and its id. */
export const deriveKey = (secret: string): DerivedKey => {
  const key = Buffer.from(
    hkdfSync("sha256", Buffer.from(secret, "utf8"), "chatkit/app-settings", "aes-256-gcm key v1", 32)
  )
  return { id: createHash("sha256").update(key).digest("hex").slice(0, 8), key }
}

export interface SecretBoxShape {
  /** The id of the key new values are sealed with. */
  readonly keyId: string
  readonly seal: (plaintext: string) => { readonly sealed: string; readonly keyId: string }
  /** Fails when the value is garbled, was tampered with, or its key is not configured. */
  readonly open: (sealed: string) => Either.Either<Redacted.Redacted<string>, SecretBoxError>
}

/**
 * A box sealing with `primary` and opening values sealed with `primary` or any of `previous`
 * (older secrets kept for rotation).
 */
export const makeSecretBox = (primary: string, previous: ReadonlyArray<string> = []): SecretBoxShape => {
  const current = deriveKey(primary)
  const keys = new Map<string, Buffer>([[current.id, current.key]])
  for (const secret of previous) {
    const derived = deriveKey(secret)
    if (!keys.has(derived.id)) keys.set(derived.id, derived.key)
  }
  return {
    keyId: current.id,
    seal: (plaintext) => {
      const nonce = randomBytes(NONCE_BYTES)
      const cipher = createCipheriv("aes-256-gcm", current.key, nonce, { authTagLength: TAG_BYTES })
      cipher.setAAD(AAD)
      const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()])
      const tag = cipher.getAuthTag()
      const parts = [
        VERSION,
        current.id,
        nonce.toString("base64url"),
        ciphertext.toString("base64url"),
        tag.toString("base64url")
      ]
      return { sealed: parts.join("."), keyId: current.id }
    },
    open: (sealed) => {
      const parts = sealed.split(".")
      if (parts.length !== 5 || parts[0] !== VERSION) {
        return Either.left(new SecretBoxError({ reason: "not a sealed value" }))
      }
      const [, keyId = "", nonceText = "", ciphertextText = "", tagText = ""] = parts
      const key = keys.get(keyId)
      if (key === undefined) return Either.left(new SecretBoxError({ reason: `key ${keyId} is not configured` }))
      const nonce = Buffer.from(nonceText, "base64url")
      const tag = Buffer.from(tagText, "base64url")
      if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) {
        return Either.left(new SecretBoxError({ reason: "not a sealed value" }))
      }
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES })
        decipher.setAAD(AAD)
        decipher.setAuthTag(tag)
        const plaintext = Buffer.concat([decipher.update(Buffer.from(ciphertextText, "base64url")), decipher.final()])
        return Either.right(Redacted.make(plaintext.toString("utf8")))
      } catch {
        return Either.left(new SecretBoxError({ reason: "authentication failed (tampered with or another key)" }))
      }
    }
  }
}

/** `••••1234` for a key of 16 characters or more; a shorter key shows no characters at all. */
export const apiKeyHint = (key: string) => (key.length >= 16 ? `••••${key.slice(-4)}` : "••••")

/**
 * The box of this process: seals with APP_SETTINGS_SECRET_KEY (or AUTH_SECRET_KEY when it is not
 * set) and also opens values sealed with AUTH_SECRET_KEY, so setting APP_SETTINGS_SECRET_KEY later
 * does not lose the keys stored before.
 */
export class SecretBox extends Effect.Service<SecretBox>()("chatkit/SecretBox", {
  effect: Effect.map(AppConfig, (config): SecretBoxShape => {
    const auth = Redacted.value(config.authSecretKey)
    return Option.match(config.appSettingsSecretKey, {
      onNone: () => makeSecretBox(auth),
      onSome: (secret) => makeSecretBox(Redacted.value(secret), [auth])
    })
  })
}) {}
