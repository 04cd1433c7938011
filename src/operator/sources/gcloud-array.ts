/**
 * `gcloud logging read --format=json` output: ONE pretty-printed JSON array
 * of LogEntry objects, newest first (FIELD-NOTES), possibly gigabytes long.
 *
 * `GcloudArrayParser` is a push parser over the raw bytes: it never holds
 * more than one entry, and turns each entry into one compact JSON line
 * (whitespace outside strings dropped; JSON strings hold no raw newline), so
 * the scanner reads it as it reads a log sink's NDJSON. It notes each
 * entry's top-level `timestamp` (else `receiveTimestamp`) on the way, so the
 * entries can be put back in event-time order (spill-sort.ts) without
 * parsing them.
 */
import type { LineBatch } from "./source.js";
import { SpillSorter } from "./spill-sort.js";
import { BACKSLASH, COMMA, LBRACE, LBRACKET, QUOTE, RBRACE, RBRACKET } from "./bytes.js";

/** A fault in the array; `code` says which. */
export class GcloudArrayError extends Error {
  constructor(
    readonly code: "ERR_RECLAIM_GCLOUD_ARRAY",
    message: string,
    /** Byte offset in the input where the fault was seen. */
    readonly offset: number,
  ) {
    super(message);
    this.name = "GcloudArrayError";
  }
}

/** One entry of the array. */
export interface ArrayEntry {
  /** The entry as one compact JSON line, without "\n" (a copy). */
  line: Buffer;
  /** Its top-level `timestamp` (else `receiveTimestamp`) in ms; NaN without a usable one. */
  time: number;
}

const TIMESTAMP = Buffer.from("timestamp");
const RECEIVE_TIMESTAMP = Buffer.from("receiveTimestamp");

const isSpace = (b: number): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/** Where the parser is between entries. */
type Outer = "start" | "element" | "separator" | "done";

/**
 * Push parser of one JSON array of objects. `push` each chunk, then `end`.
 * Entries longer than `maxEntryBytes` (default 1 MiB, as a line) are
 * skipped and counted in `skipped`; an element that is not an object, or
 * bytes that cannot be JSON, throw a GcloudArrayError with the offset.
 */
export class GcloudArrayParser {
  /** Entries skipped as longer than `maxEntryBytes`. */
  skipped = 0;
  /** Entries handed over. */
  entries = 0;
  private outer: Outer = "start";
  private offset = 0;
  private bom = 0;
  // Inside an entry:
  private depth = 0;
  private inString = false;
  private escaped = false;
  private buf: Buffer = Buffer.allocUnsafe(64 * 1024);
  private len = 0;
  private oversize = false;
  /** Position in `buf` where the current top-level string started (after its quote); -1 when none. */
  private stringStart = -1;
  /** The current top-level string is a key (it follows `{` or `,` at depth 1). */
  private isKey = false;
  /** Last significant byte at depth 1, to tell keys from values. */
  private last = 0;
  /** 1: the next top-level string value is `timestamp`; 2: `receiveTimestamp`. */
  private want = 0;
  private timestamp: string | null = null;
  private receiveTimestamp: string | null = null;

  constructor(
    private readonly onEntry: (entry: ArrayEntry) => void,
    private readonly maxEntryBytes = 1024 * 1024,
  ) {}

  /** Parses the next bytes of the input. */
  push(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.outer !== "element" || this.depth === 0) {
        i = this.between(chunk, i);
        continue;
      }
      if (this.inString) {
        i = this.string(chunk, i);
        continue;
      }
      i = this.structure(chunk, i);
    }
    this.offset += n;
  }

  /**
   * Inside an entry, outside strings: drops whitespace, copies the rest,
   * tracks nesting; returns at a string's start, the entry's end or the
   * chunk's end. The hot loop of a pretty-printed export (its indentation),
   * so it works on locals.
   */
  private structure(chunk: Buffer, i: number): number {
    const n = chunk.length;
    let depth = this.depth;
    let last = this.last;
    try {
      while (i < n) {
        const b = chunk[i++]!;
        if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) continue;
        this.append(b);
        if (b === QUOTE) {
          this.inString = true;
          if (depth === 1) {
            this.stringStart = this.len;
            this.isKey = last === LBRACE || last === COMMA;
          }
          return i;
        }
        if (b === LBRACE || b === LBRACKET) {
          if (depth === 1) last = b;
          depth++;
        } else if (b === RBRACE || b === RBRACKET) {
          depth--;
          if (depth === 0) {
            this.depth = 0;
            this.emit();
            return i;
          }
        } else if (depth === 1) {
          last = b;
          if (b === COMMA) this.want = 0;
        }
      }
      return i;
    } finally {
      this.depth = depth;
      this.last = last;
    }
  }

  /** The input ended: throws a GcloudArrayError when the array is not complete. */
  end(): void {
    if (this.outer === "done") return;
    if (this.outer === "start") throw new GcloudArrayError("ERR_RECLAIM_GCLOUD_ARRAY", "the input is empty, not a JSON array", this.offset);
    throw new GcloudArrayError(
      "ERR_RECLAIM_GCLOUD_ARRAY",
      `the JSON array ends early at byte ${this.offset}${this.depth > 0 ? ", inside an entry (the export was cut short?)" : ""}`,
      this.offset,
    );
  }

  /** Outside any entry: "[", ",", "]" and whitespace; "{" starts an entry. */
  private between(chunk: Buffer, i: number): number {
    const b = chunk[i]!;
    const at = this.offset + i;
    if (this.outer === "start" && this.bom < 3 && at === this.bom && b === [0xef, 0xbb, 0xbf][this.bom]) {
      this.bom++;
      return i + 1;
    }
    if (isSpace(b)) return i + 1;
    const fail = (what: string): never => {
      throw new GcloudArrayError("ERR_RECLAIM_GCLOUD_ARRAY", `${what} at byte ${at}`, at);
    };
    if (this.outer === "start") {
      if (b !== LBRACKET) fail("not a JSON array: expected [");
      this.outer = "element";
      this.depth = 0;
      this.last = LBRACKET;
      return i + 1;
    }
    if (this.outer === "done") fail("data after the end of the JSON array");
    if (this.outer === "separator") {
      if (b === COMMA) this.outer = "element";
      else if (b === RBRACKET) this.outer = "done";
      else fail("expected , or ] after an entry");
      this.last = b;
      return i + 1;
    }
    // "element": an entry, or "]" right after "[" (an empty array).
    if (b === RBRACKET && this.last === LBRACKET) {
      this.outer = "done";
      return i + 1;
    }
    if (b !== LBRACE) fail("an element of the array is not an object (a LogEntry)");
    this.startEntry();
    return i + 1;
  }

  private startEntry(): void {
    this.depth = 1;
    this.len = 0;
    this.oversize = false;
    this.inString = false;
    this.escaped = false;
    this.last = LBRACE;
    this.stringStart = -1;
    this.want = 0;
    this.timestamp = null;
    this.receiveTimestamp = null;
    this.append(LBRACE);
  }

  /** Inside a string: copies up to and including its closing quote (found with indexOf, not byte by byte). */
  private string(chunk: Buffer, i: number): number {
    if (this.escaped) {
      // The byte after a backslash that ended the previous chunk.
      this.escaped = false;
      this.append(chunk[i]!);
      return i + 1;
    }
    let from = i;
    for (;;) {
      const q = chunk.indexOf(QUOTE, from);
      const stop = q === -1 ? chunk.length : q;
      // Backslashes right before the stop: an odd run escapes it (or, at the chunk's end, the next byte).
      let k = stop;
      while (k > i && chunk[k - 1] === BACKSLASH) k--;
      const odd = (stop - k) % 2 === 1;
      if (q === -1) {
        this.appendRange(chunk, i, chunk.length);
        this.escaped = odd;
        return chunk.length;
      }
      if (odd) {
        from = q + 1;
        continue;
      }
      this.appendRange(chunk, i, q + 1);
      this.inString = false;
      if (this.depth === 1 && this.stringStart !== -1) this.topLevelString();
      return q + 1;
    }
  }

  /** A string at depth 1 just ended: a key to note, or the value of `timestamp`. */
  private topLevelString(): void {
    const start = this.stringStart;
    const end = this.len - 1;
    this.stringStart = -1;
    if (this.oversize) return;
    if (this.isKey) {
      // Compared only when the length fits: most keys are neither.
      const length = end - start;
      this.want =
        length === TIMESTAMP.length && this.buf.subarray(start, end).equals(TIMESTAMP)
          ? 1
          : length === RECEIVE_TIMESTAMP.length && this.buf.subarray(start, end).equals(RECEIVE_TIMESTAMP)
            ? 2
            : 0;
      this.last = QUOTE;
      return;
    }
    if (this.want === 1) this.timestamp = this.buf.toString("latin1", start, end);
    else if (this.want === 2) this.receiveTimestamp = this.buf.toString("latin1", start, end);
    this.want = 0;
    this.last = QUOTE;
  }

  private append(b: number): void {
    if (this.oversize) return;
    if (this.len >= this.maxEntryBytes) {
      this.oversize = true;
      return;
    }
    if (this.len === this.buf.length) this.grow(this.len + 1);
    this.buf[this.len++] = b;
  }

  private appendRange(chunk: Buffer, from: number, to: number): void {
    if (this.oversize) return;
    const n = to - from;
    if (this.len + n > this.maxEntryBytes) {
      this.oversize = true;
      return;
    }
    if (this.len + n > this.buf.length) this.grow(this.len + n);
    // Most strings of an entry are short: a loop costs less than Buffer#copy's own overhead.
    if (n < 64) {
      const buf = this.buf;
      let len = this.len;
      for (let k = from; k < to; k++) buf[len++] = chunk[k]!;
      this.len = len;
    } else {
      chunk.copy(this.buf, this.len, from, to);
      this.len += n;
    }
  }

  private grow(need: number): void {
    const next = Buffer.allocUnsafe(Math.min(Math.max(need, this.buf.length * 2), this.maxEntryBytes));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  private emit(): void {
    this.outer = "separator";
    if (this.oversize) {
      this.skipped++;
      return;
    }
    const stamp = this.timestamp ?? this.receiveTimestamp;
    this.entries++;
    this.onEntry({ line: Buffer.from(this.buf.subarray(0, this.len)), time: stamp === null ? Number.NaN : Date.parse(stamp) });
  }
}

/**
 * Whether `head` (the first bytes of an input) starts, after whitespace and
 * a byte-order mark, with "[": a JSON array rather than lines. Null when
 * `head` holds only whitespace (look at more bytes).
 */
export function startsWithArray(head: Buffer): boolean | null {
  let i = head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  while (i < head.length && isSpace(head[i]!)) i++;
  return i === head.length ? null : head[i] === LBRACKET;
}

/** Options of `readGcloudArray`. */
export interface ReadGcloudArrayOptions {
  /** Memory for entries held before a sorted run is written to a temp file (default 32 MiB: spill-sort.ts). */
  runBytes?: number;
  /** Where temp files go (default os.tmpdir()). */
  tmpDir?: string;
  /** Longest entry kept, compacted; longer ones are skipped and counted (default 1 MiB). */
  maxEntryBytes?: number;
  /** The source's counters: entries handed over count as lines read, skipped ones as skipped long lines. */
  stats: { linesRead: number; skippedLongLines: number };
}

const NEWLINE = Buffer.from("\n");
const noCommit = (): Promise<void> => Promise.resolve();

/**
 * Reads one gcloud JSON array from `chunks` and hands its entries on in
 * event-time order (oldest first), as batches of compact LogEntry lines
 * marked `shape: "gcloud_array"`. Nothing is handed on before the input
 * ended: the array is newest first. Memory stays bounded (spill-sort.ts);
 * the temp files are removed on every way out. When the array is broken
 * (not an array, cut short, bytes that are not JSON) the entries read
 * before the fault are still handed on, then the GcloudArrayError is thrown.
 * Stops early, handing on nothing more, when `signal` aborts.
 */
export async function readGcloudArray(
  chunks: AsyncIterable<Buffer>,
  onBatch: (batch: LineBatch) => Promise<void>,
  options: ReadGcloudArrayOptions,
  signal: AbortSignal,
): Promise<void> {
  const sorter = new SpillSorter({
    ...(options.runBytes === undefined ? {} : { runBytes: options.runBytes }),
    ...(options.tmpDir === undefined ? {} : { tmpDir: options.tmpDir }),
  });
  try {
    const pending: ArrayEntry[] = [];
    const parser = new GcloudArrayParser((entry) => pending.push(entry), options.maxEntryBytes);
    let fault: GcloudArrayError | null = null;
    try {
      for await (const chunk of chunks) {
        if (signal.aborted) return;
        parser.push(chunk);
        for (const entry of pending) await sorter.add(entry.line, entry.time);
        pending.length = 0;
      }
      parser.end();
    } catch (err) {
      if (!(err instanceof GcloudArrayError)) throw err;
      fault = err;
      for (const entry of pending) await sorter.add(entry.line, entry.time);
    } finally {
      options.stats.skippedLongLines += parser.skipped;
    }
    if (signal.aborted) return;
    for await (const group of sorter.sorted()) {
      if (signal.aborted) return;
      const parts: Buffer[] = [];
      for (const line of group) parts.push(line, NEWLINE);
      options.stats.linesRead += group.length;
      await onBatch({ data: Buffer.concat(parts), lines: group.length, commit: noCommit, shape: "gcloud_array" });
    }
    if (fault !== null) throw fault;
  } finally {
    await sorter.dispose();
  }
}
