import { describe, expect, it } from "@effect/vitest"

import { cleanTitle, localTitle, MAX_TITLE_LENGTH } from "../src/features/threads/Titles.js"

describe("thread titles", () => {
  it("keeps a model's first line, without quotes, a 'Title:' label, a final period or extra spaces", () => {
    expect(cleanTitle(`"Planning a trip to Lyon"`)).toBe("Planning a trip to Lyon")
    expect(cleanTitle("Title: Budget  review.\nHere is why I chose it")).toBe("Budget review")
    expect(cleanTitle("\n\n  « Recette de crêpes »  ")).toBe("Recette de crêpes")
    expect(cleanTitle("**Bold title**")).toBe("Bold title")
    expect(cleanTitle("   ")).toBe("")
  })

  it("cuts a long answer to 100 characters, counting code points", () => {
    const title = cleanTitle("🙂".repeat(300))
    expect([...title]).toHaveLength(MAX_TITLE_LENGTH)
    expect(title.endsWith("…")).toBe(true)
  })

  it("titles a thread offline with the first message's first eight words", () => {
    expect(localTitle("  How do I  reset my password? ")).toBe("How do I reset my password?")
    expect(localTitle("one two three four five six seven eight nine ten")).toBe(
      "one two three four five six seven eight…"
    )
  })
})
