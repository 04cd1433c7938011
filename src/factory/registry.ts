/**
 * The per-user registry of managers: who holds how many slots, each user's
 * limit (and any temporary `degrade` raise), and the slots reserved for
 * upgrades that were admitted but have not finished their handshake.
 *
 * Admission is decided synchronously against `active + pending`, so two
 * upgrades racing for the last slot can never both win it.
 *
 * It also keeps, per user it holds, since when their managers have been at
 * their effective limit: "at the limit" alone is not "locked out" (a user
 * may keep 20 live tabs and never ask for a 21st), but how long they have
 * been there is what an incident about them should say.
 */
import { timersOf, type Clock, type Timers } from "../contract/clock.js";
import type { UserSummary } from "../contract/control.js";
import type { Manager } from "./manager.js";

/** A temporary limit raise set by the `degrade` rung. */
export interface Raise {
  limit: number;
  until: number;
  queueTimeoutMs: number;
}

interface UserEntry {
  managers: Map<string, Manager>;
  pending: number;
  raise: Raise | null;
  /** Cancels the timer that ends the raise. */
  raiseTimer: (() => void) | null;
  /** When `managers.size` last reached the effective limit; null while below it. */
  atLimitSince: number | null;
}

/** What the registry tells the rest of the factory. */
export interface RegistryHooks {
  /** A slot of this user may have become free (a manager left, a reservation was released, a raise began). */
  slotFreed?(userId: string): void;
  /** This user's raise ended. */
  raiseEnded?(userId: string, raise: Raise): void;
  /** The registry holds nothing more for this user (no manager, reservation or raise) and dropped them. */
  forgotten?(userId: string): void;
}

export class Registry {
  private readonly users = new Map<string, UserEntry>();
  private managerTotal = 0;
  /** Where raises end: the clock's own timers when it has them (timersOf), so a test's clock ends them. */
  private readonly timers: Timers;

  /**
   * @param limit the normal per-user limit (default in the factory config: 20)
   */
  constructor(
    readonly limit: number,
    private readonly clock: Clock,
    private readonly hooks: RegistryHooks = {},
  ) {
    this.timers = timersOf(clock);
  }

  /** Managers across all users. */
  get size(): number {
    return this.managerTotal;
  }

  /** Users the registry holds anything for. */
  get userCount(): number {
    return this.users.size;
  }

  /** This user's raise, if one is in force now. */
  raiseOf(userId: string): Raise | null {
    const raise = this.users.get(userId)?.raise ?? null;
    return raise !== null && raise.until > this.clock.now() ? raise : null;
  }

  /** The limit in force for this user now: the raise if any, else the normal limit. */
  effectiveLimit(userId: string): number {
    return this.raiseOf(userId)?.limit ?? this.limit;
  }

  /** Whether the registry holds anything for this user (a manager, a reservation or a raise). */
  holds(userId: string): boolean {
    return this.users.has(userId);
  }

  /**
   * Since when this user's managers have been at (or over) their effective
   * limit, by the injected clock; null while below it or not held.
   */
  atLimitSince(userId: string): number | null {
    const entry = this.users.get(userId);
    return entry === undefined ? null : this.settle(userId, entry);
  }

  /** Managers this user holds. */
  active(userId: string): number {
    return this.users.get(userId)?.managers.size ?? 0;
  }

  /** Managers plus reservations. */
  occupied(userId: string): number {
    const entry = this.users.get(userId);
    return entry === undefined ? 0 : entry.managers.size + entry.pending;
  }

  /** Whether one more connection fits under `limit` (default: the effective limit). */
  hasRoom(userId: string, limit: number = this.effectiveLimit(userId)): boolean {
    return this.occupied(userId) < limit;
  }

  /** Holds a slot for an upgrade in progress; `commit` or `release` it. */
  reserve(userId: string): void {
    this.entry(userId).pending++;
  }

  /** Turns a reservation into a registered manager. */
  commit(manager: Manager): void {
    const entry = this.entry(manager.userId);
    if (entry.pending > 0) entry.pending--;
    entry.managers.set(manager.id, manager);
    this.managerTotal++;
    this.settle(manager.userId, entry);
  }

  /** Gives back a reservation whose upgrade did not complete. */
  release(userId: string): void {
    const entry = this.users.get(userId);
    if (entry === undefined || entry.pending === 0) return;
    entry.pending--;
    this.forgetIfEmpty(userId, entry);
    this.hooks.slotFreed?.(userId);
  }

  /** Unregisters a manager. Returns false if it was not registered. */
  remove(manager: Manager): boolean {
    const entry = this.users.get(manager.userId);
    if (entry === undefined || !entry.managers.delete(manager.id)) return false;
    manager.removed = true;
    this.managerTotal--;
    this.settle(manager.userId, entry);
    this.forgetIfEmpty(manager.userId, entry);
    this.hooks.slotFreed?.(manager.userId);
    return true;
  }

  /** This user's managers, in registration order. */
  managersOf(userId: string): Manager[] {
    const entry = this.users.get(userId);
    return entry === undefined ? [] : [...entry.managers.values()];
  }

  /** Every manager of every user. */
  *allManagers(): IterableIterator<Manager> {
    for (const entry of this.users.values()) yield* entry.managers.values();
  }

  /** One summary per user, optionally only those at or over their limit. */
  summaries(options: { atLimit?: boolean; queued?: (userId: string) => number; max?: number } = {}): UserSummary[] {
    const out: UserSummary[] = [];
    const max = options.max ?? Number.POSITIVE_INFINITY;
    for (const [userId, entry] of this.users) {
      if (out.length >= max) break;
      const effectiveLimit = this.effectiveLimit(userId);
      const active = entry.managers.size;
      if (options.atLimit === true && active < effectiveLimit) continue;
      const since = this.settle(userId, entry);
      out.push({
        userId,
        active,
        limit: this.limit,
        effectiveLimit,
        queued: options.queued?.(userId) ?? 0,
        atLimitSince: since === null ? null : new Date(since).toISOString(),
      });
    }
    return out;
  }

  /** Users at or over their effective limit. */
  countAtLimit(): number {
    let n = 0;
    for (const [userId, entry] of this.users) if (entry.managers.size >= this.effectiveLimit(userId)) n++;
    return n;
  }

  /**
   * Raises this user's limit to `raise.limit` until `raise.until`. Replaces
   * any earlier raise (so `degrade` is idempotent).
   */
  setRaise(userId: string, raise: Raise): void {
    const entry = this.entry(userId);
    entry.raiseTimer?.();
    entry.raise = raise;
    // Does not keep the process alive (Timers.after).
    entry.raiseTimer = this.timers.after(Math.max(0, raise.until - this.clock.now()), () => this.endRaise(userId));
    this.settle(userId, entry);
    this.hooks.slotFreed?.(userId);
  }

  /** Drops every raise timer (shutdown). */
  clearTimers(): void {
    for (const entry of this.users.values()) {
      entry.raiseTimer?.();
      entry.raiseTimer = null;
    }
  }

  private endRaise(userId: string): void {
    const entry = this.users.get(userId);
    // Stryker disable next-line ConditionalExpression,LogicalOperator: unreachable (a raise's timer is cleared when it is replaced, and an entry with a raise is never forgotten); kept as a guard
    if (entry === undefined || entry.raise === null) return;
    const raise = entry.raise;
    entry.raise = null;
    entry.raiseTimer = null;
    this.settle(userId, entry);
    this.forgetIfEmpty(userId, entry);
    this.hooks.raiseEnded?.(userId, raise);
  }

  private entry(userId: string): UserEntry {
    let entry = this.users.get(userId);
    if (entry === undefined) {
      entry = { managers: new Map(), pending: 0, raise: null, raiseTimer: null, atLimitSince: null };
      this.users.set(userId, entry);
    }
    return entry;
  }

  /**
   * Brings `atLimitSince` up to date after the managers or the limit changed,
   * and returns it. Also called on reads, because a raise lapses by the clock
   * before its timer fires; a user found at the limit then is dated from the
   * read, a little late rather than a guess.
   */
  private settle(userId: string, entry: UserEntry): number | null {
    if (entry.managers.size < this.effectiveLimit(userId)) entry.atLimitSince = null;
    else entry.atLimitSince ??= this.clock.now();
    return entry.atLimitSince;
  }

  private forgetIfEmpty(userId: string, entry: UserEntry): void {
    if (entry.managers.size === 0 && entry.pending === 0 && entry.raise === null) {
      this.users.delete(userId);
      this.hooks.forgotten?.(userId);
    }
  }
}
