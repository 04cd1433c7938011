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
 * is not doubled (the tick is skipped).
 *
 * The timer's sweeps are also paced (ADR 32): each connection has a phase
 * of its own, fixed for its life, and a sweep visits it at that phase of
 * the first `spread` of the interval (half of it by default), in ticks of
 * `PACE_TICK_MS`. So the pings, and the pongs they bring back, come a few
 * at a time instead of all at once: chat never waits behind thousands of
 * them, and the round trip a pong measures is the client's, not the time it
 * queued behind every other pong of the sweep (which made the adaptive
 * probe's deadlines ~10x too long at 1,000 connections). Two visits of a
 * connection are one interval apart, whoever else came or left between.
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
/** Time between two ticks of a paced sweep (ms): its spread is cut into buckets this long. */
export const PACE_TICK_MS = 10;
/** Part of the interval over which the timer's sweeps spread their visits (default of `spread`). */
export const SWEEP_SPREAD = 0.5;

export interface HeartbeatOptions {
  /** CPU budget of one slice, ms (default `SWEEP_SLICE_MS`). */
  sliceMs?: number;
  /** Also end a slice after this many connections (tests use 1 to interleave every step). */
  maxPerSlice?: number;
  /** How a slice yields (default `setImmediate`). */
  yieldToLoop?: () => Promise<void>;
  /** Part of the interval, in [0, 0.9], over which the timer's sweeps spread their visits (default `SWEEP_SPREAD`; 0: all at once, in slices). */
  spread?: number;
  /** A paced sweep's clock (ms; default `performance.now`). */
  now?: () => number;
  /** How a paced sweep waits for its next tick (default an unref'd `setTimeout`). */
  sleep?: (ms: number) => Promise<void>;
}

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const timeout = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());
/** A promise and what settles it (Promise.withResolvers is Node 22). */
function latch(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
/** The golden ratio's fractional part: the phases n·φ mod 1 of connections 0, 1, 2, … fill [0, 1) evenly at every n. */
const GOLDEN = (Math.sqrt(5) - 1) / 2;

export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  /** Bumped by `stop`: a sweep under way then ends at its next slice; a sweep asked for later runs whole. */
  private generation = 0;
  private readonly sliceMs: number;
  private readonly maxPerSlice: number;
  private readonly yieldToLoop: () => Promise<void>;
  private readonly spread: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Each connection's phase in [0, 1), given when a sweep first meets it, kept for its life. */
  private readonly phases = new WeakMap<Manager, number>();
  private phasesGiven = 0;
  /** Settles when `stop` is called: a paced sweep waiting for its next tick ends then, not at the tick. */
  private stopped = latch();

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
    const spread = options.spread ?? SWEEP_SPREAD;
    if (!(spread >= 0 && spread <= 0.9)) throw new RangeError(`heartbeat spread must be in [0, 0.9], got ${spread}`);
    this.spread = spread;
    this.now = options.now ?? ((): number => performance.now());
    this.sleep = options.sleep ?? timeout;
  }

  start(): void {
    if (this.timer !== null) return;
    const every = this.mode === "legacy" ? Math.min(this.intervalMs, LEGACY_STATS_INTERVAL_MS) : this.intervalMs;
    this.timer = setInterval(() => {
      if (this.running !== null) return; // the last sweep has not finished: never two at once
      void this.sweep(this.spread * this.intervalMs);
    }, every);
    this.timer.unref();
  }

  /** Stops the timer; a sweep under way ends at its next slice. */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.generation++;
    this.stopped.resolve();
    this.stopped = latch();
  }

  /** A sweep is under way. */
  get sweeping(): boolean {
    return this.running !== null;
  }

  /**
   * One pass over every connection, in slices. Resolves with how many were
   * terminated. A call while a sweep runs joins that sweep. With `spreadMs`
   * the pass is paced: each connection is visited at its own phase of the
   * next `spreadMs` (the timer's sweeps); without, as fast as the slices go.
   */
  sweep(spreadMs = 0): Promise<number> {
    this.running ??= this.run(spreadMs).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** The phase `manager` is visited at in a paced sweep, in [0, 1): given the first time it is asked, kept for its life. */
  phaseOf(manager: Manager): number {
    let phase = this.phases.get(manager);
    if (phase === undefined) {
      phase = (this.phasesGiven++ * GOLDEN) % 1;
      this.phases.set(manager, phase);
    }
    return phase;
  }

  private async run(spreadMs: number): Promise<number> {
    if (this.mode === "legacy") {
      const started = performance.now();
      legacyStatsRead(this.registry.allManagers());
      this.metrics.heartbeatSweep.observe((performance.now() - started) / 1000);
      return 0;
    }
    // The connections as the sweep starts; those that come later wait for the next sweep.
    const managers = [...this.registry.allManagers()];
    const generation = this.generation;
    const ticks = Math.floor(spreadMs / PACE_TICK_MS);
    const pass = { busy: 0, terminated: 0 };
    if (ticks < 2) {
      await this.visitAll(managers, generation, pass);
    } else {
      // Bucket b is visited PACE_TICK_MS·b after the start, a connection in the bucket of its phase.
      const buckets = new Map<number, Manager[]>();
      for (const m of managers) {
        const b = Math.floor(this.phaseOf(m) * ticks);
        const bucket = buckets.get(b);
        if (bucket === undefined) buckets.set(b, [m]);
        else bucket.push(m);
      }
      const start = this.now();
      const stopped = this.stopped.promise;
      for (const b of [...buckets.keys()].sort((x, y) => x - y)) {
        const wait = start + b * PACE_TICK_MS - this.now();
        if (wait > 0) await Promise.race([this.sleep(wait), stopped]);
        if (generation !== this.generation) break;
        await this.visitAll(buckets.get(b)!, generation, pass);
      }
    }
    this.metrics.heartbeatSweep.observe(pass.busy / 1000);
    return pass.terminated;
  }

  /** Visits `managers` in slices of at most `sliceMs` of CPU, until done or the heartbeat stops. */
  private async visitAll(managers: readonly Manager[], generation: number, pass: { busy: number; terminated: number }): Promise<void> {
    let i = 0;
    while (i < managers.length && generation === this.generation) {
      const started = performance.now();
      let inSlice = 0;
      for (; i < managers.length; i++) {
        if (inSlice >= this.maxPerSlice || ((inSlice & 63) === 63 && performance.now() - started >= this.sliceMs)) break;
        inSlice++;
        if (this.visit(managers[i]!)) pass.terminated++;
      }
      pass.busy += performance.now() - started;
      if (i < managers.length) await this.yieldToLoop();
    }
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
