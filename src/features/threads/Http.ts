import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { pageRequest } from "../../domain/Page.js"
import { ThreadsService } from "./Service.js"

/** Conversations over the ChatKit protocol (API.md section 7): one body, one service call. */
export const ConversationsHandlers = HttpApiBuilder.group(
  ChatkitApi,
  "conversations",
  (handlers) =>
    Effect.map(ThreadsService, (threads) => handlers.handle("chatkit", ({ payload }) => threads.handle(payload)))
)

/** The admin review of conversations; admin only through AdminAuthentication (api/ConversationsApi.ts). */
export const ThreadsAdminHandlers = HttpApiBuilder.group(
  ChatkitApi,
  "threadsAdmin",
  (handlers) =>
    Effect.map(ThreadsService, (threads) =>
      handlers
        .handle("list", ({ urlParams }) =>
          threads.adminThreads(
            { workflowId: urlParams.workflow_id, userId: urlParams.user_id },
            pageRequest(urlParams)
          ))
        .handle("items", ({ path, urlParams }) => threads.adminItems(path.thread_id, pageRequest(urlParams))))
)
