/**
 * The detector: counts matching entries per (rule, key) in sliding windows
 * of *event* time, and fires a trigger when a rule's threshold is reached.
 * Event time means replaying a recorded log gives the same triggers as
 * watching it live.
 *
 * Bounded: at most `maxKeys` windows (the least recently used is evicted and
 * counted), at most `count` timestamps and `MAX_EVIDENCE` entries per window,
 * and a memory of recently seen entries for de-duplication that forgets an
 * entry once its rule's `maxAge` has passed (seen again after that, it would
 * be dropped as stale anyway) and holds at most `dedupeSize`.
 */
import { hash } from "node:crypto";
import { isUserId } from "../../contract/ids.js";
import type { LogEvent } from "../sources/event.js";
import { MAX_EVIDENCE } from "../incidents/model.js";
import { fieldValue, type CompiledRule, type Match } from "../rules/compile.js";
import { OldestFirst } from "../oldest-first.js";
import { setOwn } from "../sources/own.js";

/** A threshold reached: the detector's output. */
export interface Trigger {
  rule: CompiledRule;
  /** Key field → value. */
  key: Record<string, string>;
  /** `userId=…,pod=…`, in the rule's key order. */
  keyString: string;
  /** Whom to act on: the entry's structured `userId`, or a text rule's anchored `userId` group from a trusted source (ADR 9); validated either way. */
  userId: string;
  pod: string | null;
  /** The namespace of the pod: the entry's `resource.namespace_name`, when it has one. */
  namespace: string | null;
  /** The entries that reached the threshold, oldest first (at most MAX_EVIDENCE). */
  entries: LogEvent[];
  /** Matching entries of this key inside the window when it fired (may exceed `entries`). */
  total: number;
  /** Event time of the first entry inside the window, and of the entry that fired. */
  firstAt: number;
  at: number;
  /** The last entry's pattern groups, for the title. */
  groups: Record<string, string>;
}

/** Why an entry that matched a rule did not count. */
export type Dropped = "duplicate" | "unkeyed" | "stale";

export interface DetectorStats {
  matched: number;
  duplicates: number;
  unkeyed: number;
  stale: number;
  evictions: number;
  triggers: number;
}

interface Window {
  /** Times of the entries in the window (clamped to "now"), ascending. */
  times: number[];
  /** The newest entries in the window (at most MAX_EVIDENCE), each with its clamped time, ascending. */
  entries: { at: number; event: LogEvent }[];
}

export interface DetectorOptions {
  /** Most (rule, key) windows kept (default 10,000). */
  maxKeys?: number;
  /** Most entry identities remembered for de-duplication (default 50,000). */
  dedupeSize?: number;
  /** "Now" for the max-age check: the wall clock live, the newest event time in replay. */
  now: () => number;
}

export class Detector {
  readonly stats: DetectorStats = { matched: 0, duplicates: 0, unkeyed: 0, stale: 0, evictions: 0, triggers: 0 };
  private readonly windows = new Map<string, Window>();
  /** Entry identities by rule, oldest first, with when each may be forgotten. */
  private readonly seen = new OldestFirst<string, number>();
  private readonly maxKeys: number;
  private readonly dedupeSize: number;

  constructor(private readonly options: DetectorOptions) {
    this.maxKeys = options.maxKeys ?? 10_000;
    this.dedupeSize = options.dedupeSize ?? 50_000;
  }

  /** Windows currently held. */
  get size(): number {
    return this.windows.size;
  }

  /** Entry identities remembered for de-duplication (bounded by age and by `dedupeSize`). */
  get remembered(): number {
    return this.seen.size;
  }

  /**
   * Feeds one entry that `rule` matched. Returns a trigger when the threshold
   * is reached (the window then starts over), the reason it was dropped, or null.
   */
  observe(rule: CompiledRule, event: LogEvent, match: Match): Trigger | Dropped | null {
    this.stats.matched++;
    if (this.isDuplicate(rule, event)) {
      this.stats.duplicates++;
      return "duplicate";
    }
    const keyed = keyOf(rule, event, match);
    if (keyed === null) {
      this.stats.unkeyed++;
      return "unkeyed";
    }
    if (event.time < this.options.now() - rule.rule.spec.maxAge) {
      this.stats.stale++;
      return "stale";
    }
    const { count, window: windowMs } = rule.rule.spec.threshold;
    const id = `${rule.name}\u0000${keyed.keyString}`;
    let window = this.windows.get(id);
    if (window === undefined) {
      window = { times: [], entries: [] };
      if (this.windows.size >= this.maxKeys) this.evictOldest();
    } else {
      this.windows.delete(id); // re-insert below: Map order is the LRU order
    }
    this.windows.set(id, window);

    // Insert in time order (entries may arrive out of order), then drop what fell out of the window. An entry
    // stamped later than now (a pod clock running ahead) happened by the time it was read: it counts as now, so
    // it cannot push the on-time entries of its key out of the window (fault matrix, row 6). In replay, "now"
    // is the newest entry time, so this changes nothing there.
    const at = Math.min(event.time, this.options.now());
    insertSorted(window.times, at);
    const newest = window.times[window.times.length - 1]!;
    const start = newest - windowMs;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: past the end, times[0] is undefined and not <= start
    while (window.times.length > 0 && window.times[0]! <= start) window.times.shift();
    // At most `count` times: a window that reaches `count` fires and is dropped below.
    // Evidence is what fired: only entries inside the window, so the record's first time, count and entries
    // describe the threshold that was reached, not older entries that fell out of it.
    let i = window.entries.length;
    while (i > 0 && window.entries[i - 1]!.at > at) i--;
    window.entries.splice(i, 0, { at, event });
    // Stryker disable next-line ConditionalExpression,EqualityOperator: past the end, entries[0] is undefined
    while (window.entries.length > 0 && window.entries[0]!.at <= start) window.entries.shift();
    // Stryker disable next-line ConditionalExpression,EqualityOperator: splicing a count of 0 or less removes nothing
    if (window.entries.length > MAX_EVIDENCE) window.entries.splice(0, window.entries.length - MAX_EVIDENCE);

    if (window.times.length < count) return null;
    this.windows.delete(id);
    this.stats.triggers++;
    const entries = window.entries.map((e) => e.event);
    return {
      rule,
      ...keyed,
      entries,
      total: window.times.length,
      // The event time the first entry claims (a pod clock running ahead shows), unless the evidence was cut short.
      firstAt: entries.length === window.times.length ? Math.min(...entries.map((e) => e.time)) : window.times[0]!,
      at: event.time,
      groups: match.groups,
    };
  }

  /** Forgets the windows of rules that are no longer loaded (after a reload). */
  retain(ruleNames: ReadonlySet<string>): void {
    for (const id of [...this.windows.keys()]) if (!ruleNames.has(id.slice(0, id.indexOf("\u0000")))) this.windows.delete(id);
  }

  private evictOldest(): void {
    const oldest = this.windows.keys().next();
    // Stryker disable next-line ConditionalExpression: only called with maxKeys (at least 1) windows held
    if (oldest.done !== true) {
      this.windows.delete(oldest.value);
      this.stats.evictions++;
    }
  }

  private isDuplicate(rule: CompiledRule, event: LogEvent): boolean {
    const identity = `${rule.name}\u0000${event.insertId ?? digest(event)}`;
    if (this.seen.has(identity)) return true;
    const now = this.options.now();
    // Forgotten once its rule's maxAge has passed, from when it was seen or the time it claims, whichever is later.
    this.seen.add(identity, Math.max(now, event.time) + rule.rule.spec.maxAge);
    // From the oldest: forgotten once due, or while over dedupeSize. It stops at the first it keeps (the identity just added, at the latest).
    for (let forgetAt = this.seen.oldestValue(); forgetAt !== undefined; forgetAt = this.seen.oldestValue()) {
      if (forgetAt > now && this.seen.size <= this.dedupeSize) break;
      this.seen.dropOldest();
    }
    return false;
  }

}

/** The key of an entry for a rule, or null when a key field is missing or the user id is not valid. */
export function keyOf(rule: CompiledRule, event: LogEvent, match?: Match): Pick<Trigger, "key" | "keyString" | "userId" | "pod" | "namespace"> | null {
  const key: Record<string, string> = {};
  // `name=value,…` in the rule's key order, built as the key is (no entries, map and join per line).
  let keyString = "";
  for (const name of rule.rule.spec.key) {
    // A text trigger's key fields come from its match (only from entries its trust admits); no other rule has any.
    const value = match?.keys?.[name] ?? fieldValue(event, name);
    if (typeof value !== "string" && typeof value !== "number") return null;
    const text = String(value);
    setOwn(key, name, text);
    keyString = keyString === "" ? `${name}=${text}` : `${keyString},${name}=${text}`;
  }
  const userId = key.userId;
  // Stryker disable next-line ConditionalExpression: isUserId(undefined) is false too
  if (userId === undefined || !isUserId(userId)) return null;
  const pod = fieldValue(event, "pod");
  return {
    key,
    keyString,
    userId,
    pod: typeof pod === "string" ? pod : null,
    namespace: event.resource.namespace_name ?? null,
  };
}

/** An identity for an entry without an insertId: the same entry delivered twice has the same digest. */
function digest(event: LogEvent): string {
  const bytes = JSON.stringify([event.time, event.severity, event.event, event.message, event.fields, event.resource]);
  // One call, no Hash object: a third of createHash's cost per entry (ADR 45).
  // Stryker disable next-line StringLiteral: any stable digest of the same bytes is the same identity
  return hash("sha1", bytes, "base64");
}

function insertSorted(times: number[], t: number): void {
  let i = times.length;
  // Stryker disable next-line ConditionalExpression,EqualityOperator: equal times are interchangeable; times[-1] is undefined
  while (i > 0 && times[i - 1]! > t) i--;
  times.splice(i, 0, t);
}
