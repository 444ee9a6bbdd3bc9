import { ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Chunk, Console, Effect } from "effect"

/** The message a human needs, without a stack trace; the cause's words when the error has none of its own. */
const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  // An UnknownException only says that a promise rejected: the error's own message is better.
  const cause = error.cause instanceof Error && (error.cause as { _tag?: unknown })._tag !== "UnknownException"
    ? error.cause.message
    : undefined
  return cause !== undefined && cause !== "" && !error.message.includes(cause)
    ? `${error.message}: ${cause}`
    : error.message
}

const reportFailure = (cause: Cause.Cause<unknown>) => {
  if (Cause.isInterruptedOnly(cause)) return Console.error("Interrupted.")
  // @effect/cli already printed what is wrong with the command line.
  const failures = Chunk.toReadonlyArray(Cause.failures(cause)).filter((e) => !ValidationError.isValidationError(e))
  const defects = Chunk.toReadonlyArray(Cause.defects(cause))
  const lines = [...failures.map(describe), ...defects.map((d) => `Unexpected error: ${describe(d)}`)]
  return lines.length === 0 ? Effect.void : Console.error(lines.join("\n"))
}

/**
 * Runs a command line program: failures print their message on stderr (no stack trace) and exit
 * with code 1; success exits 0.
 */
export const runCli = <E>(program: Effect.Effect<void, E, NodeContext.NodeContext>) =>
  program.pipe(
    Effect.tapErrorCause(reportFailure),
    Effect.provide(NodeContext.layer),
    NodeRuntime.runMain({ disablePrettyLogger: true, disableErrorReporting: true })
  )
