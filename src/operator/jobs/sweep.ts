/**
 * The sweep: asks every known factory which users are at their limit, and
 * sends one synthetic trigger through the normal path (`Engine.onTrigger`:
 * guards, a persisted incident, the ladder) for each of them the factory is
 * REFUSING: its last refusal of the user is at most `refusedWithinMs` old.
 * It catches lockouts whose log lines were lost or never reached the
 * operator.
 *
 * A user at the limit is not locked out: someone with 20 live tabs who never
 * asks for a 21st needs nothing, and a sweep that acted for them would close
 * one of their tabs every run. Such users (and every user of a factory too
 * old to say when it refused them) are counted, never acted on. A factory
 * that does not answer is counted in the outcome, not fatal: the others are
 * still swept.
 */
import type { Clock } from "../../contract/clock.js";
import { REFUSAL_RETENTION_MS } from "../../contract/control.js";
import type { Trigger } from "../detect/detector.js";
import type { TriggerOutcome } from "../decide/engine.js";
import type { CompiledRule } from "../rules/compile.js";
import { syntheticTrigger } from "../detect/synthetic.js";
import type { Target } from "../act/target.js";
import type { Job } from "./scheduler.js";
import { DEFAULT_REFUSED_WITHIN_MS, refusedRecently } from "../detect/locked-out.js";

/**
 * The rule sweep triggers are raised for when none is configured: the metric
 * twin of factory-lockout (rules/factory-users-at-limit.yaml), whose guards
 * and gentler ladder are meant for users acted on without their HARD LIMIT
 * line in hand.
 */
export const DEFAULT_SWEEP_RULE = "factory-users-at-limit";
/** The sweep's schedule when none is configured: every 5 minutes. */
export const DEFAULT_SWEEP_SCHEDULE = "*/5 * * * *";
/** How long one factory may take to answer `GET /v1/users?atLimit=true`. */
export const DEFAULT_SWEEP_TIMEOUT_MS = 5000;
/** How recent a refusal must be for the sweep to act (10 min, `DEFAULT_REFUSED_WITHIN_MS`). */
export const DEFAULT_SWEEP_REFUSED_WITHIN_MS = DEFAULT_REFUSED_WITHIN_MS;
/** Shortest `refusedWithinMs` (1 s). */
export const MIN_SWEEP_REFUSED_WITHIN_MS = 1000;
/**
 * Longest `refusedWithinMs`: the factory's `REFUSAL_RETENTION_MS` (1 h). It
 * forgets older refusals of users who left, so a longer window would not mean
 * what it says; and an hour-old refusal says little about a lockout now.
 */
export const MAX_SWEEP_REFUSED_WITHIN_MS = REFUSAL_RETENTION_MS;

/** The sweep's rule is not in the rule set (renamed, deleted, invalid): the run fails, so that it shows. */
export class SweepRuleError extends Error {
  readonly code = "ERR_RECLAIM_SWEEP_RULE";
  constructor(readonly rule: string) {
    super(`the sweep rule ${JSON.stringify(rule)} is not loaded: no sweep triggers were raised`);
    this.name = "SweepRuleError";
  }
}

/** What the sweep needs; every dependency is injected. */
export interface SweepDeps {
  /** The factories to ask: the static factory of `--control`, or the factory pods (Kubernetes mode). Called once per run. */
  targets: () => Promise<readonly Target[]>;
  /** The name of the rule sweep triggers are raised for (default `factory-users-at-limit`). */
  ruleName?: string;
  /** Looks a rule up in the rule set in force now (rules reload while the operator runs). */
  rule: (name: string) => CompiledRule | null | undefined;
  /** The normal path of a trigger: `engine.onTrigger`. */
  onTrigger: (trigger: Trigger) => Promise<TriggerOutcome>;
  /** "Now": the time of each trigger. */
  clock: Clock;
  /** Per factory (default 5000 ms). */
  timeoutMs?: number;
  /**
   * Act only for a user whose last refusal (`lastRefusedAt`) is at most this
   * old, measured on the factory's clock (its answer's `asOf`) so clock skew
   * between the two cannot make an old refusal look new (default 600000:
   * 10 min; from 1000 to 3600000). Keep it at least the schedule's period,
   * or a refusal between two runs can be missed.
   */
  refusedWithinMs?: number;
  /** Is this replica the leader? When it is not, the sweep asks nothing and raises nothing. Default: always. */
  isLeader?: () => boolean;
  /** Default `*\/5 * * * *`. */
  schedule?: string;
}

/** One factory that did not answer. */
export interface UnreachableFactory {
  control: string;
  pod: string | null;
  error: string;
}

/** What one sweep found and did. */
export interface SweepResult {
  /** Distinct factories asked (by control URL). */
  factories: number;
  unreachable: UnreachableFactory[];
  /** (factory, user) pairs at their limit. */
  usersAtLimit: number;
  /**
   * Of those: the factory did not refuse them within `refusedWithinMs`, or
   * is too old to say (no `lastRefusedAt`). Never acted on.
   */
  atLimitNotRefused: number;
  /** Triggers passed to `onTrigger`. */
  triggers: number;
  /** Of those: incidents opened (or recorded as dry runs), and suppressed by a guard, by reason. */
  acted: number;
  suppressed: Record<string, number>;
  /** Users the factory named whose id is not a valid user id: never acted on. */
  invalidUsers: number;
  /** The sweep stopped early (the scheduler is stopping). */
  aborted: boolean;
  /** Not the leader: nothing was asked. */
  notLeader: boolean;
}

/** The sweep as a scheduled job (`name: "sweep"`). */
export class SweepJob implements Job {
  readonly name = "sweep";
  readonly schedule: string;
  private readonly ruleName: string;
  private readonly timeoutMs: number;
  private readonly refusedWithinMs: number;

  constructor(private readonly deps: SweepDeps) {
    this.schedule = deps.schedule ?? DEFAULT_SWEEP_SCHEDULE;
    this.ruleName = deps.ruleName ?? DEFAULT_SWEEP_RULE;
    this.timeoutMs = deps.timeoutMs ?? DEFAULT_SWEEP_TIMEOUT_MS;
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs <= 0) {
      throw new TypeError(`SweepJob: timeoutMs must be a positive integer of ms, got ${String(deps.timeoutMs)}`);
    }
    this.refusedWithinMs = deps.refusedWithinMs ?? DEFAULT_SWEEP_REFUSED_WITHIN_MS;
    if (!Number.isInteger(this.refusedWithinMs) || this.refusedWithinMs < MIN_SWEEP_REFUSED_WITHIN_MS || this.refusedWithinMs > MAX_SWEEP_REFUSED_WITHIN_MS) {
      throw new TypeError(
        `SweepJob: refusedWithinMs must be an integer of ms from ${MIN_SWEEP_REFUSED_WITHIN_MS} to ${MAX_SWEEP_REFUSED_WITHIN_MS}, got ${String(deps.refusedWithinMs)}`,
      );
    }
  }

  async run(signal?: AbortSignal): Promise<string> {
    return formatSweep(await this.sweep(signal));
  }

  /** One sweep; throws SweepRuleError when the rule is not loaded, and whatever `targets()` throws. */
  async sweep(signal?: AbortSignal): Promise<SweepResult> {
    const result: SweepResult = {
      factories: 0,
      unreachable: [],
      usersAtLimit: 0,
      atLimitNotRefused: 0,
      triggers: 0,
      acted: 0,
      suppressed: {},
      invalidUsers: 0,
      aborted: false,
      notLeader: false,
    };
    if (this.deps.isLeader !== undefined && !this.deps.isLeader()) return { ...result, notLeader: true };
    // Checked first: without the rule nothing could be raised, and asking the factories would hide that.
    if (!this.deps.rule(this.ruleName)) throw new SweepRuleError(this.ruleName);

    const targets = uniqueByControl(await this.deps.targets());
    result.factories = targets.length;
    const answers = await Promise.all(
      targets.map(async (target) => {
        try {
          const { value } = await target.control.usersAtLimit(this.timeoutMs);
          return { target, users: value.users, asOf: value.asOf === undefined ? null : Date.parse(value.asOf) };
        } catch (err) {
          result.unreachable.push({ control: target.control.baseUrl, pod: target.pod, error: err instanceof Error ? err.message : String(err) });
          return null;
        }
      }),
    );

    for (const answer of answers) {
      if (answer === null) continue;
      const { target, users } = answer;
      // The same order every run, whatever order the factory lists them in.
      for (const user of [...users].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0))) {
        result.usersAtLimit++;
        const now = this.deps.clock.now();
        // "Now" as the factory saw it when it answered; an older factory does not say, and its users are never acted on anyway.
        const factoryNow = answer.asOf ?? now;
        const refused = refusedRecently(user, factoryNow, this.refusedWithinMs);
        if (refused === null) {
          result.atLimitNotRefused++;
          continue;
        }
        if (signal?.aborted) {
          result.aborted = true;
          continue;
        }
        // Looked up again for each trigger: a reload during the sweep uses the new rule, a removal stops it.
        const rule = this.deps.rule(this.ruleName);
        if (!rule) throw new SweepRuleError(this.ruleName);
        const where = target.pod ?? target.control.baseUrl;
        const since = user.atLimitSince === null || user.atLimitSince === undefined ? null : Date.parse(user.atLimitSince);
        const trigger = syntheticTrigger(rule, { userId: user.userId, pod: target.pod, namespace: target.namespace }, now, {
          kind: "sweep",
          message:
            `sweep: user ${user.userId} at ${user.active}/${user.effectiveLimit} managers${user.atLimitSince ? ` since ${user.atLimitSince}` : ""}` +
            ` (limit ${user.limit}, ${user.queued} queued), refused ${user.refusals ?? "?"} ${user.refusals === 1 ? "time" : "times"}, last at ${refused.lastRefusedAt}, on ${where}`,
          fields: {
            // `managers` and `limit` as the factory's log lines name them, so rule titles render the same.
            managers: user.active,
            limit: user.limit,
            effectiveLimit: user.effectiveLimit,
            queued: user.queued,
            control: target.control.baseUrl,
            // The factory's own times, as it wrote them.
            lastRefusedAt: refused.lastRefusedAt,
            ...(user.refusals === undefined ? {} : { refusals: user.refusals }),
            ...(user.atLimitSince ? { atLimitSince: user.atLimitSince } : {}),
          },
        });
        if (trigger === null) {
          result.invalidUsers++;
          continue;
        }
        // The incident dates from when the user reached the limit, not from when the sweep looked: that is
        // how long they have been stuck. Measured as an age on the factory's clock and laid on ours, so it
        // is the factory's atLimitSince when the clocks agree, and never in the future when they do not.
        if (since !== null) trigger.firstAt = now - Math.max(0, factoryNow - since);
        result.triggers++;
        const outcome = await this.deps.onTrigger(trigger);
        if ("acted" in outcome) result.acted++;
        else result.suppressed[outcome.suppressed] = (result.suppressed[outcome.suppressed] ?? 0) + 1;
      }
    }
    result.unreachable.sort((a, b) => (a.control < b.control ? -1 : a.control > b.control ? 1 : 0));
    return result;
  }
}

/**
 * The one-line outcome, e.g. `3 factories, 3 users at their limit (1 not
 * refused recently: left alone), 2 triggers: 1 acted, 1 suppressed (cooldown
 * 1) (1 factory unreachable: http://10.0.0.12:8081)`.
 */
export function formatSweep(r: SweepResult): string {
  if (r.notLeader) return "not the leader: nothing swept";
  let atLimit = `${r.usersAtLimit} ${plural(r.usersAtLimit, "user", "users")} at their limit`;
  if (r.atLimitNotRefused > 0) atLimit += ` (${r.atLimitNotRefused} not refused recently: left alone)`;
  const parts = [`${r.factories} ${plural(r.factories, "factory", "factories")}`, atLimit];
  let triggers = `${r.triggers} ${plural(r.triggers, "trigger", "triggers")}`;
  const suppressed = Object.entries(r.suppressed).sort(([a], [b]) => (a < b ? -1 : 1));
  const suppressedTotal = suppressed.reduce((n, [, c]) => n + c, 0);
  if (r.triggers > 0) {
    triggers += `: ${r.acted} acted, ${suppressedTotal} suppressed`;
    if (suppressed.length > 0) triggers += ` (${suppressed.map(([reason, n]) => `${reason} ${n}`).join(", ")})`;
  }
  parts.push(triggers);
  let line = parts.join(", ");
  const notes: string[] = [];
  if (r.unreachable.length > 0) {
    const first = r.unreachable.slice(0, 3).map((u) => u.pod ?? u.control);
    const more = r.unreachable.length - first.length;
    notes.push(`${r.unreachable.length} ${plural(r.unreachable.length, "factory", "factories")} unreachable: ${first.join(", ")}${more > 0 ? `, and ${more} more` : ""}`);
  }
  if (r.invalidUsers > 0) notes.push(`${r.invalidUsers} invalid user ${plural(r.invalidUsers, "id", "ids")} ignored`);
  if (r.aborted) notes.push("stopped early: the scheduler is stopping");
  if (notes.length > 0) line += ` (${notes.join("; ")})`;
  return line;
}

/** One target per control URL: two pods never share one, and asking a factory twice would double its triggers. */
function uniqueByControl(targets: readonly Target[]): Target[] {
  const seen = new Map<string, Target>();
  for (const t of targets) if (!seen.has(t.control.baseUrl)) seen.set(t.control.baseUrl, t);
  return [...seen.values()].sort((a, b) => (a.control.baseUrl < b.control.baseUrl ? -1 : a.control.baseUrl > b.control.baseUrl ? 1 : 0));
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : many;
}
