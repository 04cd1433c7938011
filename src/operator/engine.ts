/**
 * The decision stage of the pipeline: a matched entry goes to the detector;
 * a trigger goes through the guards; then either an incident is opened and
 * PERSISTED before anything acts on it, or the suppression is counted on the
 * key's open or latest incident (never one record per log line).
 *
 * The same engine runs live (the actor starts the ladder) and in replay (the
 * actor only records the plan), so replay gives the answers live would.
 */
import type { Clock } from "../contract/clock.js";
import type { Detector, Trigger } from "./detector.js";
import type { LogEvent } from "./event.js";
import { checkGuards, type GuardState } from "./guards.js";
import { close, decide, newIncident, noteSuppressed } from "./incidents/record.js";
import { FINAL_STATUSES, type Incident, type SuppressReason } from "./incidents/model.js";
import type { IncidentStore } from "./incidents/store.js";
import { OperatorEvent, type OperatorLog } from "./log.js";
import type { OperatorMetrics } from "./metrics.js";
import type { CompiledRule } from "./rules/compile.js";
import type { Target, TargetResolver } from "./target.js";

/** What happens to an incident that passed every guard. */
export interface Actor {
  /** Called after the incident was persisted; must not throw. */
  act(incident: Incident, rule: CompiledRule, target: Target | null): void;
}

export interface EngineDeps {
  detector: Detector;
  guards: GuardState;
  store: IncidentStore;
  /** The targets to act on; null in replay (nothing is called). */
  targets: TargetResolver | null;
  actor: Actor;
  /** "Now" for guards and records: the wall clock live, the event-time watermark in replay. */
  clock: Clock;
  metrics: OperatorMetrics;
  log: OperatorLog;
  /** `--dry-run`: act on nothing, record everything. */
  dryRun: boolean;
}

/** How one trigger ended, for tests and replay reports. */
export type TriggerOutcome = { acted: Incident } | { suppressed: SuppressReason; incident: Incident | null };

export class Engine {
  /** Incidents being remediated, by id: the objects the ladder is changing. */
  readonly active = new Map<string, Incident>();
  private rules: readonly CompiledRule[] = [];

  constructor(private readonly deps: EngineDeps) {}

  /** Replaces the rule set (hot reload); windows of removed rules are dropped. */
  setRules(rules: readonly CompiledRule[]): void {
    this.rules = rules;
    this.deps.detector.retain(new Set(rules.map((r) => r.name)));
  }

  get ruleSet(): readonly CompiledRule[] {
    return this.rules;
  }

  /** One entry through every rule. Resolves once any resulting incident is persisted. */
  async handle(event: LogEvent): Promise<TriggerOutcome[]> {
    const outcomes: TriggerOutcome[] = [];
    for (const rule of this.rules) {
      const match = rule.match(event);
      if (match === null) continue;
      this.deps.metrics.ruleMatches.inc({ rule: rule.name });
      const observed = this.deps.detector.observe(rule, event, match);
      if (observed === null) continue;
      if (typeof observed === "string") {
        this.deps.metrics.entriesDropped.inc({ rule: rule.name, reason: observed });
        continue;
      }
      outcomes.push(await this.onTrigger(observed));
    }
    return outcomes;
  }

  /** A trigger: guards, then an incident or a counted suppression. */
  async onTrigger(trigger: Trigger): Promise<TriggerOutcome> {
    const { deps } = this;
    const now = deps.clock.now();
    const verdict = checkGuards({ trigger, now, globalDryRun: deps.dryRun }, deps.guards);
    let reason = verdict.reason;
    let target: Target | null = null;
    if (reason === null && deps.targets !== null) {
      target = await deps.targets.resolve({ userId: trigger.userId, pod: trigger.pod, namespace: trigger.namespace });
      if (target === null) reason = "no_target";
    }
    // A replica that is not the leader writes nothing at all, not even a suppression.
    if (reason === "not_leader") {
      deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason });
      return { suppressed: reason, incident: null };
    }
    if (reason !== null && reason !== "dry_run") return this.suppress(trigger, reason, now);

    const dryRun = reason === "dry_run";
    const incident = newIncident(trigger, {
      now,
      control: target?.control.baseUrl ?? "(none)",
      dryRun,
      status: dryRun ? "suppressed" : "open",
    });
    decide(incident, "guards_passed", `guards passed: ${verdict.passed.join(", ") || "none"}`, now);
    if (dryRun) {
      const plan = trigger.rule.rule.spec.ladder.map((r) => r.rung).join(" → ");
      close(incident, "suppressed", now, `dry run: would run ${plan}`);
      noteSuppressed(incident, "dry_run", now);
    }
    try {
      await deps.store.save(incident);
    } catch (err) {
      // Never act without a record.
      deps.metrics.storeErrors.inc();
      deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason: "store_unavailable" });
      deps.log.error(
        OperatorEvent.storeError,
        { rule: trigger.rule.name, userId: trigger.userId },
        `Cannot record an incident for ${trigger.keyString}; NOT acting: ${err instanceof Error ? err.message : String(err)}`,
      );
      return { suppressed: "store_unavailable", incident: null };
    }
    deps.guards.opened(incident, now);
    if (dryRun) {
      deps.guards.closed(incident, trigger.rule.rule.spec.guards.circuitBreaker.failures);
      deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason: "dry_run" });
      deps.metrics.incidents.inc({ status: "suppressed" });
      return { suppressed: "dry_run", incident };
    }
    deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "acted", reason: "none" });
    deps.metrics.incidents.inc({ status: "open" });
    deps.log.warn(
      OperatorEvent.incidentOpened,
      { incident: incident.id, rule: incident.rule, userId: incident.target.userId, pod: incident.target.pod },
      `Incident ${incident.id} opened: ${incident.title}`,
    );
    this.active.set(incident.id, incident);
    deps.actor.act(incident, trigger.rule, target);
    return { acted: incident };
  }

  /** The ladder of an incident ended (or stopped): it is no longer active. */
  release(incident: Incident): void {
    if (FINAL_STATUSES.has(incident.status)) this.active.delete(incident.id);
  }

  private async suppress(trigger: Trigger, reason: SuppressReason, now: number): Promise<TriggerOutcome> {
    const { deps } = this;
    deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason });
    const latestId = deps.guards.latestIncident(trigger.rule.name, trigger.keyString);
    let incident: Incident | null = latestId === null ? null : (this.active.get(latestId) ?? (await deps.store.get(latestId)));
    if (incident === null) {
      // Nothing to count it on: one record for this key says it was not acted on, and why.
      incident = newIncident(trigger, { now, control: "(none)", dryRun: false, status: "suppressed" });
      close(incident, "suppressed", now, `not acted on: ${reason}`);
      deps.guards.opened(incident, now);
      deps.guards.closed(incident, trigger.rule.rule.spec.guards.circuitBreaker.failures);
    }
    noteSuppressed(incident, reason, now);
    deps.log.info(
      OperatorEvent.suppressed,
      { incident: incident.id, rule: trigger.rule.name, userId: trigger.userId, reason },
      `Trigger for ${trigger.keyString} suppressed (${reason})`,
    );
    try {
      await deps.store.save(incident);
    } catch (err) {
      deps.metrics.storeErrors.inc();
      deps.log.error(OperatorEvent.storeError, { incident: incident.id }, `Cannot record a suppression on ${incident.id}: ${String(err)}`);
    }
    return { suppressed: reason, incident };
  }
}
