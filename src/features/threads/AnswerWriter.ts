import type { SqlError } from "@effect/sql/SqlError"
import { Cause, DateTime, Duration, Effect, Exit, Fiber, Option, Schedule } from "effect"

import type { ThreadId, ThreadItem, ThreadItemId } from "../../domain/Thread.js"
import type { RetrievedSource } from "../../platform/LlmProvider.js"
import { newItemId, type ThreadsRepo, toThreadItem } from "./Repo.js"

/**
 * How often the text of an answer that is streaming is saved at most: a crash loses at most this
 * much of it, and a long answer costs one write per interval, not one per delta.
 */
export const ANSWER_SAVE_INTERVAL = Duration.seconds(1)

/** How long a write that starts or settles an answer may take (then it is given up, and logged). */
export const ANSWER_WRITE_TIMEOUT = Duration.seconds(5)

/**
 * Runs `write` to its end or ANSWER_WRITE_TIMEOUT, whatever interrupts the caller meanwhile (a
 * client that leaves, the stream's scope closing): in a daemon fiber, which an interruption of the
 * caller does not reach (a child would be interrupted with it), joined uninterruptibly.
 */
const lasting = <A, E>(write: Effect.Effect<A, E>) =>
  Effect.forkDaemon(
    write.pipe(
      Effect.interruptible,
      Effect.timeoutFail({
        duration: ANSWER_WRITE_TIMEOUT,
        onTimeout: () => new Cause.TimeoutException("writing the answer took too long")
      })
    )
  ).pipe(Effect.flatMap(Fiber.join), Effect.uninterruptible)

/**
 * The `status` of a stored assistant message: `in_progress` while it streams, `incomplete` when the
 * client went away before its end, `failed` when the turn failed during it; a complete answer has
 * no `status` (the reference protocol's assistant message has no such field; test-chatkit's
 * optional one reads a missing key as done).
 */
export type AnswerStatus = "in_progress" | "incomplete" | "failed"

/**
 * A source of an answer as ChatKit shows it: an `annotation` on the `output_text` content whose
 * source is a `file` (chatkit-python `types.py`: `Annotation {type, source, index?}`, `FileSource
 * {type: "file", filename, title, description?}`): the document's id, its title, an excerpt.
 */
export interface SourceAnnotation {
  readonly type: "annotation"
  readonly source: {
    readonly type: "file"
    readonly filename: string
    readonly title: string
    readonly description: string
  }
}

const EXCERPT_LENGTH = 200

const excerpt = (text: string) => {
  const flat = text.replace(/\s+/g, " ").trim()
  if (flat.length <= EXCERPT_LENGTH) return flat
  const end = /[\uD800-\uDBFF]/.test(flat.charAt(EXCERPT_LENGTH - 2)) ? EXCERPT_LENGTH - 2 : EXCERPT_LENGTH - 1
  return `${flat.slice(0, end)}…`
}

/** One annotation per document, in the order of its best passage (sources come best first). */
export const annotationsOf = (sources: ReadonlyArray<RetrievedSource>): ReadonlyArray<SourceAnnotation> => {
  const seen = new Set<string>()
  const annotations: Array<SourceAnnotation> = []
  for (const source of sources) {
    if (seen.has(source.docId)) continue
    seen.add(source.docId)
    annotations.push({
      type: "annotation",
      source: { type: "file", filename: source.docId, title: source.title, description: excerpt(source.text) }
    })
  }
  return annotations
}

const assistantPayload = (
  text: string,
  status: AnswerStatus | undefined,
  annotations: ReadonlyArray<SourceAnnotation>
) => ({
  content: [{ type: "output_text", text, annotations }],
  ...(status === undefined ? {} : { status })
})

/** What settling an answer did: stored it (the item as stored), or removed it (cut before any text). */
export type Settled =
  | { readonly _tag: "Stored"; readonly item: ThreadItem }
  | { readonly _tag: "Removed"; readonly id: ThreadItemId }

/**
 * The assistant message a turn is streaming, kept in the thread as it grows (scoped to the turn's
 * stream): stored `in_progress` with no text when it starts, its text saved every
 * ANSWER_SAVE_INTERVAL while it changes (a background fiber on the Clock, not a write per delta),
 * then settled: complete, `failed`, or, when the stream's scope closes with the answer still
 * open (the client went away), `incomplete`. An answer cut before its first word is removed.
 * Writes are serialised, and those that settle run to their end or their timeout whatever
 * interrupts the stream.
 */
export const makeAnswerWriter = (repo: ThreadsRepo, threadId: ThreadId) =>
  Effect.gen(function*() {
    const lock = yield* Effect.makeSemaphore(1)
    const serialised = lock.withPermits(1)
    /**
     * the answer streaming now: `text` so far, its `annotations`, `saved` the text last written
     * (undefined: something else changed since, so the next save writes)
     */
    let open: {
      readonly id: ThreadItemId
      readonly item: ThreadItem
      text: string
      annotations: ReadonlyArray<SourceAnnotation>
      saved: string | undefined
    } | undefined

    const inMemory = (
      id: ThreadItemId,
      createdAt: Date,
      text: string,
      status: AnswerStatus | undefined,
      annotations: ReadonlyArray<SourceAnnotation>
    ): ThreadItem => ({
      ...assistantPayload(text, status, annotations),
      id,
      thread_id: threadId,
      created_at: createdAt,
      type: "assistant_message"
    })

    /** Stores a new answer, in progress; the item of `thread.item.added`. */
    const start = serialised(Effect.gen(function*() {
      const id = newItemId("assistant_message")
      const [stored] = yield* repo.appendItems(threadId, [
        { id, type: "assistant_message", payload: assistantPayload("", "in_progress", []) }
      ])
      const item = stored === undefined
        ? inMemory(id, DateTime.toDateUtc(yield* DateTime.now), "", "in_progress", [])
        : toThreadItem(stored)
      open = { id, item, text: "", annotations: [], saved: "" }
      return item
    })).pipe(lasting, Effect.orDie) // never cut between the row written and the answer open to settle

    /** Gives the open answer its sources; they are stored with its next write, and settled with it. */
    const annotate = (annotations: ReadonlyArray<SourceAnnotation>) => {
      if (open === undefined) return
      open.annotations = annotations
      open.saved = undefined
    }

    /** Adds a delta to the open answer (synchronous: it runs once per token). */
    const append = (delta: string) => {
      if (open !== undefined) open.text += delta
    }

    /** Writes the text so far if it changed since the last write; never over a settled answer. */
    const saveProgress = serialised(Effect.suspend(() => {
      const answer = open
      if (answer === undefined || answer.text === answer.saved) return Effect.void
      const text = answer.text
      return repo.updateInProgressItem(threadId, answer.id, assistantPayload(text, "in_progress", answer.annotations))
        .pipe(
          Effect.tap(() => (answer.saved = text))
        )
    }))

    const settle = (status: AnswerStatus | undefined, finalText?: string) =>
      serialised(Effect.suspend((): Effect.Effect<Option.Option<Settled>, SqlError> => {
        const answer = open
        if (answer === undefined) return Effect.succeedNone
        open = undefined
        const text = finalText ?? answer.text
        const createdAt = answer.item.created_at
        const annotations = answer.annotations
        if (status !== undefined && text === "") {
          return Effect.as(repo.deleteItem(threadId, answer.id), Option.some({ _tag: "Removed", id: answer.id }))
        }
        return repo.updateItemPayload(threadId, answer.id, assistantPayload(text, status, annotations)).pipe(
          Effect.map((row) =>
            Option.some({
              _tag: "Stored",
              item: Option.match(row, {
                // the thread was deleted meanwhile
                onNone: () => inMemory(answer.id, createdAt, text, status, annotations),
                onSome: toThreadItem
              })
            })
          )
        )
      })).pipe(lasting)

    const warn = (what: string) => (cause: Cause.Cause<unknown>) =>
      Effect.logWarning(`${what} of thread ${threadId}`, cause)

    // settles what the turn left open when its stream ends: a client gone (interruption) or a defect
    yield* Effect.addFinalizer((exit) =>
      settle(Exit.isFailure(exit) && !Exit.isInterrupted(exit) ? "failed" : "incomplete").pipe(
        Effect.catchAllCause(warn("could not settle the answer")),
        Effect.asVoid
      )
    )
    yield* saveProgress.pipe(
      Effect.catchAllCause(warn("could not save the streaming answer")),
      Effect.repeat(Schedule.spaced(ANSWER_SAVE_INTERVAL)),
      Effect.delay(ANSWER_SAVE_INTERVAL),
      Effect.forkScoped
    )

    return {
      start,
      annotate,
      append,
      /** the answer done: its full text, no status */
      complete: (text: string) => settle(undefined, text).pipe(Effect.orDie),
      /** the turn failed during the answer: what it had, `failed` (removed if nothing) */
      fail: settle("failed").pipe(
        Effect.tapErrorCause(warn("could not store the failed answer")),
        Effect.orElseSucceed(() => Option.none<Settled>())
      ),
      currentId: () => open?.id
    } as const
  })
