/**
 * `probe`: find the zombies that look alive. Every connection of the user is
 * pinged at once. Each waits for its pong as long as its own round trips
 * say (ADR 28: a φ accrual deadline over the pongs it has answered, between
 * `--probe-floor` and the ceiling `--probe-timeout`; a connection with no
 * history waits the ceiling); the rung returns as soon as every connection
 * has answered or passed its own deadline. A zombie is a manager
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
  const ceilingMs = params.timeoutMs ?? ctx.defaults.probeTimeoutMs;
  const floorMs = Math.min(ctx.defaults.probeFloorMs, ceilingMs);
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
  const before = live.map((m) => m.sendProgress());
  const stretch = ctx.rttTail?.stretch() ?? 1;
  const deadlines = live.map((m) => m.rtt.deadline(ctx.defaults.probeDeadline, floorMs, ceilingMs, stretch));
  const answered = await pingAll(live, deadlines);
  live.forEach((manager, i) => {
    // Stryker disable next-line ConditionalExpression: evicting a removed manager returns false and adds nothing
    if (manager.removed) return;
    const buffered = manager.bufferedBytes;
    // Bytes went to the kernel while a backlog waited: the kernel's buffer had room only because the client read.
    const drained = manager.drainedSince(before[i]!);
    // A reader that stopped reading also cannot pong; "stuck buffer" is the more telling of the two.
    const reason =
      answered.has(manager) || drained ? null : buffered >= threshold ? "send_buffer_stuck" : manager.heldByApp ? null : "no_pong";
    if (reason !== null && ctx.evictor.evict(manager, reason, "probe")) removed.push({ managerId: manager.id, reason });
  });
  return removed;
}

/**
 * Pings every manager at once; resolves with those that ponged, as soon as
 * each has either answered or passed its own deadline (ms from now). A pong
 * that comes after its own deadline while the rung still waits for others
 * counts: the deadline ends the wait, it does not refuse an answer. Nor
 * does a late event loop: a pong already received by the kernel when a
 * deadline passes is read before the deadline is judged.
 */
export function pingAll(managers: readonly Manager[], deadlinesMs: readonly number[]): Promise<Set<Manager>> {
  const answered = new Set<Manager>();
  if (managers.length === 0) return Promise.resolve(answered);
  return new Promise((resolve) => {
    const started = performance.now();
    const listeners = new Map<Manager, () => void>();
    // Those still waiting, with their deadlines, latest last.
    const waiting = new Map<Manager, number>(managers.map((m, i) => [m, deadlinesMs[i]!]));
    let timer: NodeJS.Timeout | null = null;
    const finish = (): void => {
      // Stryker disable next-line ConditionalExpression,EqualityOperator: a timer left running wakes settle() into a second finish, a no-op
      if (timer !== null) clearTimeout(timer);
      for (const [m, listener] of listeners) m.socket.off("pong", listener);
      listeners.clear();
      resolve(answered);
    };
    /**
     * Drops those whose deadline has passed; finishes when nobody waits; else
     * sleeps until the next deadline. The timer wakes it through
     * `setImmediate`, i.e. after one poll of the sockets: a pong that reached
     * the kernel by the deadline while this event loop was busy (a GC pause,
     * a burst of upgrades) is read, and counts, before anyone is judged.
     */
    const settle = (): void => {
      const elapsed = performance.now() - started;
      // Stryker disable next-line EqualityOperator: a deadline met to the fraction of a millisecond; the next wake-up drops it
      for (const [m, deadline] of waiting) if (deadline <= elapsed) waiting.delete(m);
      if (waiting.size === 0) return finish();
      // Stryker disable next-line ConditionalExpression,EqualityOperator: one timer is armed at a time (settle runs from it or once at the start)
      if (timer !== null) clearTimeout(timer);
      const next = Math.min(...waiting.values());
      // Stryker disable next-line ArithmeticOperator: when the wait ends is time alone (bench/probe, bench/adaptive measure it)
      timer = setTimeout(() => setImmediate(settle), Math.max(1, Math.ceil(next - elapsed)));
    };
    for (const manager of managers) {
      const listener = (): void => {
        // Past its own deadline but before the rung ends (it waits for others): still an answer, not a zombie.
        answered.add(manager);
        waiting.delete(manager);
        manager.socket.off("pong", listener);
        listeners.delete(manager);
        if (waiting.size === 0) finish();
      };
      listeners.set(manager, listener);
      manager.socket.on("pong", listener);
      try {
        manager.ping();
      } catch {
        // The socket closed between the check and the ping: it will not answer.
      }
    }
    // Stryker disable next-line ConditionalExpression,EqualityOperator: with nobody waiting, settle() finishes, as the last pong did
    if (waiting.size > 0) settle();
  });
}
