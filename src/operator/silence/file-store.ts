/**
 * Silences in a folder: `<state>/silences/`, one `<id>.json` per silence
 * and `pause.json` for the pause (file mode, ADR 22).
 *
 * Every write is atomic (a temp file renamed over the target), so the
 * operator reading the folder never sees half a record, and several CLI
 * invocations at once are safe: each silence is its own file under a random
 * id, and the writes to one file (expiring it, pausing again) each leave a
 * whole record — the last one wins. A path is built only from a checked id.
 *
 * Every call to the file system has a deadline (a stuck network filesystem
 * fails the read, it does not hang the operator's poll).
 */
import { lstat, readdir, readFile, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { deadline, systemTimers, type Timers } from "../../contract/clock.js";
import { writeFileAtomic } from "../atomic-file.js";
import { assertHoldId, problemsOf, Silence } from "./model.js";
import { SilenceStoreError, SilenceStoreErrorCode, type SilenceScan, type SilenceStore, type SkippedSilence } from "./store.js";

/** The folder under the state folder (`--state`) that holds the records. */
export const SILENCES_FOLDER = "silences";
/** Largest record read (64 KiB): a valid one is well under 2 KiB. */
export const MAX_RECORD_BYTES = 64 * 1024;
/** Most `*.json` files a scan reads (2000); the rest are skipped, named as such. */
export const MAX_RECORD_FILES = 2000;

/** `<stateDir>/silences`. */
export function silenceDir(stateDir: string): string {
  return join(stateDir, SILENCES_FOLDER);
}

/** Options of FileSilenceStore; each has a default. */
export interface FileSilenceStoreOptions {
  /** The folder (created on the first write). */
  dir: string;
  /** Where deadlines run (default the real timers). */
  timers?: Timers;
  /** Deadline of one file system call (default 2000 ms). */
  callTimeoutMs?: number;
}

const RECORD_FILE = /^(sil-[0-9a-f]{16}|pause)\.json$/;

/** `SilenceStore` over a folder (default `<state>/silences`): what `reclaim silence` writes and the operator polls. */
export class FileSilenceStore implements SilenceStore {
  readonly dir: string;
  private readonly timers: Timers;
  private readonly callTimeoutMs: number;

  constructor(options: FileSilenceStoreOptions) {
    this.dir = resolve(options.dir);
    this.timers = options.timers ?? systemTimers;
    this.callTimeoutMs = options.callTimeoutMs ?? 2000;
    if (!(this.callTimeoutMs > 0)) throw new TypeError(`FileSilenceStore: callTimeoutMs must be positive, got ${String(options.callTimeoutMs)}`);
  }

  get where(): string {
    return `the folder ${this.dir}`;
  }

  private fileOf(id: string): string {
    assertHoldId(id);
    return join(this.dir, `${id}.json`);
  }

  /**
   * A fingerprint of the folder: the record files' names, inodes, sizes and
   * modification times. An atomic write gives a file a new inode, so any
   * change to a record changes it, even within one timestamp tick. Empty
   * when the folder does not exist.
   */
  async fingerprint(): Promise<string> {
    const names = await this.names();
    const parts: string[] = [];
    for (const name of names.slice(0, MAX_RECORD_FILES)) {
      let s;
      try {
        s = await this.call(`reading ${name}`, () => lstat(join(this.dir, name)));
      } catch (err) {
        if (!isMissing(err)) throw wrap(err, `could not read ${join(this.dir, name)}`);
        s = null; // removed since the listing
      }
      parts.push(s === null ? `${name}:gone` : `${name}:${s.ino}:${s.size}:${s.mtimeMs}`);
    }
    return `${names.length}|${parts.join("|")}`;
  }

  async scan(): Promise<SilenceScan> {
    const names = await this.names();
    const silences: Silence[] = [];
    const skipped: SkippedSilence[] = [];
    for (const name of names.slice(MAX_RECORD_FILES)) skipped.push({ name, reason: `more than ${MAX_RECORD_FILES} files: not read` });
    for (const name of names.slice(0, MAX_RECORD_FILES)) {
      if (!RECORD_FILE.test(name)) {
        skipped.push({ name, reason: "not a silence file name (sil-<16 hex digits>.json or pause.json)" });
        continue;
      }
      const id = name.slice(0, -".json".length);
      try {
        const record = await this.read(id);
        if (record !== null) silences.push(record);
      } catch (err) {
        if (err instanceof SilenceStoreError && err.code !== SilenceStoreErrorCode.corrupt) throw err;
        skipped.push({ name, reason: err instanceof Error ? err.message : String(err) });
      }
    }
    return { silences, skipped };
  }

  async get(id: string): Promise<Silence | null> {
    assertHoldId(id);
    return this.read(id);
  }

  async put(silence: Silence): Promise<void> {
    const record = Silence.parse(silence);
    const file = this.fileOf(record.id);
    try {
      await this.call(`writing ${file}`, () => writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`));
    } catch (err) {
      throw wrap(err, `could not write ${file}`);
    }
  }

  async remove(id: string): Promise<void> {
    const file = this.fileOf(id);
    try {
      await this.call(`removing ${file}`, () => unlink(file));
    } catch (err) {
      if (!isMissing(err)) throw wrap(err, `could not remove ${file}`);
    }
  }

  /** The `*.json` names in the folder, sorted; temp files of a write in progress (`.<name>.….tmp`) are not among them. */
  private async names(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await this.call(`listing ${this.dir}`, () => readdir(this.dir));
    } catch (err) {
      // No folder: no silence was ever made. (ENOTDIR, a file where the folder should be, is an error: not "none".)
      if ((err as { code?: unknown } | null)?.code === "ENOENT") return [];
      throw wrap(err, `could not list ${this.dir}`);
    }
    return entries.filter((n) => n.endsWith(".json") && !n.startsWith(".")).sort();
  }

  /** One record; null when it does not exist; SilenceStoreError `corrupt` when it is not a valid one. */
  private async read(id: string): Promise<Silence | null> {
    const file = this.fileOf(id);
    const name = `${id}.json`;
    let text: string;
    try {
      const stat = await this.call(`reading ${file}`, () => lstat(file));
      // Not followed: a link or a FIFO in the folder is not a record (a FIFO would block the read for good).
      if (!stat.isFile()) throw new SilenceStoreError(SilenceStoreErrorCode.corrupt, `${name}: not a regular file`);
      if (stat.size > MAX_RECORD_BYTES) throw new SilenceStoreError(SilenceStoreErrorCode.corrupt, `${name}: ${stat.size} bytes, more than ${MAX_RECORD_BYTES}`);
      text = await this.call(`reading ${file}`, (signal) => readFile(file, { encoding: "utf8", signal }));
    } catch (err) {
      if (isMissing(err)) return null;
      throw wrap(err, `could not read ${file}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new SilenceStoreError(SilenceStoreErrorCode.corrupt, `${name}: not JSON (${err instanceof Error ? err.message : String(err)})`, { cause: err });
    }
    const parsed = Silence.safeParse(json);
    if (!parsed.success) throw new SilenceStoreError(SilenceStoreErrorCode.corrupt, `${name}: not a valid silence: ${problemsOf(parsed.error)}`, { cause: parsed.error });
    if (parsed.data.id !== id) throw new SilenceStoreError(SilenceStoreErrorCode.corrupt, `${name}: holds the record of ${parsed.data.id}`);
    return parsed.data;
  }

  /**
   * Runs one file system call under the deadline. Calls that take no signal
   * (stat, readdir) go on in the background after it passes; the caller
   * stops waiting, and gets a `timeout` error.
   */
  private async call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const limit = deadline(this.timers, this.callTimeoutMs);
    const gaveUp = new Promise<never>((_, reject) =>
      limit.signal.addEventListener(
        "abort",
        () => reject(new SilenceStoreError(SilenceStoreErrorCode.timeout, `${what} did not finish within ${this.callTimeoutMs} ms`)),
        { once: true },
      ),
    );
    gaveUp.catch(() => undefined);
    try {
      return await Promise.race([fn(limit.signal), gaveUp]);
    } finally {
      limit.release();
    }
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function wrap(err: unknown, message: string): SilenceStoreError {
  if (err instanceof SilenceStoreError) return err;
  return new SilenceStoreError(SilenceStoreErrorCode.io, `${message}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
