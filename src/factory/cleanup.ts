/**
 * The factory's own emergency cleanup, run when a user at their limit asks
 * for another connection: either the configured ladder of rungs (stopping as
 * soon as a slot is free) or, in legacy mode, the original cleanup. One run
 * per user at a time; concurrent upgrades for that user share it.
 *
 * Degrade ends (issue 12, item 8): an in-process `degrade` never extends a
 * raise in force, and gives a user at most one raise per `ttl` followed by
 * as long without one; a user who keeps reconnecting is refused once it is
 * over (and the operator, which sees the refusals, takes it from there).
 */
import type { Clock } from "../contract/clock.js";
import { DegradeParams } from "../contract/control.js";
import { FactoryEvent, type FactoryRung } from "../contract/events.js";
import type { Evictor } from "./evict.js";
import { legacyCleanup } from "./legacy.js";
import type { EventLog } from "./log.js";
import type { FactoryMetrics } from "./metrics.js";
import type { Registry } from "./registry.js";
import { breakdown, type RungRunner } from "./rungs/runner.js";

/** `ladder`: the zombie-aware rungs. `legacy`: the original behaviour that caused the outage. */
export type CleanupMode = "ladder" | "legacy";

/** Users remembered for the in-process degrade's cooldown, at most (oldest forgotten first). */
export const MAX_DEGRADE_MEMORY = 100_000;

export class InProcessCleanup {
  private readonly inFlight = new Map<string, Promise<void>>();
  /** When the in-process `degrade` last raised each user's limit, oldest first. */
  private readonly raisedAt = new Map<string, number>();
  /** An in-process raise lasts this long (the rung's default ttl)... */
  private readonly raiseMs = DegradeParams.parse({}).ttlMs;

  constructor(
    private readonly mode: CleanupMode,
    private readonly ladder: readonly FactoryRung[],
    private readonly deps: {
      registry: Registry;
      evictor: Evictor;
      runner: RungRunner;
      clock: Clock;
      metrics: FactoryMetrics;
      log: EventLog;
    },
  ) {}

  /**
   * Runs (or joins) the cleanup for this user, writing its lines to `log`
   * (default: the factory's; admission passes the per-user rate-limited one).
   * A run that is joined keeps the log of the attempt that started it.
   */
  run(userId: string, log: EventLog = this.deps.log): Promise<void> {
    const running = this.inFlight.get(userId);
    if (running !== undefined) return running;
    const run = this.execute(userId, log).finally(() => this.inFlight.delete(userId));
    this.inFlight.set(userId, run);
    return run;
  }

  private async execute(userId: string, log: EventLog): Promise<void> {
    const { registry } = this.deps;
    if (this.mode === "legacy") {
      const removed = legacyCleanup(registry, this.deps.evictor, this.deps.clock, userId);
      this.deps.metrics.cleanupRuns.inc({ rung: "legacy", trigger: "in_process" });
      log.info(
        FactoryEvent.cleanup,
        { userId, trigger: "in_process", removed: removed.length, managers: registry.active(userId), limit: registry.limit },
        `Legacy cleanup for user ${userId} removed ${removed.length} manager(s)${breakdown(removed)} (${registry.active(userId)}/${registry.limit})`,
      );
      return;
    }
    for (const rung of this.ladder) {
      if (registry.hasRoom(userId, registry.limit)) return;
      if (rung === "degrade" && !this.mayRaise(userId)) continue;
      await this.deps.runner.run(rung, userId, {}, "in_process", log);
    }
  }

  /** May the in-process ladder raise this user's limit now? Records the raise when it may. */
  private mayRaise(userId: string): boolean {
    const now = this.deps.clock.now();
    // ...and is followed by as long without one.
    const cooldown = 2 * this.raiseMs;
    for (const [user, at] of this.raisedAt) {
      if (now - at < cooldown && this.raisedAt.size <= MAX_DEGRADE_MEMORY) break;
      this.raisedAt.delete(user);
    }
    if (this.deps.registry.raiseOf(userId) !== null) return false;
    const last = this.raisedAt.get(userId);
    if (last !== undefined && now - last < cooldown) return false;
    this.raisedAt.delete(userId);
    this.raisedAt.set(userId, now);
    return true;
  }
}
