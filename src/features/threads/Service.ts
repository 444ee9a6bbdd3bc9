import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Cache, Duration, Effect, Either, Option, type Scope } from "effect"

import {
  type ChatkitRequest,
  decodeChatkitRequest,
  isStreamingRequest,
  type JsonRequest,
  type StreamingRequest,
  type UserMessageInput
} from "../../domain/ChatkitRequest.js"
import { type Conflict, NotFound, ValidationError } from "../../domain/errors.js"
import { type PageRequest, toPage } from "../../domain/Page.js"
import { HIDDEN_ITEM_TYPES, type InvalidCursor, type ThreadId, type ThreadItem } from "../../domain/Thread.js"
import { CurrentUser } from "../../domain/User.js"
import { orDieOnSqlError } from "../../platform/Database.js"
import { renderedJsonResponse } from "../../platform/Http.js"
import type { ChatMessage, RetrievedSource } from "../../platform/LlmProvider.js"
import { protocolJson, SsePush, sseResponse } from "../../platform/Sse.js"
import { VectorStoresService } from "../vectors/Service.js"
import { WorkflowsPolicy } from "../workflows/Policy.js"
import { WorkflowsRepo } from "../workflows/Repo.js"
import { WorkflowsService } from "../workflows/Service.js"
import { annotationsOf, makeAnswerWriter, type Settled } from "./AnswerWriter.js"
import { LlmRouter } from "./LlmRouter.js"
import { threadNotFound, ThreadsPolicy } from "./Policy.js"
import { type ThreadRow, ThreadsRepo, toThreadItem, toThreadMetadata } from "./Repo.js"
import {
  INITIAL_RUNTIME_STATE,
  RetrievalFailed,
  type RetrievalRequest,
  type RuntimeState,
  runTurn,
  type TurnEvent,
  type TurnFailed
} from "./Runtime.js"
import { ThreadTitles } from "./Titles.js"
import { createWithTurn, takeTurn, type Turn } from "./TurnLease.js"
import { TurnSetups } from "./TurnSetups.js"

/**
 * `POST /api/v1/chatkit` (API.md section 7): the JSON requests answer a document, the streaming
 * ones a turn of the thread's workflow as server-sent events. Everything that can be refused is
 * refused before the stream starts (400, 404); what fails after is an `error` event.
 */

const visible = (items: ReadonlyArray<ThreadItem>) => items.filter((item) => !HIDDEN_ITEM_TYPES.has(item.type))

const emptyItems = { data: [], has_more: false }

const invalidCursor = (error: InvalidCursor) =>
  new ValidationError({
    detail: error.detail,
    errors: [{ path: "params.after", message: "is not a cursor of this list" }]
  })

/**
 * The text of a stored item for the model: user and assistant messages only. A cut answer
 * (`incomplete`, `failed`) is what the user saw, so it stays in the conversation; an empty one says nothing.
 */
const asChatMessage = (item: ThreadItem): ReadonlyArray<ChatMessage> => {
  const content = Array.isArray(item["content"]) ? item["content"] as ReadonlyArray<{ readonly text?: unknown }> : []
  const text = content.map((part) => (typeof part.text === "string" ? part.text : "")).join("")
  if (item.type === "user_message") return [{ role: "user", content: text }]
  if (item.type === "assistant_message" && text !== "") return [{ role: "assistant", content: text }]
  return []
}

const userText = (input: UserMessageInput) => input.content.map((part) => part.text).join("")

const userMessagePayload = (input: UserMessageInput) => ({
  content: input.content,
  attachments: [],
  ...(input.quoted_text === undefined || input.quoted_text === null ? {} : { quoted_text: input.quoted_text }),
  inference_options: input.inference_options
})

const runtimeOf = (row: ThreadRow): RuntimeState => {
  const state = row.runtime_state["state"]
  const resumeAt = row.runtime_state["resume_at"]
  return {
    resume_at: typeof resumeAt === "string" ? resumeAt : undefined,
    state: typeof state === "object" && state !== null && !Array.isArray(state) ? state as RuntimeState["state"] : {}
  }
}

const TITLE_LENGTH = 200

/** A hit's document title for its citation: the document's `metadata.title` when it is text, else its id. */
const titleOf = (docId: string, metadata: { readonly [key: string]: unknown }) => {
  const title = metadata["title"]
  const flat = typeof title === "string" ? title.replace(/\s+/g, " ").trim() : ""
  if (flat === "") return docId
  return flat.length <= TITLE_LENGTH ? flat : `${flat.slice(0, TITLE_LENGTH - 1).replace(/[\uD800-\uDBFF]$/, "")}…`
}

/** Why a search failed, as a turn tells the user: the vectors service's errors carry a safe `detail`. */
const retrievalFailed = (error: { readonly _tag: string; readonly detail?: string }): RetrievalFailed => {
  switch (error._tag) {
    case "NotFound":
      return new RetrievalFailed({ reason: "not_found", detail: error.detail ?? "the vector store does not exist" })
    case "UpstreamUnavailable":
      return new RetrievalFailed({
        reason: "unavailable",
        detail: error.detail ?? "the embeddings provider is unavailable; retry later"
      })
    default:
      return new RetrievalFailed({ reason: "unusable", detail: error.detail ?? "the search failed" })
  }
}

const errorEvent = (message: string, allowRetry: boolean) => ({
  type: "error",
  code: "stream.error",
  message,
  allow_retry: allowRetry
})

/** The last event of a stream the server ends because it is shutting down: another instance can take the retry. */
const SHUTDOWN_EVENT = errorEvent("The server is shutting down; retry", true)

export class ThreadsService extends Effect.Service<ThreadsService>()("chatkit/ThreadsService", {
  effect: Effect.gen(function*() {
    const repo = yield* ThreadsRepo
    const policy = yield* ThreadsPolicy
    const workflows = yield* WorkflowsRepo
    // a version's graph never changes once saved: one read per version, not one per turn
    const graphs = yield* Cache.make({
      capacity: 1_000,
      timeToLive: Duration.minutes(10),
      lookup: (versionId: number) => orDieOnSqlError(workflows.loadGraph(versionId))
    })
    const workflowsPolicy = yield* WorkflowsPolicy
    const workflowsService = yield* WorkflowsService
    const router = yield* LlmRouter
    const titles = yield* ThreadTitles
    const vectors = yield* VectorStoresService
    const setups = yield* TurnSetups

    /**
     * An agent node's search: the store's hybrid search (cached per store version), as any
     * signed-in user may read stores. Each hit keeps its document's id and title for the citation.
     */
    const retrieve = (request: RetrievalRequest): Effect.Effect<ReadonlyArray<RetrievedSource>, RetrievalFailed> =>
      vectors.searchJson(request.storeSlug, { query: request.query, top_k: request.topK }).pipe(
        Effect.map(({ results }) =>
          results.map((hit): RetrievedSource => ({
            docId: hit.doc_id,
            title: titleOf(hit.doc_id, hit.metadata),
            text: hit.text,
            score: hit.score
          }))
        ),
        Effect.mapError(retrievalFailed),
        Effect.withSpan("ThreadsService.retrieve", { attributes: { store: request.storeSlug, top_k: request.topK } })
      )

    const thread = (row: ThreadRow) =>
      Effect.map(repo.latestItems(row.id), (page) => ({
        ...toThreadMetadata(row),
        items: { ...page, data: visible(page.data.map(toThreadItem)) }
      }))

    const json = (value: unknown) => renderedJsonResponse(protocolJson(value))

    const answerJson = (request: JsonRequest) =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        switch (request.type) {
          case "threads.get_by_id":
            return json(yield* thread(yield* policy.require(request.params.thread_id, "read")))
          case "threads.list": {
            const page = yield* repo.listThreads(user.id, {
              limit: request.params.limit ?? undefined,
              order: request.params.order,
              after: request.params.after
            }).pipe(Effect.catchTag("InvalidCursor", (error) => Effect.fail(invalidCursor(error))))
            return json({ ...page, data: page.data.map((row) => ({ ...toThreadMetadata(row), items: emptyItems })) })
          }
          case "items.list": {
            yield* policy.require(request.params.thread_id, "read")
            const page = yield* repo.listItems(request.params.thread_id, {
              limit: request.params.limit ?? undefined,
              order: request.params.order,
              after: request.params.after
            }).pipe(Effect.catchTag("InvalidCursor", (error) => Effect.fail(invalidCursor(error))))
            return json({ ...page, data: visible(page.data.map(toThreadItem)) })
          }
          case "threads.update": {
            yield* policy.require(request.params.thread_id, "read")
            const row = yield* repo.updateTitle(request.params.thread_id, request.params.title)
            return json({ ...toThreadMetadata(Option.getOrThrow(row)), items: emptyItems })
          }
          case "threads.delete":
            yield* policy.require(request.params.thread_id, "read")
            yield* repo.softDelete(request.params.thread_id)
            return json({})
          case "items.feedback":
            yield* policy.require(request.params.thread_id, "read")
            yield* repo.upsertFeedback(request.params.thread_id, user.id, request.params.item_ids, request.params.kind)
            return json({})
        }
      })

    /** The workflow a new thread runs: `metadata.workflow_id` when the user may read it, else the default. */
    const workflowFor = (metadata: Record<string, unknown>) =>
      Effect.gen(function*() {
        const requested = metadata["workflow_id"]
        if (typeof requested === "number") return yield* workflowsPolicy.require(requested, "read")
        const found = yield* workflowsService.defaultTarget
        if (Option.isNone(found)) return yield* new NotFound({ detail: "There is no default workflow" })
        return found.value
      })

    /**
     * The version a turn runs and where in it: the thread's own; when that version was deleted, the
     * workflow's active one, which the thread keeps from then on, from its start.
     */
    const versionOf = (row: ThreadRow) =>
      Effect.gen(function*() {
        if (row.workflow_version_id !== null) {
          return Option.some({ id: row.workflow_version_id, runtime: runtimeOf(row) })
        }
        const workflow = yield* workflows.find(row.workflow_id)
        const active = Option.flatMapNullable(workflow, (w) => w.active_version_id)
        if (Option.isNone(active)) return Option.none()
        yield* repo.update(row.id, { workflow_version_id: active.value, runtime_state: { state: {} } })
        return Option.some({ id: active.value, runtime: INITIAL_RUNTIME_STATE })
      })

    /**
     * A turn, its protocol events sent as they happen. Its answers are stored as they stream
     * (`answerWriter`, settled when the turn's scope closes); its runtime state is stored when it
     * ends. A turn cut short (the client went away, or a failure) leaves the runtime state as it
     * was before the turn, so the next message runs from the same place, with the cut answer in
     * the conversation.
     */
    const streamTurn = (
      row: ThreadRow,
      turn: Turn,
      text: string,
      history: ReadonlyArray<ChatMessage>,
      setupDone: Effect.Effect<void>
    ): Effect.Effect<void, never, SsePush> =>
      Effect.gen(function*() {
        const push = yield* SsePush
        const version = yield* versionOf(row)
        if (Option.isNone(version)) {
          return push(errorEvent("This conversation's workflow has no active version any more", false))
        }
        const graph = yield* graphs.get(version.value.id)
        const answer = yield* makeAnswerWriter(repo, row.id)
        // set up: the next turn may start its own (TurnSetups)
        yield* setupDone
        // a delta is the hot path (one per token): stored in memory and sent, no Effect
        const onDelta = (delta: string) => {
          answer.append(delta)
          push({
            type: "thread.item.updated",
            item_id: answer.currentId(),
            update: { type: "assistant_message.content_part.text_delta", content_index: 0, delta }
          })
        }
        const pushSettled = (settled: Option.Option<Settled>) => {
          if (Option.isNone(settled)) return
          push(
            settled.value._tag === "Stored"
              ? { type: "thread.item.done", item: settled.value.item }
              : { type: "thread.item.removed", item_id: settled.value.id }
          )
        }
        const onEvent = (event: TurnEvent): Effect.Effect<void> =>
          Effect.gen(function*() {
            switch (event._tag) {
              case "MessageStarted":
                return push({ type: "thread.item.added", item: yield* answer.start })
              case "SourcesFound": {
                // stored with the answer; told to the client now, so it can show them while the text streams
                const annotations = annotationsOf(event.sources)
                answer.annotate(annotations)
                const itemId = answer.currentId()
                return annotations.forEach((annotation, index) =>
                  push({
                    type: "thread.item.updated",
                    item_id: itemId,
                    update: {
                      type: "assistant_message.content_part.annotation_added",
                      content_index: 0,
                      annotation_index: index,
                      annotation
                    }
                  })
                )
              }
              case "MessageDone":
                return pushSettled(yield* answer.complete(event.text))
              case "TurnEnded":
                return yield* turn.end({ ...event.runtime, resume_at: event.runtime.resume_at ?? null })
            }
          }).pipe(orDieOnSqlError)
        const failed = (error: TurnFailed) =>
          Effect.map(answer.fail, (settled) => {
            pushSettled(settled)
            push(errorEvent(error.message, error.reason === "llm" || error.reason === "retrieval_unavailable"))
          })
        yield* runTurn({
          graph,
          runtime: version.value.runtime,
          userMessage: text,
          history,
          onDelta,
          onEvent,
          llmFor: router.route,
          retrieve
        }).pipe(Effect.catchAll(failed))
      }).pipe(orDieOnSqlError, Effect.scoped)

    /** Sends `events` (the opening of a stream, or all of a short one). */
    const send = (...events: ReadonlyArray<unknown>) => Effect.map(SsePush, (push) => events.forEach(push))

    const historyOf = (row: ThreadRow) =>
      Effect.map(repo.latestItems(row.id), (page) => page.data.map(toThreadItem).flatMap(asChatMessage))

    /** Stores the user message, then the events of the turn it starts; a thread just created has no history to read. */
    const userTurn = (
      row: ThreadRow,
      turn: Turn,
      input: UserMessageInput,
      opening: ReadonlyArray<unknown>,
      options: { readonly created: boolean; readonly setupDone: Effect.Effect<void> }
    ) =>
      Effect.gen(function*() {
        const history = options.created ? [] : yield* historyOf(row)
        const [stored] = yield* repo.appendItems(row.id, [{ type: "user_message", payload: userMessagePayload(input) }])
        return send(
          ...opening,
          ...(stored === undefined ? [] : [{ type: "thread.item.done", item: toThreadItem(stored) }])
        )
          .pipe(Effect.zipRight(streamTurn(row, turn, userText(input), history, options.setupDone)))
      })

    const STREAM_OPTIONS = { type: "stream_options", stream_options: { allow_cancel: true } }

    /** The thread to write to, or why it takes no message (a locked or closed thread: an error event, not a 4xx). */
    const requireWritable = (id: string) =>
      policy.require(id, "write").pipe(
        Effect.map((row) => Either.right(row)),
        Effect.catchTag("ThreadNotWritable", (error) => Effect.succeed(Either.left(error)))
      )

    /** What is refused before the stream (404, 400), then the stream; a thread that takes no message is an error event. */
    const answerStream = (request: StreamingRequest) =>
      Effect.gen(function*() {
        const user = yield* CurrentUser
        const setupDone = yield* setups.admit
        switch (request.type) {
          case "threads.create": {
            const workflow = yield* workflowFor(request.metadata)
            const { row, turn } = yield* createWithTurn(repo, (lease) =>
              repo.create({
                ownerId: user.id,
                workflowId: workflow.id,
                workflowVersionId: workflow.active_version_id,
                runtimeState: { ...INITIAL_RUNTIME_STATE },
                turn: lease
              }))
            const events = yield* turn.run(userTurn(row, turn, request.params.input, [
              STREAM_OPTIONS,
              { type: "thread.created", thread: { ...toThreadMetadata(row), items: emptyItems } }
            ], { created: true, setupDone }))
            // queued once the turn's events end, however they end (a client gone mid-answer keeps it): its
            // model call and writes would otherwise compete with the answer's tokens
            return Effect.ensuring(events, titles.request(row.id, userText(request.params.input)))
          }
          case "threads.add_user_message": {
            const writable = yield* requireWritable(request.params.thread_id)
            if (Either.isLeft(writable)) return send(STREAM_OPTIONS, errorEvent(writable.left.detail, false))
            const turn = yield* takeTurn(repo, writable.right.id)
            return yield* turn.run(
              userTurn(writable.right, turn, request.params.input, [STREAM_OPTIONS], { created: false, setupDone })
            )
          }
          case "threads.resume":
            yield* policy.require(request.params.thread_id, "read")
            // answers are stored as they stream and no turn outlives its request: nothing to re-attach to
            return send(STREAM_OPTIONS)
          case "threads.retry_after_item": {
            const writable = yield* requireWritable(request.params.thread_id)
            if (Either.isLeft(writable)) return send(STREAM_OPTIONS, errorEvent(writable.left.detail, false))
            const row = writable.right
            const target = yield* repo.findItem(row.id, request.params.item_id)
            if (Option.isNone(target) || target.value.type !== "user_message") {
              return yield* new ValidationError({
                detail: "retry_after_item names a user message of this thread",
                errors: [{ path: "params.item_id", message: "is not a user message of this thread" }]
              })
            }
            const turn = yield* takeTurn(repo, row.id)
            return yield* turn.run(Effect.gen(function*() {
              yield* repo.deleteItemsAfter(row.id, target.value.id)
              const history = (yield* historyOf(row)).slice(0, -1)
              const text = asChatMessage(toThreadItem(target.value))[0]?.content ?? ""
              return Effect.zipRight(send(STREAM_OPTIONS), streamTurn(row, turn, text, history, setupDone))
            }))
          }
        }
      })

    /** The answer to one ChatKit request body (already checked by the platform for size, depth and text). */
    const handle = (
      body: unknown
    ): Effect.Effect<
      HttpServerResponse.HttpServerResponse,
      ValidationError | NotFound | Conflict,
      CurrentUser | Scope.Scope
    > =>
      Effect.gen(function*() {
        const request: ChatkitRequest = yield* Either.match(decodeChatkitRequest(body), {
          onLeft: Effect.fail,
          onRight: Effect.succeed
        })
        if (!isStreamingRequest(request)) return yield* answerJson(request)
        return yield* sseResponse(yield* answerStream(request), { onShutdown: SHUTDOWN_EVENT })
      }).pipe(
        // reads never meet these: a visible workflow is readable, a readable thread needs no write access
        Effect.catchTags({
          Forbidden: (error) => Effect.fail(new NotFound({ detail: error.detail })),
          ThreadNotWritable: (error) => Effect.die(error)
        }),
        orDieOnSqlError,
        Effect.withSpan("ThreadsService.handle")
      )

    /** Admin review: every user's live threads, by last activity. */
    const adminThreads = (
      filter: { readonly workflowId?: number | undefined; readonly userId?: number | undefined },
      page: PageRequest
    ) =>
      Effect.map(
        repo.adminList(filter, page.pageSize, page.offset),
        ({ items, total }) =>
          toPage(
            page,
            items.map((row) => ({
              ...toThreadMetadata(row),
              owner_id: row.owner_id,
              workflow_id: row.workflow_id,
              workflow_version_id: row.workflow_version_id,
              updated_at: row.updated_at
            })),
            total
          )
      ).pipe(orDieOnSqlError, Effect.withSpan("ThreadsService.adminThreads"))

    /** Admin review: a live thread's items in order; a missing or deleted thread is a 404. */
    const adminItems = (threadId: ThreadId, page: PageRequest) =>
      Effect.gen(function*() {
        if (Option.isNone(yield* repo.find(threadId))) return yield* threadNotFound(threadId)
        const { items, total } = yield* repo.adminItems(threadId, page.pageSize, page.offset)
        return toPage(page, items.map(toThreadItem), total)
      }).pipe(orDieOnSqlError, Effect.withSpan("ThreadsService.adminItems"))

    return { handle, adminThreads, adminItems } as const
  }),
  dependencies: [
    ThreadsRepo.Default,
    ThreadsPolicy.Default,
    WorkflowsRepo.Default,
    WorkflowsPolicy.Default,
    WorkflowsService.Default,
    LlmRouter.Default,
    ThreadTitles.Default,
    TurnSetups.Default,
    VectorStoresService.Default
  ]
}) {}
