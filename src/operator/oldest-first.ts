/**
 * `OldestFirst`: keys with a value each, in the order they were added, for
 * the bounded memories that only ever add a key they do not hold and forget
 * from the oldest end (the detector's de-duplication window, the engine's
 * "asked recently" memo).
 *
 * A Map alone keeps that order, but reaching its oldest entry through its
 * iterator (`for … of`, `keys().next()`) walks over every entry deleted
 * before it until V8 next compacts the table. A memory that forgets from
 * the front at every insert therefore pays for all the holes it left: at
 * 50,000 entries, ~8 µs a call, 0.5 s of CPU over a flood of 100,000 lines
 * (ADR 45). Here the order is an array with a moving head: the oldest is
 * one index away, and the array is cut down once half of it is behind the
 * head.
 */
export class OldestFirst<K, V extends NonNullable<unknown>> {
  private readonly values = new Map<K, V>();
  /** Keys in the order added; those before `head` are forgotten. */
  private order: K[] = [];
  private head = 0;

  /** Entries held. */
  get size(): number {
    return this.values.size;
  }

  has(key: K): boolean {
    return this.values.has(key);
  }

  get(key: K): V | undefined {
    return this.values.get(key);
  }

  /** Adds `key`, the newest. Throws a TypeError for a key already held: its place in the order would be ambiguous. */
  add(key: K, value: V): void {
    if (this.values.has(key)) throw new TypeError("OldestFirst.add: the key is already held");
    this.values.set(key, value);
    this.order.push(key);
  }

  /** The oldest entry's value, or undefined when empty (values are never undefined). */
  oldestValue(): V | undefined {
    return this.head < this.order.length ? this.values.get(this.order[this.head]!) : undefined;
  }

  /** Forgets the oldest entry (nothing when empty). */
  dropOldest(): void {
    if (this.head >= this.order.length) return;
    this.values.delete(this.order[this.head]!);
    this.head++;
    // Cut the forgotten keys off once they are half of the array: each key is copied at most once per halving.
    if (this.head >= COMPACT_AFTER && this.head * 2 >= this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }

  /** Keys held, oldest first (for tests and diagnostics). */
  keys(): K[] {
    return this.order.slice(this.head);
  }
}

/** Forgotten keys tolerated at the front of the order before it is cut down (a small memory never copies). */
export const COMPACT_AFTER = 1024;
