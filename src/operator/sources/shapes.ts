/**
 * Log shapes: what a line of a source looks like, told from its bytes
 * without parsing it, so that a wrong file (plain text, JSON that is not a
 * log entry, a pretty-printed export read as lines) never looks like a quiet
 * day. Every line is counted under one shape of a closed set (a metric
 * label); the scanner parses only candidate lines and corrects their shape
 * when the parse disagrees (scan.ts).
 *
 * The byte test of a line, in order:
 * - nothing but spaces and tabs: `blank`;
 * - `{` … `}` holding `Payload"` (`jsonPayload`, `textPayload`,
 *   `protoPayload`): `log_entry`, a Cloud Logging LogEntry on one line (a
 *   log sink's NDJSON, or what the gcp source hands over);
 * - `{` … `}` holding a `"time"` or `"timestamp"` key: `json`, a structured
 *   line such as the factory writes;
 * - any other `{` … `}`: `json_not_entry`;
 * - a line starting with `{`, `}`, `[`, `]` or `"` otherwise: `json_fragment`,
 *   a piece of a multi-line JSON document (a pretty-printed export read line
 *   by line) or a cut-off object;
 * - anything else: `text`.
 * Entries decoded from a `gcloud logging read --format=json` array are
 * `gcloud_array` (the source says so: `LineBatch.shape`).
 *
 * Cost: one Buffer.indexOf per line (the newline, as framing already does),
 * a look at the first 64 bytes for the time key, and one indexOf per batch
 * for `Payload"` (more only on lines that hold it).
 */
import type { Clock } from "../../contract/clock.js";
import type { OperatorMetrics } from "../metrics.js";
import { OperatorEvent, type OperatorLog } from "../log-event.js";
import { CR, LBRACE, LBRACKET, NL, QUOTE, RBRACE, RBRACKET, SP, TAB } from "./bytes.js";

/** The closed set of shapes (metric label values). */
export const SHAPES = ["json", "log_entry", "gcloud_array", "json_not_entry", "json_fragment", "text", "blank"] as const;
/** One of SHAPES: what a line looks like. */
export type Shape = (typeof SHAPES)[number];

/** Lines by shape. */
export type ShapeCounts = Record<Shape, number>;

/** Shapes whose lines are log entries the operator reads. */
export const UNDERSTOOD_SHAPES: readonly Shape[] = ["json", "log_entry", "gcloud_array"];
/** Shapes whose lines are not log entries (`blank` is neither: it says nothing). */
export const NOT_UNDERSTOOD_SHAPES: readonly Shape[] = ["json_not_entry", "json_fragment", "text"];

/** What each shape is, for people. */
export const SHAPE_TEXT: Readonly<Record<Shape, string>> = {
  json: "JSON log lines such as the factory writes",
  log_entry: "Cloud Logging LogEntry NDJSON, one entry a line",
  gcloud_array: "entries of a gcloud logging read --format=json array",
  json_not_entry: "JSON but not a log entry: no time, no payload",
  json_fragment: "pieces of multi-line JSON, or cut-off objects",
  text: "plain text",
  blank: "blank",
};

/** The shapes a source can read, as one sentence for error messages. */
export const EXPECTED_SHAPES =
  "the factory's JSON lines (with a time), Cloud Logging LogEntry NDJSON (jsonPayload or textPayload, one entry a line, as a log sink writes), " +
  "or the JSON array that `gcloud logging read --format=json` prints";

/** All shapes at zero. */
export function newShapeCounts(): ShapeCounts {
  return { json: 0, log_entry: 0, gcloud_array: 0, json_not_entry: 0, json_fragment: 0, text: 0, blank: 0 };
}

/** Adds `from` into `into`. */
export function addShapeCounts(into: ShapeCounts, from: Readonly<ShapeCounts>): void {
  for (const shape of SHAPES) into[shape] += from[shape];
}

/** The shapes with a count above 0, most first: `{ json: 3, text: 1 }`. */
export function nonZeroShapes(counts: Readonly<ShapeCounts>): Partial<ShapeCounts> {
  const out: Partial<ShapeCounts> = {};
  for (const shape of [...SHAPES].sort((a, b) => counts[b] - counts[a])) if (counts[shape] > 0) out[shape] = counts[shape];
  return out;
}

/** `12 text (plain text), 3 json_not_entry (…)`: counts with what they mean. */
export function describeShapes(counts: Readonly<Partial<ShapeCounts>>): string {
  return Object.entries(counts)
    .filter(([, n]) => n !== undefined && n > 0)
    .map(([shape, n]) => `${n} ${shape} (${SHAPE_TEXT[shape as Shape]})`)
    .join(", ");
}

const PAYLOAD = Buffer.from('Payload"');
const TIME = Buffer.from('"time');
const STAMP = Buffer.from('stamp"');
/** How far into a line the time key is looked for by hand before Buffer.indexOf takes over (factory lines have it at ~20). */
const TIME_PREFIX = 64;

// Indexes in SHAPES: counting into an array by number is cheaper per line than by property name.
const JSON_LINE = 0;
const LOG_ENTRY = 1;
const JSON_NOT_ENTRY = 3;
const JSON_FRAGMENT = 4;
const TEXT = 5;
const BLANK = 6;

/** data[i] starts `"time`. */
function isTimeAt(data: Buffer, i: number): boolean {
  return data[i] === QUOTE && data[i + 1] === 0x74 && data[i + 2] === 0x69 && data[i + 3] === 0x6d && data[i + 4] === 0x65;
}

/**
 * Classifies lines of one buffer. Keeps the next `Payload"` and `"time`
 * positions found, so that a batch costs one search per needle plus one per
 * line that holds it, not one per line.
 */
class Classifier {
  private payloadAt = -1;
  private payloadFrom = Number.POSITIVE_INFINITY;
  private timeAt = -1;
  private timeFrom = Number.POSITIVE_INFINITY;
  /** Where in its line the last time key found by hand was. */
  private timeOffset = 0;

  constructor(private readonly data: Buffer) {}

  /** The shape of data[start, end) ("\n" excluded; a "\r" before it tolerated), as its index in SHAPES. */
  shape(start: number, end: number): number {
    const data = this.data;
    if (end > start && data[end - 1] === CR) end--;
    // A byte-order mark at the start of a file is not content.
    if (end - start >= 3 && data[start] === 0xef && data[start + 1] === 0xbb && data[start + 2] === 0xbf) start += 3;
    while (start < end && (data[start] === SP || data[start] === TAB)) start++;
    while (end > start && (data[end - 1] === SP || data[end - 1] === TAB)) end--;
    if (start === end) return BLANK;
    const first = data[start]!;
    if (first === LBRACE && data[end - 1] === RBRACE) {
      if (this.has(PAYLOAD, start, end, true)) return LOG_ENTRY;
      return this.hasTimeKey(start, end) ? JSON_LINE : JSON_NOT_ENTRY;
    }
    if (first === LBRACE || first === RBRACE || first === LBRACKET || first === RBRACKET || first === QUOTE) return JSON_FRAGMENT;
    return TEXT;
  }

  /** Whether `needle` occurs in data[start, end). */
  private has(needle: Buffer, start: number, end: number, payload: boolean): boolean {
    let at = payload ? this.payloadAt : this.timeAt;
    const from = payload ? this.payloadFrom : this.timeFrom;
    // The cached hit is valid for searches from `from` on: a later start reuses it while it lies ahead.
    if (start < from || (at !== -1 && at < start)) {
      at = this.data.indexOf(needle, start);
      if (payload) {
        this.payloadAt = at;
        this.payloadFrom = start;
      } else {
        this.timeAt = at;
        this.timeFrom = start;
      }
    }
    return at !== -1 && at + needle.length <= end;
  }

  /**
   * A `"time"` or `"timestamp"` key in data[start, end): first where the
   * previous line had it (lines of one logger share their layout), then by
   * hand in the first bytes, then by indexOf.
   */
  private hasTimeKey(start: number, end: number): boolean {
    const data = this.data;
    const guess = start + this.timeOffset;
    if (guess + TIME.length < end && isTimeAt(data, guess) && this.isTimeKeyAt(guess, end)) return true;
    const limit = Math.min(end, start + TIME_PREFIX) - TIME.length;
    for (let i = start; i <= limit; i++) {
      if (data[i] === QUOTE && isTimeAt(data, i) && this.isTimeKeyAt(i, end)) {
        this.timeOffset = i - start;
        return true;
      }
    }
    let from = start;
    while (this.has(TIME, from, end, false)) {
      if (this.isTimeKeyAt(this.timeAt, end)) return true;
      from = this.timeAt + 1;
    }
    return false;
  }

  /** data[at] starts `"time`: is it `"time"` or `"timestamp"`? */
  private isTimeKeyAt(at: number, end: number): boolean {
    const after = at + TIME.length;
    if (after < end && this.data[after] === QUOTE) return true;
    return after + STAMP.length <= end && this.data.subarray(after, after + STAMP.length).equals(STAMP);
  }
}

/** The shape of one line (its "\n" excluded). */
export function classifyLine(line: Buffer): Shape {
  return SHAPES[new Classifier(line).shape(0, line.length)]!;
}

/**
 * Adds the shape of every line of `data` to `into`: lines end in "\n", a
 * last line without one counts too (as `countLines` in scan.ts does).
 */
export function countShapes(data: Buffer, into: ShapeCounts): void {
  const classifier = new Classifier(data);
  const counts = [0, 0, 0, 0, 0, 0, 0];
  let start = 0;
  const len = data.length;
  while (start < len) {
    const nl = data.indexOf(NL, start);
    const end = nl === -1 ? len : nl;
    counts[classifier.shape(start, end)]!++;
    start = end + 1;
  }
  for (let i = 0; i < SHAPES.length; i++) into[SHAPES[i]!] += counts[i]!;
}

/** Lines of the sliding window: the most recent whole batches that together hold at least this many lines. */
export const SHAPE_WINDOW_LINES = 1000;
/** No alarm before the window holds this many non-blank lines. */
export const SHAPE_MIN_LINES = 100;
/** Alarm when more than this share of the window's non-blank lines are not understood ("most"). */
export const SHAPE_ALARM_RATIO = 0.5;
/** At most one alarm per source this often: 60 s. */
export const SHAPE_ALARM_INTERVAL_MS = 60_000;

/** Most of a source's recent lines were not understood. */
export interface ShapeAlarm {
  source: string;
  /** Non-blank lines in the window. */
  lines: number;
  /** Of those, not understood. */
  notUnderstood: number;
  /** The window's lines by shape (non-zero only). */
  seen: Partial<ShapeCounts>;
  message: string;
}

/** What a ShapeWatch needs: the source's name, a clock, and where to count and tell. */
export interface ShapeWatchOptions {
  /** The source's name (a metric label). */
  source: string;
  /** Event times of alarms, for the once-a-minute limit. */
  clock: Clock;
  /** Where `lines_by_shape_total` and `source_not_understood_total` are counted (optional). */
  metrics?: OperatorMetrics;
  /** Told of each alarm (at most once per SHAPE_ALARM_INTERVAL_MS). */
  onAlarm?: (alarm: ShapeAlarm) => void;
}

/**
 * One source's shapes over time: totals, a sliding window of recent
 * batches, and an alarm (at most once a minute) while more than
 * SHAPE_ALARM_RATIO of the window's non-blank lines (at least
 * SHAPE_MIN_LINES of them) are not understood. The window is whole batches,
 * so that recording a batch costs a few additions, not one step per line.
 */
export class ShapeWatch {
  /** Lines by shape since the watch began. */
  readonly totals: ShapeCounts = newShapeCounts();
  /** Alarms raised. */
  alarms = 0;
  private readonly window: ShapeCounts[] = [];
  private readonly inWindow: ShapeCounts = newShapeCounts();
  private lastAlarm = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: ShapeWatchOptions) {}

  /** One batch's lines by shape. */
  record(counts: Readonly<ShapeCounts>): void {
    const metrics = this.options.metrics;
    for (const shape of SHAPES) {
      const n = counts[shape];
      if (n === 0) continue;
      this.totals[shape] += n;
      metrics?.linesByShape.inc({ source: this.options.source, shape }, n);
    }
    const batch = { ...counts };
    this.window.push(batch);
    addShapeCounts(this.inWindow, batch);
    // Drop the oldest batches while the rest still cover the window.
    while (this.window.length > 1 && windowLines(this.inWindow) - windowLines(this.window[0]!) >= SHAPE_WINDOW_LINES) {
      const old = this.window.shift()!;
      for (const shape of SHAPES) this.inWindow[shape] -= old[shape];
    }
    this.check();
  }

  private check(): void {
    const lines = windowLines(this.inWindow);
    const notUnderstood = NOT_UNDERSTOOD_SHAPES.reduce((n, shape) => n + this.inWindow[shape], 0);
    if (lines < SHAPE_MIN_LINES || notUnderstood <= lines * SHAPE_ALARM_RATIO) return;
    const now = this.options.clock.now();
    if (now - this.lastAlarm < SHAPE_ALARM_INTERVAL_MS) return;
    this.lastAlarm = now;
    this.alarms++;
    const { blank: _blank, ...rest } = this.inWindow;
    const seen = nonZeroShapes({ ...rest, blank: 0 });
    this.options.metrics?.sourceNotUnderstood.inc({ source: this.options.source });
    this.options.onAlarm?.({
      source: this.options.source,
      lines,
      notUnderstood,
      seen,
      message:
        `${this.options.source}: ${notUnderstood} of the last ${lines} lines are not log entries it can read (${describeShapes(seen)}); ` +
        `expected ${EXPECTED_SHAPES}. Rules cannot match what is not understood: check the source.`,
    });
  }
}

/** Non-blank lines. */
function windowLines(counts: Readonly<ShapeCounts>): number {
  let n = 0;
  for (const shape of SHAPES) if (shape !== "blank") n += counts[shape];
  return n;
}

/**
 * A ShapeWatch for the live operator: counts into `metrics` and logs each
 * alarm as an ERROR (`operator.source_error`, kind `not_understood`).
 */
export function watchShapes(options: { source: string; clock: Clock; metrics: OperatorMetrics; log: OperatorLog }): ShapeWatch {
  return new ShapeWatch({
    source: options.source,
    clock: options.clock,
    metrics: options.metrics,
    onAlarm: (alarm) =>
      options.log.error(
        OperatorEvent.sourceError,
        { source: alarm.source, kind: "not_understood", lines: alarm.lines, notUnderstood: alarm.notUnderstood },
        alarm.message,
      ),
  });
}
