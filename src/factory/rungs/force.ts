/**
 * `force`: evict the least recently USED managers — by the last chat message
 * their client sent (`countsAsUse`). Pongs and keepalives do not count: every
 * live tab answers pings and browsers send keepalives, so by those all live
 * tabs look equally fresh, while the tab the user has not typed in longest is
 * the one to lose. A manager whose client never chatted counts from its
 * creation. It evicts until `freeSlots` slots are free, at most `max` of
 * them — and if `max` cannot free that many, it evicts NONE: closing live
 * tabs without making room (a user left above the normal limit when a raise
 * ended) hurts the user and admits nobody. Each evicted client gets close
 * 1013 with a short reason. Idempotent: when the slots are already free it
 * evicts nothing.
 */
import type { ForceParams } from "../../contract/control.js";
import type { RungContext, RungRemovals } from "./context.js";

export function force(ctx: RungContext, userId: string, params: ForceParams): Promise<RungRemovals> {
  const { registry } = ctx;
  const needed = registry.occupied(userId) - (registry.effectiveLimit(userId) - params.freeSlots);
  const count = needed > 0 && needed <= params.max ? needed : 0;
  const oldestFirst = registry
    .managersOf(userId)
    .sort((a, b) => (a.lastUsedAt ?? a.createdAt) - (b.lastUsedAt ?? b.createdAt));
  const removed: RungRemovals = [];
  for (const manager of oldestFirst.slice(0, count)) {
    if (ctx.evictor.evict(manager, "evicted", "force")) removed.push({ managerId: manager.id, reason: "evicted" });
  }
  return Promise.resolve(removed);
}
