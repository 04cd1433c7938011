/**
 * De-duplication for the `gcp:PROJECT` tail: the identity of an entry
 * (timestamp and insertId, as Cloud Logging de-duplicates) and a bounded
 * ring of the identities recently handed over, against which what a
 * catch-up and the tail both return, and what an overlap repeats, is
 * dropped. The ring also says which ids a saved position must keep.
 */
import { createHash } from "node:crypto";
import type { WireLogEntry } from "./decode.js";

/** Default ids remembered to drop duplicates: 100,000. */
export const DEFAULT_DEDUP_CAPACITY = 100_000;

/**
 * The identity Cloud Logging de-duplicates by: timestamp and insertId
 * (`NANOS/ID`). An entry without an insertId (Cloud Logging assigns one to
 * every entry it stores, so only a stray one) is identified by a hash of
 * its JSON instead (`NANOS#SHA1`).
 */
export function entryKey(ns: bigint | null, entry: WireLogEntry, line: string): string {
  const t = (ns ?? 0n).toString();
  return entry.insertId ? `${t}/${entry.insertId}` : `${t}#${createHash("sha1").update(line).digest("base64")}`;
}

/** The time (ns since the epoch) of an `entryKey`; 0 for a key not of that shape. */
export function keyNanos(key: string): bigint {
  const m = /^(-?\d+)[/#]/.exec(key);
  return m === null ? 0n : BigInt(m[1]!);
}

/**
 * The ids of the last `capacity` entries handed over, in arrival order (a
 * ring: the oldest is forgotten first), each with its time and the batch it
 * came in.
 */
export class RecentEntries {
  private readonly keys: string[] = [];
  private readonly times: bigint[] = [];
  private readonly batches: number[] = [];
  private readonly index = new Set<string>();
  private head = 0;

  constructor(private readonly capacity: number) {}

  /** Whether an entry with this key was added and not forgotten yet. */
  has(key: string): boolean {
    return this.index.has(key);
  }

  /** Remembers a key (not one it `has`), forgetting the oldest when `capacity` are held. */
  add(key: string, ns: bigint, batch: number): void {
    if (this.keys.length < this.capacity) {
      this.keys.push(key);
      this.times.push(ns);
      this.batches.push(batch);
    } else {
      this.index.delete(this.keys[this.head]!);
      this.keys[this.head] = key;
      this.times[this.head] = ns;
      this.batches[this.head] = batch;
      this.head = (this.head + 1) % this.capacity;
    }
    this.index.add(key);
  }

  /** Forgets every key. */
  clear(): void {
    this.keys.length = 0;
    this.times.length = 0;
    this.batches.length = 0;
    this.index.clear();
    this.head = 0;
  }

  /** Keys of entries from batches up to `batch` with a time at or after `since`, looking back over at most `max` arrivals, oldest first. */
  since(since: bigint, batch: number, max: number): string[] {
    const out: string[] = [];
    const n = this.keys.length;
    for (let k = 0; k < Math.min(n, max); k++) {
      const i = (this.head - 1 - k + 2 * n) % n;
      if (this.batches[i]! <= batch && this.times[i]! >= since) out.push(this.keys[i]!);
    }
    return out.reverse();
  }
}

