/**
 * `probe`: find the zombies that look alive. Every connection of the user is
 * pinged at once; the rung returns as soon as all have answered, or after the
 * timeout. A zombie is a manager
 * - whose socket is not OPEN although the registry still holds it (a ghost:
 *   the registry/socket consistency check), or
 * - whose send buffer is at or above the threshold and did not drain at all
 *   during the probe ("stuck" means not draining, not "still large"), or
 * - that did not pong within the timeout and did not drain either. A client
 *   catching up on a backlog cannot reach the ping queued behind it in time,
 *   but every byte the socket hands to the kernel while a backlog waits is a
 *   byte the client read (its TCP window opened): that proves it alive. Nor
 *   is one the application holds back (a proxy whose upstream does not read,
 *   ADR 26): its pong waits unread behind its own frames.
 * Cost: O(this user's connections), independent of everyone else's.
 */
import type { ProbeParams } from "../../contract/control.js";
import type { Manager } from "../manager.js";
import type { RungContext, RungRemovals } from "./context.js";

export async function probe(ctx: RungContext, userId: string, params: ProbeParams): Promise<RungRemovals> {
  const timeoutMs = params.timeoutMs ?? ctx.defaults.probeTimeoutMs;
  const threshold = params.bufferThresholdBytes ?? ctx.defaults.bufferThresholdBytes;
  const removed: RungRemovals = [];
  const live: Manager[] = [];
  for (const manager of ctx.registry.managersOf(userId)) {
    if (!manager.isOpen) {
      if (ctx.evictor.evict(manager, "socket_not_open", "probe")) removed.push({ managerId: manager.id, reason: "socket_not_open" });
    } else {
      live.push(manager);
    }
  }
  const before = live.map((m) => ({ buffered: m.bufferedBytes, sent: m.bytesSent }));
  const answered = await pingAll(live, timeoutMs);
  live.forEach((manager, i) => {
    if (manager.removed) return;
    const buffered = manager.bufferedBytes;
    const start = before[i]!;
    // Bytes went to the kernel while a backlog waited: the kernel's buffer had room only because the client read.
    const drained = start.buffered > 0 && manager.bytesSent > start.sent;
    // A reader that stopped reading also cannot pong; "stuck buffer" is the more telling of the two.
    const reason =
      answered.has(manager) || drained ? null : buffered >= threshold ? "send_buffer_stuck" : manager.heldByApp ? null : "no_pong";
    if (reason !== null && ctx.evictor.evict(manager, reason, "probe")) removed.push({ managerId: manager.id, reason });
  });
  return removed;
}

/** Pings every manager at once; resolves with those that ponged, as soon as all have or at the timeout. */
function pingAll(managers: Manager[], timeoutMs: number): Promise<Set<Manager>> {
  const answered = new Set<Manager>();
  if (managers.length === 0) return Promise.resolve(answered);
  return new Promise((resolve) => {
    const listeners = new Map<Manager, () => void>();
    const done = (): void => {
      clearTimeout(timer);
      for (const [m, listener] of listeners) m.socket.off("pong", listener);
      resolve(answered);
    };
    const timer = setTimeout(done, timeoutMs);
    for (const manager of managers) {
      const listener = (): void => {
        answered.add(manager);
        manager.socket.off("pong", listener);
        listeners.delete(manager);
        if (answered.size === managers.length) done();
      };
      listeners.set(manager, listener);
      manager.socket.on("pong", listener);
      try {
        manager.socket.ping();
      } catch {
        // The socket closed between the check and the ping: it will not answer.
      }
    }
  });
}
