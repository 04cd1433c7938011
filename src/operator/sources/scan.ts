/**
 * Candidate lines out of a batch of raw bytes, and LogEvents out of them.
 *
 * Parsing every line is the expensive way (FIELD-NOTES: ~340 k lines/s for
 * readline + JSON.parse). A rule that names its events gives literal needles
 * (`"factory.hard_limit"` with its quotes, compile.ts); they are searched in
 * the whole batch at once, and only the few lines that hold one are sliced,
 * decoded and parsed. A line that holds a needle in its message text rather
 * than in `event` is a false candidate the rule's matcher rejects; a line
 * that holds none cannot match, so nothing is missed.
 */
import { normalize, type LogEvent } from "./event.js";
import { combinedNeedles, type CompiledRule } from "../rules/compile.js";
import type { LineBatch } from "./source.js";
import { addShapeCounts, classifyLine, countShapes, newShapeCounts, UNDERSTOOD_SHAPES, type ShapeCounts, type ShapeWatch } from "./shapes.js";
import { CR, NL } from "./bytes.js";


/**
 * A compiled set of needles for a Wu–Manber search: a shift table over
 * 2-byte blocks of each needle's first `window` bytes (`window` = the
 * shortest needle, at most 255). One pass over the batch finds every needle
 * at once, moving up to `window - 1` bytes per step; only where the block
 * under the window's end ends some needle's window (shift 0) are needles
 * compared. Worst case (text made of needle fragments) stays linear: a
 * comparison of at most the needles' total length per byte.
 */
interface NeedleSet {
  /** Copies of the needles it was built from, to tell a changed array from the one cached. */
  needles: readonly Buffer[];
  window: number;
  shift: Uint8Array;
  /** Needles by the block ending their window. */
  buckets: Map<number, readonly Buffer[]>;
}

/** Below this, shifts are too short to beat one Buffer.indexOf pass per needle. */
const MIN_WINDOW = 4;
const MAX_WINDOW = 255;

function compileNeedles(needles: readonly Buffer[]): NeedleSet | null {
  let window = MAX_WINDOW;
  for (const n of needles) window = Math.min(window, n.length);
  if (window < MIN_WINDOW) return null;
  const shift = new Uint8Array(65536).fill(window - 1);
  const buckets = new Map<number, Buffer[]>();
  for (const n of needles) {
    for (let q = 1; q < window; q++) {
      const block = (n[q - 1]! << 8) | n[q]!;
      shift[block] = Math.min(shift[block]!, window - 1 - q);
    }
    const last = (n[window - 2]! << 8) | n[window - 1]!;
    const bucket = buckets.get(last);
    if (bucket === undefined) buckets.set(last, [n]);
    else if (!bucket.some((b) => b.equals(n))) bucket.push(n);
  }
  return { needles: needles.map((n) => Buffer.from(n)), window, shift, buckets };
}

/**
 * Compiled needle sets by the array they came from (a Scanner keeps its
 * array for its lifetime), checked against the array's current content so
 * that an array changed in place is compiled again: a pure cache.
 */
const compiled = new WeakMap<readonly Buffer[], NeedleSet>();

function needleSet(needles: readonly Buffer[]): NeedleSet | null {
  const cached = compiled.get(needles);
  if (cached !== undefined && cached.needles.length === needles.length && cached.needles.every((n, i) => n.equals(needles[i]!))) {
    return cached;
  }
  const set = compileNeedles(needles);
  if (set === null) compiled.delete(needles);
  else compiled.set(needles, set);
  return set;
}

/** Independent walks of `shiftZeroSpots`, over consecutive quarters of the batch. */
const LANES = 4;

/**
 * Where the window may end on a needle (shift 0), in order. Four independent
 * walks, one over each quarter of the batch: one walk is bound by the latency
 * of its load → table → add chain, and four overlap on the CPU (measured on
 * the 1 GiB replay log: ~1.6× faster than two, ~2.9× faster than one). Each
 * block is read as one big-endian 16-bit load (`DataView.getUint16`), ~1.2×
 * faster than two byte loads. A walk may start anywhere: a shift never
 * passes the end of a needle's window, so every needle is still found (the
 * spots that are no needle may differ, and are checked and dropped anyway).
 */
function shiftZeroSpots(data: Buffer, set: NeedleSet): number[] {
  const { window, shift } = set;
  const len = data.length;
  const view = new DataView(data.buffer, data.byteOffset, len);
  // Lane k's walk covers the windows ending in [lanes[2k], lanes[2k + 1]); it may step past its end into the next lane's.
  const quarter = Math.floor(len / LANES);
  const bound = (k: number): number => (k === LANES ? len : Math.max(window - 1, Math.min(len, quarter * k)));
  const lanes = [window - 1, bound(1), bound(1), bound(2), bound(2), bound(3), bound(3), len];
  const spots: number[][] = [[], [], [], []];
  walkFour(view, shift, lanes, spots);
  for (let k = 0; k < LANES; k++) walk(view, shift, lanes[2 * k]!, lanes[2 * k + 1]!, spots[k]!);
  const all = spots[0]!;
  for (let k = 1; k < LANES; k++) for (const spot of spots[k]!) all.push(spot);
  return all;
}

/**
 * The four walks in step, until one of them reaches its end; leaves each
 * walk's position in `lanes[2k]`. A function of its own, so that the hot loop
 * is compiled on its own: compiled inside `shiftZeroSpots`, its first
 * optimization (on the stack, mid-loop) knew nothing yet of the code after
 * the loop and was thrown away there, and the compile took several times
 * longer, while the loop ran unoptimized.
 */
function walkFour(view: DataView, shift: Uint8Array, lanes: number[], spots: number[][]): void {
  let i0 = lanes[0]!;
  let i1 = lanes[2]!;
  let i2 = lanes[4]!;
  let i3 = lanes[6]!;
  const e0 = lanes[1]!;
  const e1 = lanes[3]!;
  const e2 = lanes[5]!;
  const e3 = lanes[7]!;
  const s0 = spots[0]!;
  const s1 = spots[1]!;
  const s2 = spots[2]!;
  const s3 = spots[3]!;
  while (i0 < e0 && i1 < e1 && i2 < e2 && i3 < e3) {
    const h0 = shift[view.getUint16(i0 - 1)]!;
    const h1 = shift[view.getUint16(i1 - 1)]!;
    const h2 = shift[view.getUint16(i2 - 1)]!;
    const h3 = shift[view.getUint16(i3 - 1)]!;
    if (h0 === 0) s0.push(i0++);
    else i0 += h0;
    if (h1 === 0) s1.push(i1++);
    else i1 += h1;
    if (h2 === 0) s2.push(i2++);
    else i2 += h2;
    if (h3 === 0) s3.push(i3++);
    else i3 += h3;
  }
  lanes[0] = i0;
  lanes[2] = i1;
  lanes[4] = i2;
  lanes[6] = i3;
}

/** One walk from window end `i` up to `end`, adding its shift-0 spots to `spots`. */
function walk(view: DataView, shift: Uint8Array, i: number, end: number, spots: number[]): void {
  while (i < end) {
    const h = shift[view.getUint16(i - 1)]!;
    if (h === 0) spots.push(i++);
    else i += h;
  }
}

function matchesAt(data: Buffer, start: number, needle: Buffer): boolean {
  if (start + needle.length > data.length) return false;
  for (let k = 0; k < needle.length; k++) if (data[start + k] !== needle[k]) return false;
  return true;
}

/** Throws a TypeError for a needle that could match nothing useful or cross lines. */
function checkNeedles(needles: readonly Buffer[]): void {
  for (const n of needles) {
    if (n.length === 0) throw new TypeError("scanBatch: a needle must not be empty");
    if (n.includes(NL)) throw new TypeError(`scanBatch: a needle must not contain a newline: ${JSON.stringify(n.toString())}`);
  }
}

/** Emits data[start, end) without a trailing "\r". */
function emit(data: Buffer, start: number, end: number, onCandidate: (line: Buffer) => void): void {
  onCandidate(data.subarray(start, end > start && data[end - 1] === CR ? end - 1 : end));
}

/** Emits the line around byte `hit` and returns where the next line starts (data.length at the end). */
function emitLineAt(data: Buffer, hit: number, onCandidate: (line: Buffer) => void): number {
  // lastIndexOf with a negative offset would count from the end: guard the first line.
  const start = hit === 0 ? 0 : data.lastIndexOf(NL, hit - 1) + 1;
  const nl = data.indexOf(NL, hit);
  const end = nl === -1 ? data.length : nl;
  emit(data, start, end, onCandidate);
  return nl === -1 ? data.length : nl + 1;
}

/**
 * Calls `onCandidate` for every line of `data` that contains at least one of
 * `needles`, once per line however many needles it holds, in order. With
 * `needles` null every line is a candidate (an empty line too); with an
 * empty array none is. Lines end in "\n"; a last line without one still
 * counts; a "\r" before the "\n" is stripped. The line passed is a view of
 * `data`, valid as long as `data` is: copy it to keep it.
 *
 * All needles are searched in one pass over the whole buffer (Wu–Manber,
 * see NeedleSet; one Buffer.indexOf pass per needle for needles under 4
 * bytes); only the lines around a hit are delimited. Throws a TypeError for
 * an empty needle or one holding "\n".
 */
export function scanBatch(data: Buffer, needles: readonly Buffer[] | null, onCandidate: (line: Buffer) => void): void {
  if (needles === null) {
    let start = 0;
    while (start < data.length) {
      const nl = data.indexOf(NL, start);
      const end = nl === -1 ? data.length : nl;
      emit(data, start, end, onCandidate);
      start = end + 1;
    }
    return;
  }
  checkNeedles(needles);
  if (needles.length === 0 || data.length === 0) return;
  const set = needleSet(needles);
  if (set === null) {
    scanEach(data, needles, onCandidate);
    return;
  }
  let next = 0; // where the first line not yet emitted starts
  for (const end of shiftZeroSpots(data, set)) {
    const start = end - set.window + 1;
    if (start < next) continue; // on a line already emitted
    const bucket = set.buckets.get((data[end - 1]! << 8) | data[end]!)!;
    if (bucket.some((needle) => matchesAt(data, start, needle))) next = emitLineAt(data, start, onCandidate);
  }
}

/**
 * Short needles (under MIN_WINDOW bytes): one Buffer.indexOf pass per
 * needle, merged so that lines come out in order and once.
 */
function scanEach(data: Buffer, needles: readonly Buffer[], onCandidate: (line: Buffer) => void): void {
  const hits = needles.map((n) => data.indexOf(n, 0));
  for (;;) {
    let first = -1;
    for (const h of hits) if (h !== -1 && (first === -1 || h < first)) first = h;
    if (first === -1) return;
    const next = emitLineAt(data, first, onCandidate);
    for (let k = 0; k < hits.length; k++) if (hits[k] !== -1 && hits[k]! < next) hits[k] = data.indexOf(needles[k]!, next);
  }
}

/** Lines in `data`: its "\n"s, plus one for a last line without one. */
export function countLines(data: Buffer): number {
  let lines = 0;
  let from = 0;
  for (let nl = data.indexOf(NL, from); nl !== -1; nl = data.indexOf(NL, from)) {
    lines++;
    from = nl + 1;
  }
  return from < data.length ? lines + 1 : lines;
}

const BOM = 0xfeff;

/**
 * One raw line to a LogEvent (JSON.parse, then `normalize()` from event.ts).
 *
 * - a blank line (nothing but whitespace) is `"ignored"`: not an entry at all;
 * - a line that is not JSON, or JSON but not an object, is `"malformed"`;
 * - a JSON object that `normalize()` rejects (no usable time, or nested
 *   deeper than MAX_ENTRY_DEPTH) is `"malformed"`
 *   too: rules run in event time, so an entry without one cannot be placed
 *   in a window, and the operator's counters should show it rather than
 *   hide it among blank lines.
 *
 * Invalid UTF-8 decodes to U+FFFD; a leading byte-order mark is dropped.
 */
export function parseLine(line: Buffer): LogEvent | "malformed" | "ignored" {
  let text = line.toString("utf8");
  if (text.charCodeAt(0) === BOM) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text.trim() === "" ? "ignored" : "malformed";
  }
  return normalize(value) ?? "malformed";
}

/** Counters a Scanner keeps (exported as metrics by the operator). */
export interface ScannerStats {
  /** Lines in the batches scanned, candidates or not. */
  linesRead: number;
  /** Lines that held a needle (every line when a rule has no needles). */
  candidates: number;
  /** Candidate lines that were not a JSON object with a usable time: counted and skipped. */
  malformed: number;
  /** Blank candidate lines (only seen when every line is a candidate). */
  ignored: number;
  /**
   * Lines by shape (shapes.ts), every line read: told from its bytes, and
   * for a candidate line that turned out malformed, moved from a shape that
   * reads as an entry to `json_not_entry`.
   */
  shapes: ShapeCounts;
}

/** Options of a Scanner. */
export interface ScannerOptions {
  /** Told each batch's lines by shape once the batch has been parsed (the source's watch: metrics, alarm). */
  watch?: ShapeWatch;
}

/**
 * Turns batches into the LogEvents of their candidate lines for a set of
 * compiled rules: the needles are the union of the rules' needles, or none
 * (every line parsed) as soon as one rule cannot name its events. Malformed
 * lines are counted and skipped, never fatal. Which events match which rule
 * is the matcher's business (`CompiledRule.match`), not the scanner's.
 */
export class Scanner {
  readonly stats: ScannerStats = { linesRead: 0, candidates: 0, malformed: 0, ignored: 0, shapes: newShapeCounts() };
  /** The needles searched, as bytes; null when every line is a candidate. */
  readonly needles: readonly Buffer[] | null;
  private readonly watch: ShapeWatch | undefined;

  constructor(rules: readonly CompiledRule[], options: ScannerOptions = {}) {
    this.watch = options.watch;
    const needles = combinedNeedles(rules);
    this.needles = needles === null ? null : needles.map((n) => Buffer.from(n, "utf8"));
    if (this.needles !== null) checkNeedles(this.needles);
  }

  /**
   * Like `scan`, but each candidate line is parsed only when the consumer
   * asks for its entry: the batch is searched (and `linesRead`, `candidates`
   * counted) now, `malformed` and `ignored` as the entries are taken. A batch
   * of thousands of candidates (a flood) then never holds all of its parsed
   * entries at once, so they die young instead of filling the old
   * generation (ADR 12).
   */
  lazy(batch: Pick<LineBatch, "data" | "lines" | "origin" | "shape">): Iterable<LogEvent> {
    const stats = this.stats;
    stats.linesRead += batch.lines;
    // Where each candidate line is, as numbers: no object per line lives while the batch is handled.
    const data = batch.data;
    const bounds: number[] = [];
    scanBatch(data, this.needles, (line) => bounds.push(line.byteOffset - data.byteOffset, line.length));
    stats.candidates += bounds.length / 2;
    const shapes = batchShapes(batch);
    addShapeCounts(stats.shapes, shapes);
    const origin = batch.origin;
    const watch = this.watch;
    return (function* parse(): Generator<LogEvent> {
      try {
        for (let i = 0; i < bounds.length; i += 2) {
          const start = bounds[i]!;
          const line = data.subarray(start, start + bounds[i + 1]!);
          const event = parseLine(line);
          if (event === "malformed") {
            stats.malformed++;
            correctShape(line, batch.shape, shapes, stats.shapes);
          } else if (event === "ignored") stats.ignored++;
          else {
            if (origin !== undefined) event.origin = { path: origin.path, offset: origin.offset + start };
            yield event;
          }
        }
      } finally {
        watch?.record(shapes);
      }
    })();
  }

  /** The LogEvents of the batch's candidate lines, in order. */
  scan(batch: Pick<LineBatch, "data" | "lines" | "shape">): LogEvent[] {
    const events: LogEvent[] = [];
    const stats = this.stats;
    stats.linesRead += batch.lines;
    const shapes = batchShapes(batch);
    addShapeCounts(stats.shapes, shapes);
    scanBatch(batch.data, this.needles, (line) => {
      stats.candidates++;
      const event = parseLine(line);
      if (event === "malformed") {
        stats.malformed++;
        correctShape(line, batch.shape, shapes, stats.shapes);
      } else if (event === "ignored") stats.ignored++;
      else events.push(event);
    });
    this.watch?.record(shapes);
    return events;
  }
}

/** A batch's lines by shape: what the source says, or told from the bytes. */
function batchShapes(batch: Pick<LineBatch, "data" | "lines" | "shape">): ShapeCounts {
  const shapes = newShapeCounts();
  if (batch.shape !== undefined) shapes[batch.shape] += batch.lines;
  else countShapes(batch.data, shapes);
  return shapes;
}

/**
 * A candidate line that read as an entry from its bytes but did not parse as
 * one (broken JSON, no usable time): counted as `json_not_entry` instead,
 * in each of `counts` (a batch's and the totals).
 */
export function correctShape(line: Buffer, known: LineBatch["shape"], ...counts: ShapeCounts[]): void {
  const was = known ?? classifyLine(line);
  if (!UNDERSTOOD_SHAPES.includes(was)) return;
  for (const c of counts) {
    c[was]--;
    c.json_not_entry++;
  }
}
