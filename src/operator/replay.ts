/**
 * Replay: the live pipeline run over a recorded log in event time, as a dry
 * run. "Now" is the newest entry time seen so far, incidents live in memory,
 * and an incident that would act is assumed to end at once (its ladder is
 * not run), so cooldowns and limits apply as they would have. The same log
 * gives the same answer every run.
 */
import type { Clock } from "../contract/clock.js";
import { isUserId } from "../contract/ids.js";
import { Detector, type Dropped, type Trigger } from "./detect/detector.js";
import { Engine, type Actor, type EngineMetrics } from "./decide/engine.js";
import type { LogEvent } from "./sources/event.js";
import { GuardState } from "./decide/guards.js";
import { MemoryIncidentStore } from "./incidents/memory-store.js";
import { close } from "./incidents/record.js";
import type { Incident } from "./incidents/model.js";
import type { OperatorLog } from "./log-event.js";
import { fieldValue, type CompiledRule, type Match, type Miss } from "./rules/compile.js";
import { setOwn } from "./sources/own.js";

/** One incident as replay reports it. */
export interface ReplayIncident {
  id: string;
  /** When it would have been opened (event time). */
  at: string;
  firstEntryAt: string;
  rule: string;
  key: Record<string, string>;
  title: string;
  /** `act`: the ladder would have run; `dry_run`: the rule is in dry run; `suppressed`: a guard stopped it. */
  action: "act" | "dry_run" | "suppressed";
  /** The rungs the ladder would run, in order. */
  rungs: string[];
  /** Later triggers for the same key that guards suppressed, by reason. */
  suppressed: Record<string, number>;
  entries: number;
}

/**
 * What became of one rule's entries, step by step, so that a result of 0
 * says where they went. Every count is a number or a map with a bounded set
 * of keys (the rule's own events, where fields and key fields).
 */
export interface RuleDiagnosis {
  rule: string;
  /** `metric`: replay reads logs only, so a metric rule never fires in it. */
  trigger: "log" | "metric";
  /** Entries the rule looked at (every entry replayed). */
  entries: number;
  /** By each event the rule names, how many entries carried it; empty when it names none. */
  events: Record<string, number>;
  /** Entries with none of its events. */
  otherEvent: number;
  /** Then: below its minSeverity. */
  belowSeverity: number;
  /** Then: a `where` condition failed, by the first field whose condition failed. */
  whereNotMet: Record<string, number>;
  /** Then: its pattern is not in the message. */
  patternNotFound: number;
  /** Then (a text trigger): its pattern matched a line from a source its `trust` does not admit, by the first field that failed. */
  untrusted: Record<string, number>;
  /** Entries that matched the rule. */
  matched: number;
  /** Of those: the same entry seen before. */
  duplicate: number;
  /** Without a key field, by the first missing one; `userId (invalid)` for a user id that is not a valid one. */
  unkeyed: Record<string, number>;
  /** Older than the rule's maxAge, against the newest entry seen so far. */
  stale: number;
  /** Counted toward the threshold without reaching it (with the entry that reached it, in `triggers`). */
  counted: number;
  /** Thresholds reached. */
  triggers: number;
}

/** Why the replay came out as it did: entries by event, and each rule's funnel. */
export interface ReplayDiagnosis {
  /**
   * Entries replayed by their `event` (`(none)` without one), most first; at
   * most MAX_EVENT_NAMES names (the rules' own always among them), the rest
   * counted under `(other)`.
   */
  events: Record<string, number>;
  rules: RuleDiagnosis[];
}

export interface ReplayReport {
  rules: string[];
  entries: number;
  matched: number;
  dropped: { duplicate: number; unkeyed: number; stale: number };
  incidents: ReplayIncident[];
  diagnosis: ReplayDiagnosis;
}

/** Most distinct event names counted one by one (log text chooses them: the count must stay bounded). */
export const MAX_EVENT_NAMES = 50;
/** Longest event name kept as it is. */
const MAX_EVENT_NAME = 100;
const NO_EVENT = "(none)";
const OTHER_EVENTS = "(other)";

function emptyDiagnosis(rule: CompiledRule): RuleDiagnosis {
  return {
    rule: rule.name,
    trigger: rule.rule.spec.trigger.metric === undefined ? "log" : "metric",
    entries: 0,
    events: {},
    otherEvent: 0,
    belowSeverity: 0,
    whereNotMet: {},
    patternNotFound: 0,
    untrusted: {},
    matched: 0,
    duplicate: 0,
    unkeyed: {},
    stale: 0,
    counted: 0,
    triggers: 0,
  };
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** The rule's event names, or null when it names none. */
function eventsOf(rule: CompiledRule): string[] | null {
  const event = rule.rule.spec.trigger.log?.event;
  return event === undefined ? null : typeof event === "string" ? [event] : event;
}

/** Which key field an unkeyed entry lacks (the detector's `keyOf` found one missing, or the user id invalid). */
function missingKey(rule: CompiledRule, event: LogEvent): string {
  for (const name of rule.rule.spec.key) {
    const value = fieldValue(event, name);
    if (typeof value !== "string" && typeof value !== "number") return name;
  }
  const userId = fieldValue(event, "userId");
  return typeof userId === "string" && isUserId(userId) ? "userId" : "userId (invalid)";
}

/** The detector, counting what it made of each entry per rule. */
class DiagnosingDetector extends Detector {
  constructor(
    now: () => number,
    private readonly diagnosis: (rule: CompiledRule) => RuleDiagnosis | undefined,
  ) {
    super({ now });
  }

  override observe(rule: CompiledRule, event: LogEvent, match: Match): Trigger | Dropped | null {
    const result = super.observe(rule, event, match);
    const d = this.diagnosis(rule);
    if (d === undefined) return result;
    if (result === null) d.counted++;
    else if (result === "duplicate") d.duplicate++;
    else if (result === "stale") d.stale++;
    else if (result === "unkeyed") bump(d.unkeyed, missingKey(rule, event));
    else d.triggers++;
    return result;
  }
}

const silent: OperatorLog = { debug() {}, info() {}, warn() {}, error() {}, close: () => Promise.resolve() };

/** Counts nothing: a replay reports no metrics, and loading prom-client for them cost its start-up ~50 ms (ADR 37). */
const uncounted = { inc(): void {}, dec(): void {} };
const unmetered: EngineMetrics = {
  entriesDropped: uncounted,
  incidents: uncounted,
  refusalChecks: uncounted,
  ruleMatches: uncounted,
  storeErrors: uncounted,
  storeWaiting: uncounted,
  suppressedKeys: uncounted,
  suppressedUnlisted: uncounted,
  triggerErrors: uncounted,
  triggers: uncounted,
};

/**
 * Feeds entries through the pipeline in event time; `report()` says what
 * would have happened.
 */
export class Replayer {
  private watermark = Number.NEGATIVE_INFINITY;
  private entries = 0;
  private readonly store = new MemoryIncidentStore();
  private readonly diagnoses = new Map<string, RuleDiagnosis>();
  private readonly detector = new DiagnosingDetector(
    () => this.watermark,
    (rule) => this.diagnoses.get(rule.name),
  );
  /** Entries by event name (bounded: MAX_EVENT_NAMES), each a counter object so that counting is one lookup. */
  private readonly eventCounts = new Map<string, { n: number }>();
  private readonly engine: Engine;
  private readonly byName: Map<string, CompiledRule>;

  constructor(private readonly rules: readonly CompiledRule[]) {
    const clock: Clock = { now: () => this.watermark };
    const guards = new GuardState();
    this.byName = new Map(rules.map((r) => [r.name, r]));
    for (const rule of rules) {
      this.diagnoses.set(rule.name, emptyDiagnosis(rule));
      // The rules' own events are always counted by name, however many others the log holds.
      for (const name of eventsOf(rule) ?? []) this.eventCounts.set(name, { n: 0 });
    }
    const actor: Actor = {
      act: (incident, rule) => {
        const plan = rule.rule.spec.ladder.map((r) => r.rung).join(" → ");
        close(incident, "resolved", this.watermark, `replay: would run ${plan}; assumed to end at detection`);
        guards.closed(incident);
        this.engine.release(incident);
        void this.store.save(incident);
      },
    };
    this.engine = new Engine({
      detector: this.detector,
      guards,
      store: this.store,
      targets: null,
      actor,
      clock,
      metrics: unmetered,
      log: silent,
      dryRun: false,
    });
    this.engine.setRules(rules.map((rule) => this.diagnosing(rule)));
  }

  /** `rule`, counting on its diagnosis why each entry did or did not match; `match` costs what it did. */
  private diagnosing(rule: CompiledRule): CompiledRule {
    const d = this.diagnoses.get(rule.name)!;
    const miss = (reason: Miss): void => {
      if (reason === "event") d.otherEvent++;
      else if (reason === "severity") d.belowSeverity++;
      else if (reason === "pattern") d.patternNotFound++;
      else if (reason.startsWith("trust:")) bump(d.untrusted, reason.slice("trust:".length));
      else if (reason !== "metric") bump(d.whereNotMet, reason.slice("where:".length));
    };
    const explain = (event: LogEvent): Match | Miss => {
      const result = rule.explain(event);
      if (typeof result === "string") miss(result);
      else d.matched++;
      return result;
    };
    return {
      name: rule.name,
      rule: rule.rule,
      needles: rule.needles,
      // The engine asks `explain` (it counts untrusted lines); `match` is the same count, for any other caller.
      explain,
      match: (event) => {
        const result = explain(event);
        return typeof result === "string" ? null : result;
      },
    };
  }

  /** One entry; "now" becomes the newest entry time seen. */
  async handle(event: LogEvent): Promise<void> {
    this.entries++;
    if (event.time > this.watermark) this.watermark = event.time;
    this.countEvent(event.event);
    await this.engine.handle(event);
  }

  private countEvent(event: string | null): void {
    const name = event === null ? NO_EVENT : event.length > MAX_EVENT_NAME ? `${event.slice(0, MAX_EVENT_NAME)}…` : event;
    const counter = this.eventCounts.get(name);
    if (counter !== undefined) {
      counter.n++;
      return;
    }
    const key = this.eventCounts.size >= MAX_EVENT_NAMES ? OTHER_EVENTS : name;
    const other = this.eventCounts.get(key);
    if (other !== undefined) other.n++;
    else this.eventCounts.set(key, { n: 1 });
  }

  /** Entries by event and each rule's funnel, so far. */
  diagnosis(): ReplayDiagnosis {
    const events: Record<string, number> = {};
    const sorted = [...this.eventCounts].sort(([a, x], [b, y]) => y.n - x.n || (a < b ? -1 : a > b ? 1 : 0));
    // Event names are the log's text: an own property each, "__proto__" too.
    for (const [name, count] of sorted) setOwn(events, name, count.n);
    return {
      events,
      rules: this.rules.map((rule) => {
        const d = this.diagnoses.get(rule.name)!;
        const own: Record<string, number> = {};
        for (const name of eventsOf(rule) ?? []) own[name] = this.eventCounts.get(name)?.n ?? 0;
        // Every rule looks at every entry: its count is the replay's.
        return { ...d, entries: this.entries, events: own, whereNotMet: { ...d.whereNotMet }, untrusted: { ...d.untrusted }, unkeyed: { ...d.unkeyed } };
      }),
    };
  }

  async report(): Promise<ReplayReport> {
    await this.engine.flush({ all: true });
    const stats = this.detector.stats;
    return {
      rules: this.rules.map((r) => r.name),
      entries: this.entries,
      matched: stats.matched,
      dropped: { duplicate: stats.duplicates, unkeyed: stats.unkeyed, stale: stats.stale },
      // A rollup record (ADR 12) is reported as one suppressed incident per key it lists, as each key would be on its own.
      incidents: (await this.store.list())
        .flatMap((i) => (i.rollup === undefined ? [report(i, this.byName.get(i.rule))] : expand(i)))
        // Each time parsed once, not once per comparison (~80,000 Date.parse for 3,398 incidents: ADR 37).
        .map((incident, n) => ({ incident, n, at: Date.parse(incident.at) }))
        .sort((a, b) => a.at - b.at || a.n - b.n)
        .map(({ incident }) => incident),
      diagnosis: this.diagnosis(),
    };
  }
}

/** Replays `events` (in the order given; windows use their own times) against `rules`. */
export async function replay(rules: readonly CompiledRule[], events: AsyncIterable<LogEvent> | Iterable<LogEvent>): Promise<ReplayReport> {
  const replayer = new Replayer(rules);
  for await (const event of events) await replayer.handle(event);
  return replayer.report();
}

/** The keys of a rollup record, each as the suppressed incident it stands for. */
function expand(incident: Incident): ReplayIncident[] {
  const rollup = incident.rollup!;
  return rollup.keys.map((k) => ({
    id: incident.id,
    at: k.firstAt,
    firstEntryAt: k.firstEntryAt,
    rule: incident.rule,
    key: k.key,
    title: incident.title,
    action: "suppressed",
    rungs: [],
    suppressed: { [rollup.reason]: k.triggers },
    entries: k.triggers,
  }));
}

function report(incident: Incident, rule: CompiledRule | undefined): ReplayIncident {
  const suppressed: Record<string, number> = {};
  for (const [reason, { count }] of Object.entries(incident.suppressed)) if (reason !== "dry_run") suppressed[reason] = count;
  const action = incident.dryRun ? "dry_run" : incident.status === "suppressed" ? "suppressed" : "act";
  return {
    id: incident.id,
    at: incident.detectedAt,
    firstEntryAt: incident.firstEntryAt,
    rule: incident.rule,
    key: incident.key,
    title: incident.title,
    action,
    rungs: action === "suppressed" ? [] : (rule?.rule.spec.ladder.map((r) => r.rung) ?? []),
    suppressed,
    entries: incident.evidence.total,
  };
}
