/**
 * `force`: evict the managers with the oldest inbound activity (a manager that
 * never sent anything counts from its creation) until `freeSlots` slots are
 * free, at most `max` of them. Each evicted client gets close 1013 with a
 * short reason. Idempotent: when the slots are already free it evicts nothing.
 */
import type { ForceParams } from "../../contract/control.js";
import type { RungContext, RungRemovals } from "./context.js";

export function force(ctx: RungContext, userId: string, params: ForceParams): Promise<RungRemovals> {
  const { registry } = ctx;
  const needed = registry.occupied(userId) - (registry.effectiveLimit(userId) - params.freeSlots);
  const count = Math.max(0, Math.min(params.max, needed));
  const oldestFirst = registry
    .managersOf(userId)
    .sort((a, b) => (a.lastReceivedAt ?? a.createdAt) - (b.lastReceivedAt ?? b.createdAt));
  const removed: RungRemovals = [];
  for (const manager of oldestFirst.slice(0, count)) {
    if (ctx.evictor.evict(manager, "evicted", "force")) removed.push({ managerId: manager.id, reason: "evicted" });
  }
  return Promise.resolve(removed);
}
