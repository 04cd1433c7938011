/**
 * The operator's own structured log (the same format as the factory's, from
 * `src/contract/structured-log.ts`), with its own event names. Nothing reads
 * these lines to act: they are for people and for Cloud Logging.
 */
import { createStructuredLogger, type LogLevel, type StructuredLogOptions } from "../contract/structured-log.js";
import type { OperatorEvent, OperatorFields, OperatorLog } from "./log-event.js";

export { errorText, OperatorEvent, type OperatorFields, type OperatorLog } from "./log-event.js";

/** Builds the operator's log. */
export function createOperatorLog(options: StructuredLogOptions = {}): OperatorLog {
  const { logger, close } = createStructuredLogger(options);
  const write =
    (lvl: LogLevel) =>
    (event: OperatorEvent, fields: OperatorFields, message: string): void => {
      logger[lvl]({ event, ...fields }, message);
    };
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error"), close };
}
