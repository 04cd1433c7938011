/**
 * Runs one rung for one user — the single entry point used by the in-process
 * ladder and by the control API — and accounts for it: parameter validation,
 * timing, metrics, the `factory.cleanup` log line and the `RungResult`.
 */
import { RungParams, type RungResult } from "../../contract/control.js";
import { FactoryEvent, type CleanupTrigger, type FactoryRung } from "../../contract/events.js";
import type { EventLog } from "../log.js";
import type { RungContext, RungRemovals } from "./context.js";
import { conservative } from "./conservative.js";
import { degrade } from "./degrade.js";
import { force } from "./force.js";
import { probe } from "./probe.js";

export class RungRunner {
  constructor(
    private readonly ctx: RungContext,
    private readonly log: EventLog,
    /** Would a new connection for this user be admitted now (no queue ahead of it)? */
    private readonly wouldAdmit: (userId: string) => boolean,
  ) {}

  /**
   * Validates `params` against the rung's schema (throws a `ZodError` or a
   * `RungParamError` when they are bad) and runs the rung. Its lines go to
   * `log` (default: the factory's; the in-process cleanup passes the per-user
   * rate-limited one of `refusal-log.ts`).
   */
  async run(rung: FactoryRung, userId: string, params: unknown, trigger: CleanupTrigger, log: EventLog = this.log): Promise<RungResult> {
    const started = performance.now();
    const removed = await this.dispatch(rung, userId, params);
    const durationMs = performance.now() - started;
    const { registry, metrics } = this.ctx;
    metrics.cleanupRuns.inc({ rung, trigger });
    if (rung === "probe") metrics.probeDuration.observe(durationMs / 1000);
    const raise = registry.raiseOf(userId);
    const result: RungResult = {
      rung,
      userId,
      removed,
      remaining: registry.active(userId),
      limit: registry.limit,
      effectiveLimit: registry.effectiveLimit(userId),
      degradedUntil: raise === null ? null : new Date(raise.until).toISOString(),
      admit: this.wouldAdmit(userId),
      durationMs,
      managerIds: registry.managersOf(userId).map((m) => m.id),
    };
    log.info(
      FactoryEvent.cleanup,
      {
        userId,
        rung,
        trigger,
        removed: removed.length,
        managers: result.remaining,
        limit: result.limit,
        effectiveLimit: result.effectiveLimit,
      },
      `Cleanup rung ${rung} for user ${userId} removed ${removed.length} manager(s)${breakdown(removed)} (${result.remaining}/${result.effectiveLimit})`,
    );
    if (rung === "degrade") {
      log.warn(
        FactoryEvent.degraded,
        { userId, managers: result.remaining, limit: result.limit, effectiveLimit: result.effectiveLimit },
        `User ${userId} limit raised to ${result.effectiveLimit} until ${result.degradedUntil}`,
      );
    }
    return result;
  }

  private dispatch(rung: FactoryRung, userId: string, params: unknown): Promise<RungRemovals> {
    switch (rung) {
      case "conservative":
        return conservative(this.ctx, userId, RungParams.conservative.parse(params));
      case "probe":
        return probe(this.ctx, userId, RungParams.probe.parse(params));
      case "force":
        return force(this.ctx, userId, RungParams.force.parse(params));
      case "degrade":
        return degrade(this.ctx, userId, RungParams.degrade.parse(params));
    }
  }
}

/** ` [10 no_pong, 2 socket_not_open]`, or nothing when nothing was removed. */
export function breakdown(removed: RungRemovals): string {
  if (removed.length === 0) return "";
  const counts = new Map<string, number>();
  for (const r of removed) counts.set(r.reason, (counts.get(r.reason) ?? 0) + 1);
  return ` [${[...counts].map(([reason, n]) => `${n} ${reason}`).join(", ")}]`;
}
