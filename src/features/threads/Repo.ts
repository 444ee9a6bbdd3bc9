import { randomBytes } from "node:crypto"

import { PgClient } from "@effect/sql-pg"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Option, Schema } from "effect"

import {
  type CursorPage,
  DEFAULT_PAGE_LIMIT,
  FeedbackKind,
  InvalidCursor,
  itemIdPrefix,
  JsonObject,
  MAX_PAGE_LIMIT,
  type PageOrder,
  THREAD_WINDOW,
  ThreadId,
  type ThreadItem,
  ThreadItemId,
  type ThreadMetadata,
  ThreadStatus
} from "../../domain/Thread.js"
import { UserId } from "../../domain/User.js"
import {
  columnsOf,
  countedPageQuery,
  decodedCountedPage,
  findAllRows,
  findOneRow,
  orDieOnBadRow,
  patchColumns,
  singleRow
} from "../../platform/Database.js"

/** A chat_threads row as stored (migration 0006), its item counter aside. */
export const ThreadRow = Schema.Struct({
  id: ThreadId,
  owner_id: UserId,
  title: Schema.NullOr(Schema.String),
  status: ThreadStatus,
  workflow_id: Schema.Int,
  workflow_version_id: Schema.NullOr(Schema.Int),
  runtime_state: JsonObject,
  metadata: JsonObject,
  created_at: Schema.DateFromSelf,
  updated_at: Schema.DateFromSelf,
  deleted_at: Schema.NullOr(Schema.DateFromSelf)
})
export type ThreadRow = typeof ThreadRow.Type

/** A chat_thread_items row: `payload` is the item's protocol JSON without the base fields, which are columns. */
export const ItemRow = Schema.Struct({
  id: ThreadItemId,
  thread_id: ThreadId,
  seq: Schema.Int,
  type: Schema.String,
  payload: JsonObject,
  created_at: Schema.DateFromSelf
})
export type ItemRow = typeof ItemRow.Type

/** The thread as the protocol's `ThreadMetadata` (`metadata` passed through, as test-chatkit does). */
export const toThreadMetadata = (row: ThreadRow): ThreadMetadata => ({
  id: row.id,
  title: row.title,
  created_at: row.created_at,
  status: row.status,
  metadata: row.metadata
})

/** The item as the protocol serialises it; the columns win over keys of the same name in the payload. */
export const toThreadItem = (row: ItemRow): ThreadItem => ({
  ...row.payload,
  id: row.id,
  thread_id: row.thread_id,
  created_at: row.created_at,
  type: row.type
})

/** `lock: true` takes the thread's row lock until the transaction ends. */
export interface LockOptions {
  readonly lock?: boolean
}

/** A cursor page request; `limit` is brought into 1..100 (default 20), `order` defaults to desc. */
export interface CursorRequest {
  readonly limit?: number | undefined
  readonly order?: PageOrder | undefined
  readonly after?: string | null | undefined
}

export const pageLimit = (limit: number | undefined) =>
  Math.min(Math.max(Math.floor(limit ?? DEFAULT_PAGE_LIMIT), 1), MAX_PAGE_LIMIT)

export interface NewThread {
  readonly ownerId: UserId
  readonly workflowId: number
  readonly workflowVersionId: number | null
  readonly title?: string | null | undefined
  readonly metadata?: JsonObject | undefined
  readonly runtimeState?: JsonObject | undefined
  /** created holding this turn's lease (TurnLease.ts), so the first turn takes no statement of its own for it */
  readonly turn?: { readonly id: string; readonly leaseSeconds: number } | undefined
}

/** An item to append: its protocol JSON; `id` is generated (with the type's prefix) when absent. */
export interface NewItem {
  readonly id?: ThreadItemId | undefined
  readonly type: string
  readonly payload: JsonObject
}

export interface ThreadChanges {
  readonly title?: string | null
  readonly status?: ThreadStatus
  readonly runtime_state?: JsonObject
  readonly metadata?: JsonObject
  readonly workflow_version_id?: number | null
}

/** 16 random hex digits after `prefix_`. */
const randomId = (prefix: string) => `${prefix}_${randomBytes(8).toString("hex")}`
export const newThreadId = () => randomId("thr") as ThreadId
export const newItemId = (type: string) => randomId(itemIdPrefix(type)) as ThreadItemId

/** The base fields live in columns; the payload keeps the rest of the item. */
const BASE_FIELDS = new Set(["id", "thread_id", "created_at", "type"])
const payloadOf = (payload: JsonObject): JsonObject =>
  Object.fromEntries(Object.entries(payload).filter(([key]) => !BASE_FIELDS.has(key)))

const THREAD_COLUMNS = columnsOf(ThreadRow)
const T_COLUMNS = THREAD_COLUMNS.split(", ").map((c) => `t.${c}`).join(", ")
const ITEM_COLUMNS = columnsOf(ItemRow)
const I_COLUMNS = ITEM_COLUMNS.split(", ").map((c) => `i.${c}`).join(", ")

/** One row of a keyset page: whether the cursor was found, then the row's columns (NULLs when none). */
const pageRows = <A, I>(Row: Schema.Schema<A, I>) =>
  Schema.Array(
    Schema.extend(
      Schema.Struct({ cursor_found: Schema.Boolean }),
      Schema.Union(Row as Schema.Schema<A, I>, Schema.Struct({ id: Schema.Null }))
    )
  )

/** SQL of the chat tables. Writes join the caller's transaction when there is one. */
export class ThreadsRepo extends Effect.Service<ThreadsRepo>()("chatkit/ThreadsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const threadColumns = sql.literal(THREAD_COLUMNS)
    const tColumns = sql.literal(T_COLUMNS)
    const itemColumns = sql.literal(ITEM_COLUMNS)
    const iColumns = sql.literal(I_COLUMNS)
    const json = (value: unknown) => sql`${JSON.stringify(value)}::jsonb`
    const inProgress = sql.literal("payload->>'status' = 'in_progress'")

    const insertRow = singleRow({
      Request: Schema.Struct({
        id: ThreadId,
        owner_id: UserId,
        workflow_id: Schema.Int,
        workflow_version_id: Schema.NullOr(Schema.Int),
        title: Schema.NullOr(Schema.String),
        metadata: JsonObject,
        runtime_state: JsonObject,
        turn: Schema.NullOr(Schema.Struct({ id: Schema.String, leaseSeconds: Schema.Number }))
      }),
      Result: ThreadRow,
      execute: (row) =>
        sql`INSERT INTO chat_threads
            (id, owner_id, workflow_id, workflow_version_id, title, metadata, runtime_state, turn_id, turn_until)
          VALUES (${row.id}, ${row.owner_id}, ${row.workflow_id}, ${row.workflow_version_id}, ${row.title},
            ${json(row.metadata)}, ${json(row.runtime_state)}, ${
          row.turn === null
            ? sql`NULL, NULL`
            : sql`${row.turn.id}, now() + make_interval(secs => ${row.turn.leaseSeconds})`
        })
          RETURNING ${threadColumns}`
    })

    /** A new active thread with a random `thr_` id. */
    const create = (input: NewThread) =>
      insertRow({
        id: newThreadId(),
        owner_id: input.ownerId,
        workflow_id: input.workflowId,
        workflow_version_id: input.workflowVersionId,
        title: input.title ?? null,
        metadata: input.metadata ?? {},
        runtime_state: input.runtimeState ?? {},
        turn: input.turn ?? null
      }).pipe(Effect.withSpan("ThreadsRepo.create"))

    const findRow = findOneRow({
      Request: Schema.Struct({ id: Schema.String, ownerId: Schema.NullOr(UserId), lock: Schema.Boolean }),
      Result: ThreadRow,
      execute: ({ id, lock, ownerId }) =>
        sql`SELECT ${threadColumns} FROM chat_threads
          WHERE id = ${id} AND deleted_at IS NULL ${ownerId === null ? sql`` : sql`AND owner_id = ${ownerId}`}
          ${sql.literal(lock ? "FOR UPDATE" : "")}`
    })

    /** A live thread, whoever owns it (the policy decides; admin review). */
    const find = (id: string, options?: LockOptions) => findRow({ id, ownerId: null, lock: options?.lock === true })

    /** A live thread of `ownerId`; `None` for a missing, deleted or foreign one alike. */
    const findOfOwner = (id: string, ownerId: UserId, options?: LockOptions) =>
      findRow({ id, ownerId, lock: options?.lock === true })

    const ThreadPageRows = pageRows(ThreadRow)
    const decodeThreadPage = Schema.decodeUnknown(ThreadPageRows)

    /**
     * One page of an owner's live threads, most recently active first (`desc`) or last (`asc`),
     * ties by id: one statement, keyset on (updated_at, id) from the `after` thread's current
     * position. An `after` that is not a live thread of the owner is `InvalidCursor`.
     */
    const listThreads = (
      ownerId: UserId,
      request: CursorRequest = {}
    ): Effect.Effect<CursorPage<ThreadRow, ThreadId>, InvalidCursor | SqlError> => {
      const limit = pageLimit(request.limit)
      const desc = (request.order ?? "desc") === "desc"
      const after = request.after ?? null
      const direction = sql.literal(desc ? "DESC" : "ASC")
      const past = sql.literal(desc ? "<" : ">")
      return sql`
        WITH c AS (
          SELECT updated_at, id FROM chat_threads
          WHERE id = ${after ?? ""} AND owner_id = ${ownerId} AND deleted_at IS NULL
        )
        SELECT ${after === null ? sql`true` : sql`EXISTS (SELECT 1 FROM c)`} AS cursor_found, p.*
        FROM (SELECT 1) one
        LEFT JOIN LATERAL (
          SELECT ${tColumns} FROM chat_threads t
          WHERE t.owner_id = ${ownerId} AND t.deleted_at IS NULL
            ${
        after === null
          ? sql``
          : sql`AND (t.updated_at, t.id) ${past} (SELECT c.updated_at, c.id FROM c)`
      }
          ORDER BY t.updated_at ${direction}, t.id ${direction}
          LIMIT ${limit + 1}
        ) p ON true
        ORDER BY p.updated_at ${direction}, p.id ${direction}`.pipe(
        Effect.flatMap((rows) => orDieOnBadRow(decodeThreadPage(rows))),
        Effect.flatMap((rows) => toCursorPage<ThreadRow>(rows, limit, after, "thread")),
        Effect.withSpan("ThreadsRepo.listThreads")
      )
    }

    const ItemPageRows = pageRows(ItemRow)
    const decodeItemPage = Schema.decodeUnknown(ItemPageRows)

    /**
     * One page of a thread's items by position (`desc`: newest first, the protocol's default), one
     * statement; `after` must be an item of this thread, else `InvalidCursor`.
     */
    const listItems = (
      threadId: ThreadId,
      request: CursorRequest = {}
    ): Effect.Effect<CursorPage<ItemRow, ThreadItemId>, InvalidCursor | SqlError> => {
      const limit = pageLimit(request.limit)
      return itemsPage(threadId, limit, (request.order ?? "desc") === "desc", request.after ?? null)
    }

    const itemsPage = (threadId: ThreadId, limit: number, desc: boolean, after: string | null) => {
      const direction = sql.literal(desc ? "DESC" : "ASC")
      const past = sql.literal(desc ? "<" : ">")
      return sql`
        WITH c AS (SELECT seq FROM chat_thread_items WHERE thread_id = ${threadId} AND id = ${after ?? ""})
        SELECT ${after === null ? sql`true` : sql`EXISTS (SELECT 1 FROM c)`} AS cursor_found, p.*
        FROM (SELECT 1) one
        LEFT JOIN LATERAL (
          SELECT ${iColumns} FROM chat_thread_items i
          WHERE i.thread_id = ${threadId}
            ${after === null ? sql`` : sql`AND i.seq ${past} (SELECT c.seq FROM c)`}
          ORDER BY i.seq ${direction}
          LIMIT ${limit + 1}
        ) p ON true
        ORDER BY p.seq ${direction}`.pipe(
        Effect.flatMap((rows) => orDieOnBadRow(decodeItemPage(rows))),
        Effect.flatMap((rows) => toCursorPage<ItemRow>(rows, limit, after, "item")),
        Effect.withSpan("ThreadsRepo.listItems")
      )
    }

    /**
     * The newest `limit` items (default 50) in chronological order, for `threads.get_by_id`:
     * `has_more` when older items exist, `after` then the oldest loaded id (the cursor of
     * `items.list {order: "desc", after}` for the previous ones).
     */
    const latestItems = (threadId: ThreadId, limit: number = THREAD_WINDOW) =>
      itemsPage(threadId, Math.max(1, Math.floor(limit)), true, null).pipe(
        Effect.map((page) => ({ ...page, data: [...page.data].reverse() })),
        Effect.catchTag("InvalidCursor", (error) => Effect.die(error)) // no cursor: cannot happen
      )

    const findItem = findOneRow({
      Request: Schema.Struct({ threadId: ThreadId, itemId: Schema.String }),
      Result: ItemRow,
      execute: ({ itemId, threadId }) =>
        sql`SELECT ${itemColumns} FROM chat_thread_items WHERE thread_id = ${threadId} AND id = ${itemId}`
    })

    const appendRows = findAllRows({
      Request: Schema.Struct({
        threadId: ThreadId,
        items: Schema.Array(Schema.Struct({ id: ThreadItemId, type: Schema.String, payload: JsonObject }))
      }),
      Result: ItemRow,
      execute: ({ items, threadId }) =>
        sql`
          WITH t AS (
            UPDATE chat_threads SET last_item_seq = last_item_seq + ${items.length}, updated_at = now()
            WHERE id = ${threadId} AND deleted_at IS NULL
            RETURNING last_item_seq
          )
          INSERT INTO chat_thread_items (id, thread_id, seq, type, payload)
          SELECT x.id, ${threadId}, t.last_item_seq - ${items.length} + x.ord, x.type, x.payload
          FROM t, jsonb_to_recordset(${
          JSON.stringify(items.map((item, index) => ({ ...item, ord: index + 1 })))
        }::jsonb) AS x(id text, type text, payload jsonb, ord bigint)
          ORDER BY x.ord
          RETURNING ${itemColumns}`
    })

    /**
     * Appends items at the end of a live thread, in order, in one statement: the thread's counter
     * is bumped under its row lock (so concurrent appends get distinct, increasing positions) and
     * its `updated_at` with it. Empty when the thread is not live.
     */
    const appendItems = (threadId: ThreadId, items: ReadonlyArray<NewItem>) =>
      items.length === 0
        ? Effect.succeed([] as ReadonlyArray<ItemRow>)
        : appendRows({
          threadId,
          items: items.map((item) => ({
            id: item.id ?? newItemId(item.type),
            type: item.type,
            payload: payloadOf(item.payload)
          }))
        }).pipe(
          Effect.map((rows) => [...rows].sort((a, b) => a.seq - b.seq)),
          Effect.withSpan("ThreadsRepo.appendItems", { attributes: { items: items.length } })
        )

    const updateItemRow = findOneRow({
      Request: Schema.Struct({ threadId: ThreadId, itemId: Schema.String, payload: JsonObject }),
      Result: ItemRow,
      execute: ({ itemId, payload, threadId }) =>
        sql`UPDATE chat_thread_items SET payload = ${json(payload)}, updated_at = now()
          WHERE thread_id = ${threadId} AND id = ${itemId}
          RETURNING ${itemColumns}`
    })

    /** Replaces an item's payload (an answer settled, `thread.item.replaced`); `None` when not in the thread. */
    const updateItemPayload = (threadId: ThreadId, itemId: string, payload: JsonObject) =>
      updateItemRow({ threadId, itemId, payload: payloadOf(payload) })

    const updateInProgressRow = findOneRow({
      Request: Schema.Struct({ threadId: ThreadId, itemId: Schema.String, payload: JsonObject }),
      Result: ItemRow,
      execute: ({ itemId, payload, threadId }) =>
        sql`UPDATE chat_thread_items SET payload = ${json(payload)}, updated_at = now()
          WHERE thread_id = ${threadId} AND id = ${itemId} AND ${inProgress}
          RETURNING ${itemColumns}`
    })

    /**
     * Replaces the payload of an item that is still `status: "in_progress"` (an answer's text saved
     * while it streams); `None` when it is not in the thread or no longer in progress, so a late save
     * never overwrites the answer's final state.
     */
    const updateInProgressItem = (threadId: ThreadId, itemId: string, payload: JsonObject) =>
      updateInProgressRow({ threadId, itemId, payload: payloadOf(payload) }).pipe(
        Effect.withSpan("ThreadsRepo.updateInProgressItem")
      )

    /**
     * Settles the answers left `in_progress` in threads that no turn holds (their instance died
     * mid-stream, and its lease lapsed; a turn settles its answer before it gives the lease back),
     * at most 500 a call: `incomplete` with the text last saved, or removed when none was, as the
     * writer itself settles an answer cut short. Rows another sweep holds are skipped.
     */
    const settleAbandonedAnswers = () =>
      sql<{ readonly marked: number; readonly removed: number }>`
        WITH stale AS (
          SELECT i.thread_id, i.id, COALESCE(i.payload #>> '{content,0,text}', '') = '' AS empty
          FROM chat_thread_items i
          WHERE ${inProgress} AND NOT EXISTS (
            SELECT 1 FROM chat_threads t WHERE t.id = i.thread_id AND t.turn_until > now()
          )
          ORDER BY i.updated_at LIMIT 500
          FOR UPDATE SKIP LOCKED
        ),
        removed AS (
          DELETE FROM chat_thread_items i USING stale s
          WHERE s.empty AND i.thread_id = s.thread_id AND i.id = s.id RETURNING 1
        ),
        marked AS (
          UPDATE chat_thread_items i SET payload = jsonb_set(i.payload, '{status}', '"incomplete"'), updated_at = now()
          FROM stale s WHERE NOT s.empty AND i.thread_id = s.thread_id AND i.id = s.id RETURNING 1
        )
        SELECT (SELECT count(*) FROM marked)::int AS marked, (SELECT count(*) FROM removed)::int AS removed`.pipe(
        Effect.map((rows) => rows[0] ?? { marked: 0, removed: 0 }),
        Effect.withSpan("ThreadsRepo.settleAbandonedAnswers")
      )

    /**
     * Takes the thread's turn lease for `leaseSeconds` when no other turn holds it (or its holder let
     * it lapse); false when one does. One statement, so two instances never both take it.
     */
    const acquireTurn = (threadId: ThreadId, turnId: string, leaseSeconds: number) =>
      sql`UPDATE chat_threads SET turn_id = ${turnId}, turn_until = now() + make_interval(secs => ${leaseSeconds})
        WHERE id = ${threadId} AND deleted_at IS NULL AND (turn_until IS NULL OR turn_until < now())
        RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), Effect.withSpan("ThreadsRepo.acquireTurn"))

    /** Extends the lease `turnId` holds (nothing when it lost it). */
    const renewTurn = (threadId: ThreadId, turnId: string, leaseSeconds: number) =>
      sql`UPDATE chat_threads SET turn_until = now() + make_interval(secs => ${leaseSeconds})
        WHERE id = ${threadId} AND turn_id = ${turnId}`.pipe(Effect.asVoid)

    /** Gives the lease back, if `turnId` still holds it. */
    const releaseTurn = (threadId: ThreadId, turnId: string) =>
      sql`UPDATE chat_threads SET turn_id = NULL, turn_until = NULL
        WHERE id = ${threadId} AND turn_id = ${turnId}`.pipe(Effect.asVoid, Effect.withSpan("ThreadsRepo.releaseTurn"))

    /**
     * A turn's last write: the live thread's runtime state, and the lease given back if `turnId`
     * still holds it, in one statement; whether the thread was live (a deleted one is left as it is).
     */
    const endTurn = (threadId: ThreadId, turnId: string, runtimeState: JsonObject) =>
      sql`UPDATE chat_threads SET runtime_state = ${json(runtimeState)}, updated_at = now(),
          turn_id = CASE WHEN turn_id = ${turnId} THEN NULL ELSE turn_id END,
          turn_until = CASE WHEN turn_id = ${turnId} THEN NULL ELSE turn_until END
        WHERE id = ${threadId} AND deleted_at IS NULL
        RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), Effect.withSpan("ThreadsRepo.endTurn"))

    const deleteItemRow = findOneRow({
      Request: Schema.Struct({ threadId: ThreadId, itemId: Schema.String }),
      Result: ItemRow,
      execute: ({ itemId, threadId }) =>
        sql`DELETE FROM chat_thread_items WHERE thread_id = ${threadId} AND id = ${itemId}
          RETURNING ${itemColumns}`
    })

    /** Deletes one item of the thread (an answer cut before its first word); the row deleted, `None` when not there. */
    const deleteItem = (threadId: ThreadId, itemId: string) => deleteItemRow({ threadId, itemId })

    const deleteAfterRow = singleRow({
      Request: Schema.Struct({ threadId: ThreadId, itemId: Schema.String }),
      Result: Schema.Struct({ found: Schema.Boolean, deleted: Schema.Array(ThreadItemId) }),
      execute: ({ itemId, threadId }) =>
        sql`
          WITH anchor AS (SELECT seq FROM chat_thread_items WHERE thread_id = ${threadId} AND id = ${itemId}),
          gone AS (
            DELETE FROM chat_thread_items i USING anchor
            WHERE i.thread_id = ${threadId} AND i.seq > anchor.seq
            RETURNING i.id, i.seq
          )
          SELECT EXISTS (SELECT 1 FROM anchor) AS found,
            COALESCE((SELECT array_agg(id ORDER BY seq) FROM gone), '{}') AS deleted`
    })

    /**
     * Deletes every item after `itemId` (`threads.retry_after_item`), one statement; the ids
     * deleted in order, `None` when the item is not in the thread.
     */
    const deleteItemsAfter = (threadId: ThreadId, itemId: string) =>
      deleteAfterRow({ threadId, itemId }).pipe(
        Effect.map((row) => row.found ? Option.some(row.deleted) : Option.none())
      )

    const updateRow = findOneRow({
      Request: Schema.Struct({
        id: ThreadId,
        changes: Schema.Struct({
          title: Schema.optionalWith(Schema.NullOr(Schema.String), { exact: true }),
          status: Schema.optionalWith(ThreadStatus, { exact: true }),
          runtime_state: Schema.optionalWith(JsonObject, { exact: true }),
          metadata: Schema.optionalWith(JsonObject, { exact: true }),
          workflow_version_id: Schema.optionalWith(Schema.NullOr(Schema.Int), { exact: true })
        })
      }),
      Result: ThreadRow,
      execute: ({ changes, id }) =>
        sql`UPDATE chat_threads SET ${
          patchColumns(sql, {
            title: changes.title,
            status: changes.status === undefined ? undefined : json(changes.status),
            runtime_state: changes.runtime_state === undefined ? undefined : json(changes.runtime_state),
            metadata: changes.metadata === undefined ? undefined : json(changes.metadata),
            workflow_version_id: changes.workflow_version_id,
            updated_at: sql`now()`
          })
        }
          WHERE id = ${id} AND deleted_at IS NULL
          RETURNING ${threadColumns}`
    })

    /** Applies `changes` to a live thread (and bumps updated_at); `None` when it is not live. */
    const update = (id: ThreadId, changes: ThreadChanges) => updateRow({ id, changes })
    const updateTitle = (id: ThreadId, title: string | null) => update(id, { title })

    /** A generated title, stored only while a live thread has none (its owner's rename wins); whether it was. */
    const setTitleIfUntitled = (id: string, title: string) =>
      sql`UPDATE chat_threads SET title = ${title}, updated_at = now()
        WHERE id = ${id} AND title IS NULL AND deleted_at IS NULL RETURNING id`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.withSpan("ThreadsRepo.setTitleIfUntitled")
      )

    const softDeleteRow = findOneRow({
      Request: ThreadId,
      Result: ThreadRow,
      execute: (id) =>
        sql`UPDATE chat_threads SET deleted_at = now(), updated_at = now()
          WHERE id = ${id} AND deleted_at IS NULL
          RETURNING ${threadColumns}`
    })
    /** Marks a live thread deleted; `None` when absent or already deleted. */
    const softDelete = (id: ThreadId) => softDeleteRow(id)

    const feedbackRows = findAllRows({
      Request: Schema.Struct({
        threadId: ThreadId,
        userId: UserId,
        itemIds: Schema.Array(Schema.String),
        kind: FeedbackKind
      }),
      Result: Schema.Struct({ item_id: ThreadItemId }),
      execute: ({ itemIds, kind, threadId, userId }) =>
        sql`INSERT INTO chat_item_feedback (thread_id, item_id, user_id, kind)
          SELECT i.thread_id, i.id, ${userId}, ${kind} FROM chat_thread_items i
          WHERE i.thread_id = ${threadId} AND i.id IN ${sql.in(itemIds)}
          ORDER BY i.seq
          ON CONFLICT (item_id, user_id) DO UPDATE SET kind = EXCLUDED.kind, updated_at = now()
          RETURNING item_id`
    })

    /**
     * Records `kind` from `userId` on the given items of the thread, replacing their earlier
     * feedback; ids that are not items of this thread are skipped. The ids recorded.
     */
    const upsertFeedback = (threadId: ThreadId, userId: UserId, itemIds: ReadonlyArray<string>, kind: FeedbackKind) =>
      itemIds.length === 0
        ? Effect.succeed([] as ReadonlyArray<ThreadItemId>)
        : feedbackRows({ threadId, userId, itemIds: [...new Set(itemIds)], kind }).pipe(
          Effect.map((rows) => rows.map((row) => row.item_id))
        )

    const feedbackOf = findAllRows({
      Request: Schema.Struct({ threadId: ThreadId, userId: UserId }),
      Result: Schema.Struct({ item_id: ThreadItemId, kind: FeedbackKind }),
      execute: ({ threadId, userId }) =>
        sql`SELECT item_id, kind FROM chat_item_feedback WHERE thread_id = ${threadId} AND user_id = ${userId}
          ORDER BY item_id`
    })
    /** A user's feedback on a thread's items. */
    const listFeedback = (threadId: ThreadId, userId: UserId) => feedbackOf({ threadId, userId })

    /**
     * Admin review: live threads, optionally of one workflow and/or one user, most recently
     * active first (ties by id), with the total; one statement (the total even past the end).
     */
    const adminList = (
      filter: { readonly workflowId?: number | undefined; readonly userId?: number | undefined },
      limit: number,
      offset: number
    ) => {
      const where = sql.and([
        sql`deleted_at IS NULL`,
        ...(filter.workflowId === undefined ? [] : [sql`workflow_id = ${filter.workflowId}`]),
        ...(filter.userId === undefined ? [] : [sql`owner_id = ${filter.userId}`])
      ])
      return countedPageQuery(sql, {
        columns: threadColumns,
        from: sql`FROM chat_threads WHERE ${where}`,
        orderBy: "updated_at DESC, id DESC",
        limit,
        offset
      }).pipe(
        Effect.flatMap(decodedCountedPage(ThreadRow, "id")),
        Effect.withSpan("ThreadsRepo.adminList")
      )
    }

    /** Admin review: a thread's items in order, with the total; one statement. */
    const adminItems = (threadId: ThreadId, limit: number, offset: number) =>
      countedPageQuery(sql, {
        columns: itemColumns,
        from: sql`FROM chat_thread_items WHERE thread_id = ${threadId}`,
        orderBy: "seq",
        limit,
        offset
      }).pipe(
        Effect.flatMap(decodedCountedPage(ItemRow, "id")),
        Effect.withSpan("ThreadsRepo.adminItems")
      )

    return {
      create,
      find,
      findOfOwner,
      listThreads,
      listItems,
      latestItems,
      findItem: (threadId: ThreadId, itemId: string) => findItem({ threadId, itemId }),
      appendItems,
      updateItemPayload,
      updateInProgressItem,
      settleAbandonedAnswers,
      acquireTurn,
      renewTurn,
      releaseTurn,
      endTurn,
      deleteItem,
      deleteItemsAfter,
      update,
      updateTitle,
      setTitleIfUntitled,
      softDelete,
      upsertFeedback,
      listFeedback,
      adminList,
      adminItems
    } as const
  })
}) {}

/**
 * The rows of a keyset page (`limit + 1` fetched) as a cursor page: `has_more` when the extra row
 * came, `after` the last returned row's id then. A missing cursor is `InvalidCursor`.
 */
const toCursorPage = <Row extends { readonly id: string }>(
  rows: ReadonlyArray<{ readonly cursor_found: boolean } & (Row | { readonly id: null })>,
  limit: number,
  after: string | null,
  what: "thread" | "item"
): Effect.Effect<CursorPage<Row, Row["id"]>, InvalidCursor> => {
  if (after !== null && rows[0]?.cursor_found !== true) {
    return Effect.fail(
      new InvalidCursor({
        after,
        detail: what === "thread"
          ? `after: ${after} is not one of your threads`
          : `after: ${after} is not an item of this thread`
      })
    )
  }
  const found = rows.filter((row): row is { readonly cursor_found: boolean } & Row => row.id !== null)
    .map(({ cursor_found: _, ...row }) => row as unknown as Row)
  const data = found.slice(0, limit)
  const hasMore = found.length > limit
  return Effect.succeed({ data, has_more: hasMore, after: hasMore ? (data[data.length - 1]?.id ?? null) : null })
}
