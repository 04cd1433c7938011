/**
 * A recorded log file scanned by several threads at once (`rules replay
 * --logs`, ADR 32). One thread searches ~1 GiB/s at best; the replay of a big
 * file is bound by that search, the line and shape counts and the copy out of
 * the page cache, all of which split cleanly by line.
 *
 * The file is cut into ranges at line starts, a few per worker thread, dealt
 * out in turn (range i to worker i mod N); a worker
 * (parallel-scan-worker.ts) reads its ranges one after the other, each with the file source's framing
 * (same chunk size, same line cap), counts lines and shapes and finds
 * candidate lines with the scanner's `scanBatch`, and sends back the
 * candidate lines and the counts. This thread parses the candidates and hands
 * their entries on strictly in file order, range after range, counting them
 * as `Scanner.scan` does: the replay's report is the same, byte for byte, as
 * with one thread. Several ranges per worker (ADR 37): this thread replays
 * the ranges in order while the workers read the later ones, so that when
 * the last worker ends only its last, small range is left to replay, not
 * half of the file.
 *
 * Only for a regular file of lines (not stdin, not a gcloud JSON array) of at
 * least `minBytes`, and only when the rules give needles (with none, every
 * line is parsed here and the threads would save nothing).
 */
import type { FileHandle } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { NL } from "./bytes.js";
import type { LogEvent } from "./event.js";
import { DEFAULT_CHUNK_BYTES, FileSourceError, MAX_BUFFER_BYTES } from "./file.js";
import { DEFAULT_MAX_LINE_BYTES } from "./lines.js";
import { correctShape, parseLine, type ScannerStats } from "./scan.js";
import { addShapeCounts, type ShapeCounts } from "./shapes.js";

/** Smallest file scanned in parallel by default: 64 MiB (below it, starting the threads costs about what they save). */
export const DEFAULT_PARALLEL_MIN_BYTES = 64 * 1024 * 1024;
/** Most worker threads: 4 (the copy out of the page cache stops scaling before the search does). */
export const MAX_PARALLEL_WORKERS = 4;
/**
 * Ranges per worker by default: 4. This thread replays range after range as they come; with one range per worker,
 * the last worker's whole range (half the file's candidates, on 2 workers) was left to replay once every worker had
 * ended, on one CPU while the other idled (ADR 37).
 */
export const DEFAULT_RANGES_PER_WORKER = 4;
/** Default deadline for a worker's next message while this thread waits for it: 60 s. */
export const DEFAULT_STALL_MS = 60_000;
/**
 * Default bytes of candidate lines per message from a worker: 64 KiB. Small, so that this thread parses and replays
 * the first range's candidates while the workers are still reading, rather than all of them after the last read.
 */
export const DEFAULT_FLUSH_BYTES = 64 * 1024;
/** Messages a worker may have sent and not had acknowledged before it waits (with the default flush, 4 MiB). */
const WINDOW = 64;
/** A worker with nothing to send says it is alive after reading this much: 32 MiB. */
const PING_BYTES = 32 * 1024 * 1024;
/** Read size when looking for the newline after a cut. */
const PROBE_BYTES = 64 * 1024;

/** One range of a worker's job. */
export interface JobRange {
  start: number;
  end: number;
  /** The range ends at the end of the file: a last line without "\n" counts. */
  last: boolean;
}

/** One worker's job (its `workerData`): its ranges, read in this order, each ended by a "done" message. */
export interface RangeJob {
  /** The main thread's descriptor of the file. */
  fd: number;
  ranges: JobRange[];
  chunkBytes: number;
  maxLineBytes: number;
  flushBytes: number;
  window: number;
  pingBytes: number;
}

/** A worker's message: candidate lines back to back with their lengths, and the counts of the lines read since its last one. */
export type ToMain =
  | { type: "batch" | "done"; lines: number; shapes: ShapeCounts; data: Uint8Array; lengths: Uint32Array }
  | { type: "progress" }
  | { type: "error"; message: string; code?: string };

/** To a worker: first the needles to search (it waits for them), then how many of its batches have been handled. */
export type ToWorker = { needles: Uint8Array[] } | { acked: number };

/** A byte range of the file, from a line start to a line start (or the end of the file). */
export interface ByteRange {
  start: number;
  end: number;
}

/** Options of a parallel scan; every one has a default. */
export interface ParallelScanOptions {
  /** Worker threads (default min(os.availableParallelism(), 4)); below 2 the file is not scanned in parallel. */
  workers?: number;
  /** Ranges per worker, dealt out in turn (default 4; fewer when lines are too long to cut that often). */
  rangesPerWorker?: number;
  /** Smallest file scanned in parallel (default 64 MiB). */
  minBytes?: number;
  /** Bytes per read (default 1 MiB, as the file source). */
  chunkBytes?: number;
  /** Longest line kept, "\n" excluded; longer ones are skipped (default 1 MiB, as the file source). */
  maxLineBytes?: number;
  /** Bytes of candidate lines per message from a worker (default 64 KiB). */
  flushBytes?: number;
  /** How long this thread waits for the next message of the worker whose range it is on before giving up (default 60 s). */
  stallMs?: number;
  /** The worker's module (default parallel-scan-worker.js beside this module, in dist/ as in the bundle). */
  workerUrl?: URL;
}

function checkInt(what: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new TypeError(`ParallelScan: ${what} must be an integer from ${min} to ${max}, got ${String(value)}`);
  return v;
}

/**
 * Cuts `size` bytes of `fh` into at most `parts` ranges of about equal size,
 * each starting at a line start (just past a "\n"); fewer when lines are
 * longer than a part. Reads only around each cut.
 */
export async function cutRanges(fh: FileHandle, size: number, parts: number): Promise<ByteRange[]> {
  const cuts = [0];
  const probe = Buffer.allocUnsafe(PROBE_BYTES);
  for (let k = 1; k < parts; k++) {
    // The first line start at or after the target: just past the first "\n" from the byte before it.
    let from = Math.max(Math.floor((size * k) / parts), cuts[cuts.length - 1]! + 1) - 1;
    let cut = -1;
    while (cut === -1 && from < size) {
      const { bytesRead } = await fh.read(probe, 0, Math.min(PROBE_BYTES, size - from), from);
      if (bytesRead === 0) break;
      const nl = probe.subarray(0, bytesRead).indexOf(NL);
      if (nl === -1) from += bytesRead;
      else cut = from + nl + 1;
    }
    if (cut === -1 || cut >= size) break;
    cuts.push(cut);
  }
  return cuts.map((start, i) => ({ start, end: cuts[i + 1] ?? size }));
}

/** One worker and what it has sent that has not been handled yet. */
interface RangeWorker {
  worker: Worker;
  queue: ToMain[];
  /** Its ranges; each ends with a "done" message. */
  ranges: number;
  /** "done" messages arrived so far. */
  done: number;
  /** Its batches handled (acknowledged) so far, over all its ranges. */
  acked: number;
}

/**
 * A parallel scan of one open file: `plan` measures and cuts it and starts
 * the workers at once (they load while the caller loads its rules), `run`
 * gives them the needles and scans the file once, `close` gives up; either
 * closes the file. `name` is the file source's (`file:PATH`), so that errors
 * read the same.
 */
export class ParallelScan {
  readonly name: string;
  private readonly workers: RangeWorker[] = [];
  /** The first failure of any worker; an object field, set from event handlers. */
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private ended = false;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly size: number,
    readonly ranges: readonly ByteRange[],
    threads: number,
    private readonly settings: Required<Omit<ParallelScanOptions, "workers" | "minBytes" | "rangesPerWorker">>,
  ) {
    this.name = `file:${path}`;
    for (let k = 0; k < threads; k++) this.workers.push(this.start(ranges.filter((_, i) => i % threads === k)));
  }

  /**
   * A scan of the regular file open as `fh` (`size` bytes, as measured by
   * the caller) in ranges, its workers started, or null when it does not
   * pay: fewer than 2 workers, a file under `minBytes`, or lines so long
   * that it cannot be cut. On a scan, the scan owns `fh` (`run` or `close`
   * closes it); on null, the caller keeps it. Until `run`, the workers do
   * not keep the process alive.
   */
  static async plan(fh: FileHandle, path: string, size: number, options: ParallelScanOptions = {}): Promise<ParallelScan | null> {
    const workers = checkInt("workers", options.workers, Math.min(availableParallelism(), MAX_PARALLEL_WORKERS), 1, 64);
    const rangesPerWorker = checkInt("rangesPerWorker", options.rangesPerWorker, DEFAULT_RANGES_PER_WORKER, 1, 64);
    const minBytes = checkInt("minBytes", options.minBytes, DEFAULT_PARALLEL_MIN_BYTES, 0, Number.MAX_SAFE_INTEGER);
    const settings = {
      chunkBytes: checkInt("chunkBytes", options.chunkBytes, DEFAULT_CHUNK_BYTES, 1, MAX_BUFFER_BYTES),
      maxLineBytes: checkInt("maxLineBytes", options.maxLineBytes, DEFAULT_MAX_LINE_BYTES, 1, MAX_BUFFER_BYTES),
      flushBytes: checkInt("flushBytes", options.flushBytes, DEFAULT_FLUSH_BYTES, 1, MAX_BUFFER_BYTES),
      stallMs: checkInt("stallMs", options.stallMs, DEFAULT_STALL_MS, 1, 24 * 3600_000),
      workerUrl: options.workerUrl ?? new URL("./parallel-scan-worker.js", import.meta.url),
    };
    if (workers < 2 || size < minBytes || size === 0) return null;
    const ranges = await cutRanges(fh, size, workers * rangesPerWorker);
    if (ranges.length < 2) return null;
    return new ParallelScan(fh, path, size, ranges, Math.min(workers, ranges.length), settings);
  }

  /** Starts the worker of `ranges`; it waits for the needles. */
  private start(ranges: readonly ByteRange[]): RangeWorker {
    const { settings } = this;
    const job: RangeJob = {
      fd: this.fh.fd,
      ranges: ranges.map(({ start, end }) => ({ start, end, last: end === this.size })),
      chunkBytes: settings.chunkBytes,
      maxLineBytes: settings.maxLineBytes,
      flushBytes: settings.flushBytes,
      window: WINDOW,
      pingBytes: PING_BYTES,
    };
    const worker = new Worker(settings.workerUrl, { workerData: job });
    // Until run(): a scan never run (the rules did not load) must not keep the process alive.
    worker.unref();
    const w: RangeWorker = { worker, queue: [], ranges: ranges.length, done: 0, acked: 0 };
    worker.on("message", (m: ToMain) => {
      if (m.type === "error") return this.fail(this.readError(m.message, Object.assign(new Error(m.message), m.code === undefined ? {} : { code: m.code })));
      if (m.type === "done") w.done++;
      w.queue.push(m);
      this.poke();
    });
    worker.on("error", (err) => this.fail(this.readError(`its reader thread failed: ${err.message}`, err)));
    worker.on("messageerror", (err) => this.fail(this.readError(`its reader thread sent an unreadable message: ${err.message}`, err)));
    worker.on("exit", (code) => {
      if (w.done < w.ranges) this.fail(this.readError(`its reader thread stopped (exit code ${code})`));
    });
    return w;
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.poke();
  }

  /** Waits for any worker's next message or failure; rejects after stallMs without one. */
  private changed(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wake = null;
        reject(this.readError(`no progress for ${this.settings.stallMs} ms`));
      }, this.settings.stallMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Stops the workers and closes the file, without scanning (or after). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
    await this.fh.close();
  }

  /**
   * Scans the file for `needles` (the scanner's): adds to `stats` what
   * `Scanner.scan` would have counted over the whole file, and calls
   * `onEvent` for each candidate's entry in file order, one at a time.
   * Rejects with a FileSourceError (ERR_RECLAIM_SOURCE_READ) when a worker
   * cannot read its range (a read error, the file shrank) or stops, or sends
   * nothing for `stallMs` while its range is the one being handled; every
   * worker is stopped and the file closed before it settles. Once only.
   */
  async run(needles: readonly Buffer[], stats: ScannerStats, onEvent: (event: LogEvent) => Promise<void>): Promise<void> {
    if (this.ended) throw new Error("ParallelScan: already run or closed");
    try {
      const start: ToWorker = { needles: needles.map((n) => Uint8Array.from(n)) };
      for (const { worker } of this.workers) {
        worker.ref();
        worker.postMessage(start);
      }
      // Range i is worker i mod N's; a worker's messages come range after range, so its queue's head is always
      // the earliest of its ranges not yet handled.
      for (let i = 0; i < this.ranges.length; i++) {
        const w = this.workers[i % this.workers.length]!;
        for (;;) {
          if (this.failure !== null) throw this.failure;
          const m = w.queue.shift();
          if (m === undefined) {
            await this.changed();
            continue;
          }
          if (m.type === "progress" || m.type === "error") continue;
          await merge(m, stats, onEvent);
          if (m.type === "done") break;
          w.worker.postMessage({ acked: ++w.acked } satisfies ToWorker);
        }
      }
    } finally {
      await this.close();
    }
  }

  private readError(reason: string, cause?: unknown): FileSourceError {
    return new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not read it: ${reason}`, cause === undefined ? undefined : { cause });
  }
}

/** Adds a worker's counts to `stats` and hands on its candidates' entries, as `Scanner.scan` does for a batch. */
async function merge(m: Extract<ToMain, { type: "batch" | "done" }>, stats: ScannerStats, onEvent: (event: LogEvent) => Promise<void>): Promise<void> {
  stats.linesRead += m.lines;
  addShapeCounts(stats.shapes, m.shapes);
  const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  let at = 0;
  for (const length of m.lengths) {
    const line = data.subarray(at, at + length);
    at += length;
    stats.candidates++;
    const event = parseLine(line);
    if (event === "malformed") {
      stats.malformed++;
      correctShape(line, undefined, stats.shapes);
    } else if (event === "ignored") stats.ignored++;
    else await onEvent(event);
  }
}
