import { Either } from "effect"
import { describe, expect, it } from "vitest"

import { decodeChatkitRequest, MAX_USER_MESSAGE_CHARACTERS } from "../src/domain/ChatkitRequest.js"

const text = (t: string) => ({ content: [{ type: "input_text", text: t }] })
const ok = (body: unknown) =>
  Either.getOrThrowWith(decodeChatkitRequest(body), (e) => new Error(JSON.stringify(e.errors)))
const refused = (body: unknown) => {
  const result = decodeChatkitRequest(body)
  if (Either.isRight(result)) throw new Error("expected a refusal")
  return result.left
}

describe("ChatKit request decoding", () => {
  it("defaults what the reference requires but clients omit, and ignores unknown keys", () => {
    const request = ok({ type: "threads.create", params: { input: text("Hello"), branch_id: "main" }, extra: 1 })
    expect(request).toEqual({
      type: "threads.create",
      params: { input: { content: [{ type: "input_text", text: "Hello" }], attachments: [], inference_options: {} } },
      metadata: {}
    })
    const tagged = ok({
      type: "threads.add_user_message",
      params: {
        thread_id: "thr_0123456789abcdef",
        input: { content: [{ type: "input_tag", id: "t1", text: "@ada" }, { type: "input_text", text: " hi" }] }
      }
    })
    expect(tagged.type === "threads.add_user_message" && tagged.params.input.content[0]).toEqual({
      type: "input_tag",
      id: "t1",
      text: "@ada",
      data: {},
      interactive: false
    })
  })

  it("pages default to desc, with an optional limit of 1 to 100", () => {
    expect(ok({ type: "threads.list", params: {} })).toMatchObject({ params: { order: "desc" } })
    expect(refused({ type: "threads.list", params: { limit: 101 } }).errors?.[0]?.path).toBe("params.limit")
    expect(
      refused({ type: "items.list", params: { thread_id: "thr_0123456789abcdef", order: "up" } }).errors?.[0]?.path
    )
      .toBe("params.order")
  })

  it("refuses an unknown type naming the supported ones, never the type sent", () => {
    const error = refused({ type: "threads.explode<script>", params: {} })
    expect(error.detail).toContain("threads.create")
    expect(JSON.stringify(error)).not.toContain("explode")
    expect(refused({ params: {} }).errors).toEqual([{ path: "type", message: "is missing" }])
    expect(refused("not an object").errors?.[0]?.path).toBe("type")
  })

  it("refuses the protocol types not served yet, by their name", () => {
    for (
      const type of [
        "threads.add_client_tool_output",
        "attachments.create",
        "input.transcribe",
        "threads.custom_action"
      ]
    ) {
      expect(refused({ type, params: {} }).detail).toBe(`The ChatKit request type ${type} is not supported yet`)
    }
  })

  it("refuses an empty, blank or too long message, counting code points", () => {
    expect(refused({ type: "threads.create", params: { input: text("  \n ") } }).errors?.[0]?.message).toBe(
      "the message has no text"
    )
    expect(refused({ type: "threads.create", params: { input: { content: [] } } }).errors?.[0]?.path).toBe(
      "params.input.content"
    )
    const limit = "😀".repeat(MAX_USER_MESSAGE_CHARACTERS)
    expect(ok({ type: "threads.create", params: { input: text(limit) } }).type).toBe("threads.create")
    expect(refused({ type: "threads.create", params: { input: text(limit + "x") } }).errors?.[0]?.message)
      .toBe(`the message is over ${MAX_USER_MESSAGE_CHARACTERS} characters`)
  })

  it("names the bad fields without echoing what was sent", () => {
    const error = refused({
      type: "threads.retry_after_item",
      params: { thread_id: "TopSecret-123", item_id: ["TopSecret"] }
    })
    expect(error.errors?.map((issue) => issue.path).sort()).toEqual(["params.item_id", "params.thread_id"])
    expect(JSON.stringify(error)).not.toContain("TopSecret")
  })
})
