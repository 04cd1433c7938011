/**
 * Who the factory is turning away: per user, when it last refused one of
 * their upgrades for want of a slot, and how many it refused since it began
 * the user's record. "At the limit" is not "locked out"; a refusal is. The
 * control API shows this (`lastRefusedAt`, `refusals`) so that the operator's
 * sweep acts only for users who asked for a slot and did not get one.
 *
 * Memory is bounded: a record lives while the registry holds the user (a
 * manager, a reservation or a raise) or while their last refusal is younger
 * than `retentionMs`. Records of users refused within `retentionMs` are at
 * most `maxRecent`; older ones exist only for users the registry holds. So
 * there are at most `registry.userCount + maxRecent` records. Pruning runs
 * on every record and read (the oldest refusal first, so each step is
 * amortised O(1)); no timer is needed.
 */
import type { Clock } from "../contract/clock.js";
import { REFUSAL_RETENTION_MS } from "../contract/control.js";

/** One user's refusals. Times are ms since the epoch on the factory's clock. */
export interface RefusalRecord {
  lastRefusedAt: number;
  /** Refusals since the record began (its first refusal included). */
  refusals: number;
}

/** Bounds of the tracker; every field has a default. */
export interface RefusalTrackerOptions {
  /** How long a record outlives its last refusal once the registry holds nothing for the user (default 3600000, `REFUSAL_RETENTION_MS`). */
  retentionMs?: number;
  /** Most records of users refused within `retentionMs` (default 100000); beyond it the oldest refusal is forgotten first. */
  maxRecent?: number;
}

/** Default of `RefusalTrackerOptions.maxRecent`. */
export const DEFAULT_MAX_RECENT_REFUSALS = 100_000;

export class RefusalTracker {
  /** Refused within `retentionMs`, oldest refusal first (a refusal moves its user to the end). */
  private readonly recent = new Map<string, RefusalRecord>();
  /** Refused longer ago, kept only while the registry holds the user. */
  private readonly kept = new Map<string, RefusalRecord>();
  private readonly retentionMs: number;
  private readonly maxRecent: number;

  /**
   * @param clock the factory's clock
   * @param holds does the registry hold anything for this user now?
   */
  constructor(
    private readonly clock: Clock,
    private readonly holds: (userId: string) => boolean,
    options: RefusalTrackerOptions = {},
  ) {
    this.retentionMs = options.retentionMs ?? REFUSAL_RETENTION_MS;
    this.maxRecent = options.maxRecent ?? DEFAULT_MAX_RECENT_REFUSALS;
    if (!Number.isInteger(this.retentionMs) || this.retentionMs < 1) {
      throw new TypeError(`RefusalTracker: retentionMs must be a positive integer of ms, got ${String(options.retentionMs)}`);
    }
    if (!Number.isInteger(this.maxRecent) || this.maxRecent < 1) {
      throw new TypeError(`RefusalTracker: maxRecent must be a positive integer, got ${String(options.maxRecent)}`);
    }
  }

  /** Records a refused upgrade of this user, now. */
  record(userId: string): void {
    const now = this.clock.now();
    const prior = this.recent.get(userId) ?? this.kept.get(userId);
    this.recent.delete(userId);
    this.kept.delete(userId);
    this.recent.set(userId, { lastRefusedAt: now, refusals: (prior?.refusals ?? 0) + 1 });
    this.prune(now);
  }

  /** This user's record, or null when none is kept. */
  of(userId: string): RefusalRecord | null {
    this.prune(this.clock.now());
    return this.recent.get(userId) ?? this.kept.get(userId) ?? null;
  }

  /** The registry dropped this user: an old record has nothing left to keep it. A recent one stays until `retentionMs` passes. */
  forgotten(userId: string): void {
    this.kept.delete(userId);
  }

  /** Records kept now (after pruning). */
  get size(): number {
    this.prune(this.clock.now());
    return this.recent.size + this.kept.size;
  }

  private prune(now: number): void {
    for (const [userId, record] of this.recent) {
      const stale = now - record.lastRefusedAt >= this.retentionMs;
      if (!stale && this.recent.size <= this.maxRecent) break;
      // Deleting the current entry while iterating a Map is safe: iteration goes on with the next.
      this.recent.delete(userId);
      if (this.holds(userId)) this.kept.set(userId, record);
    }
  }
}
