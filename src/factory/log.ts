/**
 * The factory's structured log: pino JSON lines in Cloud Logging's structured
 * format (`severity`, `message`, `time`), each with an `event` from
 * `src/contract/events.ts` and the pod name.
 */
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";
import { hostname } from "node:os";
import pino from "pino";
import type { FactoryEvent, FactoryLogFields } from "../contract/events.js";

const SEVERITY: Record<string, string> = {
  trace: "DEBUG",
  debug: "DEBUG",
  info: "INFO",
  warn: "WARNING",
  error: "ERROR",
  fatal: "CRITICAL",
};

/** Fields a caller may attach to an event: the typed ones, never free client text. */
export type EventFields = Omit<FactoryLogFields, "event">;

/** Log levels the factory accepts. */
export type LogLevel = "debug" | "info" | "warn" | "error";

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

export interface EventLogOptions {
  /** Pod name on every line. Default: `POD_NAME`, else the hostname. */
  pod?: string;
  /** Default `info`. */
  level?: LogLevel;
  /** Where lines go. Default: stdout. */
  streams?: NodeJS.WritableStream[];
  /** Also append every line to this file (created with its folder). */
  file?: string;
}

/** Builds the factory's event log. */
export function createEventLog(options: EventLogOptions = {}): EventLog {
  const pod = options.pod ?? process.env.POD_NAME ?? hostname();
  const streams: NodeJS.WritableStream[] = [...(options.streams ?? [process.stdout])];
  let file: WriteStream | undefined;
  if (options.file !== undefined) {
    mkdirSync(dirname(options.file), { recursive: true });
    file = createWriteStream(options.file, { flags: "a" });
    streams.push(file);
  }
  const level = options.level ?? "info";
  const logger = pino(
    {
      level,
      messageKey: "message",
      base: { pod },
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ severity: SEVERITY[label] ?? "DEFAULT" }) },
    },
    pino.multistream(streams.map((stream) => ({ stream, level }))),
  );
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
    close: () =>
      new Promise<void>((resolve) => {
        logger.flush(() => {
          if (file === undefined) return resolve();
          file.end(() => resolve());
        });
      }),
  };
}
