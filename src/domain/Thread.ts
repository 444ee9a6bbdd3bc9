import { Schema } from "effect"

/**
 * ChatKit conversations (API.md section 7, CHATKIT-PROTOCOL.md section 2): threads and their items
 * as the protocol serialises them (snake_case fields, ISO 8601 UTC dates). Items are passed through:
 * besides `id`, `thread_id`, `created_at` and `type`, an item's fields are whatever the protocol (or
 * a newer one) puts there, so an item kind this backend does not know round-trips unchanged.
 */

/** `thr_` and 16 lower-case hex digits (tables: chat_threads.id). */
export const ThreadId = Schema.String.pipe(
  Schema.pattern(/^thr_[0-9a-f]{16}$/, { message: () => "must be a thread id (thr_ and 16 hex digits)" }),
  Schema.brand("ThreadId")
).annotations({ identifier: "ThreadId", examples: ["thr_0123456789abcdef" as never] })
export type ThreadId = typeof ThreadId.Type

/** The protocol's item id prefixes (chatkit-python `store.py` `_ID_PREFIXES`, attachments aside). */
export const THREAD_ITEM_PREFIXES = ["msg", "tc", "wf", "tsk", "shcx"] as const
export type ThreadItemPrefix = (typeof THREAD_ITEM_PREFIXES)[number]

/** A prefix, `_`, then 1-200 of `[A-Za-z0-9_-]` (provider ids such as `msg_68f…` are long). */
export const THREAD_ITEM_ID_PATTERN = /^(msg|tc|wf|tsk|shcx)_[A-Za-z0-9_-]{1,200}$/

export const ThreadItemId = Schema.String.pipe(
  Schema.pattern(THREAD_ITEM_ID_PATTERN, {
    message: () => `must be an item id (${THREAD_ITEM_PREFIXES.join(", ")}, then _ and up to 200 characters)`
  }),
  Schema.brand("ThreadItemId")
).annotations({ identifier: "ThreadItemId", examples: ["msg_0123456789abcdef" as never] })
export type ThreadItemId = typeof ThreadItemId.Type

/** The id prefix of a new item of protocol type `type` (`generate_item_id` upstream); unknown types are messages. */
export const itemIdPrefix = (type: string): ThreadItemPrefix => {
  switch (type) {
    case "client_tool_call":
      return "tc"
    case "workflow":
      return "wf"
    case "task":
      return "tsk"
    case "sdk_hidden_context":
      return "shcx"
    default:
      return "msg"
  }
}

/** Item types the client never sees (filtered from reads after paging; they still count in `has_more`). */
export const HIDDEN_ITEM_TYPES: ReadonlySet<string> = new Set(["hidden_context_item", "sdk_hidden_context"])

/** `{type: "active"} | {type: "locked" | "closed", reason?}`; only an active thread takes new turns. */
export const ThreadStatus = Schema.Union(
  Schema.Struct({ type: Schema.Literal("active") }),
  Schema.Struct({
    type: Schema.Literal("locked", "closed"),
    reason: Schema.optional(Schema.NullOr(Schema.String))
  })
).annotations({ identifier: "ThreadStatus" })
export type ThreadStatus = typeof ThreadStatus.Type

export const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })
export type JsonObject = typeof JsonObject.Type

/** `Page<T>` of the protocol: `after` is the exclusive cursor of the next page (the last row's id) or null. */
export const CursorPage = <A, I, R, C, CI, CR>(item: Schema.Schema<A, I, R>, cursor: Schema.Schema<C, CI, CR>) =>
  Schema.Struct({
    data: Schema.Array(item),
    has_more: Schema.Boolean,
    after: Schema.NullOr(cursor)
  })
export interface CursorPage<A, C = string> {
  readonly data: ReadonlyArray<A>
  readonly has_more: boolean
  readonly after: C | null
}

export const PageOrder = Schema.Literal("asc", "desc")
export type PageOrder = typeof PageOrder.Type

/** Page sizes of `threads.list` and `items.list` (API.md section 7). */
export const DEFAULT_PAGE_LIMIT = 20
export const MAX_PAGE_LIMIT = 100
/** The newest items `threads.get_by_id` loads, in chronological order. */
export const THREAD_WINDOW = 50

/** A stored item as the protocol serialises it: the base fields, then the item's own, passed through. */
export const ThreadItem = Schema.Struct(
  {
    id: ThreadItemId,
    thread_id: ThreadId,
    created_at: Schema.Date,
    type: Schema.String
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations({ identifier: "ThreadItem" })
export type ThreadItem = typeof ThreadItem.Type

/** `ThreadMetadata`: a thread without its items (`threads.list` entries carry an empty items page). */
export const ThreadMetadata = Schema.Struct({
  id: ThreadId,
  title: Schema.NullOr(Schema.String),
  created_at: Schema.Date,
  status: ThreadStatus,
  metadata: JsonObject
}).annotations({ identifier: "ThreadMetadata" })
export type ThreadMetadata = typeof ThreadMetadata.Type

/** A thread as an administrator reviews it: its metadata, its owner, its workflow and version. */
export const AdminThread = Schema.Struct({
  ...ThreadMetadata.fields,
  owner_id: Schema.Int,
  workflow_id: Schema.Int,
  workflow_version_id: Schema.NullOr(Schema.Int),
  updated_at: Schema.Date
}).annotations({ identifier: "AdminThread" })
export type AdminThread = typeof AdminThread.Type

export const ThreadItemsPage = CursorPage(ThreadItem, ThreadItemId)

export const Thread = Schema.Struct({
  ...ThreadMetadata.fields,
  items: ThreadItemsPage
}).annotations({ identifier: "Thread" })
export type Thread = typeof Thread.Type

export const FeedbackKind = Schema.Literal("positive", "negative")
export type FeedbackKind = typeof FeedbackKind.Type

/**
 * `after` is not a live thread of the caller (or not an item of the thread): the endpoint answers
 * 400. The same error whether the id is another user's, deleted or forged.
 */
export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()("InvalidCursor", {
  after: Schema.String,
  detail: Schema.String
}) {}

/** A write to a locked or closed thread; the stream turns it into an `error` event. */
export class ThreadNotWritable extends Schema.TaggedError<ThreadNotWritable>()("ThreadNotWritable", {
  thread_id: ThreadId,
  status: ThreadStatus,
  detail: Schema.String
}) {}
