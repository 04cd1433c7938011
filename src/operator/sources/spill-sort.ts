/**
 * Puts lines in event-time order in bounded memory: an external merge sort.
 * Lines are held until they fill `runBytes`, then sorted and written to a
 * run file in a temp folder under os.tmpdir(); at the end the runs are read
 * back in small chunks and merged (k-way, a binary heap). An input that fits
 * in one run never touches the disk. The temp folder is removed when the
 * sorter is disposed, also after a failure.
 *
 * Order: by time, oldest first; lines with the same time (or none) in the
 * reverse of the order they were added, so that an input that was newest
 * first (`gcloud logging read`) comes out exactly reversed. Lines without a
 * time (NaN) come first.
 */
import { mkdtemp, open, rm, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NL, TAB } from "./bytes.js";

/** Default memory for lines held before a run is written: 32 MiB (counted with a per-line overhead, so the heap holds about that much). */
export const DEFAULT_RUN_BYTES = 32 * 1024 * 1024;
/** What one held line costs beside its bytes: its item object and its Buffer (measured order of magnitude). */
const ITEM_OVERHEAD_BYTES = 160;
/** Default read size per run while merging: 1 MiB (less when many runs share `runBytes`). */
const MERGE_CHUNK_BYTES = 1024 * 1024;
const MIN_MERGE_CHUNK_BYTES = 64 * 1024;

/** Limits of a SpillSorter; each has a default. */
export interface SpillSorterOptions {
  /** Memory for lines held before a run is written (default 32 MiB). */
  runBytes?: number;
  /** Where the temp folder goes (default os.tmpdir()). */
  tmpDir?: string;
}

interface Item {
  time: number;
  seq: number;
  line: Buffer;
}

/** Sort key: time ascending (NaN first), then the order added, descending. */
function before(a: Item, b: Item): boolean {
  const at = Number.isNaN(a.time) ? Number.NEGATIVE_INFINITY : a.time;
  const bt = Number.isNaN(b.time) ? Number.NEGATIVE_INFINITY : b.time;
  return at < bt || (at === bt && a.seq > b.seq);
}

const compare = (a: Item, b: Item): number => (before(a, b) ? -1 : before(b, a) ? 1 : 0);

/** Reads a run file line by line, in chunks. */
class RunReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private offset = 0;
  private ended = false;

  constructor(
    private readonly fh: FileHandle,
    private readonly chunk: number,
  ) {}

  /** The next item, or null at the end of the run. */
  async next(): Promise<Item | null> {
    for (;;) {
      const nl = this.buf.indexOf(NL, this.pos);
      if (nl !== -1) {
        const line = this.buf.subarray(this.pos, nl);
        this.pos = nl + 1;
        return decode(line);
      }
      if (this.ended) return null;
      const rest = this.buf.subarray(this.pos);
      const next = Buffer.allocUnsafe(rest.length + this.chunk);
      rest.copy(next, 0);
      const { bytesRead } = await this.fh.read(next, rest.length, this.chunk, this.offset);
      this.offset += bytesRead;
      if (bytesRead === 0) this.ended = true;
      this.buf = next.subarray(0, rest.length + bytesRead);
      this.pos = 0;
    }
  }
}

/** `time\tseq\tline` back to an item (the line is copied out of the read buffer). */
function decode(record: Buffer): Item {
  const t1 = record.indexOf(TAB);
  const t2 = record.indexOf(TAB, t1 + 1);
  return {
    time: Number(record.toString("latin1", 0, t1)),
    seq: Number(record.toString("latin1", t1 + 1, t2)),
    line: Buffer.from(record.subarray(t2 + 1)),
  };
}

/**
 * An external sort of lines by time. `add` every line (await it: a full run
 * is written then), then iterate `sorted()` once, and `dispose()` in a
 * `finally`. Lines must not contain "\n".
 */
export class SpillSorter {
  /** Run files written so far. */
  runs = 0;
  private readonly runBytes: number;
  private readonly tmpRoot: string;
  private dir: string | null = null;
  private files: string[] = [];
  private held: Item[] = [];
  private heldBytes = 0;
  private seq = 0;

  constructor(options: SpillSorterOptions = {}) {
    const runBytes = options.runBytes ?? DEFAULT_RUN_BYTES;
    if (!Number.isInteger(runBytes) || runBytes < 1) throw new TypeError(`SpillSorter: runBytes must be a positive integer, got ${String(options.runBytes)}`);
    this.runBytes = runBytes;
    this.tmpRoot = options.tmpDir ?? tmpdir();
  }

  /** The temp folder, once a run was written (null before). */
  get folder(): string | null {
    return this.dir;
  }

  /** Adds a line with its time (ms; NaN when it has none). */
  async add(line: Buffer, time: number): Promise<void> {
    this.held.push({ time, seq: this.seq++, line });
    this.heldBytes += line.length + ITEM_OVERHEAD_BYTES;
    if (this.heldBytes >= this.runBytes) await this.spill();
  }

  /** Lines in order, in groups (each group's lines in order). */
  async *sorted(): AsyncGenerator<Buffer[]> {
    this.held.sort(compare);
    if (this.files.length === 0) {
      const held = this.held;
      this.held = [];
      for (let i = 0; i < held.length; i += 1024) yield held.slice(i, i + 1024).map((item) => item.line);
      return;
    }
    await this.spill();
    const chunk = Math.max(MIN_MERGE_CHUNK_BYTES, Math.min(MERGE_CHUNK_BYTES, Math.floor(this.runBytes / this.files.length)));
    const handles: FileHandle[] = [];
    try {
      for (const file of this.files) handles.push(await open(file, "r"));
      const readers = handles.map((fh) => new RunReader(fh, chunk));
      const heap: { item: Item; reader: RunReader }[] = [];
      for (const reader of readers) {
        const item = await reader.next();
        if (item !== null) heapPush(heap, { item, reader });
      }
      let group: Buffer[] = [];
      while (heap.length > 0) {
        const top = heap[0]!;
        group.push(top.item.line);
        const next = await top.reader.next();
        if (next === null) heapPop(heap);
        else {
          top.item = next;
          siftDown(heap, 0);
        }
        if (group.length === 1024) {
          yield group;
          group = [];
        }
      }
      if (group.length > 0) yield group;
    } finally {
      for (const fh of handles) await fh.close().catch(() => undefined);
    }
  }

  /** Removes the temp folder and forgets what is held. Safe to call more than once. */
  async dispose(): Promise<void> {
    this.held = [];
    this.heldBytes = 0;
    const dir = this.dir;
    this.dir = null;
    this.files = [];
    if (dir !== null) await rm(dir, { recursive: true, force: true });
  }

  /** Writes what is held as one sorted run. */
  private async spill(): Promise<void> {
    if (this.held.length === 0) return;
    this.held.sort(compare);
    this.dir ??= await mkdtemp(join(this.tmpRoot, "reclaim-sort-"));
    const file = join(this.dir, `run-${this.files.length}`);
    this.files.push(file);
    this.runs++;
    const fh = await open(file, "w");
    try {
      let parts: Buffer[] = [];
      let bytes = 0;
      for (const item of this.held) {
        const head = Buffer.from(`${item.time}\t${item.seq}\t`, "latin1");
        parts.push(head, item.line, NEWLINE);
        bytes += head.length + item.line.length + 1;
        if (bytes >= MERGE_CHUNK_BYTES) {
          await fh.writev(parts);
          parts = [];
          bytes = 0;
        }
      }
      if (parts.length > 0) await fh.writev(parts);
    } finally {
      await fh.close();
    }
    this.held = [];
    this.heldBytes = 0;
  }
}

const NEWLINE = Buffer.from("\n");

type Node = { item: Item; reader: RunReader };

function heapPush(heap: Node[], node: Node): void {
  heap.push(node);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[i]!.item, heap[parent]!.item)) break;
    [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
    i = parent;
  }
}

function heapPop(heap: Node[]): void {
  const last = heap.pop()!;
  if (heap.length === 0) return;
  heap[0] = last;
  siftDown(heap, 0);
}

function siftDown(heap: Node[], i: number): void {
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let least = i;
    if (l < heap.length && before(heap[l]!.item, heap[least]!.item)) least = l;
    if (r < heap.length && before(heap[r]!.item, heap[least]!.item)) least = r;
    if (least === i) return;
    [heap[i], heap[least]] = [heap[least]!, heap[i]!];
    i = least;
  }
}
