/**
 * Where log lines come from. A source hands over raw lines in batches and is
 * told when a batch has been fully processed, so that it can persist its
 * position: a restart then neither misses nor repeats lines (beyond the batch
 * in flight, which de-duplication absorbs).
 *
 * Implementations: `file:PATH` (file.ts), `stdin` (stdin.ts), `gcp:PROJECT`
 * (gcp.ts, Cloud Logging) and `k8s:NAMESPACE/SELECTOR` (../k8s/pod-logs.ts).
 */
import type { Shape } from "./shapes.js";

/**
 * A batch of complete lines as one buffer, so that candidate lines can be
 * found in the raw bytes (scan.ts) before anything is sliced, decoded or
 * parsed — a JS object per line would cost more than the whole scan.
 */
export interface LineBatch {
  /** Complete lines, each ending in "\n" (a "\r" before it is tolerated). */
  data: Buffer;
  /** How many lines `data` holds. */
  lines: number;
  /** Persist the position after this batch (call once it has been processed). */
  commit(): Promise<void>;
  /**
   * Where `data` starts in a file (the file source): evidence then says the
   * path and byte offset of each entry, a way back to the log. Absent for
   * streams, and when over-long lines were cut out of the batch.
   */
  origin?: { path: string; offset: number };
  /**
   * Set when the source decoded the lines itself and knows their shape
   * (a gcloud JSON array: `gcloud_array`); otherwise the scanner tells each
   * line's shape from its bytes (shapes.ts).
   */
  shape?: Shape;
}

/** Counters every source keeps (exported as metrics by the operator). */
export interface SourceStats {
  linesRead: number;
  bytesRead: number;
  /** Times the file was found rotated (a new inode) or truncated. */
  rotations: number;
  /**
   * Times the file was found shorter than the position read, or rewritten
   * from its start (copytruncate). The file source counts these here only,
   * not also in `rotations`.
   */
  truncations: number;
  /**
   * Lines longer than the source's cap (file and stdin: `maxLineBytes`,
   * default 1 MiB), dropped unread so that one runaway line costs bounded
   * memory. Optional so that sources without such a cap need not report it.
   */
  skippedLongLines?: number;
}

export interface LogSource {
  /** `file:/var/log/factory.log`, `stdin`, … (a metric label: bounded by configuration). */
  readonly name: string;
  readonly stats: SourceStats;
  /**
   * Delivers batches until `signal` aborts (or the input ends, for finite
   * sources such as stdin or a file read with `follow: false`). The next
   * batch is read only after `onBatch` resolves: backpressure.
   */
  run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void>;
}

/** Fresh counters for a source (all zero), including `skippedLongLines`. */
export function newSourceStats(): SourceStats & { skippedLongLines: number } {
  return { linesRead: 0, bytesRead: 0, rotations: 0, truncations: 0, skippedLongLines: 0 };
}
