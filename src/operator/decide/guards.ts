/**
 * Guards: an ordered list of small checks between a trigger and an action.
 * Each returns whether it stops the trigger; the first that does gives the
 * reason (a closed set, so metric labels stay bounded), and the reason is
 * recorded on the key's open or latest incident.
 *
 * Order: not_leader, in_flight, user_busy, cooldown, max_attempts,
 * rate_limit, circuit_open, dry_run. `user_busy` spans rules: while any rule's
 * ladder is acting on a user (on the same pod, or where either side does not
 * know the pod), a trigger of another rule for that user waits its turn. Dry run comes last on purpose: a dry-run rule then
 * records exactly the incidents it would have acted on, with the same
 * cooldowns and limits (ADR 8).
 *
 * The state (in-flight keys, cooldowns, attempts, hourly counts, circuit
 * breakers) is derived from persisted incidents, so a restart rebuilds it
 * from the store.
 */
import type { Trigger } from "../detect/detector.js";
import { FINAL_STATUSES, type Incident, type SuppressReason } from "../incidents/model.js";
import { SuppressionRollups } from "../incidents/rollup.js";

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** What a guard sees. */
export interface GuardContext {
  trigger: Trigger;
  /** The operator's "now": the wall clock live, the event-time watermark in replay. */
  now: number;
  /** `--dry-run` for every rule. */
  globalDryRun: boolean;
}

interface Guard {
  reason: SuppressReason;
  /** True when this guard stops the trigger. */
  stops(ctx: GuardContext, state: GuardState): boolean;
}

export interface GuardVerdict {
  /** Why the trigger is not acted on, or null to act. */
  reason: SuppressReason | null;
  /** The guards checked before the verdict, in order (for the record). */
  passed: SuppressReason[];
}

interface Breaker {
  failures: number;
  openedAt: number | null;
}

const keyIdOf = (rule: string, keyString: string): string => `${rule}\u0000${keyString}`;

/** The guards' memory. Built from the store at start, then kept up to date by the operator. */
export class GuardState {
  /** Is this operator allowed to act (leader election comes later: always true now)? */
  leader: () => boolean = () => true;
  private readonly inFlight = new Map<string, string>();
  /** In-flight incidents by user: their pods ("" when unknown), across rules. */
  private readonly busyUsers = new Map<string, Map<string, string>>();
  private readonly latest = new Map<string, string>();
  private readonly lastClosed = new Map<string, number>();
  private readonly attempts = new Map<string, number[]>();
  private readonly hourly = new Map<string, number[]>();
  private readonly breakers = new Map<string, Breaker>();
  /** Rollup records of keys a rule-wide guard stopped (ADR 12): never any key's incident, so kept apart. */
  readonly rollups = new SuppressionRollups();

  /** The open incident of a key, else its latest one: where a suppressed trigger is counted. */
  latestIncident(rule: string, keyString: string): string | null {
    const id = keyIdOf(rule, keyString);
    return this.inFlight.get(id) ?? this.latest.get(id) ?? null;
  }

  inFlightFor(rule: string, keyString: string): boolean {
    return this.inFlight.has(keyIdOf(rule, keyString));
  }

  /** Is any rule's ladder acting on this user now (on this pod, or where either pod is unknown)? */
  userBusy(userId: string, pod: string | null): boolean {
    const pods = this.busyUsers.get(userId);
    if (pods === undefined || pods.size === 0) return false;
    return pod === null || pods.has(pod) || pods.has("");
  }

  cooling(rule: string, keyString: string, now: number, cooldownMs: number): boolean {
    const closed = this.lastClosed.get(keyIdOf(rule, keyString));
    return closed !== undefined && now - closed < cooldownMs;
  }

  attemptsToday(rule: string, keyString: string, now: number): number {
    return recent(this.attempts.get(keyIdOf(rule, keyString)), now - DAY_MS);
  }

  actedThisHour(rule: string, now: number): number {
    return recent(this.hourly.get(rule), now - HOUR_MS);
  }

  circuitOpen(rule: string, now: number, openForMs: number): boolean {
    const b = this.breakers.get(rule);
    return b !== undefined && b.openedAt !== null && now < b.openedAt + openForMs;
  }

  /** Consecutive failed incidents of a rule (for the record and the metric). */
  failuresInARow(rule: string): number {
    return this.breakers.get(rule)?.failures ?? 0;
  }

  /** An incident was opened (acted on unless it is a dry run or suppressed). */
  opened(incident: Incident, openedAt: number = Date.parse(incident.detectedAt)): void {
    if (incident.rollup !== undefined) return;
    const id = keyIdOf(incident.rule, incident.keyString);
    this.latest.set(id, incident.id);
    if (incident.dryRun || incident.status === "suppressed") return;
    if (!FINAL_STATUSES.has(incident.status)) {
      this.inFlight.set(id, incident.id);
      const pods = this.busyUsers.get(incident.target.userId) ?? new Map<string, string>();
      pods.set(incident.target.pod ?? "", incident.id);
      this.busyUsers.set(incident.target.userId, pods);
    }
    push(this.attempts, id, openedAt, openedAt - DAY_MS);
    push(this.hourly, incident.rule, openedAt, openedAt - HOUR_MS);
  }

  /** An incident reached a final status. `failuresToOpen` is the rule's circuit-breaker threshold. */
  closed(incident: Incident, failuresToOpen: number): void {
    if (incident.rollup !== undefined) return;
    const id = keyIdOf(incident.rule, incident.keyString);
    const closedAt = incident.closedAt === null ? Date.parse(incident.updatedAt) : Date.parse(incident.closedAt);
    if (this.inFlight.get(id) === incident.id) this.inFlight.delete(id);
    const pods = this.busyUsers.get(incident.target.userId);
    if (pods !== undefined) {
      for (const [pod, holder] of pods) if (holder === incident.id) pods.delete(pod);
      if (pods.size === 0) this.busyUsers.delete(incident.target.userId);
    }
    // A record of a trigger that was NOT acted on starts no cooldown: the user would wait for nothing.
    if (incident.status === "suppressed" && !incident.dryRun) return;
    this.lastClosed.set(id, Math.max(closedAt, this.lastClosed.get(id) ?? 0));
    if (incident.dryRun || incident.status === "suppressed" || incident.status === "interrupted") return;
    const b = this.breakers.get(incident.rule) ?? { failures: 0, openedAt: null };
    if (incident.status === "resolved") {
      b.failures = 0;
      b.openedAt = null;
    } else {
      b.failures++;
      if (b.failures >= failuresToOpen) b.openedAt = closedAt;
    }
    this.breakers.set(incident.rule, b);
  }

  /**
   * Rebuilds the state from stored incidents (any order).
   * @param failuresToOpen the circuit-breaker threshold of a rule (default 3 when the rule is gone)
   * @param now when given, rollup records of hours before the previous one are not kept in memory
   */
  rebuild(incidents: readonly Incident[], failuresToOpen: (rule: string) => number, now?: number): void {
    const ordered = [...incidents].sort((a, b) => Date.parse(a.detectedAt) - Date.parse(b.detectedAt));
    for (const incident of ordered) {
      if (incident.rollup !== undefined) {
        this.rollups.restore(incident, now);
        continue;
      }
      this.opened(incident);
      if (FINAL_STATUSES.has(incident.status)) this.closed(incident, failuresToOpen(incident.rule));
    }
  }
}

/** The guards, in order. */
export const GUARDS: readonly Guard[] = [
  { reason: "not_leader", stops: (_ctx, s) => !s.leader() },
  { reason: "in_flight", stops: ({ trigger: t }, s) => s.inFlightFor(t.rule.name, t.keyString) },
  { reason: "user_busy", stops: ({ trigger: t }, s) => s.userBusy(t.userId, t.pod) },
  {
    reason: "cooldown",
    stops: ({ trigger: t, now }, s) => s.cooling(t.rule.name, t.keyString, now, t.rule.rule.spec.guards.cooldown),
  },
  {
    reason: "max_attempts",
    stops: ({ trigger: t, now }, s) => s.attemptsToday(t.rule.name, t.keyString, now) >= t.rule.rule.spec.guards.maxAttemptsPerDay,
  },
  {
    reason: "rate_limit",
    stops: ({ trigger: t, now }, s) => s.actedThisHour(t.rule.name, now) >= t.rule.rule.spec.guards.maxPerHour,
  },
  {
    reason: "circuit_open",
    stops: ({ trigger: t, now }, s) => s.circuitOpen(t.rule.name, now, t.rule.rule.spec.guards.circuitBreaker.openFor),
  },
  { reason: "dry_run", stops: ({ trigger: t, globalDryRun }) => globalDryRun || t.rule.rule.spec.guards.dryRun },
];

/** Runs the guards in order; the first that stops the trigger gives the reason. */
export function checkGuards(ctx: GuardContext, state: GuardState, guards: readonly Guard[] = GUARDS): GuardVerdict {
  const passed: SuppressReason[] = [];
  for (const guard of guards) {
    if (guard.stops(ctx, state)) return { reason: guard.reason, passed };
    passed.push(guard.reason);
  }
  return { reason: null, passed };
}

function recent(times: number[] | undefined, since: number): number {
  if (times === undefined) return 0;
  let n = 0;
  for (const t of times) if (t > since) n++;
  return n;
}

function push(map: Map<string, number[]>, id: string, t: number, pruneBefore: number): void {
  const times = (map.get(id) ?? []).filter((x) => x > pruneBefore);
  times.push(t);
  map.set(id, times);
}
