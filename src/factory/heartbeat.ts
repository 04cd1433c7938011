/**
 * One shared timer for every connection (not one per socket). Each sweep
 * terminates the connections that have not answered the previous sweep's ping
 * and pings the rest, so a dead peer is gone within two intervals.
 *
 * A sweep runs in slices (issue 18): it works through the connections for at
 * most `sliceMs` of CPU, then yields to the event loop (`setImmediate`) so
 * that chat traffic is served between slices; with 10,000 connections one
 * unsliced sweep blocked chat for ~500 ms. A connection that closes while a
 * sweep is under way is skipped; a sweep still running when the next is due
 * is not doubled (the tick is skipped and counted).
 *
 * In legacy mode it is the original's periodic stats job instead: no pings,
 * and a stats read that keeps every manager looking active.
 */
import type { CleanupMode } from "./cleanup.js";
import type { Evictor } from "./evict.js";
import { LEGACY_STATS_INTERVAL_MS, legacyStatsRead } from "./legacy.js";
import type { Manager } from "./manager.js";
import type { FactoryMetrics } from "./metrics.js";
import type { Registry } from "./registry.js";

/** Most CPU one slice of a sweep takes before it yields (ms). */
export const SWEEP_SLICE_MS = 5;

export interface HeartbeatOptions {
  /** CPU budget of one slice, ms (default `SWEEP_SLICE_MS`). */
  sliceMs?: number;
  /** Also end a slice after this many connections (tests use 1 to interleave every step). */
  maxPerSlice?: number;
  /** How a slice yields (default `setImmediate`). */
  yieldToLoop?: () => Promise<void>;
}

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  /** Bumped by `stop`: a sweep under way then ends at its next slice; a sweep asked for later runs whole. */
  private generation = 0;
  private readonly sliceMs: number;
  private readonly maxPerSlice: number;
  private readonly yieldToLoop: () => Promise<void>;

  /**
   * @param intervalMs time between sweeps (default in the config: 30000)
   */
  constructor(
    private readonly mode: CleanupMode,
    private readonly intervalMs: number,
    private readonly registry: Registry,
    private readonly evictor: Evictor,
    private readonly metrics: FactoryMetrics,
    options: HeartbeatOptions = {},
  ) {
    this.sliceMs = options.sliceMs ?? SWEEP_SLICE_MS;
    this.maxPerSlice = options.maxPerSlice ?? Number.POSITIVE_INFINITY;
    this.yieldToLoop = options.yieldToLoop ?? immediate;
  }

  start(): void {
    if (this.timer !== null) return;
    const every = this.mode === "legacy" ? Math.min(this.intervalMs, LEGACY_STATS_INTERVAL_MS) : this.intervalMs;
    this.timer = setInterval(() => {
      if (this.running !== null) return; // the last sweep has not finished: never two at once
      void this.sweep();
    }, every);
    this.timer.unref();
  }

  /** Stops the timer; a sweep under way ends at its next slice. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.generation++;
  }

  /** A sweep is under way. */
  get sweeping(): boolean {
    return this.running !== null;
  }

  /**
   * One pass over every connection, in slices. Resolves with how many were
   * terminated. A call while a sweep runs joins that sweep.
   */
  sweep(): Promise<number> {
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(): Promise<number> {
    let busy = 0;
    let terminated = 0;
    if (this.mode === "legacy") {
      const started = performance.now();
      legacyStatsRead(this.registry.allManagers());
      this.metrics.heartbeatSweep.observe((performance.now() - started) / 1000);
      return 0;
    }
    // The connections as the sweep starts; those that come later wait for the next sweep.
    const managers = [...this.registry.allManagers()];
    const generation = this.generation;
    let i = 0;
    while (i < managers.length && generation === this.generation) {
      const started = performance.now();
      let inSlice = 0;
      for (; i < managers.length; i++) {
        if (inSlice >= this.maxPerSlice || ((inSlice & 63) === 63 && performance.now() - started >= this.sliceMs)) break;
        inSlice++;
        if (this.visit(managers[i]!)) terminated++;
      }
      busy += performance.now() - started;
      if (i < managers.length) await this.yieldToLoop();
    }
    this.metrics.heartbeatSweep.observe(busy / 1000);
    return terminated;
  }

  /** Pings `manager`, or removes it if it did not answer the last ping. True when it was removed. */
  private visit(manager: Manager): boolean {
    if (manager.removed) return false; // gone since the sweep began
    // No pong since the last sweep; but a client that read some of a backlog since then is alive (ADR 21),
    // and one the application holds back cannot have its pong read (ADR 26).
    if (manager.awaitingPong && !manager.drainedSinceMark() && !manager.heldByApp) {
      return this.evictor.evict(manager, "heartbeat", "heartbeat");
    }
    manager.awaitingPong = true;
    manager.markProgress();
    try {
      manager.ping();
    } catch {
      // Not open any more: it cannot answer, and the next sweep removes it.
    }
    return false;
  }
}
