/**
 * The factory's structured log: every line names its `event` (from
 * `src/contract/events.ts`) and carries only typed fields, in the format of
 * `src/contract/structured-log.ts`.
 */
import type { FactoryEvent, FactoryLogFields } from "../contract/events.js";
import { createStructuredLogger, type LogLevel, type StructuredLogOptions } from "../contract/structured-log.js";

export type { LogLevel };

/** Fields a caller may attach to an event: the typed ones, never free client text. */
export type EventFields = Omit<FactoryLogFields, "event">;

/**
 * A logger that only writes factory events. Every line names its `event`, so
 * the operator can match on structure rather than on wording.
 */
export interface EventLog {
  debug(event: FactoryEvent, fields: EventFields, message: string): void;
  info(event: FactoryEvent, fields: EventFields, message: string): void;
  warn(event: FactoryEvent, fields: EventFields, message: string): void;
  error(event: FactoryEvent, fields: EventFields, message: string): void;
  /** True when `debug` lines are written (so callers can skip building them). */
  readonly debugEnabled: boolean;
  /** Writes everything still buffered and closes the log file, if any. */
  close(): Promise<void>;
}

export type EventLogOptions = StructuredLogOptions;

/** Builds the factory's event log. */
export function createEventLog(options: EventLogOptions = {}): EventLog {
  const { logger, close } = createStructuredLogger(options);
  const write =
    (lvl: LogLevel) =>
    (event: FactoryEvent, fields: EventFields, message: string): void => {
      logger[lvl]({ event, ...fields }, message);
    };
  return {
    debug: write("debug"),
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
    debugEnabled: logger.isLevelEnabled("debug"),
    close,
  };
}
