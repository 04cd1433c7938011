/**
 * Guards: an ordered list of small checks between a trigger and an action.
 * Each returns whether it stops the trigger; the first that does gives the
 * reason (a closed set, so metric labels stay bounded), and the reason is
 * recorded on the key's open or latest incident.
 *
 * Order: not_leader, paused, silenced, in_flight, user_busy, cooldown,
 * max_attempts, rate_limit, circuit_open, dry_run. `paused` and `silenced`
 * are on-call's holds (ADR 22): a person's word comes before any guard of the
 * rules, and their verdict carries which hold, whose, and why, for the
 * record. `user_busy` spans rules: while any rule's
 * ladder is acting on a user (on the same pod, or where either side does not
 * know the pod), a trigger of another rule for that user waits its turn.
 *
 * Dry run comes last on purpose: a dry-run rule then records exactly the
 * incidents it would have acted on, with the same cooldowns and limits (ADR 8)
 * — counted in a ledger of their own. Live decisions read only the live
 * ledger, so a dry run leaves nothing behind that would hold back the first
 * real remediation after it (ADR 20).
 *
 * The state belongs to one leadership term: it is built from the persisted
 * incidents when the term starts (`rebuild`) and kept up to date by that
 * term; the next term builds its own from scratch. Old entries are pruned by
 * age and the number of keys is bounded, so a replica that leads for weeks
 * holds what the guards can still use, not every key it ever saw.
 */
import type { Trigger } from "../detect/detector.js";
import { FINAL_STATUSES, type Incident, type SuppressReason } from "../incidents/model.js";
import { SuppressionRollups } from "../incidents/rollup.js";

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** Most keys one ledger remembers (default); the least recently changed is forgotten first. */
export const MAX_GUARD_KEYS = 50_000;

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
  /** When it stops it: what the record should say beyond the reason. */
  detail?(ctx: GuardContext, state: GuardState): string | null;
}

export interface GuardVerdict {
  /** Why the trigger is not acted on, or null to act. */
  reason: SuppressReason | null;
  /** The guards checked before the verdict, in order (for the record). */
  passed: SuppressReason[];
  /** For a hold (`paused`, `silenced`): which one, whose, until when and why, as the record says it. */
  detail?: string;
}

/** What a hold is checked against: the trigger's user, pod (null when unknown) and rule. */
export interface HoldSubject {
  userId: string;
  pod: string | null;
  rule: string;
}

/**
 * On-call's holds (ADR 22): the pause and the silences in force. Each answer
 * is the line the record gets (which hold, whose, until when, why), or null.
 */
export interface Holds {
  /** The pause in force at `now`, or null. */
  paused(now: number): string | null;
  /** A silence in force at `now` that matches `subject`, or null. */
  silenced(subject: HoldSubject, now: number): string | null;
}

/** No hold ever (replay, rule tests, and a GuardState nobody gave holds). */
export const NO_HOLDS: Holds = { paused: () => null, silenced: () => null };

const holdSubject = (t: Trigger): HoldSubject => ({ userId: t.userId, pod: t.pod, rule: t.rule.name });

/**
 * A rule's circuit breaker, kept so that it does not depend on the order in
 * which closes are told (two ladders may finish in either order, and a new
 * term replays the records in yet another): the last time an incident of the
 * rule was resolved, and the times of the failures closed after it.
 */
interface Breaker {
  lastResolvedAt: number;
  /** Closing times of failed or escalated incidents after `lastResolvedAt`, ascending (at most MAX_FAILURES_KEPT). */
  failures: number[];
  /** The ids of those incidents, in the same order (what opened the breaker, for on-call). */
  failureIds: string[];
}

/** A rule's circuit breaker as on-call is told about it. */
export interface CircuitView {
  open: boolean;
  /** The failed or escalated incidents in a row that count now (newest last; at most the last 20). */
  incidents: string[];
  /** When it opened: the failure that reached the threshold (ms); null while closed. */
  openedAt: number | null;
  /** When it closes by itself unless another failure comes (ms); null while closed. */
  closesAt: number | null;
}

/** Most incident ids a CircuitView lists. */
const MAX_CIRCUIT_IDS = 20;

/** Failures kept per breaker: far above any threshold a rule may set. */
const MAX_FAILURES_KEPT = 1000;

/** What one key of one rule has on record in a ledger. */
interface KeyState {
  /** Its latest incident: where a suppressed trigger is counted. */
  latest: string;
  /** When its latest incident that was acted on (or dry-run) closed. */
  lastClosed: number | null;
  /** When its incidents were opened in the last day. */
  attempts: number[];
  /** Entries of the key up to this time were an earlier term's incident's to handle: the newest it was opened on, or when it closed; null when none acted. */
  coveredUntil: number | null;
  /** The newest time this entry changed (for pruning). */
  touched: number;
}

/**
 * Cooldowns, attempts, hourly counts and circuit breakers of one mode: live
 * incidents, or dry-run incidents.
 */
class Ledger {
  /** By rule and key, least recently changed first. */
  private readonly keys = new Map<string, KeyState>();
  private readonly hourly = new Map<string, number[]>();
  private readonly breakers = new Map<string, Breaker>();

  constructor(private readonly maxKeys: number) {}

  get size(): number {
    return this.keys.size;
  }

  key(id: string): KeyState | undefined {
    return this.keys.get(id);
  }

  opened(id: string, incident: Incident, openedAt: number, rebuilding: boolean): void {
    const state = this.touch(id, incident.id, openedAt);
    if (rebuilding) {
      const newest = newestEntryAt(incident);
      state.coveredUntil = Math.max(newest, state.coveredUntil ?? newest);
    }
    // Stryker disable next-line all: memory only (attemptsToday counts the last day by time whatever this keeps)
    state.attempts = state.attempts.filter((t) => t > openedAt - DAY_MS);
    state.attempts.push(openedAt);
    push(this.hourly, incident.rule, openedAt, openedAt - HOUR_MS);
  }

  /** Only the latest incident changes (a suppression record): no attempt, no cooldown. */
  noted(id: string, incident: Incident, at: number): void {
    this.touch(id, incident.id, at);
  }

  closed(id: string, incident: Incident, closedAt: number, rebuilding: boolean): void {
    const state = this.touch(id, incident.id, closedAt);
    state.lastClosed = Math.max(closedAt, state.lastClosed ?? 0);
    // What was logged for the key before its incident closed was that incident's to handle (a trigger meanwhile was in_flight).
    if (rebuilding) state.coveredUntil = Math.max(closedAt, state.coveredUntil ?? closedAt);
    // A live suppressed or held record never gets here (GuardState.closed); a dry run's record is always suppressed.
    if (incident.status === "suppressed" || incident.status === "interrupted") return;
    const b = this.breakers.get(incident.rule) ?? { lastResolvedAt: Number.NEGATIVE_INFINITY, failures: [], failureIds: [] };
    if (incident.status === "resolved") {
      b.lastResolvedAt = Math.max(b.lastResolvedAt, closedAt);
      const kept = b.failures.findIndex((t) => t > b.lastResolvedAt);
      b.failures = kept < 0 ? [] : b.failures.slice(kept);
      b.failureIds = kept < 0 ? [] : b.failureIds.slice(kept);
    } else if (closedAt > b.lastResolvedAt) {
      // A failure at the very time of a resolution counts as before it: a resolved incident closes the streak.
      // Ties by id: the same order whatever order the closes are told in.
      let i = b.failures.length;
      while (
        // Stryker disable next-line ConditionalExpression,EqualityOperator: past the start failures[-1] is undefined, and no comparison with it holds
        i > 0 &&
        (b.failures[i - 1]! > closedAt ||
          (b.failures[i - 1] === closedAt &&
            // Stryker disable next-line EqualityOperator: equal ids are one incident told twice: equal entries, either order
            b.failureIds[i - 1]! > incident.id))
      )
        i--;
      b.failures.splice(i, 0, closedAt);
      b.failureIds.splice(i, 0, incident.id);
      if (b.failures.length > MAX_FAILURES_KEPT) {
        b.failures.shift();
        b.failureIds.shift();
      }
    }
    this.breakers.set(incident.rule, b);
  }

  actedThisHour(rule: string, now: number): number {
    return recent(this.hourly.get(rule), now - HOUR_MS);
  }

  breaker(rule: string): Breaker | undefined {
    return this.breakers.get(rule);
  }

  /** Forgets keys unchanged for longer than `horizonMs`, and hourly counts older than an hour. */
  prune(now: number, horizonMs: number): void {
    for (const [id, state] of this.keys) {
      if (state.touched > now - horizonMs) break; // least recently changed first: the rest are newer
      this.keys.delete(id);
    }
    // Stryker disable all: memory only (actedThisHour counts the last hour by time whatever this keeps)
    for (const [rule, times] of this.hourly) {
      const kept = times.filter((t) => t > now - HOUR_MS);
      if (kept.length === 0) this.hourly.delete(rule);
      else this.hourly.set(rule, kept);
    }
  }

  // (Stryker reads its comments only where they lead a statement or a member: so this one stands here.)
  // Stryker restore all
  private touch(id: string, incidentId: string, at: number): KeyState {
    let state = this.keys.get(id);
    // Stryker disable next-line ArrayDeclaration: a string in attempts never counts (compared with a time, it is NaN)
    if (state === undefined) state = { latest: incidentId, lastClosed: null, attempts: [], coveredUntil: null, touched: at };
    else this.keys.delete(id); // re-inserted below: Map order is the order of last change
    state.latest = incidentId;
    state.touched = Math.max(state.touched, at);
    this.keys.set(id, state);
    if (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value!);
    return state;
  }
}

const keyIdOf = (rule: string, keyString: string): string => `${rule}\u0000${keyString}`;

/** The newest entry an incident was opened on: its newest evidence entry (the detector keeps the newest), else its first. */
function newestEntryAt(incident: Incident): number {
  let newest = Date.parse(incident.firstEntryAt);
  for (const entry of incident.evidence.entries) newest = Math.max(newest, Date.parse(entry.time));
  return newest;
}

/** A live record of a trigger that was not acted on (suppressed, or held while the user was refused): no attempt, no cooldown. */
const notActedOn = (incident: Incident): boolean => !incident.dryRun && (incident.status === "suppressed" || incident.status === "held");

/** Is a trigger of this rule decided in dry-run mode? */
export function isDryRun(trigger: Trigger, globalDryRun: boolean): boolean {
  return globalDryRun || trigger.rule.rule.spec.guards.dryRun;
}

/** A key held for a trigger between the guards' verdict and its incident's record (see `reserve`). */
export interface Reservation {
  readonly id: string;
  readonly userId: string;
  readonly pod: string;
}

/** The guards' memory for one leadership term. Built from the store at the term's start, then kept up to date by it. */
export class GuardState {
  /** Is this term still allowed to act? The term sets it to "my signal has not aborted". */
  leader: () => boolean = () => true;
  /** On-call's pause and silences (ADR 22); the term sets them, none otherwise. */
  holds: Holds = NO_HOLDS;
  private readonly live: Ledger;
  private readonly dry: Ledger;
  /** Keys with a live ladder running, or reserved by a trigger being recorded: the incident id, or "" while reserved. */
  private readonly inFlight = new Map<string, string>();
  /** In-flight (or reserved) keys by user: their pods ("" when unknown), across rules. */
  private readonly busyUsers = new Map<string, Map<string, string>>();
  /** Rollup records of keys a rule-wide guard stopped (ADR 12): never any key's incident, so kept apart. */
  readonly rollups = new SuppressionRollups();
  /** True while `rebuild` reads the records: only earlier terms' incidents say which entries were handled (ADR 29). */
  private rebuilding = false;

  constructor(options: { maxKeys?: number } = {}) {
    const maxKeys = options.maxKeys ?? MAX_GUARD_KEYS;
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new TypeError(`GuardState: maxKeys must be a positive integer, got ${String(options.maxKeys)}`);
    this.live = new Ledger(maxKeys);
    this.dry = new Ledger(maxKeys);
  }

  /** Keys remembered, live and dry-run (for tests and the soak benchmark: it must stay bounded). */
  get size(): { live: number; dry: number; inFlight: number; users: number } {
    return { live: this.live.size, dry: this.dry.size, inFlight: this.inFlight.size, users: this.busyUsers.size };
  }

  private ledger(dryRun: boolean): Ledger {
    return dryRun ? this.dry : this.live;
  }

  /** The open incident of a key, else its latest one in the given mode: where a suppressed trigger is counted. */
  latestIncident(rule: string, keyString: string, dryRun = false): string | null {
    const id = keyIdOf(rule, keyString);
    const held = this.inFlight.get(id);
    // Stryker disable next-line ConditionalExpression: the ledger's latest is that incident too (opened() sets both)
    if (held !== undefined && held !== "") return held;
    return this.ledger(dryRun).key(id)?.latest ?? null;
  }

  inFlightFor(rule: string, keyString: string): boolean {
    return this.inFlight.has(keyIdOf(rule, keyString));
  }

  /** Is any rule's ladder acting on this user now (on this pod, or where either pod is unknown)? */
  userBusy(userId: string, pod: string | null): boolean {
    const pods = this.busyUsers.get(userId);
    // Stryker disable next-line ConditionalExpression: an empty map has no pod either
    if (pods === undefined || pods.size === 0) return false;
    return pod === null || pods.has(pod) || pods.has("");
  }

  cooling(rule: string, keyString: string, now: number, cooldownMs: number, dryRun = false): boolean {
    const closed = this.ledger(dryRun).key(keyIdOf(rule, keyString))?.lastClosed;
    // Stryker disable next-line ConditionalExpression,LogicalOperator: without a close, now - closed is NaN and never < cooldownMs
    return closed !== undefined && closed !== null && now - closed < cooldownMs;
  }

  /**
   * Was the entry that fired this trigger already an earlier term's
   * incident's to handle? It was when it is no newer than the newest entry
   * an incident of the key (on record when this term started) was opened
   * on, or than the time that incident closed: a line logged while its
   * ladder ran was stopped by `in_flight`, and the verification came after
   * it. Such a trigger is a line read again, not news: a new term starts its
   * source a little back (a pod log 60 s, so that nothing logged during a
   * failover is lost) and would otherwise act a second time on lines its
   * predecessor handled, once their cooldown is over. Within a term the
   * detector's de-duplication and the other guards decide, as before.
   * A user still locked out keeps trying, and each refusal logs a newer line.
   */
  covered(trigger: Trigger, dryRun: boolean): boolean {
    const until = this.ledger(dryRun).key(keyIdOf(trigger.rule.name, trigger.keyString))?.coveredUntil;
    // Stryker disable next-line ConditionalExpression,LogicalOperator: without a time, trigger.at <= until is false anyway
    return until !== undefined && until !== null && trigger.at <= until;
  }

  attemptsToday(rule: string, keyString: string, now: number, dryRun = false): number {
    return recent(this.ledger(dryRun).key(keyIdOf(rule, keyString))?.attempts, now - DAY_MS);
  }

  actedThisHour(rule: string, now: number, dryRun = false): number {
    return this.ledger(dryRun).actedThisHour(rule, now);
  }

  /**
   * Is the rule's circuit open: `failuresToOpen` or more failures in a row
   * (closed after its last resolved incident), the latest less than
   * `openForMs` ago? Each further failure holds it open for another `openFor`.
   */
  circuitOpen(rule: string, now: number, openForMs: number, failuresToOpen: number, dryRun = false): boolean {
    // Stryker disable next-line ArrayDeclaration: a string is no failure time (now < NaN is false)
    const failures = this.ledger(dryRun).breaker(rule)?.failures ?? [];
    return failures.length >= failuresToOpen && now < failures[failures.length - 1]! + openForMs;
  }

  /**
   * A rule's live circuit breaker as on-call is told about it: open or not
   * (as `circuitOpen` says), which incidents in a row opened it, since when,
   * and until when it stays open unless another failure comes.
   */
  circuit(rule: string, now: number, openForMs: number, failuresToOpen: number): CircuitView {
    const b = this.live.breaker(rule);
    // Stryker disable next-line ArrayDeclaration: only read once circuitOpen said open, when the breaker exists
    const failures = b?.failures ?? [];
    if (!this.circuitOpen(rule, now, openForMs, failuresToOpen)) return { open: false, incidents: [], openedAt: null, closesAt: null };
    // It opened at the threshold's failure, or at the first failure after it closed by itself (a gap of openFor).
    let at = failures.length - 1;
    while (at > failuresToOpen - 1 && failures[at]! - failures[at - 1]! < openForMs) at--;
    return {
      open: true,
      // Stryker disable next-line ArrayDeclaration,MethodExpression,OptionalChaining: open means the breaker exists
      incidents: (b?.failureIds ?? []).slice(-MAX_CIRCUIT_IDS),
      openedAt: failures[at]!,
      closesAt: failures[failures.length - 1]! + openForMs,
    };
  }

  /** Consecutive failed live incidents of a rule (for the record and the metric). */
  failuresInARow(rule: string): number {
    return this.live.breaker(rule)?.failures.length ?? 0;
  }

  /**
   * Holds a key for a trigger that passed the guards, in the same
   * synchronous step as the verdict: until `opened` or `release`, another
   * trigger for the key (any rule's, for the user) is stopped by `in_flight`
   * or `user_busy`, so two triggers that arrive together never both act.
   */
  reserve(trigger: Trigger): Reservation {
    const reservation: Reservation = { id: keyIdOf(trigger.rule.name, trigger.keyString), userId: trigger.userId, pod: trigger.pod ?? "" };
    this.inFlight.set(reservation.id, "");
    const pods = this.busyUsers.get(reservation.userId) ?? new Map<string, string>();
    pods.set(reservation.pod, "");
    this.busyUsers.set(reservation.userId, pods);
    return reservation;
  }

  /** Gives a reserved key back: its trigger was not recorded (or was a dry run, which holds nothing). */
  release(reservation: Reservation): void {
    if (this.inFlight.get(reservation.id) === "") this.inFlight.delete(reservation.id);
    const pods = this.busyUsers.get(reservation.userId);
    if (pods?.get(reservation.pod) === "") pods.delete(reservation.pod);
    if (pods?.size === 0) this.busyUsers.delete(reservation.userId);
  }

  /** An incident was opened (acted on unless it is a dry run or suppressed). */
  opened(incident: Incident, openedAt: number = Date.parse(incident.detectedAt)): void {
    if (incident.rollup !== undefined) return;
    const id = keyIdOf(incident.rule, incident.keyString);
    const ledger = this.ledger(incident.dryRun);
    // A record of a trigger that was NOT acted on counts no attempt: only where later suppressions are counted.
    if (notActedOn(incident)) {
      ledger.noted(id, incident, openedAt);
      return;
    }
    ledger.opened(id, incident, openedAt, this.rebuilding);
    if (!incident.dryRun && !FINAL_STATUSES.has(incident.status)) {
      this.inFlight.set(id, incident.id);
      const pods = this.busyUsers.get(incident.target.userId) ?? new Map<string, string>();
      pods.set(incident.target.pod ?? "", incident.id);
      this.busyUsers.set(incident.target.userId, pods);
    }
  }

  /** An incident reached a final status. */
  closed(incident: Incident): void {
    if (incident.rollup !== undefined) return;
    const id = keyIdOf(incident.rule, incident.keyString);
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a record reaches the ledger only closed (notActedOn ones return first)
    const closedAt = incident.closedAt === null ? Date.parse(incident.updatedAt) : Date.parse(incident.closedAt);
    if (this.inFlight.get(id) === incident.id) this.inFlight.delete(id);
    const pods = this.busyUsers.get(incident.target.userId);
    if (pods !== undefined) {
      for (const [pod, holder] of pods) if (holder === incident.id) pods.delete(pod);
      if (pods.size === 0) this.busyUsers.delete(incident.target.userId);
    }
    // A record of a trigger that was NOT acted on starts no cooldown: the user would wait for nothing.
    if (notActedOn(incident)) return;
    this.ledger(incident.dryRun).closed(id, incident, closedAt, this.rebuilding);
  }

  /**
   * Forgets what no guard can use any more: keys whose last change is older
   * than `horizonMs` (at least a day: attempts are counted over a day; give
   * the longest cooldown and circuit `openFor` of the rules when longer).
   * Keys with a ladder in flight are never forgotten.
   */
  prune(now: number, horizonMs = DAY_MS): void {
    const horizon = Math.max(DAY_MS, horizonMs);
    this.live.prune(now, horizon);
    this.dry.prune(now, horizon);
  }

  /**
   * Builds the state from stored incidents (any order: the result does not
   * depend on it). Call it on a new GuardState: a term's state is built once,
   * from the records alone.
   * @param now when given, rollup records of hours before the previous one are not kept in memory
   */
  rebuild(incidents: readonly Incident[], now?: number): void {
    const ordered = [...incidents].sort((a, b) => Date.parse(a.detectedAt) - Date.parse(b.detectedAt));
    this.rebuilding = true;
    try {
      for (const incident of ordered) {
        if (incident.rollup !== undefined) {
          this.rollups.restore(incident, now);
          continue;
        }
        this.opened(incident);
        if (FINAL_STATUSES.has(incident.status)) this.closed(incident);
      }
    } finally {
      this.rebuilding = false;
    }
  }
}

/** The guards, in order. Cooldowns, attempts, hourly limits and breakers are read from the trigger's own mode's ledger. */
export const GUARDS: readonly Guard[] = [
  { reason: "not_leader", stops: (_ctx, s) => !s.leader() },
  { reason: "paused", stops: ({ now }, s) => s.holds.paused(now) !== null, detail: ({ now }, s) => s.holds.paused(now) },
  {
    reason: "silenced",
    stops: ({ trigger, now }, s) => s.holds.silenced(holdSubject(trigger), now) !== null,
    detail: ({ trigger, now }, s) => s.holds.silenced(holdSubject(trigger), now),
  },
  { reason: "in_flight", stops: ({ trigger: t }, s) => s.inFlightFor(t.rule.name, t.keyString) },
  { reason: "user_busy", stops: ({ trigger: t }, s) => s.userBusy(t.userId, t.pod) },
  {
    reason: "cooldown",
    stops: ({ trigger: t, now, globalDryRun }, s) => s.cooling(t.rule.name, t.keyString, now, t.rule.rule.spec.guards.cooldown, isDryRun(t, globalDryRun)),
  },
  {
    reason: "max_attempts",
    stops: ({ trigger: t, now, globalDryRun }, s) =>
      s.attemptsToday(t.rule.name, t.keyString, now, isDryRun(t, globalDryRun)) >= t.rule.rule.spec.guards.maxAttemptsPerDay,
  },
  {
    reason: "rate_limit",
    stops: ({ trigger: t, now, globalDryRun }, s) => s.actedThisHour(t.rule.name, now, isDryRun(t, globalDryRun)) >= t.rule.rule.spec.guards.maxPerHour,
  },
  {
    reason: "circuit_open",
    stops: ({ trigger: t, now, globalDryRun }: GuardContext, s: GuardState): boolean => {
      const { openFor, failures } = t.rule.rule.spec.guards.circuitBreaker;
      return s.circuitOpen(t.rule.name, now, openFor, failures, isDryRun(t, globalDryRun));
    },
  },
  { reason: "dry_run", stops: ({ trigger: t, globalDryRun }) => isDryRun(t, globalDryRun) },
];

/** Runs the guards in order; the first that stops the trigger gives the reason. */
export function checkGuards(ctx: GuardContext, state: GuardState, guards: readonly Guard[] = GUARDS): GuardVerdict {
  const passed: SuppressReason[] = [];
  for (const guard of guards) {
    if (guard.stops(ctx, state)) {
      const detail = guard.detail?.(ctx, state) ?? null;
      return detail === null ? { reason: guard.reason, passed } : { reason: guard.reason, passed, detail };
    }
    passed.push(guard.reason);
  }
  return { reason: null, passed };
}

function recent(times: readonly number[] | undefined, since: number): number {
  if (times === undefined) return 0;
  let n = 0;
  for (const t of times) if (t > since) n++;
  return n;
}

function push(map: Map<string, number[]>, id: string, t: number, pruneBefore: number): void {
  // Stryker disable next-line all: memory only (the counts filter by time)
  const times = (map.get(id) ?? []).filter((x) => x > pruneBefore);
  times.push(t);
  map.set(id, times);
}
