/**
 * A leadership term: the one period in which this replica acts. It owns
 * everything acting needs — the guards' state, the detector's windows, the
 * engine, the ladders it runs, the log tail and its timers — and nothing it
 * builds outlives it (client-go's `OnStartedLeading(ctx)`, STYLE.md):
 *
 * - it starts when this replica may act (at once, or on winning the lease),
 *   reads the incident records, builds the guards from them alone, resumes
 *   (or closes as interrupted) the incidents left open, and tails the source
 *   from the last position handled;
 * - it ends when leadership is lost or the operator stops: its signal aborts,
 *   so no rung, retry or check is sent any more and nothing more is written;
 *   `dispose` waits until its ladders have stopped at a safe point and its
 *   tail has ended, and only then may the next term start.
 *
 * Every call a term makes carries its signal; every wait is on its timers.
 *
 * On-call's holds (ADR 22) reach a term through `TermDeps.holds`: its guards
 * read them for every trigger, and a ladder asks them before every rung it
 * sends (its target is wrapped: see `heldTarget`). A ladder a hold now covers
 * sends nothing more — its rung in flight, if any, finishes and is recorded —
 * and its incident is closed as `interrupted`, saying which hold, whose and
 * why. No ladder starts (or resumes) while a hold covers its incident.
 */
import { systemTimers, type Timers } from "../contract/clock.js";
import { LadderRunner, NotLeader, StoreFailure, type LadderOptions } from "./act/ladder.js";
import type { ControlClient } from "./act/control-client.js";
import type { Target, TargetResolver } from "./act/target.js";
import { Engine, type Actor, type TriggerOutcome } from "./decide/engine.js";
import { GuardState, type Holds } from "./decide/guards.js";
import { Detector, type Trigger } from "./detect/detector.js";
import { FINAL_STATUSES, type Incident } from "./incidents/model.js";
import { close, decide } from "./incidents/record.js";
import type { IncidentStore } from "./incidents/store.js";
import { errorText, OperatorEvent, type OperatorLog } from "./log.js";
import type { OperatorMetrics } from "./metrics.js";
import type { CompiledRule } from "./rules/compile.js";
import type { CircuitState } from "./notify/notice.js";
import type { Scanner } from "./sources/scan.js";
import type { LineBatch, LogSource } from "./sources/source.js";
import type { CanaryResult } from "./verify/canary.js";

/** Why a term ended: a metric label (bounded). A source that failed for good stops the operator: `stopped`. */
export type TermEnd = "leadership_lost" | "stopped";

/** A term's settings; every one has a default. */
export interface TermOptions {
  /** `--dry-run`. */
  dryRun: boolean;
  /** An open incident last updated longer ago than this is closed as interrupted, not resumed (default 10 min). */
  resumeWindowMs?: number;
  /** Between writes the store refused, and between reads of the records at the start (default 1000 ms). */
  storeRetryMs?: number;
  /**
   * Longest an open incident may go without a running ladder before it is
   * closed as `interrupted` (default 60 s): a pod lookup that keeps failing
   * while it is resumed, or a ladder that ended without closing it.
   */
  orphanAfterMs?: number;
  /** Waits between attempts of a trigger whose handling threw (default 200 ms doubling to 30 s). */
  triggerBackoffMs?: readonly [number, number];
  /** Waits before the tail is started again after the source failed (default 1 s doubling to 60 s). */
  sourceBackoffMs?: readonly [number, number];
  /** The tail fails the term after this many source failures in a row without a batch handled (default 8). */
  sourceFailures?: number;
  /**
   * How often dirty rollup records are looked at and written (default 1000 ms, ADR 12). A record whose only
   * change is counts is written at most every ROLLUP_COUNTS_EVERY_MS (5 s) whatever this is; a new key at once.
   */
  flushEveryMs?: number;
  /** How often the guards forget what they can no longer use (default 10 min). */
  pruneEveryMs?: number;
  ladder?: LadderOptions;
  canary?: (message: string) => Promise<CanaryResult>;
}

/** What a term uses; the operator builds these once and hands them to every term. */
export interface TermDeps {
  store: IncidentStore;
  targets: TargetResolver;
  timers?: Timers;
  metrics: OperatorMetrics;
  log: OperatorLog;
  /** The rules in force now (they reload while a term runs). */
  rules: () => readonly CompiledRule[];
  /** The scanner for the rules in force now. */
  scanner: () => Scanner;
  /** The log source; null when the operator only runs metric rules and jobs. */
  source: LogSource;
  /** Called after each batch with what it read, for the operator's source metrics. */
  onBatch?: () => void;
  /** On-call's silences and pause (silence/book.ts; default none). */
  holds?: Holds;
  /** A rule's circuit breaker opened or closed while this term leads (the operator notifies on-call). */
  onCircuit?: (state: CircuitState) => void;
}

/** How often a term looks at its rules' circuit breakers (they also close by themselves, with time). */
export const CIRCUIT_CHECK_EVERY_MS = 1000;

const DEFAULT_ORPHAN_AFTER_MS = 60_000;

/**
 * Source errors that retrying cannot mend — the configuration is wrong (a
 * source path that is a folder, a filter Cloud Logging refuses): the term
 * fails at once rather than after its retries.
 */
function permanentSourceError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ERR_RECLAIM_SOURCE_NOT_A_FILE" || code === "ERR_RECLAIM_GCP_REQUEST" || code === "ERR_RECLAIM_SOURCE_SPEC";
}

/** The records could not be read at the start of a term that may not wait for them (the first, without leader election). */
export class RecordsUnreadable extends Error {
  readonly code = "ERR_RECLAIM_RECORDS_UNREADABLE";
}

/** Thrown through a ladder by its held target (see Term.heldTarget) instead of sending a rung: a hold now covers the incident. */
// Stryker disable all: its code, message and name are for a stack trace should one ever escape; the term reads only `hold`
class HeldBack extends Error {
  readonly code = "ERR_RECLAIM_HELD_BACK";
  constructor(readonly hold: string) {
    super(`held back: ${hold}`);
    this.name = "HeldBack";
  }
}

// Stryker restore all
/** The log source kept failing: the term stops acting, and the operator exits non-zero so that it is restarted and seen. */
export class SourceFailed extends Error {
  readonly code = "ERR_RECLAIM_SOURCE_FAILED";
}

export class Term {
  readonly guards: GuardState;
  readonly engine: Engine;
  readonly detector: Detector;
  /** Resolves when the term's tail has ended: the source ran out (finite sources), failed for good, or the term ended. */
  readonly tailEnded: Promise<void>;
  private readonly controller = new AbortController();
  private readonly timers: Timers;
  private readonly ladder: LadderRunner;
  /** The ladders running now, by incident id: the truth behind the open-incidents gauge. */
  private readonly ladders = new Map<string, Promise<void>>();
  /** Rules whose circuit breaker this term has said is open, with what it said. */
  private readonly openCircuits = new Map<string, CircuitState>();
  /** Batches and outside triggers being handled now: an incident they record may not have its ladder yet. */
  private readonly handling = new Set<Promise<unknown>>();
  /** Incidents active without a ladder, and since when (see orphanAfterMs). */
  private readonly orphans = new Map<string, number>();
  private readonly cancels: (() => void)[] = [];
  private tail: Promise<void> = Promise.resolve();
  private tailFailure: Error | null = null;
  private resolveTailEnded!: () => void;
  private disposing: Promise<void> | null = null;
  private started: Promise<void> | null = null;
  private readyFlag = false;

  constructor(
    private readonly deps: TermDeps,
    private readonly options: TermOptions,
  ) {
    this.timers = deps.timers ?? systemTimers;
    this.tailEnded = new Promise<void>((resolve) => (this.resolveTailEnded = resolve));
    this.guards = new GuardState();
    this.guards.leader = () => !this.controller.signal.aborted;
    if (deps.holds !== undefined) this.guards.holds = deps.holds;
    this.detector = new Detector({ now: () => this.timers.now() });
    this.ladder = new LadderRunner(
      { store: deps.store, guards: this.guards, clock: this.timers, metrics: deps.metrics, log: deps.log },
      {
        ...options.ladder,
        // Stryker disable next-line ConditionalExpression,EqualityOperator: a storeRetryMs of undefined is the ladder's default
        ...(options.storeRetryMs === undefined ? {} : { storeRetryMs: options.storeRetryMs }),
        // Stryker disable next-line ConditionalExpression,EqualityOperator: a canary of undefined is no canary to the ladder
        ...(options.canary === undefined ? {} : { canary: options.canary }),
      },
    );
    const actor: Actor = { act: (incident, rule, target) => this.act(incident, rule, target) };
    this.engine = new Engine({
      detector: this.detector,
      guards: this.guards,
      store: deps.store,
      targets: deps.targets,
      actor,
      clock: this.timers,
      metrics: deps.metrics,
      log: deps.log,
      dryRun: options.dryRun,
      signal: this.controller.signal,
      timers: this.timers,
      // Stryker disable next-line ConditionalExpression,EqualityOperator: a retryBackoffMs of undefined is the engine's default
      ...(options.triggerBackoffMs === undefined ? {} : { retryBackoffMs: options.triggerBackoffMs }),
    });
    this.engine.setRules(deps.rules());
  }

  /**
   * Starts the term: reads the records (again and again, every
   * storeRetryMs, while they cannot be read — unless `waitForRecords` is
   * false: then it rejects with RecordsUnreadable), builds the guards from
   * them, resumes the open incidents and starts the tail. Call it once the
   * previous term has been disposed. Resolves early when the term ends first.
   */
  start(waitForRecords: boolean): Promise<void> {
    this.started ??= this.begin(waitForRecords).catch((err: unknown) => {
      this.controller.abort();
      for (const cancel of this.cancels.splice(0)) cancel();
      this.resolveTailEnded();
      throw err;
    });
    return this.started;
  }

  /** Aborted when the term ends: every call and wait of the term carries it. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Is the term still acting? */
  get acting(): boolean {
    return !this.controller.signal.aborted;
  }

  /** Ladders running now. */
  get inFlight(): number {
    return this.ladders.size;
  }

  /** The incidents whose ladders run now (for tests: one ladder per key across the cluster). */
  get running(): readonly Incident[] {
    return [...this.ladders.keys()].flatMap((id) => {
      const incident = this.engine.active.get(id);
      // Stryker disable next-line ConditionalExpression,EqualityOperator,ArrayDeclaration: a ladder's incident leaves the active set only as its ladder ends
      return incident === undefined ? [] : [incident];
    });
  }

  /** Has `start` finished: records read, guards built, open incidents resumed? */
  get ready(): boolean {
    return this.readyFlag;
  }

  /** The tail failed for good (SourceFailed), if it did. */
  get failure(): Error | null {
    return this.tailFailure;
  }

  /** New rules (a reload): the detector forgets the windows of rules that are gone. */
  setRules(rules: readonly CompiledRule[]): void {
    this.engine.setRules(rules);
  }

  /** A trigger from outside the log (a metric rule, the sweep): the normal path, then its rollups are written. Waits for the term to have started. */
  async trigger(trigger: Trigger): Promise<TriggerOutcome | null> {
    if (this.started === null) return null;
    await this.started.catch(() => undefined);
    // Stryker disable next-line ConditionalExpression,BooleanLiteral: the engine hands back null for a term that ended too (its signal)
    if (!this.acting) return null;
    return this.track(
      (async () => {
        const outcome = await this.engine.triggerUntilHandled(trigger);
        await this.engine.flush();
        return outcome;
      })(),
    );
  }

  /** Counts `work` as being handled until it settles (see `idle`). */
  private track<T>(work: Promise<T>): Promise<T> {
    this.handling.add(work);
    const untrack = (): void => void this.handling.delete(work);
    work.then(untrack, untrack);
    return work;
  }

  /** Waits until nothing is being handled and no ladder of this term is running. */
  async idle(): Promise<void> {
    while (this.handling.size > 0 || this.ladders.size > 0) await Promise.allSettled([...this.handling, ...this.ladders.values()]);
  }

  /**
   * Says when a live rule's circuit breaker opens or closes: a log event, the
   * `reclaim_operator_circuit_open` gauge, and `onCircuit` (a notification
   * naming the incidents that opened it and when it closes). A breaker
   * already open when the term starts is said again: the term before may
   * have been another replica's. A rule removed while open is said closed.
   */
  private checkCircuits(): void {
    if (!this.acting) return;
    const now = this.timers.now();
    const rules = new Map(this.deps.rules().map((r) => [r.name, r]));
    for (const [name, was] of this.openCircuits) {
      const rule = rules.get(name);
      if (rule === undefined || rule.rule.spec.guards.dryRun) {
        this.circuitChanged({ ...was, open: false, closesAt: null }, rule === undefined ? "its rule was removed" : "its rule is now a dry run");
      }
    }
    for (const rule of rules.values()) {
      if (rule.rule.spec.guards.dryRun) continue; // a dry-run rule acts on nothing: its breaker holds nothing back
      const { failures, openFor } = rule.rule.spec.guards.circuitBreaker;
      const view = this.guards.circuit(rule.name, now, openFor, failures);
      const was = this.openCircuits.get(rule.name);
      const { spec } = rule.rule;
      const state: CircuitState = {
        rule: rule.name,
        open: view.open,
        severity: spec.incident.severity,
        // Stryker disable next-line ArrayDeclaration,LogicalOperator: reached only for a breaker reported open before, which has its incidents
        incidents: view.open ? view.incidents : (was?.incidents ?? []),
        openedAt: view.openedAt ?? was?.openedAt ?? now,
        closesAt: view.closesAt,
        description: spec.description ?? null,
        runbook: spec.runbook ?? null,
      };
      if (view.open && (was === undefined || was.closesAt !== state.closesAt)) this.circuitChanged(state, null);
      else if (!view.open && was !== undefined) this.circuitChanged(state, null);
    }
  }

  private circuitChanged(state: CircuitState, why: string | null): void {
    const { metrics, log } = this.deps;
    const was = this.openCircuits.get(state.rule);
    if (state.open) {
      this.openCircuits.set(state.rule, state);
      metrics.circuitOpen.set({ rule: state.rule }, 1);
      if (was === undefined) {
        metrics.circuitTransitions.inc({ rule: state.rule, to: "open" });
        log.error(
          OperatorEvent.circuitOpened,
          { rule: state.rule, incidents: state.incidents.join(","), closesAt: new Date(state.closesAt!).toISOString() },
          `Circuit breaker of rule ${state.rule} is OPEN: ${state.incidents.length} incident(s) failed or escalated in a row ` +
            `(${state.incidents.join(", ")}); its triggers are not acted on until ${new Date(state.closesAt!).toISOString()} unless another fails`,
        );
      }
    } else {
      this.openCircuits.delete(state.rule);
      metrics.circuitOpen.set({ rule: state.rule }, 0);
      metrics.circuitTransitions.inc({ rule: state.rule, to: "closed" });
      log.warn(OperatorEvent.circuitClosed, { rule: state.rule }, `Circuit breaker of rule ${state.rule} closed${why === null ? "" : ` (${why})`}: its triggers are acted on again`);
    }
    try {
      this.deps.onCircuit?.(state);
    } catch (err) {
      log.error(OperatorEvent.circuitOpened, { rule: state.rule }, `Could not tell on-call about the circuit breaker of rule ${state.rule}: ${errorText(err)}`);
    }
  }

  /**
   * Ends the term: nothing more is sent or written; waits until every ladder
   * has stopped at a safe point and the tail has ended. On a requested stop
   * (`stopped`, still the leader) the rollup records are written one last
   * time; when leadership was lost they are not (the next leader writes).
   */
  dispose(why: TermEnd, detail: string): Promise<void> {
    this.disposing ??= (async () => {
      this.controller.abort();
      for (const cancel of this.cancels.splice(0)) cancel();
      await this.started?.catch(() => undefined);
      for (const cancel of this.cancels.splice(0)) cancel(); // any armed while it was starting
      this.engine.dropHeld(detail);
      this.resolveTailEnded();
      await this.tail;
      await this.idle();
      await this.engine.refusalChecksDone(); // each has a deadline, and writes nothing once the term's signal aborted
      this.deps.metrics.openIncidents.set(0);
      // A follower reports no breaker: the next leader rebuilds them from the records and says again which are open.
      for (const rule of this.openCircuits.keys()) this.deps.metrics.circuitOpen.remove({ rule });
      this.openCircuits.clear();
      if (why === "stopped") await this.engine.flush({ all: true });
      this.deps.metrics.terms.inc({ end: why });
      this.deps.log.info(OperatorEvent.termEnded, { why }, `Stopped acting (${detail})`);
    })();
    return this.disposing;
  }

  private async begin(waitForRecords: boolean): Promise<void> {
    const { deps, options } = this;
    const storeRetryMs = options.storeRetryMs ?? 1000;
    // Incidents the store could not record yet are written again (and acted on) every storeRetryMs.
    this.cancels.push(this.timers.every(storeRetryMs, () => void this.engine.retryHeld()));
    const records = await this.listRecords(waitForRecords, storeRetryMs);
    // The term ended while the records were read.
    if (
      !this.acting ||
      // Stryker disable next-line ConditionalExpression,EqualityOperator: listRecords answers null only once the term ended (checked first)
      records === null
    )
      return;
    this.guards.rebuild(records, this.timers.now());
    deps.log.info(OperatorEvent.termStarted, { records: records.length }, `Acting: guards built from ${records.length} incident record(s)`);
    for (const incident of records.filter((i) => !FINAL_STATUSES.has(i.status))) {
      if (!this.acting) return;
      await this.resume(incident);
    }
    this.cancels.push(this.timers.every(options.flushEveryMs ?? 1000, () => void this.engine.flush()));
    this.cancels.push(this.timers.every(Math.max(1000, Math.floor((options.orphanAfterMs ?? DEFAULT_ORPHAN_AFTER_MS) / 2)), () => void this.closeOrphans()));
    this.cancels.push(this.timers.every(options.pruneEveryMs ?? 600_000, () => this.prune()));
    this.checkCircuits();
    this.cancels.push(this.timers.every(CIRCUIT_CHECK_EVERY_MS, () => this.checkCircuits()));
    if (!this.acting) return;
    this.readyFlag = true;
    this.tail = this.runTail().finally(() => this.resolveTailEnded());
  }

  /** The records; null when the term ended first. */
  private async listRecords(waitForRecords: boolean, retryMs: number): Promise<Incident[] | null> {
    const { deps } = this;
    for (let failures = 1; ; failures++) {
      try {
        return await deps.store.list();
      } catch (err) {
        if (!waitForRecords) throw new RecordsUnreadable(`cannot read the incident records: ${errorText(err)}`, { cause: err });
        deps.metrics.storeErrors.inc();
        if (failures === 1 || failures % 60 === 0) {
          deps.log.error(
            OperatorEvent.storeError,
            { failures },
            `Cannot read the incident records; NOT acting until they can be read (trying again every ${retryMs} ms): ${errorText(err)}`,
          );
        }
        await this.timers.sleep(retryMs, this.signal);
        if (!this.acting) return null;
      }
    }
  }

  /**
   * An incident a previous term (or process) left open: continue it, or
   * close it as interrupted — when it is too old, its rule is gone, the pod
   * it acted on is gone, or its pod cannot be looked up within orphanAfterMs.
   */
  private async resume(incident: Incident): Promise<void> {
    const { deps, options } = this;
    const now = this.timers.now();
    const rule = deps.rules().find((r) => r.name === incident.rule);
    const age = now - Date.parse(incident.updatedAt);
    const window = options.resumeWindowMs ?? 600_000;
    if (rule === undefined) return this.interrupt(incident, `the operator restarted and rule ${incident.rule} is no longer loaded`);
    if (age > window) return this.interrupt(incident, `the operator restarted ${Math.round(age / 1000)} s after the last step (more than ${window / 1000} s): not resumed`);
    const target = await this.resolveForResume(incident);
    if (!this.acting) return;
    if (typeof target === "string") return this.interrupt(incident, target);
    decide(incident, "resumed", "a new operator term continues from the record", this.timers.now());
    // If this write fails, the ladder's own first write holds it before anything is called.
    await deps.store.save(incident).catch((err: unknown) => deps.log.error(OperatorEvent.storeError, { incident: incident.id }, `Could not record resuming ${incident.id}: ${errorText(err)}`));
    deps.log.warn(OperatorEvent.resumed, { incident: incident.id, rule: incident.rule, userId: incident.target.userId }, `Resuming incident ${incident.id}`);
    this.engine.active.set(incident.id, incident);
    this.act(incident, rule, target);
  }

  /** The target of a resumed incident, or why there is none (tried with backoff for at most orphanAfterMs). */
  private async resolveForResume(incident: Incident): Promise<Target | string> {
    const bound = this.options.orphanAfterMs ?? DEFAULT_ORPHAN_AFTER_MS;
    const started = this.timers.now();
    for (let attempt = 0; ; attempt++) {
      try {
        const target = await this.deps.targets.resolve({
          userId: incident.target.userId,
          pod: incident.target.pod,
          namespace: incident.target.namespace ?? null,
          signal: this.signal,
        });
        return target ?? `the operator restarted and pod ${incident.target.pod ?? "(unknown)"} it acted on is gone: nothing left to act on`;
      } catch (err) {
        const waited = this.timers.now() - started;
        if (waited >= bound || !this.acting) return `the operator restarted and could not look up pod ${incident.target.pod ?? "(unknown)"} for ${Math.round(waited / 1000)} s: ${errorText(err)}`;
        this.deps.log.warn(OperatorEvent.resumed, { incident: incident.id }, `Cannot look up the target of ${incident.id} yet (${errorText(err)}); trying again`);
        await this.timers.sleep(Math.min(bound - waited, 500 * 2 ** Math.min(attempt, 6)), this.signal);
      }
    }
  }

  /** Closes an open incident as interrupted, with why, and tells the guards. */
  private async interrupt(incident: Incident, why: string): Promise<void> {
    const { deps } = this;
    if (FINAL_STATUSES.has(incident.status) || !this.acting) return;
    close(incident, "interrupted", this.timers.now(), why);
    incident.followUps.push("Check whether the user can connect; a new trigger will open a new incident.");
    try {
      await deps.store.save(incident);
    } catch (err) {
      deps.log.error(OperatorEvent.storeError, { incident: incident.id }, `Could not record ${incident.id} as interrupted: ${errorText(err)}; the next term tries again`);
      return;
    }
    this.engine.active.delete(incident.id);
    this.orphans.delete(incident.id);
    this.guards.closed(incident);
    deps.metrics.incidents.inc({ status: "interrupted" });
    deps.log.warn(OperatorEvent.incidentInterrupted, { incident: incident.id, rule: incident.rule, userId: incident.target.userId }, `Incident ${incident.id} interrupted: ${why}`);
  }

  /** Starts the ladder of a recorded incident; every way it can end leaves the incident closed or with a ladder. */
  private act(incident: Incident, rule: CompiledRule, target: Target | null): void {
    const { deps } = this;
    // Stryker disable next-line ConditionalExpression,BooleanLiteral: a ladder started after the end has an aborted signal: it sends and writes nothing
    if (!this.acting) return; // left open: the next term resumes it
    // Stryker disable next-line ConditionalExpression,EqualityOperator,BlockStatement: the engine suppresses a trigger without a target (no_target) before acting
    if (target === null) {
      // Stryker disable next-line StringLiteral: unreachable (above)
      void this.interrupt(incident, "no factory to act on was found for it");
      return;
    }
    // Stryker disable next-line ConditionalExpression: nothing asks a term to act twice on one incident
    if (this.ladders.has(incident.id)) return;
    const held = this.holdOn(incident);
    if (held !== null) {
      // Held back since its trigger passed the guards (a pause that came while it was recorded), or since a
      // previous term left it open: nothing more is sent.
      void this.interrupt(incident, `${held}; no further rung was sent`);
      return;
    }
    const run = this.ladder
      .run(incident, rule.rule, this.heldTarget(incident, target), this.signal)
      .then(
        () => undefined,
        async (err: unknown) => {
          if (err instanceof HeldBack) {
            await this.interrupt(incident, this.notSent(incident, err.hold));
            return;
          }
          if (err instanceof NotLeader || err instanceof StoreFailure) {
            deps.log.warn(OperatorEvent.resumed, { incident: incident.id }, `Stopped acting on ${incident.id}: ${errorText(err)}; the next term continues it`);
            return;
          }
          deps.log.error(OperatorEvent.incidentInterrupted, { incident: incident.id }, `Ladder of ${incident.id} stopped on an unexpected error: ${errorText(err)}`);
          await this.interrupt(incident, `its ladder stopped on an unexpected error: ${errorText(err)}`);
        },
      )
      .finally(() => {
        this.ladders.delete(incident.id);
        this.engine.release(incident);
        deps.metrics.openIncidents.set(this.ladders.size);
      });
    this.ladders.set(incident.id, run);
    deps.metrics.openIncidents.set(this.ladders.size);
  }

  /** The hold (the pause, else a matching silence) that covers an incident now, as its record says it; null when none. */
  private holdOn(incident: Incident): string | null {
    const holds = this.deps.holds;
    if (holds === undefined) return null;
    const now = this.timers.now();
    return holds.paused(now) ?? holds.silenced({ userId: incident.target.userId, pod: incident.target.pod, rule: incident.rule }, now);
  }

  /**
   * The target a ladder acts through: before each rung it sends (retries
   * included) and each pod restart, it asks whether a hold now covers the
   * incident, and if one does it sends nothing and throws HeldBack — so a
   * pause or a silence stops a running ladder right before its next rung,
   * while a rung already in flight finishes and is recorded. Reads (the
   * admission checks of verification) go through unchanged: they act on
   * nobody. A replacement pod's target is wrapped the same way.
   */
  private heldTarget(incident: Incident, target: Target): Target {
    const check = (): void => {
      const hold = this.holdOn(incident);
      if (hold !== null) throw new HeldBack(hold);
    };
    const runRung: ControlClient["runRung"] = async (...args) => {
      check();
      return target.control.runRung(...args);
    };
    // Every other member is the client's own, bound to it: only sending a rung is held.
    const control = new Proxy(target.control, {
      get: (client, key) => {
        if (key === "runRung") return runRung;
        const value: unknown = Reflect.get(client, key, client);
        // Stryker disable next-line MethodExpression,ConditionalExpression,EqualityOperator,StringLiteral: called through the proxy a method's `this` is the proxy, which forwards to the client (ControlClient has no #private fields)
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(client) : value;
      },
    });
    const restart = target.restart;
    return {
      ...target,
      control,
      restart:
        restart === undefined
          ? undefined
          : async (options) => {
              check();
              const outcome = await restart(options);
              return outcome.replacement === null ? outcome : { ...outcome, replacement: this.heldTarget(incident, outcome.replacement) };
            },
    };
  }

  /**
   * The record of a rung a hold kept from being sent: the ladder had written
   * it `pending` (persisted before the call) and counted the attempt; it is
   * `skipped` (or, when earlier attempts were sent and failed, `error`), and
   * the attempt that was not made is not counted. Returns the line that
   * closes the incident.
   */
  private notSent(incident: Incident, hold: string): string {
    const run = incident.rungs[incident.rungs.length - 1];
    // A guard: a hold is thrown only from a rung call, after the ladder recorded that rung pending (TESTING.md lists
    // the two mutants of this line it leaves alive as equivalent).
    if (run === undefined || run.outcome !== "pending") return `${hold}; stopped before its next rung`;
    const now = this.timers.now();
    run.attempts = Math.max(0, run.attempts - 1);
    run.outcome = run.attempts === 0 ? "skipped" : "error";
    run.error = run.attempts === 0 ? `not sent: ${hold}` : `${run.error ?? "its last attempt's outcome is not known"}; not sent again: ${hold}`;
    run.finishedAt = new Date(now).toISOString();
    run.durationMs = Math.max(0, now - Date.parse(run.startedAt));
    return `${hold}; stopped before its next rung (${run.rung} was not sent)`;
  }

  /** Active incidents without a running ladder for longer than orphanAfterMs are closed as interrupted. */
  private async closeOrphans(): Promise<void> {
    const now = this.timers.now();
    const bound = this.options.orphanAfterMs ?? DEFAULT_ORPHAN_AFTER_MS;
    for (const [id, incident] of this.engine.active) {
      if (this.ladders.has(id) || FINAL_STATUSES.has(incident.status)) {
        this.orphans.delete(id);
        continue;
      }
      const since = this.orphans.get(id) ?? now;
      this.orphans.set(id, since);
      if (now - since >= bound) await this.interrupt(incident, `it had no running ladder for ${Math.round((now - since) / 1000)} s`);
    }
    for (const id of this.orphans.keys()) if (!this.engine.active.has(id)) this.orphans.delete(id);
  }

  private prune(): void {
    const horizon = Math.max(0, ...this.deps.rules().map((r) => Math.max(r.rule.spec.guards.cooldown, r.rule.spec.guards.circuitBreaker.openFor)));
    this.guards.prune(this.timers.now(), horizon);
  }

  /**
   * Tails the source until the term ends or a finite source runs out. A
   * failed source is started again (from the last position handled) with
   * backoff; after `sourceFailures` failures in a row without a batch handled
   * the term fails (SourceFailed).
   */
  private async runTail(): Promise<void> {
    const { deps, options } = this;
    const [first, last] = options.sourceBackoffMs ?? [1000, 60_000];
    const limit = options.sourceFailures ?? 8;
    let failures = 0;
    while (this.acting) {
      let handled = false;
      try {
        await this.tailOnce(() => (handled = true));
        return; // the term ended, or a finite source ran out
      } catch (err) {
        if (!this.acting) return;
        if (handled) failures = 0;
        failures++;
        deps.metrics.sourceErrors.inc({ source: deps.source.name });
        const permanent = permanentSourceError(err);
        if (failures >= limit || permanent) {
          this.tailFailure = new SourceFailed(
            permanent ? `source ${deps.source.name} cannot be read: ${errorText(err)}` : `source ${deps.source.name} failed ${failures} times in a row: ${errorText(err)}`,
            { cause: err },
          );
          deps.log.error(OperatorEvent.sourceError, { source: deps.source.name, failures }, `${this.tailFailure.message}; giving up`);
          return;
        }
        const wait = Math.min(last, first * 2 ** (failures - 1));
        deps.log.error(
          OperatorEvent.sourceError,
          { source: deps.source.name, failures },
          `Source ${deps.source.name} failed (${errorText(err)}); starting it again from the last position handled in ${wait} ms`,
        );
        await this.timers.sleep(wait, this.signal);
      }
    }
  }

  /**
   * One run of the source. A batch's position is saved while the next batch
   * is read and handled, so that a line written just after another is not
   * held up by the other's fsyncs; the next batch waits for that save before
   * its own starts (ADR 15). A batch the term stopped in the middle of is not
   * committed: the next term reads it again.
   */
  private async tailOnce(onHandled: () => void): Promise<void> {
    const { deps } = this;
    let committing: Promise<void> = Promise.resolve();
    const handleBatch = async (batch: LineBatch): Promise<void> => {
      const scanner = deps.scanner();
      const before = { ...scanner.stats };
      // Parsed one by one as handled, so a flood's entries die young (ADR 12).
      const events = scanner.lazy(batch);
      deps.metrics.linesRead.inc({ source: deps.source.name }, scanner.stats.linesRead - before.linesRead);
      try {
        for (const event of events) {
          if (!this.acting) return; // leadership lost mid-batch: leave the rest (and its position) to the next leader
          deps.metrics.sourceLag.set({ source: deps.source.name }, Math.max(0, (this.timers.now() - event.time) / 1000));
          await this.engine.handle(event);
        }
      } finally {
        deps.metrics.linesMalformed.inc({ source: deps.source.name }, scanner.stats.malformed - before.malformed);
      }
      if (!this.acting) return;
      deps.onBatch?.();
      // Rollup records (ADR 12) are written once per batch, before its position is saved.
      await this.engine.flush();
      const previous = committing;
      committing = batch.commit();
      committing.catch(() => undefined); // awaited by the next batch, or when the tail ends
      await previous;
      onHandled();
    };
    await deps.source.run((batch) => this.track(handleBatch(batch)), this.signal);
    await committing;
  }
}
