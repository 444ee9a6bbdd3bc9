import { Either, ParseResult, Schema } from "effect"

import { type FieldIssue, MAX_LISTED_ISSUES, ValidationError, withoutActualValue } from "./errors.js"
import { FeedbackKind, JsonObject, MAX_PAGE_LIMIT, PageOrder, ThreadId, ThreadItemId } from "./Thread.js"

/**
 * The body of `POST /api/v1/chatkit`: `{type, params, metadata?}`, a union on `type`
 * (CHATKIT-PROTOCOL.md section 1). Decoding is as lenient as the reference server: unknown keys
 * are ignored (clients send extras such as `branch_id`), and the fields the reference requires but
 * clients omit get their defaults. Anything else wrong is a 400 before a stream starts.
 */

/** The longest user message, in code points summed over its text parts. */
export const MAX_USER_MESSAGE_CHARACTERS = 32_000

const InputText = Schema.Struct({ type: Schema.Literal("input_text"), text: Schema.String })

const InputTag = Schema.Struct({
  type: Schema.Literal("input_tag"),
  id: Schema.String.pipe(Schema.maxLength(200)),
  text: Schema.String,
  data: Schema.optionalWith(JsonObject, { default: () => ({}) }),
  group: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(200)))),
  interactive: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

const codePoints = (text: string) => Array.from(text).length

/** `UserMessageInput`: at least one non-blank character, at most MAX_USER_MESSAGE_CHARACTERS in all. */
export const UserMessageInput = Schema.Struct({
  content: Schema.Array(Schema.Union(InputText, InputTag)).pipe(Schema.maxItems(100)),
  attachments: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.maxLength(200))).pipe(Schema.maxItems(20)), {
    default: () => []
  }),
  quoted_text: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(MAX_USER_MESSAGE_CHARACTERS)))),
  inference_options: Schema.optionalWith(
    Schema.Struct({
      tool_choice: Schema.optional(Schema.NullOr(Schema.Struct({ id: Schema.String.pipe(Schema.maxLength(200)) }))),
      model: Schema.optional(Schema.NullOr(Schema.String.pipe(Schema.maxLength(200))))
    }),
    { default: () => ({}) }
  )
}).pipe(
  Schema.filter((input) => {
    const texts = input.content.map((part) => part.text)
    if (texts.join("").trim() === "") return { path: ["content"], message: "the message has no text" }
    const length = texts.reduce((sum, text) => sum + codePoints(text), 0)
    return length <= MAX_USER_MESSAGE_CHARACTERS ||
      { path: ["content"], message: `the message is over ${MAX_USER_MESSAGE_CHARACTERS} characters` }
  })
)
export type UserMessageInput = typeof UserMessageInput.Type

const Limit = Schema.Int.pipe(Schema.between(1, MAX_PAGE_LIMIT))
const Cursor = Schema.String.pipe(Schema.maxLength(300))

const request = <const Type extends string, Fields extends Schema.Struct.Fields>(type: Type, params: Fields) =>
  Schema.Struct({
    type: Schema.Literal(type),
    params: Schema.Struct(params),
    metadata: Schema.optionalWith(JsonObject, { default: () => ({}) })
  })

const ThreadPageParams = {
  limit: Schema.optional(Schema.NullOr(Limit)),
  order: Schema.optionalWith(PageOrder, { default: () => "desc" as const }),
  after: Schema.optional(Schema.NullOr(Cursor))
}

/** A number in `metadata.workflow_id` is a workflow id: one no id column holds is a 400, not a failed query. */
const pickedWorkflow = (request: { readonly metadata: JsonObject }) => {
  const id = request.metadata["workflow_id"]
  return typeof id !== "number" || (Number.isSafeInteger(id) && id >= 1) ||
    { path: ["metadata", "workflow_id"], message: "must be a workflow id (a positive integer)" }
}

/** The requests answered with an SSE stream, by type. */
const streaming = {
  "threads.create": request("threads.create", { input: UserMessageInput }).pipe(Schema.filter(pickedWorkflow)),
  "threads.add_user_message": request("threads.add_user_message", { thread_id: ThreadId, input: UserMessageInput }),
  "threads.retry_after_item": request("threads.retry_after_item", { thread_id: ThreadId, item_id: ThreadItemId }),
  // test-chatkit's client sends it after loading an active thread
  "threads.resume": request("threads.resume", { thread_id: ThreadId })
}

/** The requests answered with one JSON document, by type. */
const json = {
  "threads.get_by_id": request("threads.get_by_id", { thread_id: ThreadId }),
  "threads.list": request("threads.list", ThreadPageParams),
  "items.list": request("items.list", { thread_id: ThreadId, ...ThreadPageParams }),
  "threads.update": request("threads.update", {
    thread_id: ThreadId,
    title: Schema.Trim.pipe(Schema.minLength(1), Schema.maxLength(200))
  }),
  "threads.delete": request("threads.delete", { thread_id: ThreadId }),
  "items.feedback": request("items.feedback", {
    thread_id: ThreadId,
    item_ids: Schema.Array(ThreadItemId).pipe(Schema.minItems(1), Schema.maxItems(100)),
    kind: FeedbackKind
  })
}

export const StreamingRequest = Schema.Union(...Object.values(streaming))
export type StreamingRequest = typeof StreamingRequest.Type

export const JsonRequest = Schema.Union(...Object.values(json))
export type JsonRequest = typeof JsonRequest.Type

export const ChatkitRequest = Schema.Union(StreamingRequest, JsonRequest)
export type ChatkitRequest = typeof ChatkitRequest.Type

/** Protocol types this backend knows but does not serve yet (attachments, tools, widgets, dictation). */
export const UNSUPPORTED_TYPES = [
  "threads.add_client_tool_output",
  "threads.custom_action",
  "threads.sync_custom_action",
  "threads.add_structured_input",
  "attachments.create",
  "attachments.delete",
  "input.transcribe"
] as const

/** Each served type's own schema, so a bad request is measured against its type only. */
const byType: ReadonlyMap<string, Schema.Schema<ChatkitRequest, unknown>> = new Map(
  Object.entries({ ...streaming, ...json }) as Array<[string, Schema.Schema<ChatkitRequest, unknown>]>
)
const STREAMING_TYPES: ReadonlySet<string> = new Set(Object.keys(streaming))
const SERVED_TYPES = [...byType.keys()]

export const isStreamingRequest = (request: ChatkitRequest): request is StreamingRequest =>
  STREAMING_TYPES.has(request.type)

const issuePath = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".") || "body"

const invalid = (detail: string, errors: ReadonlyArray<FieldIssue>) => new ValidationError({ detail, errors })

/**
 * A body as one of the requests above, or the 400 to answer. The detail names a type only from
 * the server's own lists, never the text the client sent.
 */
export const decodeChatkitRequest = (body: unknown): Either.Either<ChatkitRequest, ValidationError> => {
  const type = typeof body === "object" && body !== null ? (body as { readonly type?: unknown }).type : undefined
  if (typeof type !== "string") {
    return Either.left(
      invalid("A ChatKit request is {type, params, metadata?}", [{ path: "type", message: "is missing" }])
    )
  }
  const unsupported = UNSUPPORTED_TYPES.find((known) => known === type)
  if (unsupported !== undefined) {
    return Either.left(invalid(`The ChatKit request type ${unsupported} is not supported yet`, [{
      path: "type",
      message: "is not supported yet"
    }]))
  }
  const schema = byType.get(type)
  if (schema === undefined) {
    return Either.left(
      invalid(`Unknown ChatKit request type; supported: ${SERVED_TYPES.join(", ")}`, [{
        path: "type",
        message: "is not a supported request type"
      }])
    )
  }
  return Either.mapLeft(
    Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "ignore" })(body),
    (error) =>
      invalid(
        `The ${type} request does not match its schema`,
        ParseResult.ArrayFormatter.formatErrorSync(error).slice(0, MAX_LISTED_ISSUES).map((issue) => ({
          path: issuePath(issue.path),
          message: withoutActualValue(issue.message)
        }))
      )
  )
}
