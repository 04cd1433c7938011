/**
 * Line framing shared by the byte-stream sources (file.ts, stdin.ts): cuts
 * raw input into batches of complete "\n"-terminated lines, carries the
 * trailing partial line over to the next read, and skips lines longer than a
 * cap so that one runaway line costs bounded memory.
 *
 * It looks at every newline once (Buffer.indexOf, native memchr) to count the
 * lines and check their length; it never slices, decodes or copies a line.
 */
import { NL } from "./bytes.js";

/** Default cap on one line, terminator excluded: 1 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

const EMPTY = Buffer.alloc(0);

/** What one call to `LineFramer.frame` yields. */
export interface Framed {
  /**
   * The complete lines of the region (over-long ones cut out), each ending in
   * "\n"; null when there is none. A view of the region unless a long line
   * had to be cut out of its middle (then a copy).
   */
  data: Buffer | null;
  /** Lines in `data`. */
  lines: number;
  /**
   * Index in the region just past the last complete line, delivered or
   * skipped: where a reader that persisted its position would resume.
   */
  end: number;
  /** Index in the region where `data` starts. */
  start?: number;
  /** True when over-long lines were cut out of `data`: byte offsets within it no longer match the input's. */
  cut?: boolean;
}

/**
 * Frames a byte stream into complete lines. One instance per input; not
 * shared between inputs. Lines longer than `maxLineBytes` are dropped and
 * counted in `counters.skippedLongLines`.
 */
export class LineFramer {
  private carried: Buffer = EMPTY;
  private skipping = false;

  /**
   * @param maxLineBytes longest line kept, terminator excluded (default 1 MiB)
   * @param counters where skipped lines are counted: the source's stats
   */
  constructor(
    readonly maxLineBytes: number = DEFAULT_MAX_LINE_BYTES,
    readonly counters: { skippedLongLines: number } = { skippedLongLines: 0 },
  ) {}

  /** The partial line carried over from the previous region (never contains "\n"). */
  get carry(): Buffer {
    return this.carried;
  }

  /**
   * Frames `region`, whose first `carried` bytes must be `this.carry` (the
   * caller copied them in front of the new bytes, so that the new bytes are
   * not copied again). Keeps the new trailing partial line as the carry.
   */
  frame(region: Buffer, carried: number): Framed {
    let first = 0;
    if (this.skipping) {
      const nl = region.indexOf(NL, carried);
      if (nl === -1) {
        this.carried = EMPTY;
        return { data: null, lines: 0, end: 0 };
      }
      this.skipping = false;
      first = nl + 1;
    }
    let lineStart = first;
    let search = Math.max(first, carried); // the carry holds no newline
    let lines = 0;
    let cuts: number[] | null = null;
    for (let nl = region.indexOf(NL, search); nl !== -1; nl = region.indexOf(NL, search)) {
      if (nl - lineStart > this.maxLineBytes) {
        (cuts ??= []).push(lineStart, nl + 1);
        this.counters.skippedLongLines++;
      } else {
        lines++;
      }
      lineStart = nl + 1;
      search = lineStart;
    }
    const tail = region.length - lineStart;
    if (tail > this.maxLineBytes) {
      this.counters.skippedLongLines++;
      this.skipping = true;
      this.carried = EMPTY;
    } else {
      // A copy, so that the region (handed over as a batch) is not kept alive by it.
      this.carried = tail === 0 ? EMPTY : Buffer.from(region.subarray(lineStart));
    }
    if (lines === 0) return { data: null, lines: 0, end: lineStart };
    if (cuts === null) return { data: region.subarray(first, lineStart), lines, end: lineStart, start: first };
    const parts: Buffer[] = [];
    let from = first;
    for (let i = 0; i < cuts.length; i += 2) {
      if (cuts[i]! > from) parts.push(region.subarray(from, cuts[i]));
      from = cuts[i + 1]!;
    }
    if (lineStart > from) parts.push(region.subarray(from, lineStart));
    return { data: Buffer.concat(parts), lines, end: lineStart, cut: true };
  }

  /** Frames one chunk of a stream (copies only when a partial line is carried). */
  push(chunk: Buffer): Framed {
    const carried = this.carried.length;
    return this.frame(carried === 0 ? chunk : Buffer.concat([this.carried, chunk]), carried);
  }

  /**
   * The input ended (end of stream, a rotated file read to its end, or a
   * one-shot read): the carried partial line, if any, becomes a line of its
   * own with a "\n" appended. A line being skipped just ends.
   */
  finish(): Framed {
    const carry = this.carried;
    this.reset();
    if (carry.length === 0) return { data: null, lines: 0, end: 0 };
    return { data: Buffer.concat([carry, Buffer.from("\n")]), lines: 1, end: carry.length, start: 0 };
  }

  /** Forgets the carry and any line being skipped (the input was truncated or replaced). */
  reset(): void {
    this.carried = EMPTY;
    this.skipping = false;
  }

  /** The input starts in the middle of a line that is already too long to keep: drop it up to its end, uncounted. */
  skipToNextLine(): void {
    this.carried = EMPTY;
    this.skipping = true;
  }

  /** True while the rest of an over-long line is being dropped. */
  get skippingLine(): boolean {
    return this.skipping;
  }
}
