import { describe, expect, it } from "@effect/vitest"
import { Either, Redacted } from "effect"

import { apiKeyHint, deriveKey, makeSecretBox } from "../src/features/settings/SecretBox.js"

const SECRET = "app-settings-secret-0123456789-abcdefgh"
const OTHER = "another-secret-0123456789-abcdefghijklmn"
const KEY = "sk-test-DISTINCTIVE-raw-key-9f3a"

const flip = (sealed: string, part: number) => {
  const parts = sealed.split(".")
  const bytes = Buffer.from(parts[part] ?? "", "base64url")
  bytes[0] = (bytes[0] ?? 0) ^ 1
  parts[part] = bytes.toString("base64url")
  return parts.join(".")
}

describe("SecretBox (AES-256-GCM)", () => {
  it("round-trips a value and never stores it in clear", () => {
    const box = makeSecretBox(SECRET)
    const { sealed, keyId } = box.seal(KEY)
    expect(sealed).not.toContain(KEY)
    expect(sealed.startsWith(`v1.${keyId}.`)).toBe(true)
    expect(keyId).toMatch(/^[0-9a-f]{8}$/)
    expect(keyId).toBe(deriveKey(SECRET).id)
    const opened = box.open(sealed)
    expect(Either.isRight(opened) && Redacted.value(opened.right)).toBe(KEY)
  })

  it("uses a new nonce every time: the same value seals differently", () => {
    const box = makeSecretBox(SECRET)
    const sealed = Array.from({ length: 20 }, () => box.seal(KEY).sealed)
    expect(new Set(sealed).size).toBe(20)
    expect(new Set(sealed.map((s) => s.split(".")[2])).size).toBe(20)
  })

  it("refuses a tampered nonce, ciphertext, tag or key id, and garbage", () => {
    const box = makeSecretBox(SECRET)
    const { sealed } = box.seal(KEY)
    for (const part of [2, 3, 4]) expect(Either.isLeft(box.open(flip(sealed, part)))).toBe(true)
    const parts = sealed.split(".")
    expect(Either.isLeft(box.open([parts[0], "00000000", ...parts.slice(2)].join(".")))).toBe(true)
    expect(Either.isLeft(box.open("not sealed"))).toBe(true)
    expect(Either.isLeft(box.open(""))).toBe(true)
  })

  it("refuses a value sealed under another key, with a message that does not echo it", () => {
    const { sealed } = makeSecretBox(OTHER).seal(KEY)
    const opened = makeSecretBox(SECRET).open(sealed)
    expect(Either.isLeft(opened)).toBe(true)
    if (Either.isLeft(opened)) expect(opened.left.message).not.toContain(KEY)
  })

  it("rotates: a box with the old secret among its previous ones opens old values and seals with the new", () => {
    const old = makeSecretBox(OTHER).seal(KEY).sealed
    const rotated = makeSecretBox(SECRET, [OTHER])
    const opened = rotated.open(old)
    expect(Either.isRight(opened) && Redacted.value(opened.right)).toBe(KEY)
    expect(rotated.seal(KEY).keyId).toBe(deriveKey(SECRET).id)
  })

  it("hints show only the last 4 characters, and none of a short key", () => {
    expect(apiKeyHint(KEY)).toBe("••••9f3a")
    expect(apiKeyHint("short-key")).toBe("••••")
  })
})
