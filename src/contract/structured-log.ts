/**
 * The log line format both halves write: pino JSON lines in Cloud Logging's
 * structured format (`severity`, `message`, `time`) with the pod name. The
 * format is a contract — the operator reads the factory's lines, and Cloud
 * Logging parses both — so it is defined once, here.
 */
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";
import { hostname } from "node:os";
import pino, { type Logger } from "pino";

const SEVERITY: Record<string, string> = {
  trace: "DEBUG",
  debug: "DEBUG",
  info: "INFO",
  warn: "WARNING",
  error: "ERROR",
  fatal: "CRITICAL",
};

/** Log levels accepted by both halves. */
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface StructuredLogOptions {
  /** Pod name on every line. Default: `POD_NAME`, else the hostname. */
  pod?: string;
  /** Default `info`. */
  level?: LogLevel;
  /** Where lines go. Default: stdout. */
  streams?: NodeJS.WritableStream[];
  /** Also append every line to this file (created with its folder). */
  file?: string;
}

/** A pino logger writing the structured format, and `close` that flushes it and ends the file. */
export function createStructuredLogger(options: StructuredLogOptions = {}): { logger: Logger; close: () => Promise<void> } {
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
  return {
    logger,
    close: () =>
      new Promise<void>((resolve) => {
        logger.flush(() => {
          if (file === undefined) return resolve();
          file.end(() => resolve());
        });
      }),
  };
}
