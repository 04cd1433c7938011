/**
 * `file:PATH`: follows a log file like `tail -F`, in batches of complete
 * lines, and keeps its position in a state directory so that a restart
 * neither misses nor repeats lines.
 *
 * - Rotation (the file renamed away and a new one created at the path, or
 *   deleted and recreated): the old file is read to its end, then the new
 *   one from its start.
 * - Truncation (copytruncate): a file shorter than the position read, or
 *   whose first bytes changed, is read again from its start.
 * - Changes are noticed through fs.watch on the folder as a hint, and by
 *   polling (`pollIntervalMs`) in any case: fs.watch misses events on some
 *   filesystems (network mounts, symlinked files such as Kubernetes'
 *   /var/log/containers) and is only a way to notice sooner.
 *
 * A position is the file's identity (device and inode, plus a fingerprint of
 * its first 4 KiB, which tells a reused inode number from the same file) and
 * the offset just past the last line handed over. Lines of a rotated file
 * that were not read before a restart are not looked for under other names.
 */
import { createHash } from "node:crypto";
import { statSync, watch, type FSWatcher } from "node:fs";
import { mkdir, open, readFile, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { z } from "zod";
import { DEFAULT_MAX_LINE_BYTES, LineFramer, type Framed } from "./lines.js";
import { newSourceStats, type LineBatch, type LogSource, type SourceStats } from "./source.js";
import { writeFileAtomic } from "../atomic-file.js";
import { NL } from "./bytes.js";

/** Default polling interval: 250 ms. */
export const DEFAULT_POLL_INTERVAL_MS = 250;
/** Default read size: 1 MiB. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Largest accepted `chunkBytes` and `maxLineBytes`: 64 MiB. */
export const MAX_BUFFER_BYTES = 64 * 1024 * 1024;
const MAX_POLL_INTERVAL_MS = 60_000;
/** How much of a file's start fingerprints it. */
const HEAD_BYTES = 4096;

export interface FileSourceOptions {
  /** The file to follow. It need not exist yet (with `follow`). */
  path: string;
  /**
   * Folder for the position file (created if missing). The file's name is a
   * sha256 of the absolute path, never the path itself. Default: none, the
   * position is not kept and `commit()` does nothing. A run that finds no
   * saved position and starts at the end (not `fromStart`, following) saves
   * where it starts at once, so that a restart before its first commit
   * neither skips what was written meanwhile nor starts at the end again.
   */
  stateDir?: string;
  /**
   * Without a saved position, read the file from its start rather than from
   * its end (default false: only lines written after `run()` is called). A
   * saved position always wins; a file that appears after the start is
   * always read from its start.
   */
  fromStart?: boolean;
  /** Keep following the file (default true); false reads to its end once and returns. */
  follow?: boolean;
  /** How often to look for new data, rotation and truncation without an fs.watch hint (default 250 ms). */
  pollIntervalMs?: number;
  /** Bytes per read; a batch holds at most this plus one carried partial line (default 1 MiB). */
  chunkBytes?: number;
  /** Longest line kept, "\n" excluded; longer ones are skipped and counted (default 1 MiB). */
  maxLineBytes?: number;
  /**
   * The consumer keeps nothing of a batch's bytes (`batch.data` or any view
   * of it) once `onBatch` has resolved, so the source may read the next
   * chunks into the same two buffers (default false). `rules replay` says so:
   * its scanner turns the lines it wants into strings. Fresh 1 MiB buffers
   * per batch cost a mark-compact every few tens of MB (BENCHMARKS.md,
   * pipeline).
   */
  reuseBuffers?: boolean;
}

/** Stable codes of the file source's errors. */
export type FileSourceErrorCode =
  | "ERR_RECLAIM_SOURCE_NOT_FOUND"
  | "ERR_RECLAIM_SOURCE_NOT_A_FILE"
  | "ERR_RECLAIM_SOURCE_READ"
  | "ERR_RECLAIM_SOURCE_BUSY"
  | "ERR_RECLAIM_CHECKPOINT";

/** A fault of the file source; `code` says which. */
export class FileSourceError extends Error {
  constructor(
    readonly code: FileSourceErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "FileSourceError";
  }
}

/** The saved position, as written to the state directory. */
const Checkpoint = z
  .object({
    version: z.literal(1),
    path: z.string(),
    dev: z.string().regex(/^\d+$/),
    ino: z.string().regex(/^\d+$/),
    offset: z.number().int().nonnegative(),
    head: z.object({ bytes: z.number().int().min(0).max(HEAD_BYTES), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
  })
  .strict();
type Checkpoint = z.infer<typeof Checkpoint>;

/** The file being read. */
interface OpenFile {
  fh: FileHandle;
  dev: string;
  ino: string;
  /** Size when opened. */
  size: number;
  /** Offset of the next read. */
  pos: number;
  /** Its first bytes (at most HEAD_BYTES), as last seen; replaced, never changed in place. */
  head: Buffer;
}

/** The file at the path when a run began. */
interface FileAtStart {
  dev: string;
  ino: string;
  size: number;
}

/** One read: `n` new bytes in `buf` after the `carried` bytes of the partial line before them. */
interface Chunk {
  buf: Buffer;
  carried: number;
  n: number;
}

/** What a batch's commit() persists, captured when the batch is made. */
interface Position {
  dev: string;
  ino: string;
  offset: number;
  head: Buffer;
}

/**
 * The position of a file that is not there yet: no file has inode 0, so the
 * file that appears is "another file" and is read from its start.
 */
const NOT_THERE_YET: Position = { dev: "0", ino: "0", offset: 0, head: Buffer.alloc(0) };

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function checkPath(what: string, value: unknown): string {
  if (typeof value !== "string" || value === "" || value.includes("\0")) {
    throw new TypeError(`FileSource: ${what} must be a non-empty path without NUL bytes, got ${JSON.stringify(value)}`);
  }
  return value;
}

function checkInt(what: string, value: number | undefined, fallback: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > max) throw new TypeError(`FileSource: ${what} must be an integer from 1 to ${max}, got ${String(value)}`);
  return v;
}

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Reads up to `length` bytes at `position` (fewer at the end of the file). */
async function readAt(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafeSlow(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buf.subarray(0, filled);
}

/**
 * Wakes the reader when fs.watch saw something (remembered if it was busy)
 * or when the polling interval has passed, whichever comes first.
 */
class Wakeup {
  private pending = false;
  private wake: (() => void) | null = null;

  notify(): void {
    if (this.wake !== null) this.wake();
    else this.pending = true;
  }

  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.wake = done;
    });
  }
}

/**
 * The `file:PATH` source. Options and their defaults are on
 * `FileSourceOptions`; `stats` counts lines and bytes read, rotations,
 * truncations and skipped long lines across runs. One `run` at a time.
 */
export class FileSource implements LogSource {
  readonly name: string;
  readonly stats: SourceStats & { skippedLongLines: number } = newSourceStats();
  /** The absolute path followed. */
  readonly path: string;
  /** Where the position is kept, or null without `stateDir`. */
  readonly checkpointFile: string | null;
  private readonly fromStart: boolean;
  private readonly follow: boolean;
  private readonly pollIntervalMs: number;
  private readonly chunkBytes: number;
  private readonly maxLineBytes: number;
  private readonly reuseBuffers: boolean;
  private running = false;
  private current: OpenFile | null = null;
  /** A read buffer no batch refers to, reused by the next read. */
  private spare: Buffer | null = null;
  private batches = 0;
  private savedBatch = 0;
  private saving: Promise<void> = Promise.resolve();

  constructor(options: FileSourceOptions) {
    this.path = resolve(checkPath("path", options.path));
    this.name = `file:${options.path}`;
    this.checkpointFile =
      options.stateDir === undefined ? null : join(resolve(checkPath("stateDir", options.stateDir)), `file-${sha256(this.path)}.json`);
    this.fromStart = options.fromStart ?? false;
    this.follow = options.follow ?? true;
    this.pollIntervalMs = checkInt("pollIntervalMs", options.pollIntervalMs, DEFAULT_POLL_INTERVAL_MS, MAX_POLL_INTERVAL_MS);
    this.chunkBytes = checkInt("chunkBytes", options.chunkBytes, DEFAULT_CHUNK_BYTES, MAX_BUFFER_BYTES);
    this.maxLineBytes = checkInt("maxLineBytes", options.maxLineBytes, DEFAULT_MAX_LINE_BYTES, MAX_BUFFER_BYTES);
    this.reuseBuffers = options.reuseBuffers ?? false;
  }

  /**
   * Where the source is reading now: the file's identity and the offset of
   * its next read (so `size - offset` is how far behind it is); null when no
   * file is open (not running, or waiting for the file to appear).
   */
  get position(): { dev: string; ino: string; offset: number } | null {
    const file = this.current;
    return file === null ? null : { dev: file.dev, ino: file.ino, offset: file.pos };
  }

  /**
   * Reads from the saved position (or the end, or the start: see
   * `fromStart`) and hands over batches until `signal` aborts, or, with
   * `follow: false`, until the end of the file, whose last line counts even
   * without its "\n". Resolves on abort; rejects with a `FileSourceError` on
   * a fault (unreadable file or position, or a missing file with
   * `follow: false`).
   */
  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    if (this.running) throw new FileSourceError("ERR_RECLAIM_SOURCE_BUSY", `${this.name}: already running`);
    this.running = true;
    // "The end" is the end when run() is called, taken before the first await: a line the caller
    // appends right after calling run() is read, however late the source gets to open the file.
    const end = this.fromStart ? null : this.statNow();
    const framer = new LineFramer(this.maxLineBytes, this.stats);
    const wakeup = new Wakeup();
    let watcher: FSWatcher | null = null;
    let file: OpenFile | null = null;
    let next: OpenFile | null = null;
    try {
      const saved = await this.loadCheckpoint();
      if (this.follow) watcher = this.watch(wakeup);
      file = this.current = await this.openFirst(saved, framer, end);
      if (file === null && !this.follow) throw new FileSourceError("ERR_RECLAIM_SOURCE_NOT_FOUND", `${this.name}: no such file`);
      // A first run that starts at the end saves where it starts: a restart before its first batch is committed
      // then reads what was written meanwhile, instead of starting at the end again (a file not there yet is read
      // from its start, whenever it appears).
      if (saved === null && !this.fromStart && this.follow) {
        await this.save(file === null ? NOT_THERE_YET : { dev: file.dev, ino: file.ino, offset: file.pos, head: file.head });
      }
      while (file === null) {
        await wakeup.wait(this.pollIntervalMs, signal);
        if (signal.aborted) return;
        file = this.current = await this.openFirst(saved, framer, null);
      }
      for (;;) {
        await this.drain(file, framer, onBatch, signal);
        if (signal.aborted) return;
        if (!this.follow) {
          await this.finish(file, framer, onBatch);
          return;
        }
        await wakeup.wait(this.pollIntervalMs, signal);
        if (signal.aborted) return;
        await this.checkTruncated(file, framer);
        next = await this.replacement(file);
        if (next === null) continue;
        // Rotated: the old file may have got its last lines since the read that found its end.
        await this.drain(file, framer, onBatch, signal);
        if (signal.aborted) return;
        await this.finish(file, framer, onBatch);
        await file.fh.close();
        file = this.current = next;
        next = null;
        this.stats.rotations++;
      }
    } finally {
      watcher?.close();
      this.current = null;
      await file?.fh.close().catch(() => undefined);
      await next?.fh.close().catch(() => undefined);
      this.spare = null;
      this.running = false;
    }
  }

  /** Watches the folder (the file itself would be lost on rename); null when fs.watch is not available. */
  private watch(wakeup: Wakeup): FSWatcher | null {
    const name = basename(this.path);
    try {
      const watcher = watch(dirname(this.path), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === name) wakeup.notify();
      });
      // Polling carries on alone.
      watcher.on("error", () => watcher.close());
      return watcher;
    } catch {
      return null;
    }
  }

  private async loadCheckpoint(): Promise<Checkpoint | null> {
    const file = this.checkpointFile;
    if (file === null) return null;
    let text: string;
    try {
      await mkdir(dirname(file), { recursive: true });
      text = await readFile(file, "utf8");
    } catch (err) {
      if (isMissing(err)) return null;
      throw new FileSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: could not read its position from ${file}`, { cause: err });
    }
    let saved: Checkpoint;
    try {
      saved = Checkpoint.parse(JSON.parse(text));
    } catch (err) {
      throw new FileSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: unreadable position in ${file} (delete it to start over)`, {
        cause: err,
      });
    }
    if (saved.path !== this.path) {
      throw new FileSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: ${file} holds the position of ${saved.path}`);
    }
    return saved;
  }

  /** Opens the path; null when there is no file there. */
  private async open(): Promise<OpenFile | null> {
    let fh: FileHandle;
    try {
      fh = await open(this.path, "r");
    } catch (err) {
      if (isMissing(err)) return null;
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not open it`, { cause: err });
    }
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) throw new FileSourceError("ERR_RECLAIM_SOURCE_NOT_A_FILE", `${this.name}: not a regular file`);
      const size = Number(st.size);
      return { fh, dev: String(st.dev), ino: String(st.ino), size, pos: 0, head: await readAt(fh, Math.min(size, HEAD_BYTES), 0) };
    } catch (err) {
      await fh.close().catch(() => undefined);
      if (err instanceof FileSourceError) throw err;
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not read it`, { cause: err });
    }
  }

  /** The identity and size of the file at the path now, synchronously; null when there is none. */
  private statNow(): FileAtStart | null {
    try {
      const st = statSync(this.path, { bigint: true, throwIfNoEntry: false });
      return st?.isFile() === true ? { dev: String(st.dev), ino: String(st.ino), size: Number(st.size) } : null;
    } catch {
      return null; // opening it will say why
    }
  }

  /**
   * Opens the file at the start of a run and decides where to read from:
   * the saved position; else the start (`fromStart`, or a file that was not
   * there when the run began: `end` null); else the end the file had then.
   */
  private async openFirst(saved: Checkpoint | null, framer: LineFramer, end: FileAtStart | null): Promise<OpenFile | null> {
    const file = await this.open();
    if (file === null) return null;
    if (saved !== null) {
      if (saved.dev !== file.dev || saved.ino !== file.ino) {
        // Replaced while we were not running, or not there yet when we started: read it from its start.
        if (saved.ino !== NOT_THERE_YET.ino) this.stats.rotations++;
      } else if (
        file.size < saved.offset ||
        file.head.length < saved.head.bytes ||
        sha256(file.head.subarray(0, saved.head.bytes)) !== saved.head.sha256
      ) {
        this.stats.truncations++; // same inode, other content
      } else {
        file.pos = saved.offset;
      }
    } else if (end !== null && end.dev === file.dev && end.ino === file.ino) {
      file.pos = await this.endPosition(file, framer, Math.min(end.size, file.size));
    }
    return file;
  }

  /**
   * Where "from the end" starts: after the last complete line, so that a
   * line being written right now is read whole once it is complete, not
   * from its middle. A partial last line already over the cap is skipped.
   */
  private async endPosition(file: OpenFile, framer: LineFramer, size: number): Promise<number> {
    if (size === 0) return 0;
    const window = Math.min(size, this.maxLineBytes + 1);
    let tail: Buffer;
    try {
      tail = await readAt(file.fh, window, size - window);
    } catch (err) {
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not read it`, { cause: err });
    }
    const nl = tail.lastIndexOf(NL);
    if (nl !== -1) return size - window + nl + 1;
    if (window === size) return 0;
    framer.skipToNextLine();
    return size;
  }

  /**
   * Reads the file to its current end, handing over every batch of complete
   * lines. After a full read it reads the next chunk while the consumer works
   * on the batch (one chunk ahead, no more): the copy out of the page cache
   * then runs on libuv's thread pool beside the scan instead of before it.
   */
  private async drain(file: OpenFile, framer: LineFramer, onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    let next: Promise<Chunk> | null = null;
    try {
      while (!signal.aborted) {
        const { buf, carried, n } = await (next ?? this.read(file, framer.carry));
        next = null;
        if (n === 0) {
          this.spare = buf;
          return;
        }
        // Awaited before anything of this read is handed over; the framing and the next read go on meanwhile.
        const rewritten = this.rewritten(file, buf.subarray(carried, carried + n), file.pos);
        rewritten.catch(() => undefined);
        const regionStart = file.pos - carried;
        file.pos += n;
        this.stats.bytesRead += n;
        const used = carried + n;
        const framed = framer.frame(buf.subarray(0, used), carried);
        if (framed.data === null || framed.data.buffer !== buf.buffer) {
          this.spare = buf; // nothing handed over refers to it
        } else if (used * 4 < buf.length) {
          // A small read (following a live file): hand over a right-sized copy, keep the big buffer.
          framed.data = Buffer.from(framed.data);
          this.spare = buf;
        }
        // The batch refers to `buf` (else it is already the spare, or was copied out of).
        const handedOver = framed.data !== null && framed.data.buffer === buf.buffer;
        if (n === this.chunkBytes) {
          next = this.read(file, framer.carry); // more is likely there
          // Awaited below; until then a failed read must not count as an unhandled rejection.
          next.catch(() => undefined);
        }
        if (await rewritten) {
          // Truncated and written again past our position since the last look (copytruncate under a busy writer):
          // these bytes are the new content at the old offset. Drop them, and the read after them, and read the
          // file again from its start.
          if (next !== null) await next.catch(() => undefined);
          next = null;
          this.spare = buf;
          await this.readAgainFromStart(file, framer);
          continue;
        }
        await this.deliver(framed, file, regionStart, onBatch);
        // The consumer is done with it (its promise): the read after next may fill it again.
        if (this.reuseBuffers && handedOver && this.spare === null) this.spare = buf;
      }
    } finally {
      // Never leave a read in flight on a file that is about to be closed.
      if (next !== null) await next.catch(() => undefined);
    }
  }

  /** Reads the next chunk at `file.pos` into a buffer that starts with `carry`. */
  private async read(file: OpenFile, carry: Buffer): Promise<Chunk> {
    const need = carry.length + this.chunkBytes;
    // Reused buffers get room for a carried partial line too, so that the next carry still fits.
    const buf = this.spare !== null && this.spare.length >= need ? this.spare : Buffer.allocUnsafeSlow(this.reuseBuffers ? Math.max(need, 2 * this.chunkBytes) : need);
    this.spare = null;
    carry.copy(buf, 0);
    try {
      const { bytesRead } = await file.fh.read(buf, carry.length, this.chunkBytes, file.pos);
      return { buf, carried: carry.length, n: bytesRead };
    } catch (err) {
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not read it`, { cause: err });
    }
  }

  /** The end of a file that will not grow any more: its last line counts even without "\n". */
  private async finish(file: OpenFile, framer: LineFramer, onBatch: (batch: LineBatch) => Promise<void>): Promise<void> {
    const regionStart = file.pos - framer.carry.length;
    await this.deliver(framer.finish(), file, regionStart, onBatch);
  }

  private async deliver(framed: Framed, file: OpenFile, regionStart: number, onBatch: (batch: LineBatch) => Promise<void>): Promise<void> {
    if (framed.data === null) return;
    const position: Position = { dev: file.dev, ino: file.ino, offset: regionStart + framed.end, head: file.head };
    const seq = ++this.batches;
    this.stats.linesRead += framed.lines;
    const origin = framed.cut === true || framed.start === undefined ? {} : { origin: { path: this.path, offset: regionStart + framed.start } };
    await onBatch({ data: framed.data, lines: framed.lines, commit: () => this.save(position, seq), ...origin });
  }

  /**
   * Saves a position: a batch's (its `seq`, from 1), or where a first run
   * starts (0). Saves run one at a time, and a batch's older than the last
   * batch's saved is dropped, so the position never goes back.
   */
  private save(position: Position, seq = 0): Promise<void> {
    const file = this.checkpointFile;
    if (file === null) return Promise.resolve();
    const save = async (): Promise<void> => {
      if (seq > 0 && seq <= this.savedBatch) return;
      const checkpoint: Checkpoint = {
        version: 1,
        path: this.path,
        dev: position.dev,
        ino: position.ino,
        offset: position.offset,
        head: { bytes: position.head.length, sha256: sha256(position.head) },
      };
      try {
        await writeFileAtomic(file, `${JSON.stringify(checkpoint)}\n`);
      } catch (err) {
        throw new FileSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: could not save its position to ${file}`, { cause: err });
      }
      this.savedBatch = Math.max(this.savedBatch, seq);
    };
    const saved = this.saving.then(save);
    this.saving = saved.catch(() => undefined);
    return saved;
  }

  /**
   * Whether `data`, just read at offset `at`, came from a file rewritten since
   * it was last looked at: its first bytes are no longer the ones seen. Also
   * keeps the first bytes as read, up to HEAD_BYTES, for the next looks (a
   * file opened empty has none to compare until then).
   */
  private async rewritten(file: OpenFile, data: Buffer, at: number): Promise<boolean> {
    const seen = file.head;
    try {
      if (seen.length > 0 && !(await readAt(file.fh, seen.length, 0)).equals(seen)) return true;
    } catch (err) {
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not read it`, { cause: err });
    }
    if (at === seen.length && at < HEAD_BYTES) file.head = Buffer.concat([seen, data.subarray(0, HEAD_BYTES - at)]);
    return false;
  }

  /**
   * Truncation: the file is shorter than what was read, or its first bytes
   * changed (truncated and written again past our position between two
   * looks). Then it is read again from its start.
   */
  private async checkTruncated(file: OpenFile, framer: LineFramer): Promise<void> {
    try {
      const size = Number((await file.fh.stat({ bigint: true })).size);
      let truncated = size < file.pos;
      if (!truncated && (size > file.pos || (file.head.length < HEAD_BYTES && size > file.head.length))) {
        const head = await readAt(file.fh, Math.min(size, HEAD_BYTES), 0);
        truncated = !head.subarray(0, file.head.length).equals(file.head);
        file.head = head;
      }
      if (!truncated) return;
    } catch (err) {
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not read it`, { cause: err });
    }
    await this.readAgainFromStart(file, framer);
  }

  /** A truncated file: counted, and read again from its start with nothing carried. */
  private async readAgainFromStart(file: OpenFile, framer: LineFramer): Promise<void> {
    this.stats.truncations++;
    file.pos = 0;
    try {
      const size = Number((await file.fh.stat({ bigint: true })).size);
      file.head = await readAt(file.fh, Math.min(size, HEAD_BYTES), 0);
    } catch (err) {
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not read it`, { cause: err });
    }
    framer.reset();
  }

  /** A different file now at the path (rotated, or deleted and created again), opened; null when it is still the same or absent. */
  private async replacement(file: OpenFile): Promise<OpenFile | null> {
    try {
      const st = await stat(this.path, { bigint: true });
      if (String(st.dev) === file.dev && String(st.ino) === file.ino) return null;
    } catch (err) {
      if (isMissing(err)) return null; // deleted: keep reading the old one until a new one shows up
      throw new FileSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: could not stat it`, { cause: err });
    }
    const next = await this.open();
    if (next !== null && next.dev === file.dev && next.ino === file.ino) {
      await next.fh.close();
      return null;
    }
    return next;
  }
}
