/**
 * Replay: the live pipeline run over a recorded log in event time, as a dry
 * run. "Now" is the newest entry time seen so far, incidents live in memory,
 * and an incident that would act is assumed to end at once (its ladder is
 * not run), so cooldowns and limits apply as they would have. The same log
 * gives the same answer every run.
 */
import type { Clock } from "../contract/clock.js";
import { Detector } from "./detect/detector.js";
import { Engine, type Actor } from "./decide/engine.js";
import type { LogEvent } from "./sources/event.js";
import { GuardState } from "./decide/guards.js";
import { MemoryIncidentStore } from "./incidents/memory-store.js";
import { close } from "./incidents/record.js";
import type { Incident } from "./incidents/model.js";
import type { OperatorLog } from "./log.js";
import { OperatorMetrics } from "./metrics.js";
import type { CompiledRule } from "./rules/compile.js";

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

export interface ReplayReport {
  rules: string[];
  entries: number;
  matched: number;
  dropped: { duplicate: number; unkeyed: number; stale: number };
  incidents: ReplayIncident[];
}

const silent: OperatorLog = { debug() {}, info() {}, warn() {}, error() {}, close: () => Promise.resolve() };

/**
 * Feeds entries through the pipeline in event time; `report()` says what
 * would have happened.
 */
export class Replayer {
  private watermark = Number.NEGATIVE_INFINITY;
  private entries = 0;
  private readonly store = new MemoryIncidentStore();
  private readonly detector = new Detector({ now: () => this.watermark });
  private readonly engine: Engine;
  private readonly byName: Map<string, CompiledRule>;

  constructor(private readonly rules: readonly CompiledRule[]) {
    const clock: Clock = { now: () => this.watermark };
    const guards = new GuardState();
    this.byName = new Map(rules.map((r) => [r.name, r]));
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
      metrics: new OperatorMetrics({ defaultMetrics: false }),
      log: silent,
      dryRun: false,
    });
    this.engine.setRules(rules);
  }

  /** One entry; "now" becomes the newest entry time seen. */
  async handle(event: LogEvent): Promise<void> {
    this.entries++;
    if (event.time > this.watermark) this.watermark = event.time;
    await this.engine.handle(event);
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
        .map((incident, n) => ({ incident, n }))
        .sort((a, b) => Date.parse(a.incident.at) - Date.parse(b.incident.at) || a.n - b.n)
        .map(({ incident }) => incident),
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
