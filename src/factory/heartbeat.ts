/**
 * One shared timer for every connection (not one per socket). Each sweep
 * terminates the connections that have not answered the previous sweep's ping
 * and pings the rest, so a dead peer is gone within two intervals.
 *
 * In legacy mode it is the original's periodic stats job instead: no pings,
 * and a stats read that keeps every manager looking active.
 */
import type { CleanupMode } from "./cleanup.js";
import type { Evictor } from "./evict.js";
import { LEGACY_STATS_INTERVAL_MS, legacyStatsRead } from "./legacy.js";
import type { FactoryMetrics } from "./metrics.js";
import type { Registry } from "./registry.js";

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;

  /**
   * @param intervalMs time between sweeps (default in the config: 30000)
   */
  constructor(
    private readonly mode: CleanupMode,
    private readonly intervalMs: number,
    private readonly registry: Registry,
    private readonly evictor: Evictor,
    private readonly metrics: FactoryMetrics,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    const every = this.mode === "legacy" ? Math.min(this.intervalMs, LEGACY_STATS_INTERVAL_MS) : this.intervalMs;
    this.timer = setInterval(() => this.sweep(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass over every connection. Returns how many were terminated. */
  sweep(): number {
    const started = performance.now();
    let terminated = 0;
    if (this.mode === "legacy") {
      legacyStatsRead(this.registry.allManagers());
    } else {
      for (const manager of this.registry.allManagers()) {
        // No pong since the last sweep; but a client that read some of a backlog since then is alive (ADR 21),
        // and one the application holds back cannot have its pong read (ADR 26).
        if (manager.awaitingPong && !manager.drainedSinceMark() && !manager.heldByApp) {
          if (this.evictor.evict(manager, "heartbeat", "heartbeat")) terminated++;
          continue;
        }
        manager.awaitingPong = true;
        manager.markProgress();
        try {
          manager.socket.ping();
        } catch {
          // Not open any more: it cannot answer, and the next sweep removes it.
        }
      }
    }
    this.metrics.heartbeatSweep.observe((performance.now() - started) / 1000);
    return terminated;
  }
}
