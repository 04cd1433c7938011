/**
 * The decision stage of the pipeline: a matched entry goes to the detector;
 * a trigger goes through the guards; then either an incident is opened and
 * PERSISTED before anything acts on it, or the suppression is counted on the
 * key's open or latest incident (never one record per log line). A key with
 * no incident that a rule-wide guard stops is listed in the hour's rollup
 * record of its rule and reason (ADR 12), written by `flush()`.
 *
 * The same engine runs live (the actor starts the ladder) and in replay (the
 * actor only records the plan), so replay gives the answers live would.
 */
import { systemTimers, type Clock, type Timers } from "../../contract/clock.js";
import type { Detector, Trigger } from "../detect/detector.js";
import type { LogEvent } from "../sources/event.js";
import { checkGuards, isDryRun, type GuardState, type Reservation } from "./guards.js";
import { close, decide, newIncident, noteHold, noteSuppressed } from "../incidents/record.js";
import type { Admission } from "../../contract/control.js";
import { FINAL_STATUSES, type Incident, type SuppressReason } from "../incidents/model.js";
import { ROLLED_UP_REASONS } from "../incidents/rollup.js";
import { IncidentStoreErrorCode, type IncidentStore } from "../incidents/store.js";
import { errorText, OperatorEvent, type OperatorLog } from "../log-event.js";
import type { OperatorMetrics } from "../metrics.js";
import type { CompiledRule } from "../rules/compile.js";
import type { Target, TargetResolver } from "../act/target.js";
import { OldestFirst } from "../oldest-first.js";

/** The key an incident is held under while the store cannot record it. */
function heldKey(trigger: Trigger): string {
  return `${trigger.rule.name}\u0000${trigger.keyString}`;
}

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
  metrics: EngineMetrics;
  log: OperatorLog;
  /** `--dry-run`: act on nothing, record everything. */
  dryRun: boolean;
  /** The term this engine decides for: once it aborts, a trigger that failed is not tried again. */
  signal?: AbortSignal;
  /** Waits between attempts of a trigger whose handling threw (default: the real timers). */
  timers?: Timers;
  /** Waits between attempts of a trigger whose handling threw: doubling from the first to the last (default 200 ms … 30 s). */
  retryBackoffMs?: readonly [number, number];
}

/**
 * The operator's metrics that the engine counts on, and only their `inc` (and
 * a gauge's `dec`): OperatorMetrics is one; replay passes counters that count
 * nothing, so that it never loads prom-client (ADR 37).
 */
export type EngineMetrics = {
  readonly [K in "entriesDropped" | "incidents" | "refusalChecks" | "ruleMatches" | "storeErrors" | "suppressedKeys" | "suppressedUnlisted" | "triggerErrors" | "triggers"]: Pick<
    OperatorMetrics[K],
    "inc"
  >;
} & { readonly storeWaiting: Pick<OperatorMetrics["storeWaiting"], "inc" | "dec"> };

/** How one trigger ended, for tests and replay reports. */
export type TriggerOutcome = { acted: Incident } | { suppressed: SuppressReason; incident: Incident | null };

/**
 * On-call's holds (ADR 22). Like the rule-wide guards, a pause (or a silence
 * of a rule or a pod) stops any number of keys at once, so a key without an
 * incident is listed in the hour's rollup record (ADR 12), not given a record
 * of its own; every record a hold stops a trigger on names the hold once.
 */
const HOLD_REASONS: ReadonlySet<SuppressReason> = new Set<SuppressReason>(["paused", "silenced"]);

/**
 * The rule's own guards that hold automation back for a key (ADR 25). A
 * user the factory still refuses behind one of them is locked out and
 * nobody is acting: a record with status `held` says so, and pages.
 */
export const HOLDING_REASONS: ReadonlySet<SuppressReason> = new Set<SuppressReason>(["cooldown", "max_attempts", "rate_limit", "circuit_open"]);
/** How long one admission answer about a held-back key is used for the triggers that follow (30 s). */
export const REFUSAL_CHECK_MEMO_MS = 30_000;
/** Deadline of that admission call (2 s). */
export const REFUSAL_CHECK_TIMEOUT_MS = 2000;
/** While a key's latest record is a `held` one opened less than this ago (1 h), later triggers are counted on it. */
export const HELD_REUSE_MS = 3_600_000;
/** Most `held` records one rule opens in an hour; beyond, a trigger is counted as before, and the log says so once a minute. */
export const MAX_HELD_PER_RULE_HOUR = 50;
/** Most admission checks of held-back keys running at once. */
export const MAX_REFUSAL_CHECKS = 8;

/** What the factory said about a held-back user. */
type RefusalAnswer =
  | { kind: "refused"; admission: Admission; control: string }
  | { kind: "admitted"; control: string }
  | { kind: "unknown"; why: string; control: string }
  | { kind: "no_target" };

/** Most incidents held in memory while the store cannot record them; beyond it the oldest is dropped (logged). */
const MAX_HELD = 1000;
/** At most one "entries older than maxAge" warning per rule per this long. */
export const STALE_WARN_EVERY_MS = 60_000;

/** An incident that passed the guards but could not be recorded: nothing acts on it until it is. */
interface Held {
  incident: Incident;
  trigger: Trigger;
  target: Target | null;
  dryRun: boolean;
  /** Its key, held while it waits (see GuardState.reserve). */
  reservation: Reservation;
  /** When the first write failed. */
  since: number;
  /** Failed writes so far. */
  failures: number;
}

export class Engine {
  /** Incidents being remediated, by id: the objects the ladder is changing. */
  readonly active = new Map<string, Incident>();
  /**
   * Incidents the store could not record, by rule and key: held, never acted
   * on, written again by `retryHeld()` (the operator calls it every second)
   * and acted on once written. One per key: a repeat while held is counted on it.
   */
  private readonly held = new Map<string, Held>();
  /** Per rule: stale entries not yet reported in the log, and when the rule last warned. */
  private readonly stale = new Map<string, { count: number; oldestAgeMs: number; warnedAt: number }>();
  private retrying = false;
  private rules: readonly CompiledRule[] = [];
  /** When each held-back key was last checked, oldest first (bounded: pruned as they age past REFUSAL_CHECK_MEMO_MS). */
  private readonly refusalAsked = new OldestFirst<string, number>();
  /** Admission checks running now, and a promise of their end. */
  private refusalChecking = 0;
  private refusalChecks: Promise<void> = Promise.resolve();
  /** When each rule opened its `held` records in the last hour, and when it last said it stopped opening them. */
  private readonly heldOpened = new Map<string, { times: number[]; cappedWarnedAt: number }>();

  constructor(private readonly deps: EngineDeps) {}

  /** Replaces the rule set (hot reload); windows of removed rules are dropped. */
  setRules(rules: readonly CompiledRule[]): void {
    this.rules = rules;
    this.deps.detector.retain(new Set(rules.map((r) => r.name)));
  }

  get ruleSet(): readonly CompiledRule[] {
    return this.rules;
  }

  /** What the engine holds in memory (for tests and the flood benchmark): it must stay bounded under a flood. */
  sizes(): { windows: number; active: number; rollups: { records: number; keys: number; dirty: number } } {
    return { windows: this.deps.detector.size, active: this.active.size, rollups: this.deps.guards.rollups.size };
  }

  /**
   * One entry through every rule. Resolves once any resulting incident is
   * persisted. A trigger whose handling throws (a pod lookup or an incident
   * read failing) is tried again with backoff until it is handled or the
   * term ends: the entry that caused it is never lost to a transient error,
   * and the error never reaches the tail (it is logged with its cause).
   */
  async handle(event: LogEvent): Promise<TriggerOutcome[]> {
    const outcomes: TriggerOutcome[] = [];
    for (const rule of this.rules) {
      const match = rule.explain(event); // as cheap as match(), and says why not
      if (typeof match === "string") {
        // A text trigger's line from a source its trust does not admit: counted, so that it shows (ADR 9).
        if (match.startsWith("trust:")) this.deps.metrics.entriesDropped.inc({ rule: rule.name, reason: "untrusted" });
        continue;
      }
      this.deps.metrics.ruleMatches.inc({ rule: rule.name });
      const observed = this.deps.detector.observe(rule, event, match);
      if (observed === null) continue;
      if (typeof observed === "string") {
        this.deps.metrics.entriesDropped.inc({ rule: rule.name, reason: observed });
        if (observed === "stale") this.warnStale(rule, event);
        continue;
      }
      if (this.deps.guards.covered(observed, isDryRun(observed, this.deps.dryRun))) {
        // A line read again (a new term's look-back) that an incident already acted on: not a new lockout.
        this.deps.metrics.entriesDropped.inc({ rule: rule.name, reason: "duplicate" });
        continue;
      }
      const outcome = await this.triggerUntilHandled(observed);
      if (outcome !== null) outcomes.push(outcome);
    }
    return outcomes;
  }

  /** `onTrigger`, tried again with backoff while it throws; null when the term ended first. */
  async triggerUntilHandled(trigger: Trigger): Promise<TriggerOutcome | null> {
    const { deps } = this;
    const timers = deps.timers ?? systemTimers;
    const [first, last] = deps.retryBackoffMs ?? [200, 30_000];
    for (let failures = 0; ; failures++) {
      if (deps.signal?.aborted === true) return null;
      try {
        const outcome = await this.onTrigger(trigger);
        if (failures > 0) {
          deps.log.warn(
            OperatorEvent.triggerRetried,
            { rule: trigger.rule.name, userId: trigger.userId, failures },
            `Trigger for ${trigger.keyString} (rule ${trigger.rule.name}) handled after ${failures} failed attempt(s)`,
          );
        }
        return outcome;
      } catch (err) {
        deps.metrics.triggerErrors.inc({ rule: trigger.rule.name });
        const wait = Math.min(last, first * 2 ** Math.min(failures, 20));
        // Loud at the first failure, then once the wait reaches its ceiling (at most once per ceiling), not every attempt.
        if (failures === 0 || wait === last) {
          deps.log.error(
            OperatorEvent.triggerFailed,
            { rule: trigger.rule.name, userId: trigger.userId, failures: failures + 1, cause: errorText(err) },
            `Could not handle the trigger for ${trigger.keyString} (rule ${trigger.rule.name}); trying again in ${wait} ms, ` +
              `nothing is acted on meanwhile: ${errorText(err)}`,
          );
        }
        await timers.sleep(wait, deps.signal);
      }
    }
  }

  /**
   * A matched entry older than the rule's maxAge is not acted on. That is
   * right for an old line re-read after a restart, but a factory whose clock
   * runs behind, or a source that lags, would have every lockout dropped: so
   * it is said in the log, at most once a minute per rule, with the count.
   */
  private warnStale(rule: CompiledRule, event: LogEvent): void {
    const now = this.deps.clock.now();
    const seen = this.stale.get(rule.name) ?? { count: 0, oldestAgeMs: 0, warnedAt: Number.NEGATIVE_INFINITY };
    seen.count++;
    seen.oldestAgeMs = Math.max(seen.oldestAgeMs, now - event.time);
    this.stale.set(rule.name, seen);
    if (now - seen.warnedAt < STALE_WARN_EVERY_MS) return;
    this.deps.log.warn(
      OperatorEvent.entryStale,
      { rule: rule.name, entries: seen.count, oldestAgeMs: seen.oldestAgeMs, maxAgeMs: rule.rule.spec.maxAge },
      `${seen.count} matching entr${seen.count === 1 ? "y" : "ies"} for rule ${rule.name} older than its maxAge ` +
        `(${Math.round(rule.rule.spec.maxAge / 1000)} s; oldest ${Math.round(seen.oldestAgeMs / 1000)} s) not acted on: ` +
        `expected after a restart re-reads old lines; otherwise check the clock of the pod that logs them and the source's lag`,
    );
    this.stale.set(rule.name, { count: 0, oldestAgeMs: 0, warnedAt: now });
  }

  /**
   * A trigger: guards, then an incident or a counted suppression. The
   * guards' verdict and the hold on the key happen in one synchronous step,
   * so two triggers for one key (a log rule, a metric rule and the sweep at
   * once) never both act. Throws only what a retry could mend (a lookup or
   * a read failing); the hold on the key is then given back.
   */
  async onTrigger(trigger: Trigger): Promise<TriggerOutcome> {
    const { deps } = this;
    const now = deps.clock.now();
    const verdict = checkGuards({ trigger, now, globalDryRun: deps.dryRun }, deps.guards);
    let reason = verdict.reason;
    // A replica that is not the leader writes nothing at all, not even a suppression.
    if (reason === "not_leader") {
      deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason });
      return { suppressed: reason, incident: null };
    }
    const waiting = this.held.get(heldKey(trigger));
    if (waiting !== undefined) {
      // Its incident waits for the store: one incident per key, never a second one.
      noteSuppressed(waiting.incident, "store_unavailable", now);
      deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason: "store_unavailable" });
      return { suppressed: "store_unavailable", incident: null };
    }
    if (reason !== null && reason !== "dry_run") return this.suppress(trigger, reason, now, verdict.detail ?? null);

    const dryRun = reason === "dry_run";
    const reservation = deps.guards.reserve(trigger); // in the same step as the verdict: nothing awaited in between
    let target: Target | null = null;
    try {
      if (!dryRun && deps.targets !== null) {
        target = await deps.targets.resolve({
          userId: trigger.userId,
          pod: trigger.pod,
          namespace: trigger.namespace,
          ...(deps.signal === undefined ? {} : { signal: deps.signal }),
        });
        if (target === null) reason = "no_target";
      }
    } catch (err) {
      deps.guards.release(reservation);
      throw err;
    }
    if (reason === "no_target") {
      deps.guards.release(reservation);
      return this.suppress(trigger, reason, now);
    }
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
      // Never act without a record: hold it, write it again every second, act once it is written (ADR 14).
      this.hold({ incident, trigger, target, dryRun, reservation, since: now, failures: 1 }, err);
      return { suppressed: "store_unavailable", incident: null };
    }
    return this.recorded(incident, trigger, target, dryRun, now, reservation);
  }

  /** Incidents waiting for the store (see `retryHeld`). */
  get heldCount(): number {
    return this.held.size;
  }

  /**
   * Writes the held incidents again, oldest first, and acts on each one that
   * is now recorded; stops at the first write that still fails. One that
   * waited longer than its rule's `maxAge`, or whose rule is gone, is
   * recorded as not acted on instead. Never throws.
   */
  async retryHeld(): Promise<void> {
    if (this.retrying || this.held.size === 0) return;
    this.retrying = true;
    const { deps } = this;
    try {
      for (const [key, held] of [...this.held]) {
        if (this.held.get(key) !== held) continue;
        const now = deps.clock.now();
        const { trigger } = held;
        // Changed on a copy: a write that fails again leaves the held record as it was (no decision per attempt).
        const incident = structuredClone(held.incident);
        const rule = this.rules.find((r) => r.name === trigger.rule.name);
        const waited = `the incident store could not record it for ${Math.round((now - held.since) / 1000)} s (${held.failures} failed write(s))`;
        let stale: string | null = null;
        if (rule === undefined) stale = `not acted on: ${waited}, and rule ${trigger.rule.name} is no longer loaded`;
        else if (now - trigger.at > rule.rule.spec.maxAge) stale = `not acted on: ${waited}, and its entries are now older than maxAge`;
        if (stale !== null && !FINAL_STATUSES.has(incident.status)) {
          close(incident, "suppressed", now, stale);
          if (rule !== undefined) noteSuppressed(incident, "stale", now);
        } else if (stale === null) {
          decide(incident, "retry", `${waited}; recorded now`, now);
        }
        try {
          await deps.store.save(incident);
        } catch (err) {
          held.failures++;
          deps.metrics.storeErrors.inc();
          // Loud at the first failure (in hold) and then once a minute, not once a second.
          if (held.failures % 60 === 0) this.logHeld(held, err);
          return;
        }
        this.held.delete(key);
        deps.metrics.storeWaiting.dec();
        deps.log.warn(
          OperatorEvent.storeError,
          { incident: incident.id, rule: incident.rule, userId: incident.target.userId },
          `Incident ${incident.id} recorded after ${waited}; ${stale === null ? "acting on it now" : stale}`,
        );
        if (stale !== null) {
          deps.guards.release(held.reservation);
          deps.guards.opened(incident, now);
          deps.guards.closed(incident);
          deps.metrics.incidents.inc({ status: "suppressed" });
          continue;
        }
        this.recorded(incident, { ...trigger, rule: rule! }, held.target, held.dryRun, now, held.reservation);
      }
    } finally {
      this.retrying = false;
    }
  }

  /** Forgets the held incidents (the term ended: leadership lost, or stopping), naming each in the log. Returns how many. */
  dropHeld(why: string): number {
    const count = this.held.size;
    for (const { incident, reservation } of this.held.values()) {
      this.deps.guards.release(reservation);
      this.deps.metrics.storeWaiting.dec();
      this.deps.log.error(
        OperatorEvent.storeError,
        { incident: incident.id, rule: incident.rule, userId: incident.target.userId },
        `Incident ${incident.id} for ${incident.keyString} was never recorded and NOT acted on (${why}); a new trigger opens it again`,
      );
    }
    this.held.clear();
    return count;
  }

  private hold(held: Held, err: unknown): void {
    const { deps } = this;
    deps.metrics.storeErrors.inc();
    deps.metrics.triggers.inc({ rule: held.trigger.rule.name, outcome: "suppressed", reason: "store_unavailable" });
    if (this.held.size >= MAX_HELD) {
      const [oldestKey, oldest] = this.held.entries().next().value!;
      this.held.delete(oldestKey);
      deps.guards.release(oldest.reservation);
      deps.metrics.storeWaiting.dec();
      deps.log.error(
        OperatorEvent.storeError,
        { incident: oldest.incident.id, rule: oldest.incident.rule, userId: oldest.incident.target.userId },
        `Incident ${oldest.incident.id} dropped without a record: ${MAX_HELD} incidents already wait for the store`,
      );
    }
    this.held.set(heldKey(held.trigger), held);
    deps.metrics.storeWaiting.inc();
    this.logHeld(held, err);
  }

  private logHeld(held: Held, err: unknown): void {
    this.deps.log.error(
      OperatorEvent.storeError,
      { incident: held.incident.id, rule: held.trigger.rule.name, userId: held.trigger.userId, failures: held.failures },
      `Cannot record an incident for ${held.trigger.keyString}; NOT acting until it is recorded (trying again every second): ` +
        `${err instanceof Error ? err.message : String(err)}`,
    );
  }

  /** The incident is on record: count it, and act on it unless it is a dry run. */
  private recorded(incident: Incident, trigger: Trigger, target: Target | null, dryRun: boolean, now: number, reservation: Reservation): TriggerOutcome {
    const { deps } = this;
    deps.guards.release(reservation);
    deps.guards.opened(incident, now);
    if (dryRun) {
      deps.guards.closed(incident);
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

  /**
   * Writes the rollup records (ADR 12) that list a key not yet written, and
   * those whose trigger counts changed if last written a second or more ago
   * (`all`: every changed record). Call it before acknowledging the input
   * that caused them (the operator: before a batch's position is saved), and
   * with `all` before stopping. Never throws: a record that could not be
   * written is logged, counted, and written again by the next flush.
   * Resolves to false when a write failed.
   */
  async flush(options: { all?: boolean } = {}): Promise<boolean> {
    const { deps } = this;
    const pending = deps.guards.rollups.takeDirty(deps.clock.now(), options.all === true ? 0 : undefined);
    if (pending.length === 0) return true;
    let ok = true;
    // One after the other: a record of 1,000 keys costs a few MB while it is serialized and written,
    // and ten at once would all be promoted to the old generation together.
    for (const incident of pending) {
      try {
        // Merged with what is on record, never written over it: a record another leader wrote this hour lists
        // users this term may not have seen (ADR 20).
        const stored = await deps.store.get(incident.id).catch((err: unknown) => {
          if (isCorrupt(err)) return null; // unreadable: this term's record replaces it
          throw err;
        });
        if (stored?.rollup !== undefined) deps.guards.rollups.merge(incident, stored);
        await deps.store.save(incident);
      } catch (err) {
        ok = false;
        deps.guards.rollups.markDirty(incident);
        deps.metrics.storeErrors.inc();
        deps.log.error(
          OperatorEvent.storeError,
          { incident: incident.id, rule: incident.rule },
          `Cannot write the rollup record ${incident.id}; kept in memory and written again at the next flush: ${String(err)}`,
        );
      }
    }
    return ok;
  }

  /** The ladder of an incident ended (or stopped): it is no longer active. */
  release(incident: Incident): void {
    if (FINAL_STATUSES.has(incident.status)) this.active.delete(incident.id);
  }

  private async suppress(trigger: Trigger, reason: SuppressReason, now: number, detail: string | null = null): Promise<TriggerOutcome> {
    const { deps } = this;
    const mode = isDryRun(trigger, deps.dryRun);
    if (HOLDING_REASONS.has(reason) && !mode && deps.targets !== null) this.checkHeld(trigger, reason, now);
    const latestId = deps.guards.latestIncident(trigger.rule.name, trigger.keyString, mode);
    const hold = HOLD_REASONS.has(reason) ? detail : null;
    if (latestId === null && (ROLLED_UP_REASONS.has(reason) || HOLD_REASONS.has(reason))) {
      deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason });
      return this.rollUp(trigger, reason, now, hold);
    }
    let incident: Incident | null = null;
    if (latestId !== null) {
      try {
        incident = this.active.get(latestId) ?? (await deps.store.get(latestId));
      } catch (err) {
        // A damaged record cannot be counted on, and never will be: the suppression gets a record of its own.
        // Anything else (the store not answering) may pass: thrown, and the trigger is tried again.
        if (!isCorrupt(err)) throw err;
        deps.log.error(
          OperatorEvent.storeError,
          { incident: latestId, rule: trigger.rule.name, userId: trigger.userId },
          `The latest incident ${latestId} of ${trigger.keyString} cannot be read (${errorText(err)}); this suppression is recorded in a new record`,
        );
      }
    }
    deps.metrics.triggers.inc({ rule: trigger.rule.name, outcome: "suppressed", reason });
    if (incident === null) {
      // Nothing to count it on: one record for this key says it was not acted on, and why.
      incident = newIncident(trigger, { now, control: "(none)", dryRun: false, status: "suppressed" });
      close(incident, "suppressed", now, `not acted on: ${reason}`);
      deps.guards.opened(incident, now);
      deps.guards.closed(incident);
    }
    if (hold !== null) noteHold(incident, reason, hold, now);
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

  /**
   * A rule's guard holds automation back for this key (ADR 25): is the
   * factory still refusing the user? Asked in the background, so that a
   * slow factory never stalls the tail: at most one check per key at a
   * time and per REFUSAL_CHECK_MEMO_MS, MAX_REFUSAL_CHECKS at once, and none
   * once the rule opened MAX_HELD_PER_RULE_HOUR held records this hour.
   */
  private checkHeld(trigger: Trigger, reason: SuppressReason, now: number): void {
    const key = heldKey(trigger);
    for (let at = this.refusalAsked.oldestValue(); at !== undefined; at = this.refusalAsked.oldestValue()) {
      if (now - at < REFUSAL_CHECK_MEMO_MS) break; // oldest first: the rest are newer
      this.refusalAsked.dropOldest();
    }
    if (this.refusalAsked.has(key)) return;
    if (this.refusalChecking >= MAX_REFUSAL_CHECKS || this.heldThisHour(trigger.rule.name, now) >= MAX_HELD_PER_RULE_HOUR) {
      this.deps.metrics.refusalChecks.inc({ rule: trigger.rule.name, result: "capped" });
      this.warnCapped(trigger.rule.name, now);
      return;
    }
    this.refusalAsked.add(key, now);
    this.refusalChecking++;
    const check = this.holdIfRefused(trigger, reason, now)
      .catch((err: unknown) => {
        this.deps.log.error(OperatorEvent.incidentHeld, { rule: trigger.rule.name, userId: trigger.userId }, `Could not check whether ${trigger.keyString} is still refused: ${errorText(err)}`);
      })
      .finally(() => {
        this.refusalChecking--;
      });
    this.refusalChecks = Promise.all([this.refusalChecks, check]).then(() => undefined);
  }

  /** Resolves once the admission checks started so far have ended (for `dispose` and tests). */
  async refusalChecksDone(): Promise<void> {
    await this.refusalChecks;
  }

  /**
   * If the factory still refuses the user (or cannot say), a new record
   * with status `held` says that nobody is acting while the user is locked
   * out, and its notice pages; later triggers are counted on it. Nothing
   * when the user is admitted now, the key's latest record is already a
   * recent `held` one, or there is no factory to ask.
   */
  private async holdIfRefused(trigger: Trigger, reason: SuppressReason, now: number): Promise<void> {
    const { deps } = this;
    const latestId = deps.guards.latestIncident(trigger.rule.name, trigger.keyString);
    const latest = latestId === null ? null : (this.active.get(latestId) ?? (await deps.store.get(latestId).catch(() => null)));
    if (latest?.status === "held" && now - Date.parse(latest.detectedAt) < HELD_REUSE_MS) return;
    const answer = await this.askRefusal(trigger);
    if (answer.kind === "no_target") return;
    if (answer.kind === "admitted") {
      deps.metrics.refusalChecks.inc({ rule: trigger.rule.name, result: "admitted" });
      return;
    }
    // The term ended while the factory was asked (this replica no longer writes), or another record came meanwhile.
    if (deps.signal?.aborted === true || deps.guards.latestIncident(trigger.rule.name, trigger.keyString) !== latestId) return;
    deps.metrics.refusalChecks.inc({ rule: trigger.rule.name, result: answer.kind });
    const opened = this.heldOpened.get(trigger.rule.name) ?? { times: [], cappedWarnedAt: Number.NEGATIVE_INFINITY };
    opened.times.push(now);
    this.heldOpened.set(trigger.rule.name, opened);
    const at = deps.clock.now();
    const incident = newIncident(trigger, { now: at, control: answer.control, dryRun: false, status: "held" });
    const guard = this.holdingDetail(trigger, reason, at);
    const earlier = latest === null ? "" : `; the latest incident of this key is ${latest.id} (${latest.status})`;
    if (answer.kind === "refused") {
      const a = answer.admission;
      incident.before = { ...a, at: new Date(at).toISOString() };
      close(
        incident,
        "held",
        at,
        `not acted on (${reason}: ${guard}) while the factory still refuses ${trigger.userId} (${a.active}/${a.effectiveLimit} managers, ${a.queued} queued)${earlier}: a person must look`,
      );
    } else {
      close(
        incident,
        "held",
        at,
        `not acted on (${reason}: ${guard}); whether the factory still refuses ${trigger.userId} is not known (${answer.why})${earlier}: a person must look`,
      );
    }
    noteSuppressed(incident, reason, at);
    deps.guards.opened(incident, at); // in the same step as the check above: the next trigger for the key counts on this record
    deps.guards.closed(incident);
    deps.metrics.incidents.inc({ status: "held" });
    deps.log.warn(
      OperatorEvent.incidentHeld,
      { incident: incident.id, rule: trigger.rule.name, userId: trigger.userId, reason, refused: answer.kind === "refused" },
      `Incident ${incident.id} held: ${trigger.keyString} is ${answer.kind === "refused" ? "still refused" : "maybe still refused"} and ${reason} holds automation back (${guard})`,
    );
    try {
      await deps.store.save(incident);
    } catch (err) {
      deps.metrics.storeErrors.inc();
      deps.log.error(OperatorEvent.storeError, { incident: incident.id }, `Cannot record the held incident ${incident.id}: ${errorText(err)}`);
    }
  }

  /** Never throws: a lookup or a call that fails is an `unknown` answer, with why. */
  private async askRefusal(trigger: Trigger): Promise<RefusalAnswer> {
    const { deps } = this;
    const signal = deps.signal;
    let target: Target | null;
    try {
      target = await deps.targets!.resolve({ userId: trigger.userId, pod: trigger.pod, namespace: trigger.namespace, ...(signal === undefined ? {} : { signal }) });
    } catch (err) {
      return { kind: "unknown", why: `the factory could not be found: ${errorText(err)}`, control: "(none)" };
    }
    if (target === null) return { kind: "no_target" };
    const control = target.control.baseUrl;
    try {
      const { value } = await target.control.admission(trigger.userId, REFUSAL_CHECK_TIMEOUT_MS, signal);
      return value.admit ? { kind: "admitted", control } : { kind: "refused", admission: value, control };
    } catch (err) {
      return { kind: "unknown", why: `the control API did not answer: ${errorText(err)}`, control };
    }
  }

  private heldThisHour(rule: string, now: number): number {
    const seen = this.heldOpened.get(rule);
    if (seen === undefined) return 0;
    seen.times = seen.times.filter((t) => t > now - 3_600_000);
    return seen.times.length;
  }

  /** Says, at most once a minute per rule, that held users are no longer checked: the rule needs a person now. */
  private warnCapped(rule: string, now: number): void {
    const seen = this.heldOpened.get(rule) ?? { times: [], cappedWarnedAt: Number.NEGATIVE_INFINITY };
    this.heldOpened.set(rule, seen);
    if (now - seen.cappedWarnedAt < 60_000) return;
    seen.cappedWarnedAt = now;
    this.deps.log.error(
      OperatorEvent.incidentHeld,
      { rule, held: seen.times.length, checking: this.refusalChecking },
      `Rule ${rule}: more users held back than are checked (${seen.times.length} held records this hour, ${this.refusalChecking} checks running); ` +
        `the rest are counted on their keys' latest records: look at the rule's incidents now`,
    );
  }

  /** What the guard that held a key back says, for the held record. */
  private holdingDetail(trigger: Trigger, reason: SuppressReason, now: number): string {
    const { guards } = this.deps;
    const spec = trigger.rule.rule.spec.guards;
    const name = trigger.rule.name;
    switch (reason) {
      case "cooldown":
        return `within the ${Math.round(spec.cooldown / 1000)} s cooldown after the last incident of this key`;
      case "max_attempts":
        return `${guards.attemptsToday(name, trigger.keyString, now)} attempts in the last day, the most the rule allows is ${spec.maxAttemptsPerDay}`;
      case "rate_limit":
        return `${guards.actedThisHour(name, now)} incidents of the rule in the last hour, the most it allows is ${spec.maxPerHour}`;
      default:
        return `the rule's circuit breaker is open after ${guards.failuresInARow(name)} failed or escalated incidents in a row`;
    }
  }

  /** A key without an incident that a rule-wide guard stopped: listed in the hour's rollup record, written by `flush()`. */
  private rollUp(trigger: Trigger, reason: SuppressReason, now: number, hold: string | null = null): TriggerOutcome {
    const { deps } = this;
    const noted = deps.guards.rollups.note(trigger, reason, now);
    const { incident } = noted;
    // A hold not yet named on the record (a new silence, a pause extended) is written at the next flush.
    if (hold !== null && noteHold(incident, reason, hold, now)) deps.guards.rollups.markDirty(incident);
    // A repeat of a listed key is counted on its record and in the metrics, not logged: a flood's lines would be the log.
    if (!noted.added && !noted.unlisted) return { suppressed: reason, incident };
    const fields = { incident: incident.id, rule: trigger.rule.name, userId: trigger.userId, reason };
    if (noted.added) {
      deps.metrics.suppressedKeys.inc({ rule: trigger.rule.name, reason });
      deps.log.info(OperatorEvent.suppressed, fields, `Trigger for ${trigger.keyString} suppressed (${reason}): not acted on, listed in rollup record ${incident.id}`);
    } else {
      deps.metrics.suppressedUnlisted.inc({ rule: trigger.rule.name, reason });
      deps.log.warn(
        OperatorEvent.suppressed,
        fields,
        `Trigger for ${trigger.keyString} suppressed (${reason}): not acted on and NOT listed (this hour's rollup records are full); counted on ${incident.id}`,
      );
    }
    return { suppressed: reason, incident };
  }
}

/** Was the store's error a record that exists but cannot be read (it will never become readable by retrying)? */
function isCorrupt(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === IncidentStoreErrorCode.corrupt;
}
