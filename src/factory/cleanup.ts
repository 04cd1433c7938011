/**
 * The factory's own emergency cleanup, run when a user at their limit asks
 * for another connection: either the configured ladder of rungs (stopping as
 * soon as a slot is free) or, in legacy mode, the original cleanup. One run
 * per user at a time; concurrent upgrades for that user share it.
 */
import type { Clock } from "../contract/clock.js";
import { FactoryEvent, type FactoryRung } from "../contract/events.js";
import type { Evictor } from "./evict.js";
import { legacyCleanup } from "./legacy.js";
import type { EventLog } from "./log.js";
import type { FactoryMetrics } from "./metrics.js";
import type { Registry } from "./registry.js";
import { breakdown, type RungRunner } from "./rungs/runner.js";

/** `ladder`: the zombie-aware rungs. `legacy`: the original behaviour that caused the outage. */
export type CleanupMode = "ladder" | "legacy";

export class InProcessCleanup {
  private readonly inFlight = new Map<string, Promise<void>>();

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

  /** Runs (or joins) the cleanup for this user. */
  run(userId: string): Promise<void> {
    const running = this.inFlight.get(userId);
    if (running !== undefined) return running;
    const run = this.execute(userId).finally(() => this.inFlight.delete(userId));
    this.inFlight.set(userId, run);
    return run;
  }

  private async execute(userId: string): Promise<void> {
    const { registry } = this.deps;
    if (this.mode === "legacy") {
      const removed = legacyCleanup(registry, this.deps.evictor, this.deps.clock, userId);
      this.deps.metrics.cleanupRuns.inc({ rung: "legacy", trigger: "in_process" });
      this.deps.log.info(
        FactoryEvent.cleanup,
        { userId, trigger: "in_process", removed: removed.length, managers: registry.active(userId), limit: registry.limit },
        `Legacy cleanup for user ${userId} removed ${removed.length} manager(s)${breakdown(removed)} (${registry.active(userId)}/${registry.limit})`,
      );
      return;
    }
    for (const rung of this.ladder) {
      if (registry.hasRoom(userId, registry.limit)) return;
      await this.deps.runner.run(rung, userId, {}, "in_process");
    }
  }
}
