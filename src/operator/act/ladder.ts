/**
 * The ladder runner: drives one incident through its rule's rungs over the
 * control API, one rung at a time, verifying after each.
 *
 * The next step is always derived from the persisted record (as in
 * medik8s' node-healthcheck-operator), so a restarted operator continues where
 * it stopped:
 * - a rung recorded `pending` may or may not have reached the factory: it is
 *   sent again with the same idempotency key (`<incident id>/<rung index>`),
 *   so a factory that already ran it answers that result instead of running
 *   it twice (ADR 13); without the key it would still be safe (ADR 3);
 * - a rung that finished `ok` but has no verification is verified;
 * - otherwise the next rung runs, and after the last one the incident is
 *   escalated.
 * The record is saved before each call and after each result. If a save
 * fails, the runner holds without acting further (it never acts without a
 * record) and writes it again until it can, then goes on (see `save`).
 *
 * A rule that takes its key from a message's text (`trigger.log.text`) is
 * only a reason to ask: before its first rung the factory is asked whether
 * the user is refused now, and unless it says so the incident is closed
 * `suppressed` (`not_confirmed`) with nothing done (ADR 9).
 */
import { systemTimers, type Clock, type Timers } from "../../contract/clock.js";
import type { CanaryResult } from "../verify/canary.js";
import { ControlCallError } from "./control-client.js";
import { failpoint } from "../failpoint.js";
import type { GuardState } from "../decide/guards.js";
import { close, decide, noteSuppressed } from "../incidents/record.js";
import { FINAL_STATUSES, type Incident, type IncidentStatus, type Json, type RungRun } from "../incidents/model.js";
import type { IncidentStore } from "../incidents/store.js";
import { OperatorEvent, type OperatorLog } from "../log.js";
import type { OperatorMetrics } from "../metrics.js";
import { takesKeyFromText } from "../rules/compile.js";
import type { RemediationRule } from "../rules/schema.js";
import type { Target } from "./target.js";
import { verifyUser } from "../verify/verify.js";

/** Raised when the incident could not be persisted: the ladder stops there. */
export class StoreFailure extends Error {
  readonly code = "ERR_RECLAIM_STORE";
}

/**
 * Raised when this operator stopped being the leader: it must not write (the
 * next leader continues from the last persisted step) and stops at once.
 */
export class NotLeader extends Error {
  readonly code = "ERR_RECLAIM_NOT_LEADER";
}

export interface LadderOptions {
  /** Attempts per rung call when the failure is recoverable (default 3). */
  attempts?: number;
  /** Waits between attempts (default 200 ms, then 1 s). */
  backoffMs?: readonly number[];
  /** Time between admission checks during verification (default 50 ms). */
  verifyPollMs?: number;
  /** A canary runner, when the operator has a canary configured. */
  canary?: (message: string) => Promise<CanaryResult>;
  /** Time between writes of a record the store refused, while the ladder holds (default 1000 ms). */
  storeRetryMs?: number;
  /**
   * Deadline of the admission check before the first rung of a rule whose key
   * came from text (default 2000 ms). No answer within it means not confirmed:
   * nothing is done.
   */
  confirmTimeoutMs?: number;
}

/** What the check before a text rule's first rung found. */
type Confirmation = "refused" | "not_confirmed" | "stopped";

export interface LadderDeps {
  store: IncidentStore;
  /** The term's guards: told when an incident closes. Leadership lives here too (`guards.leader()`): a ladder writes nothing once it is lost. */
  guards: GuardState;
  /** "Now" for the records; with timers (a `Timers`), also every wait and deadline of the ladder. */
  clock: Clock | Timers;
  metrics: OperatorMetrics;
  log: OperatorLog;
}

export class LadderRunner {
  private readonly attempts: number;
  private readonly backoff: readonly number[];
  private readonly storeRetryMs: number;
  private readonly confirmTimeoutMs: number;
  private readonly timers: Timers;
  /** The signal of each incident's run: a save that fails holds until it works or this aborts. */
  private readonly signals = new WeakMap<Incident, AbortSignal>();
  /** The "before" snapshot of an incident being taken while its first rung is recorded; awaited before that rung acts. */
  private readonly snapshots = new WeakMap<Incident, Promise<void>>();

  constructor(
    private readonly deps: LadderDeps,
    private readonly options: LadderOptions = {},
  ) {
    this.attempts = options.attempts ?? 3;
    this.backoff = options.backoffMs ?? [200, 1000];
    this.storeRetryMs = options.storeRetryMs ?? 1000;
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? 2000;
    const { clock } = deps;
    this.timers = "sleep" in clock ? clock : { ...systemTimers, now: () => clock.now() };
  }

  /**
   * Runs (or continues) the ladder of `incident` until it is resolved,
   * escalated or failed, or `signal` aborts (its leadership term ended).
   * After `signal` aborts nothing more is sent — no rung, no retry, no
   * check — and nothing more is written: the record shows where it stopped
   * (a rung in flight stays `pending`, and the next term sends it again with
   * the same idempotency key). Rejects with a `StoreFailure` or `NotLeader`.
   */
  async run(incident: Incident, rule: RemediationRule, target: Target, signal?: AbortSignal): Promise<Incident> {
    const { clock } = this.deps;
    const { spec } = rule;
    // Stryker disable next-line ConditionalExpression: storing an undefined signal is storing none (save reads it as none)
    if (signal !== undefined) this.signals.set(incident, signal);
    // After a restartPod rung the user is verified (and later rungs run) on the replacement pod.
    let current = target;
    if (incident.status === "open" && takesKeyFromText(rule)) {
      // Text names the user, and text can be forged: it buys a read, never an action on its own.
      const confirmation = await this.confirm(incident, rule, target, signal);
      if (confirmation !== "refused") return incident;
    } else if (incident.status === "open") {
      // No write of its own: the first rung's write (below, before anything is called) carries this too. The
      // "before" snapshot is taken during that write, and the rung waits for it (ADR 15).
      this.snapshots.set(
        incident,
        this.snapshot(incident, target, signal).then((before) => {
          incident.before = before;
        }),
      );
    }
    if (incident.status === "open") {
      incident.status = "remediating";
      decide(incident, "acting", `acting on user ${incident.target.userId} through ${target.control.baseUrl}`, clock.now());
    }
    while (!FINAL_STATUSES.has(incident.status)) {
      if (signal?.aborted === true) return incident;
      const last = incident.rungs[incident.rungs.length - 1];
      if (last !== undefined && last.outcome === "ok" && last.verification === null) {
        await this.verify(incident, rule, current, last, signal);
        continue;
      }
      if (last !== undefined && (last.outcome === "error" || last.outcome === "timeout")) {
        await this.finish(incident, rule, "failed", `rung ${last.rung} failed: ${last.error ?? last.outcome}`);
        continue;
      }
      const index = last === undefined ? 0 : last.outcome === "pending" ? last.index : last.index + 1;
      const step = spec.ladder[index];
      if (step === undefined) {
        await this.finish(incident, rule, "escalated", `ladder exhausted after ${spec.ladder.length} rung(s) without a verified recovery`);
        continue;
      }
      if (step.rung === "restartPod") current = await this.restartPod(incident, index, spec.ladder.length, step, current, signal);
      else await this.runRung(incident, index, spec.ladder.length, step, current, signal);
    }
    return incident;
  }

  /**
   * `restartPod`: delete the target pod and wait for a Ready replacement.
   * Limited to `maxPerHour` runs per rule (counted from the records, so a
   * restart of the operator does not reset it); over the limit it is skipped
   * and the ladder moves on.
   */
  private async restartPod(
    incident: Incident,
    index: number,
    rungCount: number,
    step: Extract<RemediationRule["spec"]["ladder"][number], { rung: "restartPod" }>,
    target: Target,
    signal?: AbortSignal,
  ): Promise<Target> {
    const { clock, metrics, store } = this.deps;
    await this.snapshotTaken(incident);
    const now = clock.now();
    const resumed = incident.rungs[index] !== undefined;
    const run: RungRun = incident.rungs[index] ?? {
      index,
      rung: "restartPod",
      params: step.params,
      timeoutMs: step.timeout,
      startedAt: new Date(now).toISOString(),
      finishedAt: null,
      durationMs: null,
      attempts: 0,
      outcome: "pending",
      request: { method: "DELETE", url: `pods/${target.namespace ?? "?"}/${target.pod ?? "?"}`, body: null },
      response: null,
      result: null,
      error: null,
      verification: null,
    };
    if (!resumed) incident.rungs.push(run);
    const hourAgo = now - 3_600_000;
    const recent = (await store.list({ rule: incident.rule, since: hourAgo }))
      .filter((i) => i.id !== incident.id)
      .flatMap((i) => i.rungs)
      .filter((r) => r.rung === "restartPod" && r.outcome === "ok" && Date.parse(r.startedAt) > hourAgo).length;
    const finish = async (outcome: RungRun["outcome"], error: string | null, body: Json): Promise<void> => {
      run.outcome = outcome;
      run.error = error;
      run.response = { status: outcome === "ok" ? 200 : 0, body };
      run.finishedAt = new Date(clock.now()).toISOString();
      run.durationMs = clock.now() - now;
      metrics.rungs.inc({ rung: "restartPod", result: outcome });
      decide(incident, "rung_finished", `restartPod ${outcome}${error === null ? "" : `: ${error}`}`, clock.now());
      await this.save(incident);
    };
    if (!resumed && recent >= step.params.maxPerHour) {
      decide(incident, "rung_started", `rung ${index + 1} of ${rungCount}: restartPod`, now);
      await finish("skipped", `restartPod limit reached: ${recent} in the last hour for rule ${incident.rule} (maxPerHour ${step.params.maxPerHour})`, null);
      return target;
    }
    if (target.restart === undefined || target.pod === null) {
      decide(incident, "rung_started", `rung ${index + 1} of ${rungCount}: restartPod`, now);
      await finish("error", "restartPod needs Kubernetes pod targeting (--target pod) and the pod the entry came from", null);
      return target;
    }
    decide(
      incident,
      resumed ? "resumed" : "rung_started",
      resumed ? "restartPod was in flight when the operator stopped; running it again" : `rung ${index + 1} of ${rungCount}: restartPod ${target.namespace}/${target.pod}`,
      now,
    );
    run.attempts++;
    await this.save(incident); // persisted before the pod is deleted
    if (signal?.aborted === true) return target; // the term ended: the next one deletes it (the record says pending)
    const outcome = await target.restart({ waitReadyMs: step.params.waitReady, ...(signal === undefined ? {} : { signal }) });
    if (stopped(signal) && (outcome.replacement === null || !outcome.deleted)) return target; // stopped waiting: not a failure
    const replacement = outcome.replacement;
    if (replacement !== null) {
      incident.target.pod = replacement.pod;
      incident.target.control = replacement.control.baseUrl;
    }
    await finish(
      outcome.deleted && replacement !== null ? "ok" : "error",
      outcome.deleted && replacement !== null ? null : outcome.detail,
      { deleted: outcome.deleted, replacement: replacement?.pod ?? null, detail: outcome.detail },
    );
    return replacement ?? target;
  }

  private async runRung(
    incident: Incident,
    index: number,
    rungCount: number,
    step: Exclude<RemediationRule["spec"]["ladder"][number], { rung: "restartPod" }>,
    target: Target,
    signal?: AbortSignal,
  ): Promise<void> {
    const { clock, metrics, log } = this.deps;
    const userId = incident.target.userId;
    const pathname = `/v1/users/${encodeURIComponent(userId)}/rungs/${step.rung}`;
    let run = incident.rungs[index];
    if (run === undefined) {
      run = {
        index,
        rung: step.rung,
        params: step.params,
        timeoutMs: step.timeout,
        startedAt: new Date(clock.now()).toISOString(),
        finishedAt: null,
        durationMs: null,
        attempts: 0,
        outcome: "pending",
        request: target.control.describe("POST", pathname, step.params),
        response: null,
        result: null,
        error: null,
        verification: null,
      };
      incident.rungs.push(run);
      decide(incident, "rung_started", `rung ${index + 1} of ${rungCount}: ${step.rung} ${JSON.stringify(step.params)}`, clock.now());
    } else {
      decide(
        incident,
        "resumed",
        `rung ${run.rung} was in flight when the operator stopped; sending it again as first sent (${JSON.stringify(run.params)}) with the same idempotency key (a factory that already ran it answers that run's result)`,
        clock.now(),
      );
    }
    // A resumed rung is the same rung: sent with the parameters and timeout it was first sent with, as recorded,
    // even if the rule changed meanwhile, so that its idempotency key still names the same call.
    const rung = run.rung as typeof step.rung;
    const params = run.params;
    const timeoutMs = run.timeoutMs;
    await this.save(incident); // persisted before the call
    await this.snapshotTaken(incident);
    // Stryker disable next-line StringLiteral: a failpoint's name matters only with RECLAIM_FAILPOINT set (the crash tests)
    failpoint("after-persist");
    const started = clock.now();
    // One key per rung of this incident, derived from the record: a retry, or a restarted operator resuming this
    // pending rung, gets the factory's result of the run that already happened instead of running it again (ADR 13).
    const idempotencyKey = `${incident.id}/${index}`;
    // Stryker disable next-line BooleanLiteral: read only on the ok path, which sets it first
    let replayed = false;
    for (;;) {
      if (stopped(signal)) return; // nothing is sent once the term ended, retries included
      run.attempts++;
      try {
        const answer = await target.control.runRung(userId, rung, params, timeoutMs, idempotencyKey, signal);
        // Stryker disable next-line StringLiteral: as above
        failpoint("after-rung");
        replayed = answer.replayed;
        run.outcome = "ok";
        run.response = { status: answer.status, body: answer.body };
        run.result = answer.value;
        run.error = null;
        break;
      } catch (err) {
        if (!(err instanceof ControlCallError)) throw err;
        if (err.kind === "aborted") return; // the term ended mid-call: the rung stays pending for the next term
        if (
          isNoConnections(err) &&
          // Stryker disable next-line ConditionalExpression: only degrade is answered 409 no_connections
          rung === "degrade"
        ) {
          // The user holds no connection now (they all left): there is nothing to raise, and nothing stops them
          // connecting. Not a failure of the rung: verification says whether the user gets in.
          run.outcome = "ok";
          run.response = { status: 409, body: err.body }; // isNoConnections: a 409
          run.result = null;
          run.error = null;
          break;
        }
        run.error = err.message;
        run.response = err.status === null ? null : { status: err.status, body: err.body };
        const wait = this.backoff[Math.min(run.attempts - 1, this.backoff.length - 1)] ?? 1000;
        if (err.recoverable && run.attempts < this.attempts && !stopped(signal)) {
          decide(incident, "retry", `${rung} attempt ${run.attempts} failed (${err.message}); retrying in ${wait} ms`, clock.now());
          await this.save(incident);
          await this.timers.sleep(wait, signal);
          continue;
        }
        run.outcome = err.kind === "timeout" ? "timeout" : "error";
        break;
      }
    }
    run.finishedAt = new Date(clock.now()).toISOString();
    run.durationMs = clock.now() - started;
    metrics.rungs.inc({ rung, result: run.outcome });
    const removed = run.result?.removed.length ?? 0;
    decide(
      incident,
      "rung_finished",
      run.outcome === "ok" && run.result === null
        ? `${rung} not needed: the factory says the user holds no connection now (409 no_connections); verifying`
        : run.outcome === "ok"
        ? // Stryker disable next-line OptionalChaining: an ok rung here has a result (null is the branch above)
          `${rung} removed ${removed} manager(s); ${run.result?.remaining}/${run.result?.effectiveLimit} remain; factory says admit=${run.result?.admit}` +
            (replayed ? ` (the factory had already run it for this incident: result of that run, key ${idempotencyKey}; not run again)` : "")
        : `${rung} ${run.outcome} after ${run.attempts} attempt(s): ${run.error}`,
      clock.now(),
    );
    log.info(
      OperatorEvent.rung,
      { incident: incident.id, rule: incident.rule, userId, rung, outcome: run.outcome, removed, attempts: run.attempts },
      `Incident ${incident.id}: rung ${rung} ${run.outcome}${run.outcome === "ok" ? `, removed ${removed}` : `: ${run.error}`}`,
    );
    await this.save(incident);
  }

  private async verify(incident: Incident, rule: RemediationRule, target: Target, run: RungRun, signal?: AbortSignal): Promise<void> {
    const { clock, log } = this.deps;
    const { verify } = rule.spec;
    const canary = verify.canary !== undefined ? this.options.canary : undefined;
    // Stryker disable next-line LogicalOperator,StringLiteral,OptionalChaining: read only when the rule has a canary, whose message has a default
    const message = verify.canary?.message ?? "";
    const result = run.result;
    if (result !== null && result.removed.length === 0 && !result.admit && run.rung !== "degrade") {
      // It freed nothing and the factory itself says no: waiting out the verify timeout would only delay the next rung.
      const now = clock.now();
      run.verification = {
        at: new Date(now).toISOString(),
        verified: false,
        admission: { userId: incident.target.userId, admit: false, active: result.remaining, effectiveLimit: result.effectiveLimit, queued: 0 },
        heldMs: 0,
        durationMs: 0,
        canary: null,
        detail: `${run.rung} freed nothing and the factory would not admit (${result.remaining}/${result.effectiveLimit}): next rung`,
      };
      decide(incident, "not_verified", `after ${run.rung}: ${run.verification.detail}`, now);
      await this.save(incident);
      return;
    }
    const after = result?.managerIds;
    const verification = await verifyUser(target.control, incident.target.userId, this.timers, {
      settleMs: verify.settle,
      timeoutMs: verify.timeout,
      ...(after === undefined ? {} : { admittedSince: () => this.admittedSince(target, incident.target.userId, new Set(after), signal) }),
      // Stryker disable next-line ConditionalExpression,EqualityOperator: a pollMs of undefined is verification's default
      ...(this.options.verifyPollMs === undefined ? {} : { pollMs: this.options.verifyPollMs }),
      ...(canary === undefined ? {} : { canary: () => canary(message) }),
      // Stryker disable next-line ConditionalExpression,EqualityOperator: a signal of undefined is none
      ...(signal === undefined ? {} : { signal }),
    });
    if (signal?.aborted === true && !verification.verified) return; // stopped mid-check: verify again after a restart
    run.verification = verification;
    decide(incident, verification.verified ? "verified" : "not_verified", `after ${run.rung}: ${verification.detail}`, clock.now());
    log.info(
      OperatorEvent.verification,
      { incident: incident.id, rule: incident.rule, userId: incident.target.userId, rung: run.rung, verified: verification.verified },
      `Incident ${incident.id}: after ${run.rung}, ${verification.detail}`,
    );
    if (verification.verified) {
      // Stryker disable next-line ConditionalExpression,EqualityOperator: verified means the factory answered an admission
      incident.after = verification.admission === null ? null : { ...verification.admission, at: verification.at };
      await this.finish(incident, rule, "resolved", `user ${incident.target.userId} can connect again (verified after ${run.rung})`);
    } else if (verification.unknown === true) {
      // Fail safe: escalating to the next rung would close live tabs on a guess. Stop and let on-call decide.
      await this.finish(
        incident,
        rule,
        "failed",
        `could not verify after ${run.rung} (${verification.detail}); stopped without running the next rung: whether the user can connect is not known`,
      );
    } else {
      await this.save(incident);
    }
  }

  private async finish(incident: Incident, rule: RemediationRule, status: IncidentStatus, detail: string): Promise<void> {
    const { clock, metrics, guards, log } = this.deps;
    close(incident, status, clock.now(), detail);
    if (status === "escalated") {
      incident.followUps.push(
        "Every rung ran and the user still cannot connect: page the owner of the chat backend.",
        "Check the factory's pod (memory, event loop lag) and the user's connections: GET /v1/users/" + incident.target.userId,
      );
    } else if (status === "failed") {
      incident.followUps.push(
        "The control API could not be used: check the factory's control port, its token and the network path.",
        `Check by hand whether user ${incident.target.userId} can connect (GET /v1/users/${incident.target.userId}/admission); no further rung was run.`,
      );
    }
    await this.save(incident);
    metrics.incidents.inc({ status });
    if (
      status === "resolved" &&
      // Stryker disable next-line ConditionalExpression,EqualityOperator: a resolved incident has its mitigation time (close() sets it)
      incident.durations.mitigateMs !== null
    )
      metrics.detectToResolved.observe(incident.durations.mitigateMs / 1000);
    guards.closed(incident);
    log[status === "resolved" ? "info" : "warn"](
      OperatorEvent.incidentClosed,
      { incident: incident.id, rule: incident.rule, userId: incident.target.userId, status },
      `Incident ${incident.id} ${status}: ${detail}`,
    );
  }

  /**
   * Before the first rung of a rule whose key came from text: asks the
   * factory, within `confirmTimeoutMs` and the run's signal, whether the user
   * would be refused now. Refused: the answer is the "before" snapshot and the
   * ladder goes on. Admitted, or no valid answer: the incident is closed
   * `suppressed` (`not_confirmed`), saying why, and nothing else is sent.
   * Stopped (the term ended): nothing is written; the next term asks again.
   */
  private async confirm(incident: Incident, rule: RemediationRule, target: Target, signal?: AbortSignal): Promise<Confirmation> {
    const { clock } = this.deps;
    const userId = incident.target.userId;
    let why: string;
    try {
      const { value } = await target.control.admission(userId, this.confirmTimeoutMs, signal);
      if (!value.admit) {
        incident.before = { ...value, at: new Date(clock.now()).toISOString() };
        decide(
          incident,
          "guards_passed",
          `the factory confirms user ${userId} is refused now (${value.active}/${value.effectiveLimit}, admit=false): ` +
            `the key came from the text of a log line, so this was asked before any rung`,
          clock.now(),
        );
        return "refused";
      }
      why = `the factory admits user ${userId} now (${value.active}/${value.effectiveLimit}, admit=true)`;
    } catch (err) {
      if (!(err instanceof ControlCallError)) throw err;
      // Stryker disable next-line ConditionalExpression,LogicalOperator,EqualityOperator,StringLiteral: an abort is the signal's, and the check below stops it too
      if (err.kind === "aborted" || stopped(signal)) return "stopped";
      why = `the factory did not say whether user ${userId} is refused (${err.message})`;
    }
    // Stryker disable next-line StringLiteral: compared only with "refused"
    if (stopped(signal)) return "stopped";
    const now = clock.now();
    noteSuppressed(incident, "not_confirmed", now);
    decide(incident, "suppressed", `not acted on (not_confirmed): ${why}`, now);
    await this.finish(
      incident,
      rule,
      "suppressed",
      `not_confirmed: ${why}; rule ${rule.metadata.name} takes the user from log text, which only acts once the factory confirms the user is refused`,
    );
    // Stryker disable next-line StringLiteral: compared only with "refused"
    return "not_confirmed";
  }

  /** Waits for the "before" snapshot of an incident this run opened, if it is still being taken (never rejects). */
  private async snapshotTaken(incident: Incident): Promise<void> {
    const taking = this.snapshots.get(incident);
    // Stryker disable next-line ConditionalExpression: awaiting undefined and deleting a missing entry do nothing
    if (taking === undefined) return;
    await taking;
    this.snapshots.delete(incident);
  }

  /** How many of the user's managers now were not there right after the rung: connections admitted since. */
  private async admittedSince(target: Target, userId: string, afterRung: ReadonlySet<string>, signal?: AbortSignal): Promise<number> {
    const { value } = await target.control.user(userId, 2000, signal);
    return value.managers.filter(
      (m) =>
        !afterRung.has(m.id) &&
        // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral: the factory lists a manager only while the registry holds it, and removes it when its socket closes
        m.socketState === "OPEN",
    ).length;
  }

  private async snapshot(incident: Incident, target: Target, signal?: AbortSignal): Promise<Incident["before"]> {
    try {
      const { value } = await target.control.admission(incident.target.userId, 2000, signal);
      return { ...value, at: new Date(this.deps.clock.now()).toISOString() };
    } catch {
      return null;
    }
  }

  /**
   * Persists the record. When the write fails, the ladder HOLDS: nothing more
   * is done for this incident (no rung, no verification) and the write is
   * tried again every `storeRetryMs` until it works, then the ladder goes on
   * from where it was. It gives up (StoreFailure) only when its run's signal
   * aborts (the term ended; the record says where it stopped), or at once
   * when the run has no signal.
   */
  private async save(incident: Incident): Promise<void> {
    const { metrics, log } = this.deps;
    const signal = this.signals.get(incident);
    let failures = 0;
    const giveUp = (err: unknown): StoreFailure => {
      // Stryker disable next-line ConditionalExpression,EqualityOperator: giveUp runs only after a failure
      if (failures > 0) metrics.storeWaiting.dec();
      return new StoreFailure(`could not persist incident ${incident.id}`, { cause: err });
    };
    for (;;) {
      if (!this.deps.guards.leader() || signal?.aborted === true) {
        if (failures > 0) metrics.storeWaiting.dec();
        throw new NotLeader(`not the leader any more; incident ${incident.id} is left for the next one`);
      }
      try {
        await this.deps.store.save(incident);
      } catch (err) {
        failures++;
        metrics.storeErrors.inc();
        if (failures === 1) metrics.storeWaiting.inc();
        // Loud at the first failure, then once a minute rather than at every attempt.
        if (failures === 1 || failures % 60 === 0) {
          log.error(
            OperatorEvent.storeError,
            { incident: incident.id, rule: incident.rule, failures },
            `Cannot write incident ${incident.id}; NOT acting further until it is recorded` +
              `${signal === undefined ? "" : ` (trying again every ${this.storeRetryMs} ms)`}: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        if (signal === undefined || signal.aborted) throw giveUp(err);
        await this.timers.sleep(this.storeRetryMs, signal);
        if (signal.aborted) throw giveUp(err);
        continue;
      }
      if (failures > 0) {
        metrics.storeWaiting.dec();
        log.warn(
          OperatorEvent.storeError,
          { incident: incident.id, rule: incident.rule, failures },
          `Incident ${incident.id} recorded again after ${failures} failed write(s); its ladder goes on`,
        );
      }
      return;
    }
  }
}

/** Has the run's term ended? A function, so that TypeScript does not keep a narrowing of `aborted` across awaits. */
function stopped(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** The factory's answer to a `degrade` for a user who holds no connection (409 `no_connections`). */
function isNoConnections(err: ControlCallError): boolean {
  // Stryker disable next-line ConditionalExpression,LogicalOperator: the factory says no_connections only in a 409's body
  if (err.kind !== "http" || err.status !== 409) return false;
  const body = err.body as { error?: { code?: unknown } } | null;
  // Stryker disable next-line OptionalChaining,ConditionalExpression,EqualityOperator,StringLiteral: the factory's only 409 is no_connections, and its error bodies always carry an error
  return body?.error?.code === "no_connections";
}
