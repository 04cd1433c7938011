/**
 * The original factory's emergency cleanup, kept to reproduce the outage
 * (`--cleanup legacy`). It removed a manager only if it was *clearly* dead:
 * its active flag was off, it had had no connection for 10 s (which cannot
 * happen here: a closed socket's manager leaves the registry, or with
 * `leak-on-close` keeps its flag), or its last activity was older than 10 s. But reading a manager's stats — which this
 * cleanup did first, to count managers, and which a periodic stats job did
 * every few seconds — refreshed that "last activity", as did every send, even
 * a failed one. So zombies always looked active and nothing was freed.
 */
import type { Clock } from "../contract/clock.js";
import type { Removal } from "../contract/control.js";
import type { RemovalReason } from "../contract/events.js";
import type { Evictor } from "./evict.js";
import type { Manager } from "./manager.js";
import type { Registry } from "./registry.js";

/** The original cleanup's cutoffs. */
export const LEGACY_CUTOFF_MS = 10_000;
/** The original periodic stats read ran more often than the cutoff, which kept every manager "active". */
export const LEGACY_STATS_INTERVAL_MS = 5_000;

/** Reads every manager's stats the way the original did (refreshing their activity). */
export function legacyStatsRead(managers: Iterable<Manager>): number {
  let n = 0;
  for (const manager of managers) {
    manager.legacyStats();
    n++;
  }
  return n;
}

/** The original emergency cleanup for one user. */
export function legacyCleanup(registry: Registry, evictor: Evictor, clock: Clock, userId: string): Removal[] {
  const managers = registry.managersOf(userId);
  legacyStatsRead(managers);
  const now = clock.now();
  const reasonFor = (m: Manager): RemovalReason | null => {
    if (!m.active) return "closed";
    if (now - m.lastActivityAt > LEGACY_CUTOFF_MS) return "idle";
    return null;
  };
  const removed: Removal[] = [];
  for (const manager of managers) {
    const reason = reasonFor(manager);
    if (reason !== null && evictor.evict(manager, reason, "legacy")) removed.push({ managerId: manager.id, reason });
  }
  return removed;
}
