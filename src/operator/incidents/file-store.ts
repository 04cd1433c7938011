/**
 * The file store: incidents in a folder, the embedded default (DESIGN.md,
 * principle 6). Each incident is two files:
 *
 * - `<dir>/<id>.json`: the record (the Incident schema), and
 * - `<dir>/<id>.md`: the Markdown rendered from it, for on-call,
 *
 * and, once someone acks it or adds a note (`reclaim incidents ack|note`),
 * `<dir>/<id>.human.jsonl`: the human entries, which only people append to
 * and the operator never writes (human.ts says why). Every read merges them
 * into the record's `human`; a save never writes `human` into the `.json`.
 *
 * Each file is written atomically: a temp file in the same folder, fsync,
 * rename over the target, fsync the folder. The JSON goes first: a crash
 * between the two leaves a valid record and a stale Markdown that the next
 * save replaces (`reclaim incidents show` renders from the JSON, never from
 * the `.md`). Nothing is cached: every call reads the folder as it is now.
 */
import { mkdir, readFile, readdir, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { z } from "zod";
import { fsyncDir as fsyncDirectory, writeFileAtomic } from "../atomic-file.js";
import { ackBy, appendHumanFile, HUMAN_FILE_SUFFIX, HumanEntryError, humanFilePath, readHumanFile, type HumanAppend, type HumanTimelineStore } from "./human.js";
import { renderMarkdown } from "./markdown.js";
import { FINAL_STATUSES, INCIDENT_ID_PATTERN, Incident, type HumanEntry } from "./model.js";
import { IncidentIdError, IncidentRecordError, IncidentStoreError, IncidentStoreErrorCode, type IncidentFilter, type IncidentStore } from "./store.js";

/** The folder incidents are kept in when none is given. */
export const DEFAULT_INCIDENTS_DIR = "./incidents";

/** Temp files end with this; `list` ignores (and counts) them. */
const TEMP_SUFFIX = ".tmp";

export { IncidentIdError, IncidentRecordError, IncidentStoreError, IncidentStoreErrorCode } from "./store.js";

/** Throws IncidentIdError unless `id` is an incident id. Call it before building any path from an id. */
export function assertIncidentId(id: unknown): asserts id is string {
  if (typeof id !== "string" || !INCIDENT_ID_PATTERN.test(id)) throw new IncidentIdError(id);
}

/** A `*.json` file that `list` skipped (or a `*.human.jsonl` it could not read), and why. */
export interface SkippedRecord {
  file: string;
  reason: string;
}

/** What one scan of the folder found. */
export interface IncidentScan {
  /** The incidents that matched the filter, oldest first (by `detectedAt`, then id). */
  incidents: Incident[];
  /**
   * `*.json` files that were unreadable or invalid: not incidents, not fatal. Also
   * `*.human.jsonl` files that could not be read: their incidents are listed without human entries.
   */
  skipped: SkippedRecord[];
  /** Temp files left by an interrupted save: ignored (the record they would have replaced is still whole). */
  tempFiles: number;
}

/** Options of `FileIncidentStore`; every one has a default. */
export interface FileIncidentStoreOptions {
  /** The folder, created (with its parents) on the first save. Default `./incidents`. */
  dir?: string;
  /** Renders the `.md` beside each record. Default `renderMarkdown`. */
  render?: (incident: Incident) => string;
}

/**
 * `IncidentStore` over a folder (default `./incidents`). Safe for any number of
 * readers beside one writing process, and for people adding human entries
 * (`appendHuman`, from any number of processes) at the same time. Overlapping
 * saves of one id land in no set order (each file still whole); callers that
 * can overlap wrap the store in `OrderedStore`.
 */
export class FileIncidentStore implements IncidentStore, HumanTimelineStore {
  /** The folder, as an absolute path. */
  readonly dir: string;
  /** How many `*.json` files the last `list` skipped as unreadable or invalid (see `scan` for which, and why). */
  lastListSkipped = 0;
  private readonly render: (incident: Incident) => string;

  constructor(options: FileIncidentStoreOptions = {}) {
    const dir = options.dir ?? DEFAULT_INCIDENTS_DIR;
    if (typeof dir !== "string" || dir === "") throw new TypeError(`FileIncidentStore: dir must be a non-empty path, got ${JSON.stringify(dir)}`);
    this.dir = resolve(dir);
    this.render = options.render ?? renderMarkdown;
  }

  /** The record's path for a valid id. */
  private recordPath(id: string): string {
    assertIncidentId(id);
    return join(this.dir, `${id}.json`);
  }

  async save(incident: Incident): Promise<void> {
    assertIncidentId((incident as { id?: unknown } | null)?.id);
    // People own the human entries (their own file): what the caller holds may be stale, and is not written.
    const owned = { ...incident };
    delete owned.human;
    delete owned.humanDropped;
    const { json, record } = serialize(owned);
    // Rendered from what will be on disk, so the .md matches what `show` renders from the .json.
    const markdown = this.render(record);
    const jsonPath = this.recordPath(incident.id);
    const mdPath = join(this.dir, `${incident.id}.md`);

    let created: string | undefined;
    try {
      created = await mkdir(this.dir, { recursive: true });
    } catch (err) {
      throw writeError(`could not create the incidents folder ${this.dir}`, this.dir, err);
    }
    // A folder made just now is itself a new entry in its parent: make that durable too.
    // Best effort: the parent may not be readable by us (a 0711 home), and the
    // record's own fsyncs below still run and still fail loudly.
    if (created !== undefined) await fsyncDir(dirname(created)).catch(() => undefined);

    await writeAtomic(jsonPath, json);
    // Read as late as possible, so the rendering misses as little as it can of an entry added meanwhile
    // (`appendHuman` renders again after its entry is written). An unreadable file only costs the rendering.
    const human = await readHumanFile(humanFilePath(this.dir, incident.id)).catch(() => null);
    await writeAtomic(mdPath, human === null ? markdown : this.render({ ...record, ...human }));
  }

  /**
   * Adds a human entry (HumanTimelineStore): one line appended to
   * `<id>.human.jsonl`, never a rewrite of the operator's `<id>.json`, so a
   * save running at the same time loses nothing and is not disturbed. An ack
   * by someone who has acknowledged the incident already is not added
   * (`recorded: false`). The `.md` is rendered again afterwards. Resolves
   * null, writing nothing, when there is no such incident.
   */
  async appendHuman(id: string, entry: HumanEntry): Promise<HumanAppend | null> {
    const before = await this.get(id);
    if (before === null) return null;
    if (entry.kind === "ack" && ackBy(before, entry.by) !== null) return { incident: before, recorded: false };
    const path = humanFilePath(this.dir, id);
    try {
      await appendHumanFile(path, entry);
    } catch (err) {
      if (err instanceof HumanEntryError) throw err;
      throw writeError(`could not add to ${path}`, path, err);
    }
    const after = await this.get(id);
    if (after === null) {
      // Removed (retention) since the first read: the entry goes with it rather than stay behind without a record.
      await unlink(path).catch(() => undefined);
      return null;
    }
    // Only the rendering: the entry is on record, `show` renders from the records, and the next save renders again.
    await writeAtomic(join(this.dir, `${id}.md`), this.render(after)).catch(() => undefined);
    return { incident: after, recorded: true };
  }

  /** The human entries of `id` (null when it has none), a failure to read them as an IncidentStoreError. */
  private async readHuman(id: string): Promise<Awaited<ReturnType<typeof readHumanFile>>> {
    const path = humanFilePath(this.dir, id);
    try {
      return await readHumanFile(path);
    } catch (err) {
      throw new IncidentStoreError(IncidentStoreErrorCode.read, `could not read the human entries ${path}: ${describe(err)}`, path, { cause: err });
    }
  }

  async get(id: string): Promise<Incident | null> {
    const path = this.recordPath(id);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return null;
      throw new IncidentStoreError(IncidentStoreErrorCode.read, `could not read incident record ${path}: ${describe(err)}`, path, { cause: err });
    }
    const parsed = parseRecord(text, id);
    if (!parsed.ok) {
      throw new IncidentStoreError(IncidentStoreErrorCode.corrupt, `incident record ${path} is corrupt: ${parsed.reason}`, path, { cause: parsed.cause });
    }
    return withHuman(parsed.incident, await this.readHuman(id));
  }

  async list(filter: IncidentFilter = {}): Promise<Incident[]> {
    const { incidents, skipped } = await this.scan(filter);
    this.lastListSkipped = skipped.length;
    return incidents;
  }

  /**
   * Closed incidents that last changed before `cutoff` (ms since the epoch),
   * oldest first: the ones retention may remove. "Last changed" is the later
   * of `closedAt` and `updatedAt`: a closed incident still counting
   * suppressed triggers for its key is still in use. An incident that is not
   * final (`open`, `remediating`) is never listed, however old: it may still
   * be resumed. Unreadable records are skipped (as `list` does), never listed.
   */
  async listOlderThan(cutoff: number): Promise<Incident[]> {
    const incidents = await this.list();
    return incidents.filter((incident) => FINAL_STATUSES.has(incident.status) && lastChanged(incident) < cutoff);
  }

  /**
   * Removes an incident: its `.md` first, then its human entries, then its
   * `.json`, then syncs the folder. A crash in between leaves the record whole (only its rendering
   * gone), so the next removal finishes the job. Returns whether a record
   * was there. Throws IncidentIdError on a malformed id, and
   * IncidentStoreError (`ERR_RECLAIM_INCIDENT_WRITE`) when a file exists but
   * cannot be removed.
   */
  async remove(id: string): Promise<boolean> {
    const jsonPath = this.recordPath(id);
    const mdPath = join(this.dir, `${id}.md`);
    const unlinkIfThere = async (path: string): Promise<boolean> => {
      try {
        await unlink(path);
        return true;
      } catch (err) {
        if (errnoCode(err) === "ENOENT") return false;
        throw writeError(`could not remove ${path}`, path, err);
      }
    };
    const hadMarkdown = await unlinkIfThere(mdPath);
    // Before the record: a crash in between leaves a record without its human entries, which the next run removes, not a file without a record.
    const hadHuman = await unlinkIfThere(humanFilePath(this.dir, id));
    const hadRecord = await unlinkIfThere(jsonPath);
    if (hadMarkdown || hadHuman || hadRecord) await fsyncDir(this.dir);
    return hadRecord;
  }

  /**
   * Like `list`, but also says what was skipped. Reads every `<id>.json` once:
   * O(files), no cache. A folder that does not exist yet holds no incidents.
   */
  async scan(filter: IncidentFilter = {}): Promise<IncidentScan> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return { incidents: [], skipped: [], tempFiles: 0 };
      throw new IncidentStoreError(IncidentStoreErrorCode.read, `could not read the incidents folder ${this.dir}: ${describe(err)}`, this.dir, {
        cause: err,
      });
    }
    const statuses = filter.status === undefined ? undefined : new Set(filter.status);
    const humanFiles = new Set(names.filter((name) => name.endsWith(HUMAN_FILE_SUFFIX)));
    const incidents: Incident[] = [];
    const skipped: SkippedRecord[] = [];
    let tempFiles = 0;
    for (const name of names.sort()) {
      if (name.startsWith(".") && name.endsWith(TEMP_SUFFIX)) {
        tempFiles++;
        continue;
      }
      if (!name.endsWith(".json")) continue;
      const id = name.slice(0, -".json".length);
      const file = join(this.dir, name);
      // The name is the id: a file named otherwise is not a record, and get() could never find it.
      if (!INCIDENT_ID_PATTERN.test(id)) {
        skipped.push({ file, reason: "the file name is not an incident id" });
        continue;
      }
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (err) {
        if (errnoCode(err) === "ENOENT") continue; // removed since readdir: nothing to report
        skipped.push({ file, reason: `unreadable: ${describe(err)}` });
        continue;
      }
      const parsed = parseRecord(text, id);
      if (!parsed.ok) {
        skipped.push({ file, reason: parsed.reason });
        continue;
      }
      const incident = parsed.incident;
      if (statuses !== undefined && !statuses.has(incident.status)) continue;
      if (filter.rule !== undefined && incident.rule !== filter.rule) continue;
      if (filter.since !== undefined && !(Date.parse(incident.updatedAt) >= filter.since)) continue;
      let human: Awaited<ReturnType<typeof readHumanFile>> = null;
      if (humanFiles.has(`${id}${HUMAN_FILE_SUFFIX}`)) {
        try {
          human = await readHumanFile(humanFilePath(this.dir, id));
        } catch (err) {
          // Listed all the same: the operator rebuilds its guards from this list, and the entries are people's, not its own.
          skipped.push({ file: humanFilePath(this.dir, id), reason: `its human entries are unreadable (the incident is listed without them): ${describe(err)}` });
        }
      }
      incidents.push(withHuman(incident, human));
    }
    incidents.sort(oldestFirst);
    return { incidents, skipped, tempFiles };
  }
}

/** `incident` with the human entries from its own file (and none that its `.json` may hold). */
function withHuman(incident: Incident, human: Awaited<ReturnType<typeof readHumanFile>>): Incident {
  delete incident.human;
  delete incident.humanDropped;
  return human === null ? incident : { ...incident, ...human };
}

/** The later of `closedAt` and `updatedAt` (ms); +Infinity when neither parses, so such a record is never "old". */
function lastChanged(incident: Incident): number {
  const times = [incident.closedAt, incident.updatedAt].map((t) => (t === null ? Number.NaN : Date.parse(t))).filter(Number.isFinite);
  return times.length === 0 ? Number.POSITIVE_INFINITY : Math.max(...times);
}

/** By `detectedAt` (unparseable times last), then by id, so the order never depends on the folder's. */
function oldestFirst(a: Incident, b: Incident): number {
  const at = (i: Incident): number => {
    const t = Date.parse(i.detectedAt);
    return Number.isNaN(t) ? Number.POSITIVE_INFINITY : t;
  };
  const d = at(a) - at(b);
  if (d !== 0 && !Number.isNaN(d)) return d;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Validates `incident` and returns the JSON to write. The JSON is parsed back
 * and validated again: fields typed `unknown` (request and response bodies,
 * evidence fields) may hold values that JSON drops or changes (`undefined`,
 * `NaN`, a `Date`), and a record that would not read back must not be written.
 */
function serialize(incident: Incident): { json: string; record: Incident } {
  const checked = Incident.safeParse(incident);
  if (!checked.success) {
    const issues = checked.error.issues.map(formatIssue);
    throw new IncidentRecordError(`incident ${incident.id} is not a valid record: ${issues.join("; ")}`, issues, { cause: checked.error });
  }
  let json: string;
  try {
    json = `${JSON.stringify(checked.data, null, 2)}\n`;
  } catch (err) {
    throw new IncidentRecordError(`incident ${incident.id} cannot be written as JSON: ${describe(err)}`, [describe(err)], { cause: err });
  }
  const back = Incident.safeParse(JSON.parse(json));
  if (!back.success) {
    const issues = back.error.issues.map(formatIssue);
    throw new IncidentRecordError(`incident ${incident.id} would not read back from JSON: ${issues.join("; ")}`, issues, { cause: back.error });
  }
  return { json, record: back.data };
}

type Parsed = { ok: true; incident: Incident } | { ok: false; reason: string; cause: unknown };

/** Parses a record's text; the record must hold the id its file is named for. */
function parseRecord(text: string, id: string): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not valid JSON (${describe(err)})`, cause: err };
  }
  const parsed = Incident.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map(formatIssue);
    const more = parsed.error.issues.length - issues.length;
    return { ok: false, reason: `not a valid incident: ${issues.join("; ")}${more > 0 ? `; and ${more} more` : ""}`, cause: parsed.error };
  }
  if (parsed.data.id !== id) {
    return { ok: false, reason: `it holds incident ${JSON.stringify(parsed.data.id)}, not ${id}`, cause: undefined };
  }
  return { ok: true, incident: parsed.data };
}

function formatIssue(issue: z.core.$ZodIssue): string {
  return `${issue.path.length > 0 ? issue.path.join(".") : "(root)"}: ${issue.message}`;
}

/** `writeFileAtomic`, its failure as an IncidentStoreError naming the file. */
async function writeAtomic(target: string, data: string): Promise<void> {
  try {
    await writeFileAtomic(target, data);
  } catch (err) {
    throw writeError(`could not write ${target}`, target, (err as Error).cause ?? err);
  }
}

/** `fsyncDir`, its failure as an IncidentStoreError naming the folder. */
async function fsyncDir(dir: string): Promise<void> {
  try {
    await fsyncDirectory(dir);
  } catch (err) {
    throw writeError(`could not sync the incidents folder ${dir}`, dir, (err as Error).cause ?? err);
  }
}

function writeError(what: string, file: string, err: unknown): IncidentStoreError {
  return new IncidentStoreError(IncidentStoreErrorCode.write, `${what}: ${describe(err)}`, file, { cause: err });
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
