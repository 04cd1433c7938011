/**
 * `force`: evict the managers with the oldest inbound activity — the last
 * message their client sent. Pongs do not count here: every live tab answers
 * the probe's ping, so by pongs all live tabs look equally fresh, while the
 * tab the user has not touched longest is the one to lose. A manager whose
 * client never sent a message counts from its creation. until `freeSlots` slots are
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
    .sort((a, b) => (a.lastMessageAt ?? a.createdAt) - (b.lastMessageAt ?? b.createdAt));
  const removed: RungRemovals = [];
  for (const manager of oldestFirst.slice(0, count)) {
    if (ctx.evictor.evict(manager, "evicted", "force")) removed.push({ managerId: manager.id, reason: "evicted" });
  }
  return Promise.resolve(removed);
}
