import { Effect, Mailbox, Stream } from "effect"

import type { CompletionRequest, LlmError, LlmProviderService } from "../../src/platform/LlmProvider.js"

/**
 * A call's deltas as a stream, so a test reads them as a reader would: collects them, takes a
 * few (which interrupts the call, as a client leaving does), or fails with the call's error.
 */
export const deltaStream = (llm: LlmProviderService, request: CompletionRequest): Stream.Stream<string, LlmError> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const deltas = yield* Mailbox.make<string, LlmError>()
    yield* llm.answer(request, (delta) => deltas.unsafeOffer(delta)).pipe(
      Effect.exit,
      Effect.flatMap((exit) => deltas.done(exit)),
      Effect.forkScoped
    )
    return Mailbox.toStream(deltas)
  }))

/** A provider whose answers are the streams `script` gives: a fake model, scripted delta by delta. */
export const streamingProvider = (
  name: string,
  script: (request: CompletionRequest) => Stream.Stream<string, LlmError>
): LlmProviderService => ({
  name,
  answer: (request, onDelta) => Stream.runForEach(script(request), (delta) => Effect.sync(() => onDelta(delta)))
})
