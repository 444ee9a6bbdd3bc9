import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"

import { ChatkitApi } from "../../api/Api.js"
import { ThreadsService } from "./Service.js"

/** Conversations over the ChatKit protocol (API.md section 7): one body, one service call. */
export const ConversationsHandlers = HttpApiBuilder.group(
  ChatkitApi,
  "conversations",
  (handlers) =>
    Effect.map(ThreadsService, (threads) => handlers.handle("chatkit", ({ payload }) => threads.handle(payload)))
)
