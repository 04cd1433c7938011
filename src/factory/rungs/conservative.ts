/**
 * `conservative`: the old emergency cleanup's criteria, but on truthful
 * activity — remove managers whose inactive flag is set, or from which
 * nothing was received for `idleMs`. (The old "no connection for 10 s" test
 * cannot fire here: a manager leaves the registry when its socket closes.) Costs users nothing: everything it removes is dead by its own
 * account. It cannot see zombies that still look alive; that is `probe`'s job.
 */
import type { ConservativeParams } from "../../contract/control.js";
import type { RemovalReason } from "../../contract/events.js";
import type { Manager } from "../manager.js";
import type { RungContext, RungRemovals } from "./context.js";

export function conservative(ctx: RungContext, userId: string, params: ConservativeParams): Promise<RungRemovals> {
  const now = ctx.clock.now();
  const idleMs = params.idleMs ?? ctx.defaults.idleMs;
  const reasonFor = (m: Manager): RemovalReason | null => {
    if (!m.active) return "closed";
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
