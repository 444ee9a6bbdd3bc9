import { Logger } from "effect"

/** Log lines (logfmt) captured in place of the default logger, to check what a test's code writes. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.map(Logger.logfmtLogger, (line) => {
    lines.push(line)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}
