/**
 * Where silences and the pause are kept: one record per silence, plus the
 * pause, in a folder (file mode) or as Silence objects (Kubernetes mode).
 * The CLI writes them; the operator only reads.
 */
import type { Silence } from "./model.js";

/** A record that a scan could not use, and why. */
export interface SkippedSilence {
  /** The file name, or the object name. */
  name: string;
  reason: string;
}

/** What one scan found. */
export interface SilenceScan {
  /** Every valid record, the pause included, ended ones too. */
  silences: Silence[];
  /** Records that were unreadable or invalid: not holds, not fatal. */
  skipped: SkippedSilence[];
}

/** The error codes of the silence stores. */
export const SilenceStoreErrorCode = {
  /** A record exists but is not a valid one. */
  corrupt: "ERR_RECLAIM_SILENCE_CORRUPT",
  /** The store did not answer within its deadline. */
  timeout: "ERR_RECLAIM_SILENCE_TIMEOUT",
  /** Reading or writing failed (the cause says why). */
  io: "ERR_RECLAIM_SILENCE_IO",
} as const;
export type SilenceStoreErrorCode = (typeof SilenceStoreErrorCode)[keyof typeof SilenceStoreErrorCode];

/** A silence store failed; `code` says how. */
export class SilenceStoreError extends Error {
  constructor(
    readonly code: SilenceStoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "SilenceStoreError";
  }
}

/** One place silences are kept: a folder or a namespace's Silence objects. */
export interface SilenceStore {
  /** Where the records are, for messages: `the folder …`, `Silence objects in namespace …`. */
  readonly where: string;
  /** Every record. Throws SilenceStoreError when the store itself cannot be read. */
  scan(): Promise<SilenceScan>;
  /** One record (id already checked), or null. Throws SilenceStoreError (`corrupt` for an invalid one). */
  get(id: string): Promise<Silence | null>;
  /** Writes a record, over the one with the same id if there is one. */
  put(silence: Silence): Promise<void>;
  /** Removes a record (nothing when it is gone already). */
  remove(id: string): Promise<void>;
}

/**
 * The silences and the pause could not be read when the operator started:
 * it does not start, rather than act without knowing whether on-call paused
 * it (ADR 22). Later read failures keep the last records read.
 */
export class SilencesUnreadable extends Error {
  readonly code = "ERR_RECLAIM_SILENCES_UNREADABLE";
}
