/**
 * `conservative`: the old emergency cleanup's three criteria, but on truthful
 * activity — remove managers whose inactive flag is set, that have had no
 * connection for `connectionlessMs`, or from which nothing was received for
 * `idleMs`. Costs users nothing: everything it removes is dead by its own
 * account. It cannot see zombies that still look alive; that is `probe`'s job.
 */
import type { ConservativeParams } from "../../contract/control.js";
import type { RemovalReason } from "../../contract/events.js";
import type { Manager } from "../manager.js";
import type { RungContext, RungRemovals } from "./context.js";

export function conservative(ctx: RungContext, userId: string, params: ConservativeParams): Promise<RungRemovals> {
  const now = ctx.clock.now();
  const idleMs = params.idleMs ?? ctx.defaults.idleMs;
  const connectionlessMs = params.connectionlessMs ?? ctx.defaults.connectionlessMs;
  const reasonFor = (m: Manager): RemovalReason | null => {
    if (!m.active) return "closed";
    if (m.connections === 0 && m.connectionlessSince !== null && now - m.connectionlessSince > connectionlessMs) {
      return "connectionless";
    }
    if (now - (m.lastReceivedAt ?? m.createdAt) > idleMs) return "idle";
    return null;
  };
  const removed: RungRemovals = [];
  for (const manager of ctx.registry.managersOf(userId)) {
    const reason = reasonFor(manager);
    if (reason !== null && ctx.evictor.evict(manager, reason, "conservative")) removed.push({ managerId: manager.id, reason });
  }
  return Promise.resolve(removed);
}
