import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"

import { MAX_USER_MESSAGE_CHARACTERS, UNSUPPORTED_TYPES } from "../domain/ChatkitRequest.js"
import { ConflictProblem, NotFoundProblem } from "../domain/errors.js"
import { AdminThread, ThreadId, ThreadItem } from "../domain/Thread.js"
import { Page, PageParams } from "./schemas.js"
import { AdminAuthentication, Authentication } from "./Security.js"

/**
 * The ChatKit protocol endpoint (API.md section 7, CHATKIT-PROTOCOL.md). Its body is decoded by
 * type in the service (`decodeChatkitRequest`), as leniently as the reference server, so the
 * schema here documents it rather than decodes it.
 */
export class ConversationsApi extends HttpApiGroup.make("conversations")
  .add(
    HttpApiEndpoint.post("chatkit", "/chatkit")
      .setPayload(Schema.Unknown.annotations({
        identifier: "ChatkitRequest",
        description: "`{type, params, metadata?}`; `metadata.workflow_id` picks the workflow of a new thread"
      }))
      .addSuccess(Schema.Unknown.annotations({
        identifier: "ChatkitResponse",
        description: "text/event-stream for threads.create, threads.add_user_message and threads.retry_after_item; " +
          "a JSON document (a Thread, a Page, or {}) for the other types"
      }))
      .addError(NotFoundProblem)
      .addError(ConflictProblem)
      .middleware(Authentication)
      .annotate(OpenApi.Summary, "ChatKit protocol: threads, streamed answers, history")
      .annotate(
        OpenApi.Description,
        "Streaming: threads.create {input}, threads.add_user_message {thread_id, input}, threads.retry_after_item " +
          "{thread_id, item_id} answer server-sent events (stream_options first, then thread and item events; an " +
          "error after the stream started is an `error` event). JSON: threads.get_by_id (the newest 50 items, " +
          "oldest first), threads.list and items.list (cursor pages {data, has_more, after}, limit 1-100, default 20, " +
          "order desc by default), threads.update {thread_id, title}, threads.delete, items.feedback {thread_id, " +
          `item_ids, kind}. A message has 1 to ${MAX_USER_MESSAGE_CHARACTERS} characters. Another user's thread is a ` +
          `404. One turn at a time per thread: a message or retry sent while an answer is still streaming is a 409. ` +
          `Not supported yet (400): ${UNSUPPORTED_TYPES.join(", ")}.`
      )
  )
  .annotate(OpenApi.Title, "Conversations")
{}

const PositiveId = Schema.NumberFromString.pipe(Schema.int(), Schema.positive())

/** Conversations as administrators review them (API.md section 7): standard pages, reads only. */
export class ThreadsAdminApi extends HttpApiGroup.make("threadsAdmin")
  .add(
    HttpApiEndpoint.get("list", "/admin/threads")
      .setUrlParams(Schema.Struct({
        ...PageParams,
        workflow_id: Schema.optional(PositiveId),
        user_id: Schema.optional(PositiveId)
      }))
      .addSuccess(Page(AdminThread))
      .annotate(OpenApi.Summary, "List conversations")
      .annotate(
        OpenApi.Description,
        "Live threads of every user, most recently active first (ties by id), filtered by workflow and owner."
      )
  )
  .add(
    HttpApiEndpoint.get("items", "/admin/threads/:thread_id/items")
      .setPath(Schema.Struct({ thread_id: ThreadId }))
      .setUrlParams(Schema.Struct(PageParams))
      .addSuccess(Page(ThreadItem))
      .addError(NotFoundProblem)
      .annotate(OpenApi.Summary, "A conversation's items")
      .annotate(
        OpenApi.Description,
        "Every item of a live thread in order, hidden ones included, as the protocol stores them."
      )
  )
  .middleware(AdminAuthentication)
  .annotate(OpenApi.Title, "Conversations (admin)")
{}
