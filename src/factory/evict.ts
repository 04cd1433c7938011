/**
 * Taking a manager away from its user. The slot is freed at once — before the
 * socket is closed — because a client that does not read can keep its socket
 * CLOSING for `ws`'s whole close timeout (30 s); the user must not wait that
 * long for their slot.
 */
import { CLOSE_EVICTED, CLOSE_SLOW_READER } from "../contract/client.js";
import { FactoryEvent, type RemovalReason, type ZombieKind } from "../contract/events.js";
import type { EventLog } from "./log.js";
import type { Manager } from "./manager.js";
import type { FactoryMetrics } from "./metrics.js";
import type { Registry } from "./registry.js";

/** Which part of the factory removed a manager (the `rung` label of `managers_removed_total`). */
export type RemovedBy = "conservative" | "probe" | "force" | "legacy" | "heartbeat" | "backpressure";

/** Reason sent with close 1013 to an evicted client (short: close reasons are at most 123 bytes). */
export const EVICTION_CLOSE_REASON = "evicted to free a connection slot";
/** Reason sent with close 1008 to a client that did not read what it was sent. */
export const SLOW_READER_CLOSE_REASON = "not reading: too much unsent data";

const ZOMBIE_KINDS: ReadonlySet<string> = new Set<ZombieKind>(["no_pong", "socket_not_open", "send_buffer_stuck"]);

export class Evictor {
  /**
   * @param closeGraceMs how long an evicted client gets to finish the close
   *   handshake before its socket is destroyed (default in the config: 2000)
   */
  constructor(
    private readonly registry: Registry,
    private readonly log: EventLog,
    private readonly metrics: FactoryMetrics,
    private readonly closeGraceMs: number,
  ) {}

  /**
   * Unregisters `manager` and ends its socket: a zombie is terminated (it
   * would not answer a close frame), a live client evicted by `force` gets
   * close 1013 and then termination if it does not finish closing in time.
   * Returns false if the manager was already gone.
   */
  evict(manager: Manager, reason: RemovalReason, by: RemovedBy): boolean {
    if (!this.registry.remove(manager)) return false;
    manager.removal = reason;
    this.metrics.managersRemoved.inc({ rung: by, reason });
    const fields = {
      userId: manager.userId,
      managerId: manager.id,
      reason,
      managers: this.registry.active(manager.userId),
      limit: this.registry.limit,
    };
    if (ZOMBIE_KINDS.has(reason)) {
      const kind = reason as ZombieKind;
      this.metrics.zombiesDetected.inc({ kind });
      this.log.warn(FactoryEvent.zombie, { ...fields, kind }, `Zombie manager ${manager.id} of user ${manager.userId} removed (${reason})`);
    } else if (reason === "slow_reader") {
      this.log.warn(FactoryEvent.slowReader, fields, `Manager ${manager.id} of user ${manager.userId} closed: it did not read what it was sent (${manager.bufferedBytes} bytes unsent)`);
    } else if (reason === "heartbeat") {
      this.log.info(FactoryEvent.heartbeatTerminated, fields, `Manager ${manager.id} of user ${manager.userId} terminated: no pong since the last heartbeat`);
    } else {
      this.log.info(FactoryEvent.evicted, fields, `Manager ${manager.id} of user ${manager.userId} removed (${reason})`);
    }
    if (reason === "evicted") this.closeGracefully(manager, CLOSE_EVICTED, EVICTION_CLOSE_REASON);
    else if (reason === "slow_reader") this.closeGracefully(manager, CLOSE_SLOW_READER, SLOW_READER_CLOSE_REASON);
    else manager.socket.terminate();
    return true;
  }

  /** Sends a close frame with `code` and `reason`; destroys the socket if the close handshake does not end within the grace. */
  private closeGracefully(manager: Manager, code: number, reason: string): void {
    const socket = manager.socket;
    socket.close(code, reason);
    const timer = setTimeout(() => socket.terminate(), this.closeGraceMs);
    timer.unref();
    // Stryker disable next-line StringLiteral,ArrowFunction: terminating a closed socket does nothing; the timer is unref'd
    socket.once("close", () => clearTimeout(timer));
  }
}
