/**
 * Human entries in an incident's timeline: acknowledgements and notes that
 * on-call adds with `reclaim incidents ack|note`, and the acknowledgement
 * derived from them (`acknowledgement`, which notifications use).
 *
 * Who owns what: the `human` list belongs to people, everything else in the
 * record to the operator. The operator may be writing an incident (a ladder
 * moving to its next rung) at the very moment someone acks it; neither write
 * may lose the other's, and a human entry must never make the operator's
 * write fail. Each store gets there its own way:
 *
 * - File mode: the entries live beside the record, in `<id>.human.jsonl`,
 *   one JSON entry per line, and the operator never writes that file. A
 *   person appends one line with a single `O_APPEND` write (so two people
 *   at once do not overwrite each other either) and the operator's
 *   `<id>.json` is never rewritten by a person. There is no read-modify-write
 *   of a shared file, hence nothing to lose and nothing to retry. The store
 *   merges the two on every read. (Merging in `<id>.json` itself cannot be
 *   made safe between two processes without a lock: a person's rewrite can
 *   land on top of a rung the operator wrote after the person read, and a
 *   lock left by a crashed CLI would stop the operator.)
 * - Kubernetes: the entries are in `status.human` of the Incident object.
 *   Every status write (the operator's and a person's) reads the object and
 *   writes with the resourceVersion it read; the operator copies the
 *   `human` it read into what it writes. A write that raced another gets
 *   409 Conflict and is tried again from a fresh read, so the later writer
 *   always builds on the earlier one.
 *
 * Bounds: at most MAX_HUMAN_ENTRIES entries (the oldest notes go first, then
 * the latest acks; the first ack always stays), one ack per person, names of
 * at most MAX_HUMAN_NAME characters, texts of at most MAX_HUMAN_TEXT, and in
 * file mode a file of at most MAX_HUMAN_FILE_BYTES.
 */
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fsyncDir } from "../atomic-file.js";
import { HumanEntry, MAX_HUMAN_ENTRIES, MAX_HUMAN_NAME, MAX_HUMAN_TEXT, type Incident } from "./model.js";

export type { HumanEntry } from "./model.js";

/** Stable codes of the errors thrown here. */
export const HumanEntryErrorCode = {
  /** The name (`--by`) is empty, too long, or holds control characters. A TypeError. */
  name: "ERR_RECLAIM_HUMAN_NAME",
  /** The text (`--text`, `--comment`) is missing for a note, too long, or holds control characters. A TypeError. */
  text: "ERR_RECLAIM_HUMAN_TEXT",
  /** File mode: the incident's human entries file reached MAX_HUMAN_FILE_BYTES; nothing was written. */
  full: "ERR_RECLAIM_HUMAN_FULL",
} as const;
export type HumanEntryErrorCode = (typeof HumanEntryErrorCode)[keyof typeof HumanEntryErrorCode];

/** A human entry that cannot be recorded (bad name or text, or no room); nothing was written. */
export class HumanEntryError extends TypeError {
  constructor(
    readonly code: HumanEntryErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "HumanEntryError";
  }
}

/** What `humanEntry` builds an entry from. */
export interface HumanEntryInput {
  kind: HumanEntry["kind"];
  /** Who: trimmed, then 1 to MAX_HUMAN_NAME characters without control characters. */
  by: string;
  /** A note's text (required) or an ack's comment (default none). Trimmed; CRLF becomes LF. */
  text?: string;
  /** When (ms since the epoch). */
  at: number;
}

/**
 * A validated human entry. Throws HumanEntryError (`ERR_RECLAIM_HUMAN_NAME`
 * or `ERR_RECLAIM_HUMAN_TEXT`) with a message that says what is wrong.
 */
export function humanEntry(input: HumanEntryInput): HumanEntry {
  const by = input.by.trim();
  const text = (input.text ?? "").replace(/\r\n/g, "\n").trim();
  if (by === "") throw new HumanEntryError(HumanEntryErrorCode.name, "a name is required: who acknowledged or wrote it");
  if (by.length > MAX_HUMAN_NAME) throw new HumanEntryError(HumanEntryErrorCode.name, `the name is ${by.length} characters long; at most ${MAX_HUMAN_NAME}`);
  const badInName = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u.exec(by);
  if (badInName !== null) {
    throw new HumanEntryError(HumanEntryErrorCode.name, `the name contains ${codePoint(badInName[0])}: control, format and separator characters are not allowed`);
  }
  if (input.kind === "note" && text === "") throw new HumanEntryError(HumanEntryErrorCode.text, "a note needs text");
  if (text.length > MAX_HUMAN_TEXT) throw new HumanEntryError(HumanEntryErrorCode.text, `the text is ${text.length} characters long; at most ${MAX_HUMAN_TEXT}`);
  const badInText = /(?!\n)\p{Cc}|[\p{Cs}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/u.exec(text);
  if (badInText !== null) {
    throw new HumanEntryError(HumanEntryErrorCode.text, `the text contains ${codePoint(badInText[0])}: control characters other than newline are not allowed`);
  }
  const entry = { at: new Date(input.at).toISOString(), kind: input.kind, by, text };
  // The schema is what every reader checks: an entry it would refuse must not be written.
  const checked = HumanEntry.safeParse(entry);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new HumanEntryError(issue.path[0] === "by" ? HumanEntryErrorCode.name : HumanEntryErrorCode.text, `${issue.path.join(".")}: ${issue.message}`);
  }
  return checked.data;
}

function codePoint(c: string): string {
  return `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** Who acknowledged an incident first, and when: what notifications (e.g. PagerDuty) treat as "acknowledged". */
export interface Acknowledgement {
  by: string;
  /** ISO 8601, UTC. */
  at: string;
}

/** The incident's first acknowledgement, or null when nobody has acknowledged it. Derived from `human`; older records have none. */
export function acknowledgement(incident: Pick<Incident, "human">): Acknowledgement | null {
  let first: HumanEntry | null = null;
  for (const e of incident.human ?? []) {
    if (e.kind === "ack" && (first === null || Date.parse(e.at) < Date.parse(first.at))) first = e;
  }
  return first === null ? null : { by: first.by, at: first.at };
}

/** `by`'s ack of the incident, or null when they have not acknowledged it. */
export function ackBy(incident: Pick<Incident, "human">, by: string): HumanEntry | null {
  return (incident.human ?? []).find((e) => e.kind === "ack" && e.by === by) ?? null;
}

/**
 * Entries as a record keeps them: in time order (ties in the order given),
 * one ack per person (their first), at most MAX_HUMAN_ENTRIES. Beyond the
 * limit the oldest notes are dropped first; only when there are more acks
 * than room do the latest acks go (the first ack always stays). `dropped`
 * counts what was dropped before (it is added to).
 */
export function boundHuman(entries: readonly HumanEntry[], dropped = 0): { human: HumanEntry[]; humanDropped: number } {
  const sorted = entries
    .map((e, n) => ({ e, n, t: Date.parse(e.at) }))
    .sort((a, b) => a.t - b.t || a.n - b.n)
    .map((x) => x.e);
  const acked = new Set<string>();
  const human: HumanEntry[] = [];
  for (const e of sorted) {
    if (e.kind === "ack") {
      // Acking twice is one ack: the first says when on-call took it.
      if (acked.has(e.by)) continue;
      acked.add(e.by);
    }
    human.push(e);
  }
  let humanDropped = dropped;
  while (human.length > MAX_HUMAN_ENTRIES) {
    const oldestNote = human.findIndex((e) => e.kind === "note");
    human.splice(oldestNote >= 0 ? oldestNote : human.length - 1, 1);
    humanDropped++;
  }
  return { human, humanDropped };
}

/** What adding an entry did. */
export interface HumanAppend {
  /** The incident as it is on record after the write (or, when nothing was recorded, as it was read). */
  incident: Incident;
  /** False when the entry was an ack and its author had already acknowledged the incident: nothing was written. */
  recorded: boolean;
}

/**
 * Adds `entry` to `incident` (in place), keeping the bounds. An ack by
 * someone who has already acknowledged it is not added (`false`): an ack is
 * idempotent per person.
 */
export function addHumanEntry(incident: Incident, entry: HumanEntry): boolean {
  if (entry.kind === "ack" && ackBy(incident, entry.by) !== null) return false;
  const { human, humanDropped } = boundHuman([...(incident.human ?? []), entry], incident.humanDropped ?? 0);
  incident.human = human;
  incident.humanDropped = humanDropped;
  return true;
}

/** A store that can add human entries without losing the operator's writes (FileIncidentStore, KubernetesIncidentStore). */
export interface HumanTimelineStore {
  /**
   * Adds `entry` to incident `id`'s timeline. Resolves null when there is no
   * such incident. Throws IncidentIdError on a malformed id (before anything
   * is read), HumanEntryError when there is no room, and the store's errors
   * when it cannot read or write.
   */
  appendHuman(id: string, entry: HumanEntry): Promise<HumanAppend | null>;
}

/** The human part of a stored Kubernetes status (as it is there), to carry into a write that replaces the status. */
export function humanPartOf(status: unknown): Partial<Pick<Incident, "human" | "humanDropped">> {
  if (typeof status !== "object" || status === null) return {};
  const { human, humanDropped } = status as Partial<Pick<Incident, "human" | "humanDropped">>;
  return { ...(human === undefined ? {} : { human }), ...(humanDropped === undefined ? {} : { humanDropped }) };
}

// ---- file mode ---------------------------------------------------------------

/** File mode: `<id>` + this, beside `<id>.json`. Not `.json`: the store's scan does not take it for a record. */
export const HUMAN_FILE_SUFFIX = ".human.jsonl";
/**
 * Largest human entries file appended to (1 MiB: at least 450 entries of the
 * longest kind). Appends beyond it are refused (`ERR_RECLAIM_HUMAN_FULL`);
 * reads stop there too.
 */
export const MAX_HUMAN_FILE_BYTES = 1024 * 1024;
/** Read at most this much (appends that raced past the limit included). */
const READ_LIMIT = MAX_HUMAN_FILE_BYTES + 64 * 1024;

/** The human entries file of incident `id` in `dir` (the id must be valid: the caller checks it). */
export function humanFilePath(dir: string, id: string): string {
  return join(dir, `${id}${HUMAN_FILE_SUFFIX}`);
}

/**
 * Appends `entry` as one line to the human entries file at `path` (created
 * when absent), with one `O_APPEND` write, then syncs it (and its folder).
 * Each line starts with a newline too, so a line torn by a crash cannot run
 * into the next one: it is skipped (and counted) when read. Throws
 * HumanEntryError (`ERR_RECLAIM_HUMAN_FULL`) when the file already holds
 * `maxBytes` (default MAX_HUMAN_FILE_BYTES), and the file system's error
 * otherwise.
 */
export async function appendHumanFile(path: string, entry: HumanEntry, maxBytes = MAX_HUMAN_FILE_BYTES): Promise<void> {
  const line = Buffer.from(`\n${JSON.stringify(entry)}\n`, "utf8");
  const handle = await open(path, "a", 0o644);
  try {
    const { size } = await handle.stat();
    if (size + line.length > maxBytes) {
      throw new HumanEntryError(HumanEntryErrorCode.full, `the human entries of this incident (${path}) reached ${maxBytes} bytes; nothing more can be added`);
    }
    const { bytesWritten } = await handle.write(line);
    if (bytesWritten !== line.length) throw new Error(`only ${bytesWritten} of ${line.length} bytes were written to ${path}`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  // The file may be new: make its name durable too.
  await fsyncDir(dirname(path));
}

/**
 * Reads a human entries file: its valid entries bounded by `boundHuman`,
 * lines that are not valid entries (a line torn by a crash, a hand edit)
 * counted in `humanDropped`. Resolves null when there is no file. Reads at
 * most about MAX_HUMAN_FILE_BYTES. Throws the file system's error otherwise.
 */
export async function readHumanFile(path: string): Promise<{ human: HumanEntry[]; humanDropped: number } | null> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  let text: string;
  try {
    const buffer = Buffer.alloc(Math.min((await handle.stat()).size, READ_LIMIT));
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    text = buffer.subarray(0, filled).toString("utf8");
  } finally {
    await handle.close();
  }
  return parseHumanLines(text);
}

/** The entries in a human entries file's text (see readHumanFile). */
export function parseHumanLines(text: string): { human: HumanEntry[]; humanDropped: number } {
  const entries: HumanEntry[] = [];
  let unreadable = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      unreadable++;
      continue;
    }
    const parsed = HumanEntry.safeParse(value);
    if (parsed.success) entries.push(parsed.data);
    else unreadable++;
  }
  return boundHuman(entries, unreadable);
}
