/**
 * `gcp:PROJECT`: log entries from Google Cloud Logging. This file only
 * gathers the public names; the parts live in gcp/, one concern each:
 *
 * - gcp/client.ts: the generated `v2.LoggingServiceV2Client`, its options,
 *   a connection awaited within a deadline, one attempt per call;
 * - gcp/decode.ts: a wire LogEntry as one line of Cloud Logging's JSON (the
 *   shape `gcloud logging read --format=json` prints), so the scanner reads
 *   it exactly as it reads an exported log file;
 * - gcp/dedupe.ts: an entry's identity and the bounded ring of the ids
 *   recently handed over;
 * - gcp/position.ts: the tail's saved position;
 * - gcp/tail.ts: the live source, tail and catch-up (`CloudLoggingSource`);
 * - gcp/history.ts: the finite source `reclaim rules replay` pages through
 *   (`CloudLoggingHistorySource`);
 * - gcp/error.ts: their fault, `CloudLoggingSourceError`.
 */
export {
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PAGE_SIZE,
  ENDPOINT_ENV,
  parseEndpoint,
  PROJECT_ID,
} from "./gcp/client.js";
export { logEntryToJson, nanosToRfc3339, rfc3339ToNanos, structToJson, type WireLogEntry } from "./gcp/decode.js";
export { DEFAULT_DEDUP_CAPACITY } from "./gcp/dedupe.js";
export { CloudLoggingSourceError, type CloudLoggingErrorCode } from "./gcp/error.js";
export { CloudLoggingHistorySource, type CloudLoggingHistoryOptions } from "./gcp/history.js";
export { MAX_SAVED_IDS } from "./gcp/position.js";
export {
  CloudLoggingSource,
  DEFAULT_BACKOFF_INITIAL_MS,
  DEFAULT_BUFFER_WINDOW_MS,
  DEFAULT_HEALTHY_AFTER_MS,
  DEFAULT_LOOKBACK_MS,
  DEFAULT_MAX_CATCH_UP_MS,
  DEFAULT_OVERLAP_MS,
  type CloudLoggingSourceOptions,
  type CloudLoggingStats,
  type CloudLoggingWarning,
  type SuppressionReason,
} from "./gcp/tail.js";
