/**
 * Rollup records (ADR 12): the keys of one rule that a rule-wide guard
 * stopped in one hour, and that have no incident of their own, listed in one
 * record per rule, reason and hour instead of one record each.
 *
 * A rule-wide guard (`rate_limit`, `circuit_open`) stops triggers whatever
 * their key, so a flood of lockouts for 10,000 users would otherwise write
 * 10,000 records. Here they cost one record per MAX_ROLLUP_KEYS keys, at most
 * MAX_ROLLUP_PARTS records per rule, reason and hour; triggers of keys beyond
 * that are counted on the last record (and named in the operator's log).
 *
 * The records are kept in memory for the current and the previous hour and
 * written by the engine's `flush()`, never once per line: a record that lists
 * a new key is written at the next flush (once per batch of log lines, before
 * the batch's position is saved, so a user once read is never lost); a record
 * whose only change is trigger counts at most once per `countsEveryMs`
 * (ROLLUP_COUNTS_EVERY_MS), so a crash loses at most that long of counts. They
 * are rebuilt from the store on restart (`restore`), so a key already listed
 * is not listed again.
 */
import { createHash } from "node:crypto";
import type { Trigger } from "../detect/detector.js";
import { MAX_ROLLUP_KEYS, MAX_ROLLUP_PARTS, type Incident, type RollupKey, type SuppressReason } from "./model.js";
import { close, newIncident } from "./record.js";

/** The guards whose suppressions of keys without an incident are rolled up: those that stop a trigger whatever its key. */
export const ROLLED_UP_REASONS: ReadonlySet<SuppressReason> = new Set<SuppressReason>(["rate_limit", "circuit_open"]);

const HOUR_MS = 3_600_000;
/** How often a rollup record whose only change is trigger counts is written. */
export const ROLLUP_COUNTS_EVERY_MS = 5000;

/** The last time written and its text: a flood's repeats note many triggers in the same millisecond. */
let lastIso = { ms: Number.NaN, text: "" };
const iso = (ms: number): string => {
  if (ms !== lastIso.ms) lastIso = { ms, text: new Date(ms).toISOString() };
  return lastIso.text;
};

/** What `note` did with a suppressed trigger. */
export interface RollupNote {
  /** The record it was counted on. */
  incident: Incident;
  /** The key was listed just now: it was not yet in this hour's records for the rule and reason. */
  added: boolean;
  /** The key is not listed: the hour's records are full, so only the trigger was counted. */
  unlisted: boolean;
}

interface Unit {
  hour: number;
  /** Its records, by part number (1 first). */
  parts: Incident[];
  /** Every key listed in any part, and where. */
  index: Map<string, { incident: Incident; entry: RollupKey }>;
}

/** The id of a rollup record: deterministic, so a replay gives the same ids; shaped like every incident id. */
export function rollupId(rule: string, reason: SuppressReason, hour: number, part: number): string {
  const stamp = iso(hour).replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const hash = createHash("sha256").update(`${rule}\u0000rollup\u0000${reason}\u0000${hour}\u0000${part}`).digest("hex").slice(0, 8);
  return `${stamp}-${rule}-${hash}`;
}

/** The rollup records being filled, and those changed since the last flush. */
export class SuppressionRollups {
  private readonly units = new Map<string, Unit>();
  /** Records changed since written; true when the change lists a key (it must be written at the next flush). */
  private readonly dirty = new Map<Incident, boolean>();
  private readonly written = new WeakMap<Incident, number>();
  /** The latest "now" seen: the hour never goes backwards, so a record once written is never started over. */
  private newest = Number.NEGATIVE_INFINITY;

  /** Records held, keys listed in them, records not yet written: the memory a flood costs. */
  get size(): { records: number; keys: number; dirty: number } {
    let records = 0;
    let keys = 0;
    for (const unit of this.units.values()) {
      records += unit.parts.length;
      keys += unit.index.size;
    }
    return { records, keys, dirty: this.dirty.size };
  }

  /** Counts a suppressed trigger of a key without an incident on the hour's record for its rule and reason. */
  note(trigger: Trigger, reason: SuppressReason, now: number): RollupNote {
    this.newest = Math.max(this.newest, now);
    const hour = Math.floor(this.newest / HOUR_MS) * HOUR_MS;
    this.prune(hour);
    const unitId = `${trigger.rule.name}\u0000${reason}\u0000${hour}`;
    let unit = this.units.get(unitId);
    if (unit === undefined) {
      unit = { hour, parts: [], index: new Map() };
      this.units.set(unitId, unit);
    }
    let note: RollupNote;
    let created = false;
    // One string for every time stamp this trigger changes: a flood's repeats allocate as little as they can.
    const at = iso(now);
    const found = unit.index.get(trigger.keyString);
    if (found !== undefined) {
      found.entry.triggers++;
      found.entry.lastAt = at;
      note = { incident: found.incident, added: false, unlisted: false };
    } else {
      let last = unit.parts[unit.parts.length - 1];
      if (last === undefined || (last.rollup!.keys.length >= MAX_ROLLUP_KEYS && last.rollup!.part < MAX_ROLLUP_PARTS)) {
        last = newPart(trigger, reason, hour, (last?.rollup!.part ?? 0) + 1, now);
        unit.parts.push(last);
        created = true;
      }
      const rollup = last.rollup!;
      if (rollup.keys.length < MAX_ROLLUP_KEYS) {
        const entry: RollupKey = {
          key: trigger.key,
          keyString: trigger.keyString,
          userId: trigger.userId,
          pod: trigger.pod,
          triggers: 1,
          firstEntryAt: iso(trigger.firstAt),
          firstAt: at,
          lastAt: at,
        };
        rollup.keys.push(entry);
        unit.index.set(trigger.keyString, { incident: last, entry });
        note = { incident: last, added: true, unlisted: false };
      } else {
        rollup.unlisted.triggers++;
        rollup.unlisted.lastAt = at;
        note = { incident: last, added: false, unlisted: true };
      }
    }
    const counted = note.incident.suppressed[reason];
    if (counted === undefined) note.incident.suppressed[reason] = { count: 1, lastAt: at };
    else {
      counted.count++;
      counted.lastAt = at;
    }
    note.incident.updatedAt = at;
    if (note.added || note.unlisted) note.incident.title = titleOf(note.incident);
    this.dirty.set(note.incident, this.dirty.get(note.incident) === true || note.added || created);
    return note;
  }

  /**
   * The records to write now: those that list a new key, and those whose
   * counts changed and that were last written `countsEveryMs` or longer ago
   * (0: every changed record).
   */
  takeDirty(now: number, countsEveryMs = ROLLUP_COUNTS_EVERY_MS): Incident[] {
    const taken: Incident[] = [];
    for (const [incident, listsNewKey] of this.dirty) {
      if (!listsNewKey && now - (this.written.get(incident) ?? Number.NEGATIVE_INFINITY) < countsEveryMs) continue;
      taken.push(incident);
      this.dirty.delete(incident);
      this.written.set(incident, now);
    }
    return taken;
  }

  /** A record whose write failed: written again by the next flush, whatever changed. */
  markDirty(incident: Incident): void {
    this.dirty.set(incident, true);
  }

  /**
   * Takes back a rollup record from the store (on restart), so that its keys
   * are not listed again and its counts go on. Records of hours before the
   * previous one (relative to `now`, when given) are not kept.
   */
  restore(incident: Incident, now?: number): void {
    const rollup = incident.rollup;
    if (rollup === undefined) return;
    const hour = Date.parse(rollup.hour);
    if (now !== undefined && hour < Math.floor(now / HOUR_MS) * HOUR_MS - HOUR_MS) return;
    const unitId = `${incident.rule}\u0000${rollup.reason}\u0000${hour}`;
    let unit = this.units.get(unitId);
    if (unit === undefined) {
      unit = { hour, parts: [], index: new Map() };
      this.units.set(unitId, unit);
    }
    if (unit.parts.some((p) => p.id === incident.id)) return;
    unit.parts.push(incident);
    unit.parts.sort((a, b) => a.rollup!.part - b.rollup!.part);
    for (const entry of rollup.keys) unit.index.set(entry.keyString, { incident, entry });
  }

  /**
   * Merges a stored version of one of these records into the one held here,
   * before it is written: keys listed only on record are listed here too,
   * and counts and times take the larger of the two (ADR 20). Another leader
   * may have written the record this hour; writing over it would lose the
   * users it listed. Counts are a lower bound when both counted at once.
   */
  merge(incident: Incident, stored: Incident): void {
    const mine = incident.rollup;
    const theirs = stored.rollup;
    if (mine === undefined || theirs === undefined || stored.id !== incident.id) return;
    const hour = Date.parse(mine.hour);
    const unit = this.units.get(`${incident.rule}\u0000${mine.reason}\u0000${hour}`);
    const listed = new Map(mine.keys.map((k) => [k.keyString, k]));
    for (const entry of theirs.keys) {
      const own = listed.get(entry.keyString);
      if (own !== undefined) {
        own.triggers = Math.max(own.triggers, entry.triggers);
        own.firstEntryAt = minIso(own.firstEntryAt, entry.firstEntryAt);
        own.firstAt = minIso(own.firstAt, entry.firstAt);
        own.lastAt = maxIso(own.lastAt, entry.lastAt);
        continue;
      }
      // Listed in another part already (the parts of one hour fill in order): nothing to add here.
      if (unit?.index.has(entry.keyString) === true) continue;
      if (mine.keys.length < MAX_ROLLUP_KEYS) {
        const copy = { ...entry, key: { ...entry.key } };
        mine.keys.push(copy);
        listed.set(copy.keyString, copy);
        unit?.index.set(copy.keyString, { incident, entry: copy });
      } else {
        mine.unlisted.triggers += entry.triggers;
        mine.unlisted.lastAt = mine.unlisted.lastAt === null ? entry.lastAt : maxIso(mine.unlisted.lastAt, entry.lastAt);
      }
    }
    mine.unlisted.triggers = Math.max(mine.unlisted.triggers, theirs.unlisted.triggers);
    if (theirs.unlisted.lastAt !== null) mine.unlisted.lastAt = mine.unlisted.lastAt === null ? theirs.unlisted.lastAt : maxIso(mine.unlisted.lastAt, theirs.unlisted.lastAt);
    for (const [reason, counted] of Object.entries(stored.suppressed) as [SuppressReason, { count: number; lastAt: string }][]) {
      const own = incident.suppressed[reason];
      incident.suppressed[reason] = own === undefined ? { ...counted } : { count: Math.max(own.count, counted.count), lastAt: maxIso(own.lastAt, counted.lastAt) };
    }
    incident.updatedAt = maxIso(incident.updatedAt, stored.updatedAt);
    incident.title = titleOf(incident);
  }

  /** Forgets every record (a new term rebuilds them from the store). */
  clear(): void {
    this.units.clear();
    this.dirty.clear();
  }

  /** Drops the records of hours before the previous one: no trigger is counted on them any more. */
  private prune(hour: number): void {
    for (const [id, unit] of this.units) if (unit.hour < hour - HOUR_MS) this.units.delete(id);
  }
}

/** A new rollup record, closed as `suppressed` from the start: nothing acts on it. */
function newPart(trigger: Trigger, reason: SuppressReason, hour: number, part: number, now: number): Incident {
  const incident = newIncident(trigger, { now, control: "(none)", dryRun: false, status: "suppressed" });
  incident.id = rollupId(trigger.rule.name, reason, hour, part);
  incident.key = {};
  incident.keyString = `rollup: ${reason}, hour from ${iso(hour)}, part ${part}`;
  incident.rollup = { reason, hour: iso(hour), part, keys: [], unlisted: { triggers: 0, lastAt: null } };
  close(
    incident,
    "suppressed",
    now,
    `not acted on: ${reason}. Every key of rule ${trigger.rule.name} that ${reason} stops in the hour from ${iso(hour)} ` +
      `and that has no incident of its own is listed in this record (part ${part}), not in a record of its own`,
  );
  return incident;
}

function titleOf(incident: Incident): string {
  const r = incident.rollup!;
  const n = r.keys.length;
  const more = r.unlisted.triggers > 0 ? ` (+${r.unlisted.triggers} trigger(s) of keys not listed)` : "";
  return (
    `Not acted on (${r.reason}): ${n} key${n === 1 ? "" : "s"} of rule ${incident.rule} in the hour from ${r.hour}` +
    `${r.part > 1 ? `, part ${r.part}` : ""}${more}`
  ).slice(0, 300);
}

function minIso(a: string, b: string): string {
  return Date.parse(b) < Date.parse(a) ? b : a;
}

function maxIso(a: string, b: string): string {
  return Date.parse(b) > Date.parse(a) ? b : a;
}
