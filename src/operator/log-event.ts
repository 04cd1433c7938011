/**
 * The operator's log events and the interface of its log, without the
 * logger itself (log.ts builds that on pino): what a module that only
 * writes to an OperatorLog needs, so that `rules replay`, whose log is
 * silent, never loads pino (ADR 37).
 */

/** Every `event` value the operator writes. */
export const OperatorEvent = {
  started: "operator.started",
  /** The control API and its token, checked at start and every minute (act/control-check.ts writes it). */
  controlCheck: "operator.control_check",
  stopping: "operator.stopping",
  stopped: "operator.stopped",
  rulesLoaded: "operator.rules_loaded",
  rulesInvalid: "operator.rules_invalid",
  incidentOpened: "operator.incident_opened",
  suppressed: "operator.suppressed",
  entryStale: "operator.entry_stale",
  rung: "operator.rung",
  verification: "operator.verification",
  incidentClosed: "operator.incident_closed",
  resumed: "operator.resumed",
  storeError: "operator.store_error",
  sourceError: "operator.source_error",
  sourceWarning: "operator.source_warning",
  metricError: "operator.metric_error",
  jobFinished: "operator.job_finished",
  jobFailed: "operator.job_failed",
  jobSkipped: "operator.job_skipped",
  triggerFailed: "operator.trigger_failed",
  triggerRetried: "operator.trigger_retried",
  termStarted: "operator.term_started",
  termEnded: "operator.term_ended",
  incidentInterrupted: "operator.incident_interrupted",
  /** A guard held automation back while the factory still refused the user: a `held` record (ADR 25). */
  incidentHeld: "operator.incident_held",
  /** A rule's circuit breaker opened or closed. */
  circuitOpened: "operator.circuit_opened",
  circuitClosed: "operator.circuit_closed",
  // Silences and the pause (ADR 22): each start and end as the operator sees it, records skipped, reads that failed.
  pauseStarted: "operator.pause_started",
  pauseEnded: "operator.pause_ended",
  silenceStarted: "operator.silence_started",
  silenceEnded: "operator.silence_ended",
  silenceSkipped: "operator.silence_skipped",
  silenceError: "operator.silence_error",
  notifyFailing: "operator.notify_failing",
  notifyRecovered: "operator.notify_recovered",
  notifyDropped: "operator.notify_dropped",
  notifyRejected: "operator.notify_rejected",
  notifyDiskError: "operator.notify_disk_error",
} as const;
export type OperatorEvent = (typeof OperatorEvent)[keyof typeof OperatorEvent];

export type OperatorFields = Record<string, string | number | boolean | null | undefined>;

export interface OperatorLog {
  debug(event: OperatorEvent, fields: OperatorFields, message: string): void;
  info(event: OperatorEvent, fields: OperatorFields, message: string): void;
  warn(event: OperatorEvent, fields: OperatorFields, message: string): void;
  error(event: OperatorEvent, fields: OperatorFields, message: string): void;
  close(): Promise<void>;
}

/** An error as one line for the log and the records: its message, and its cause's when the message does not already say it. */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as Error & { cause?: unknown }).cause;
  return cause instanceof Error && !err.message.includes(cause.message) ? `${err.message}: ${cause.message}` : err.message;
}
