/**
 * One worker of a parallel scan (parallel-scan.ts, ADR 32): reads its byte
 * ranges of a file, one after the other (ADR 37), frames each into lines exactly as the file source does
 * (LineFramer, same chunk size and line cap), counts its lines and their
 * shapes, and finds its candidate lines with `scanBatch`, the scanner's own
 * search. It sends the candidate lines back as bytes, with the counts, in
 * messages of about `flushBytes`; at most `window` of them wait unacknowledged,
 * so a flood of candidates costs bounded memory while the main thread is
 * still busy with an earlier range.
 *
 * The file descriptor is the main thread's (threads share the process's
 * descriptors, and positioned reads do not move a shared offset): every
 * worker reads the very file that was measured and cut, even if the path
 * is replaced meanwhile.
 */
import { readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { LineFramer } from "./lines.js";
import type { JobRange, RangeJob, ToMain, ToWorker } from "./parallel-scan.js";
import { scanBatch } from "./scan.js";
import { countShapes, newShapeCounts, SHAPES, type ShapeCounts } from "./shapes.js";
import { NL } from "./bytes.js";

/** The error a worker reports, as plain data (an Error does not cross threads with its `code`). */
function failure(err: unknown): ToMain {
  const e = err as NodeJS.ErrnoException | null;
  return { type: "error", message: e instanceof Error ? e.message : String(err), ...(typeof e?.code === "string" ? { code: e.code } : {}) };
}

/** Reads `length` bytes at `position` into buf[offset..]; fewer only at the end of the file. */
function readFully(fd: number, buf: Buffer, offset: number, length: number, position: number): number {
  let filled = 0;
  while (filled < length) {
    const n = readSync(fd, buf, offset + filled, length - filled, position + filled);
    if (n === 0) break;
    filled += n;
  }
  return filled;
}

/** Lines counted in `shapes`: each line has exactly one shape. */
function totalOf(shapes: ShapeCounts): number {
  let n = 0;
  for (const shape of SHAPES) n += shapes[shape];
  return n;
}

/** Candidate lines gathered since the last message, back to back, with their lengths. */
class Gathered {
  bytes = Buffer.allocUnsafeSlow(64 * 1024);
  used = 0;
  lengths: number[] = [];
  lines = 0;
  shapes: ShapeCounts = newShapeCounts();

  add(line: Buffer): void {
    if (this.used + line.length > this.bytes.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.bytes.length * 2, this.used + line.length));
      this.bytes.copy(bigger, 0, 0, this.used);
      this.bytes = bigger;
    }
    line.copy(this.bytes, this.used);
    this.used += line.length;
    this.lengths.push(line.length);
  }

  /** The message for what was gathered (its buffers to transfer), and a fresh start. */
  take(type: "batch" | "done"): { message: ToMain; transfer: ArrayBuffer[] } {
    const data = new Uint8Array(this.used);
    data.set(this.bytes.subarray(0, this.used));
    const lengths = Uint32Array.from(this.lengths);
    const message: ToMain = { type, lines: this.lines, shapes: this.shapes, data, lengths };
    this.used = 0;
    this.lengths = [];
    this.lines = 0;
    this.shapes = newShapeCounts();
    return { message, transfer: [data.buffer, lengths.buffer] };
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The file source's framing (LineFramer) with its per-line work left out
 * where it cannot change the result. LineFramer looks at every "\n" to
 * count lines and drop those over the cap; here the count comes from
 * countShapes, which looks at every "\n" anyway, and a region is handed to
 * LineFramer itself only when it may hold a line over the cap (or one is
 * being dropped). A line over the cap has at least `maxLineBytes + 1` bytes
 * without "\n"; probes every `step` bytes, each looking for the next "\n",
 * cannot all miss it: the first probe inside it sees no "\n" for at least
 * `maxLineBytes + 1 - step` bytes.
 */
class RangeFramer {
  private readonly framer: LineFramer;
  private readonly step: number;
  /** The partial line carried to the next region (no "\n"), as LineFramer keeps it. */
  carry: Buffer = EMPTY;

  constructor(private readonly maxLineBytes: number) {
    this.framer = new LineFramer(maxLineBytes);
    this.step = Math.max(1, maxLineBytes >> 1);
  }

  /**
   * Frames `region`, whose first `carried` bytes are `this.carry`: its
   * complete lines and how many (null: count them, they are all the lines
   * of `data`, each ending in "\n"), as LineFramer.frame gives them.
   */
  frame(region: Buffer, carried: number): { data: Buffer | null; lines: number | null } {
    const last = region.lastIndexOf(NL);
    if (!this.framer.skippingLine && last !== -1 && region.length - last - 1 <= this.maxLineBytes && !this.mayHoldLongLine(region, last + 1)) {
      this.carry = last + 1 === region.length ? EMPTY : Buffer.from(region.subarray(last + 1));
      return { data: region.subarray(0, last + 1), lines: null };
    }
    // LineFramer reads only its skipping state and `carried`: it takes over from here exactly.
    const framed = this.framer.frame(region, carried);
    this.carry = this.framer.carry;
    return { data: framed.data, lines: framed.lines };
  }

  /** Whether region[0, end) may hold a line longer than the cap (false: it surely does not). */
  private mayHoldLongLine(region: Buffer, end: number): boolean {
    if (end <= this.maxLineBytes) return false;
    const reach = this.maxLineBytes + 1 - this.step;
    for (let probe = 0; probe < end; probe += this.step) {
      const nl = region.indexOf(NL, probe);
      if (nl === -1 || nl - probe >= reach) return true;
    }
    return false;
  }

  /** The end of the file: the carried partial line becomes a line (LineFramer.finish). */
  finish(): { data: Buffer | null; lines: number } {
    const carry = this.carry;
    this.carry = EMPTY;
    if (carry.length === 0 || this.framer.skippingLine) return { data: null, lines: 0 };
    return { data: Buffer.concat([carry, Buffer.from("\n")]), lines: 1 };
  }
}

/** What a worker keeps across its ranges: the needles, and the flow control of its messages. */
interface Flow {
  port: NonNullable<typeof parentPort>;
  /** Batches acknowledged by the main thread, and sent. */
  acked: number;
  sent: number;
  /** Resolves the wait for the next message from the main thread. */
  wake: (() => void) | null;
}

/** Waits for the main thread's next message. */
function nextMessage(flow: Flow): Promise<void> {
  return new Promise<void>((resolve) => (flow.wake = resolve));
}

async function scanRanges(job: RangeJob, port: NonNullable<typeof parentPort>): Promise<void> {
  let needles: Buffer[] | null = null;
  const flow: Flow = { port, acked: 0, sent: 0, wake: null };
  const onMessage = (m: ToWorker): void => {
    if ("needles" in m) needles = m.needles.map((n) => Buffer.from(n.buffer, n.byteOffset, n.byteLength));
    else flow.acked = m.acked;
    flow.wake?.();
  };
  port.on("message", onMessage);
  try {
    // Started while the main thread loads the rules: the needles come when they are known. No deadline: the main
    // thread either sends them or terminates this worker, and until then this worker does not keep it alive.
    while (needles === null) await nextMessage(flow);
    flow.wake = null;
    // Room for a chunk and the longest partial line that can be carried in front of it; one buffer for every range.
    const buf = Buffer.allocUnsafeSlow(job.chunkBytes + job.maxLineBytes + 1);
    for (const range of job.ranges) if (!(await scanRange(job, range, needles, buf, flow))) return;
  } catch (err) {
    port.postMessage(failure(err));
  } finally {
    // Nothing left to wait for: the worker's event loop empties and it exits.
    port.off("message", onMessage);
  }
}

/** Scans one range and ends it with a "done" message; false when it failed (and said so). */
async function scanRange(job: RangeJob, range: JobRange, search: Buffer[], buf: Buffer, flow: Flow): Promise<boolean> {
  const { port } = flow;
  const framer = new RangeFramer(job.maxLineBytes);
  const gathered = new Gathered();
  const onCandidate = (line: Buffer): void => gathered.add(line);
  const take = (data: Buffer | null, lines: number | null): void => {
    if (data === null) return;
    const shapes = gathered.shapes;
    const before = lines === null ? totalOf(shapes) : 0;
    countShapes(data, shapes);
    gathered.lines += lines ?? totalOf(shapes) - before;
    scanBatch(data, search, onCandidate);
  };
  let pos = range.start;
  let quiet = 0; // bytes read since the last message
  while (pos < range.end) {
    const carry = framer.carry;
    carry.copy(buf, 0);
    const want = Math.min(job.chunkBytes, range.end - pos);
    const n = readFully(job.fd, buf, carry.length, want, pos);
    if (n < want) {
      port.postMessage({ type: "error", message: `it shrank while being read (ends at byte ${pos + n}, expected ${range.end})`, code: "ERR_RECLAIM_SOURCE_SHRANK" } satisfies ToMain);
      return false;
    }
    pos += n;
    quiet += n;
    const framed = framer.frame(buf.subarray(0, carry.length + n), carry.length);
    take(framed.data, framed.lines);
    if (gathered.used >= job.flushBytes) {
      quiet = 0;
      const { message, transfer } = gathered.take("batch");
      port.postMessage(message, transfer);
      flow.sent++;
      // At most `window` batches unacknowledged: a flood of candidates waits here, not in memory.
      while (flow.sent - flow.acked >= job.window) await nextMessage(flow);
      flow.wake = null;
    } else if (quiet >= job.pingBytes) {
      // A range with few candidates sends nothing for a long while: say it is alive (the main thread's stall deadline).
      quiet = 0;
      port.postMessage({ type: "progress" } satisfies ToMain);
    }
  }
  // The file's last range ends at its end: a last line without "\n" still counts, as in the file source.
  if (range.last) {
    const f = framer.finish();
    take(f.data, f.lines);
  }
  const { message, transfer } = gathered.take("done");
  port.postMessage(message, transfer);
  return true;
}

if (parentPort !== null) await scanRanges(workerData as RangeJob, parentPort);
