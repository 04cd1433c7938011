/**
 * The source stage for metric rules (`spec.trigger.metric`): every `interval`
 * it runs the rule's PromQL query, compares each result series with
 * `op threshold`, and once a series has held for `for` it asks that series'
 * factory which users are at their limit and hands one synthetic trigger per
 * user to the engine (Engine.onTrigger: guards, a persisted incident, the
 * ladder), exactly as a log rule's detector would.
 *
 * Semantics, as on-call should expect them:
 * - A series is identified by its full label set. It holds while its value
 *   satisfies `op threshold` (`NaN` never does). "Held since" is the first
 *   evaluation in a row at which it held; at `since + for` it fires.
 * - A series that stops holding, or is absent from a successful result, is
 *   forgotten at once: `for` starts again when it comes back. Prometheus
 *   already bridges missed scrapes (an instant query looks back 5 minutes)
 *   and marks vanished series stale, so an absent series really is gone.
 * - A failed query (Prometheus unreachable, garbage, a bad query) is counted,
 *   reported through `onError`, and RESETS every series of that rule: the
 *   evaluator acts only on a condition it saw hold continuously for `for`,
 *   never on one it partly assumed through an outage. The cost is that a
 *   Prometheus blip delays a metric rule by one `for`; the log rules, which
 *   do not depend on Prometheus, are unaffected.
 * - A series that keeps firing fires again at every evaluation. Turning
 *   repeats into counted suppressions (in flight, cooldown, rate limits) is
 *   the engine's guards' job, not this stage's.
 * - Within one evaluation, series that resolve to the same factory (the same
 *   control URL: always, with a StaticTarget) ask it once; the first series
 *   names the pod.
 *
 * Bounded: at most `maxSeries` series per result are evaluated (the rest are
 * counted and reported), state is only kept for series of the last result,
 * at most `maxUsersPerSeries` users per factory become triggers, one
 * evaluation per rule runs at a time, and timers are unref'd.
 */
import { Counter, Gauge, Registry } from "prom-client";
import type { Clock } from "../../contract/clock.js";
import { DEFAULT_REFUSED_WITHIN_MS, refusedRecently } from "./locked-out.js";
import type { UserSummary } from "../../contract/control.js";
import type { Trigger } from "./detector.js";
import { PrometheusError, type InstantQuerier, type Sample } from "../sources/prometheus.js";
import type { CompiledRule } from "../rules/compile.js";
import type { MetricTrigger } from "../rules/schema.js";
import { syntheticTrigger } from "./synthetic.js";
import type { Target, TargetResolver } from "../act/target.js";

/** A compiled rule whose trigger is a metric. */
export type MetricRule = CompiledRule & { readonly rule: { readonly spec: { readonly trigger: { readonly metric: MetricTrigger } } } };

/** Is this a metric rule (rather than a log rule)? */
export function isMetricRule(rule: CompiledRule): rule is MetricRule {
  return rule.rule.spec.trigger.metric !== undefined;
}

/**
 * What went wrong in an evaluation, for `onError` and the
 * `reclaim_operator_metric_errors_total{kind}` label (a closed set).
 */
export type MetricErrorKind =
  /** The query failed; `cause` is the PrometheusError (its `kind` says how). */
  | "query"
  /** More series than `maxSeries`: the rest were not evaluated. */
  | "series_limit"
  /** A firing series named no factory the resolver knows (no pod label in Kubernetes mode, pod gone). */
  | "no_target"
  /** The target resolver threw (e.g. the Kubernetes API failed). */
  | "target"
  /** The factory's `GET /v1/users?atLimit=true` failed. */
  | "control"
  /** More users at the limit than `maxUsersPerSeries`: the rest got no trigger this time. */
  | "user_limit"
  /** `onTrigger` threw or rejected. */
  | "trigger";

/** A problem in one rule's evaluation; never thrown out of a timer, only passed to `onError`. */
export class MetricEvaluationError extends Error {
  readonly code = "ERR_RECLAIM_METRIC_EVALUATION";
  constructor(
    message: string,
    readonly rule: string,
    readonly kind: MetricErrorKind,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "MetricEvaluationError";
  }

  /** Worth trying again at the next evaluation (Prometheus or the factory unreachable), as opposed to a mistake in the rule. */
  get recoverable(): boolean {
    const cause = this.cause as { recoverable?: unknown } | undefined;
    if (typeof cause?.recoverable === "boolean") return cause.recoverable;
    return this.kind !== "series_limit" && this.kind !== "user_limit";
  }
}

/** The evaluator's own metrics, registered on the registry it is given (or one of its own). */
export class MetricEvaluatorMetrics {
  /** `reclaim_operator_metric_queries_total{rule, result}`: result `ok` or `error`. */
  readonly queries: Counter<"rule" | "result">;
  /** `reclaim_operator_metric_errors_total{rule, kind}`: kind is a MetricErrorKind. */
  readonly errors: Counter<"rule" | "kind">;
  /** `reclaim_operator_metric_series{rule, state}`: series of the last result that hold, `pending` (less than `for`) or `firing`. */
  readonly series: Gauge<"rule" | "state">;
  /** `reclaim_operator_metric_triggers_total{rule}`: triggers handed to the engine. */
  readonly triggers: Counter<"rule">;
  /** `reclaim_operator_metric_users_left_alone_total{rule}`: users at the limit the factory did not refuse recently. */
  readonly leftAlone: Counter<"rule">;

  constructor(readonly registry: Registry = new Registry()) {
    const registers = [registry];
    this.queries = new Counter({
      name: "reclaim_operator_metric_queries_total",
      help: "Metric rule queries, by rule and result (ok, error).",
      labelNames: ["rule", "result"],
      registers,
    });
    this.errors = new Counter({
      name: "reclaim_operator_metric_errors_total",
      help: "Metric rule problems, by rule and kind (query, series_limit, no_target, target, control, user_limit, trigger).",
      labelNames: ["rule", "kind"],
      registers,
    });
    this.series = new Gauge({
      name: "reclaim_operator_metric_series",
      help: "Series of a metric rule's last result whose condition holds, pending (not yet for `for`) or firing.",
      labelNames: ["rule", "state"],
      registers,
    });
    this.triggers = new Counter({
      name: "reclaim_operator_metric_triggers_total",
      help: "Triggers a metric rule handed to the engine (one per user the firing series' factory refused recently).",
      labelNames: ["rule"],
      registers,
    });
    this.leftAlone = new Counter({
      name: "reclaim_operator_metric_users_left_alone_total",
      help: "Users at the limit on a firing series' factory that it did not refuse recently (busy, not locked out): no trigger.",
      labelNames: ["rule"],
      registers,
    });
  }
}

export interface MetricEvaluatorOptions {
  /** Most series of one result that are evaluated (default 1000). */
  maxSeries?: number;
  /** Most users of one factory that become triggers per evaluation (default 100). */
  maxUsersPerSeries?: number;
  /** Longest a query may take (default 10000 ms, and never more than the rule's interval). */
  queryTimeoutMs?: number;
  /** Timeout of the factory's users-at-limit call (default 5000 ms). */
  controlTimeoutMs?: number;
  /**
   * Only users the factory refused within this long get a trigger (default
   * 10 min, as the sweep): a user at the limit who never asked for another
   * connection is busy, not locked out, and is left alone.
   */
  refusedWithinMs?: number;
}

export interface MetricEvaluatorDeps {
  /** The rules; log rules among them are ignored. */
  rules: readonly CompiledRule[];
  prometheus: InstantQuerier;
  targets: TargetResolver;
  /** "Now" for `for` and the triggers' time. Timers themselves are real. */
  clock: Clock;
  /** The engine's `onTrigger`. Awaited; a rejection is reported, not thrown. */
  onTrigger: (trigger: Trigger) => unknown;
  /** Every problem, for the log (default: ignored; they are counted either way). */
  onError?: (error: MetricEvaluationError) => void;
  /** Where the evaluator's metrics go (default: a registry of its own, `metrics.registry`). */
  registry?: Registry;
  options?: MetricEvaluatorOptions;
}

/** What one evaluation of one rule saw and did (for tests and logs). */
export interface Evaluation {
  rule: string;
  at: number;
  /** The query failed (every series of the rule was reset). */
  error: MetricEvaluationError | null;
  /** Series in the result (before `maxSeries`). */
  series: number;
  /** Series holding, not yet for `for`. */
  pending: number;
  /** Series that held for `for` at this evaluation. */
  firing: number;
  /** Triggers handed to `onTrigger`. */
  triggers: number;
}

interface SeriesState {
  since: number;
}

interface RuleState {
  rule: MetricRule;
  /** Series key → since when it has held. Only series of the last successful result. */
  held: Map<string, SeriesState>;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
}

const REQUIRED_DEFAULTS: Required<MetricEvaluatorOptions> = {
  maxSeries: 1000,
  maxUsersPerSeries: 100,
  queryTimeoutMs: 10_000,
  controlTimeoutMs: 5000,
  refusedWithinMs: DEFAULT_REFUSED_WITHIN_MS,
};

/** Evaluates metric rules on their intervals and turns firing series into engine triggers. */
export class MetricEvaluator {
  readonly metrics: MetricEvaluatorMetrics;
  private readonly options: Required<MetricEvaluatorOptions>;
  private readonly states = new Map<string, RuleState>();
  private started = false;

  constructor(private readonly deps: MetricEvaluatorDeps) {
    const given = Object.entries(deps.options ?? {}).filter(([, v]) => v !== undefined);
    this.options = { ...REQUIRED_DEFAULTS, ...(Object.fromEntries(given) as MetricEvaluatorOptions) };
    for (const [name, value] of Object.entries(this.options)) {
      if (!Number.isInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer, got ${String(value)}`);
    }
    this.metrics = new MetricEvaluatorMetrics(deps.registry);
    this.setRules(deps.rules);
  }

  /** The metric rules in force, by name. */
  get rules(): MetricRule[] {
    return [...this.states.values()].map((s) => s.rule);
  }

  /**
   * Replaces the rules (hot reload). A rule whose name and metric trigger are
   * unchanged keeps its series' "held since"; any other rule starts afresh.
   * Running timers follow the new set.
   */
  setRules(rules: readonly CompiledRule[]): void {
    const next = new Map<string, MetricRule>();
    for (const rule of rules) if (isMetricRule(rule)) next.set(rule.name, rule);
    for (const [name, state] of this.states) {
      const replacement = next.get(name);
      if (replacement === undefined || !sameTrigger(state.rule, replacement)) {
        this.unschedule(state);
        this.states.delete(name);
        this.metrics.series.remove({ rule: name, state: "pending" });
        this.metrics.series.remove({ rule: name, state: "firing" });
      } else {
        state.rule = replacement;
      }
    }
    for (const [name, rule] of next) {
      if (this.states.has(name)) continue;
      const state: RuleState = { rule, held: new Map(), timer: null, running: null };
      this.states.set(name, state);
      if (this.started) this.schedule(state, 0);
    }
  }

  /** Evaluates every rule now and then every `interval` (timers unref'd). Idempotent. */
  start(): void {
    if (this.started) return;
    this.started = true;
    // A rule still finishing an evaluation from before a stop reschedules itself when done.
    for (const state of this.states.values()) if (state.running === null) this.schedule(state, 0);
  }

  /** Stops the timers; resolves when evaluations in progress have finished. */
  async stop(): Promise<void> {
    this.started = false;
    const running: Promise<void>[] = [];
    for (const state of this.states.values()) {
      this.unschedule(state);
      if (state.running !== null) running.push(state.running);
    }
    await Promise.all(running);
  }

  /** Evaluates every rule once at `now` (default the clock's), one after another. For tests and manual runs. */
  async tick(now: number = this.deps.clock.now()): Promise<Evaluation[]> {
    const results: Evaluation[] = [];
    for (const state of [...this.states.values()]) results.push(await this.evaluate(state.rule, now));
    return results;
  }

  /** Evaluates one rule at `now`: query, compare, remember, fire. Never rejects. */
  async evaluate(rule: CompiledRule, now: number = this.deps.clock.now()): Promise<Evaluation> {
    const state = this.states.get(rule.name);
    if (state === undefined || !isMetricRule(rule)) throw new TypeError(`${rule.name} is not a metric rule of this evaluator`);
    const metric = state.rule.rule.spec.trigger.metric;
    const name = state.rule.name;
    const result: Evaluation = { rule: name, at: now, error: null, series: 0, pending: 0, firing: 0, triggers: 0 };

    let samples: Sample[];
    try {
      const answer = await this.deps.prometheus.query(metric.query, { time: now, timeoutMs: Math.min(this.options.queryTimeoutMs, metric.interval) });
      samples = answer.samples;
    } catch (err) {
      this.metrics.queries.inc({ rule: name, result: "error" });
      state.held.clear(); // conservative: `for` means "seen holding throughout", an outage breaks that
      this.setGauges(name, 0, 0);
      const detail = err instanceof Error ? err.message : String(err);
      const recoverable = err instanceof PrometheusError && err.recoverable ? "" : " (not recoverable: check the query and --prometheus)";
      result.error = this.report(name, "query", `Metric rule ${name}: ${detail}${recoverable}; its series were reset`, err);
      return result;
    }
    this.metrics.queries.inc({ rule: name, result: "ok" });
    result.series = samples.length;
    if (samples.length > this.options.maxSeries) {
      this.report(
        name,
        "series_limit",
        `Metric rule ${name}: the query returned ${samples.length} series, only the first ${this.options.maxSeries} are evaluated (aggregate it, e.g. max by (pod))`,
      );
      samples = samples.slice(0, this.options.maxSeries);
    }

    const seen = new Map<string, SeriesState>();
    const firing: Sample[] = [];
    for (const sample of samples) {
      if (!holds(sample.value, metric.op, metric.threshold)) continue;
      const key = seriesKey(sample.labels);
      if (seen.has(key)) continue; // the same label set twice: not a valid result, count it once
      const since = state.held.get(key)?.since ?? now;
      seen.set(key, { since });
      if (now - since >= metric.for) firing.push(sample);
      else result.pending++;
    }
    // Only series that hold now are remembered: the rest (stopped holding, or absent) start over.
    state.held = seen;
    result.firing = firing.length;
    this.setGauges(name, result.pending, result.firing);

    const asked = new Set<string>();
    for (const sample of firing) result.triggers += await this.fire(state.rule, sample, now, asked);
    return result;
  }

  /** Asks the series' factory for its users at the limit; one trigger each. Returns how many were handed on. */
  private async fire(rule: MetricRule, sample: Sample, now: number, asked: Set<string>): Promise<number> {
    const metric = rule.rule.spec.trigger.metric;
    const name = rule.name;
    const pod = sample.labels[metric.podLabel] ?? null;
    const namespace = sample.labels.namespace ?? null;
    const series = seriesKey(sample.labels);
    let target: Target | null;
    try {
      target = await this.deps.targets.resolve({ userId: "", pod, namespace });
    } catch (err) {
      this.report(name, "target", `Metric rule ${name}: cannot resolve the factory of ${series}: ${err instanceof Error ? err.message : String(err)}`, err);
      return 0;
    }
    if (target === null) {
      this.report(name, "no_target", `Metric rule ${name}: series ${series} names no factory to act on (label ${metric.podLabel}=${pod ?? "(absent)"})`);
      return 0;
    }
    if (asked.has(target.control.baseUrl)) return 0;
    asked.add(target.control.baseUrl);
    let users: UserSummary[];
    let factoryNow = now;
    try {
      const { value } = await target.control.usersAtLimit(this.options.controlTimeoutMs);
      users = value.users;
      if (value.asOf !== undefined) factoryNow = Date.parse(value.asOf);
    } catch (err) {
      this.report(name, "control", `Metric rule ${name}: cannot list the users at the limit on ${target.control.baseUrl}: ${err instanceof Error ? err.message : String(err)}`, err);
      return 0;
    }
    // Locked out, not only busy: the factory refused them recently (issue 11). The rest are counted and left alone.
    const atLimit = users.length;
    users = users.filter((user) => refusedRecently(user, factoryNow, this.options.refusedWithinMs) !== null);
    this.metrics.leftAlone.inc({ rule: name }, atLimit - users.length);
    if (users.length > this.options.maxUsersPerSeries) {
      this.report(
        name,
        "user_limit",
        `Metric rule ${name}: ${users.length} users at the limit on ${target.control.baseUrl}, triggers for the first ${this.options.maxUsersPerSeries} only`,
      );
      users = users.slice(0, this.options.maxUsersPerSeries);
    }
    const message = `${metric.query} = ${formatValue(sample.value)} ${metric.op} ${metric.threshold} for ${formatDuration(metric.for)}`;
    let handed = 0;
    for (const user of users) {
      const trigger = syntheticTrigger(rule, { userId: user.userId, pod, namespace: target.namespace ?? namespace }, now, {
        kind: "metric",
        message,
        fields: { ...sample.labels, value: sample.value, managers: user.active, limit: user.effectiveLimit },
      });
      if (trigger === null) continue;
      this.metrics.triggers.inc({ rule: name });
      handed++;
      try {
        await this.deps.onTrigger(trigger);
      } catch (err) {
        this.report(name, "trigger", `Metric rule ${name}: the trigger for ${trigger.keyString} failed: ${err instanceof Error ? err.message : String(err)}`, err);
      }
    }
    return handed;
  }

  private report(rule: string, kind: MetricErrorKind, message: string, cause?: unknown): MetricEvaluationError {
    this.metrics.errors.inc({ rule, kind });
    const error = new MetricEvaluationError(message, rule, kind, cause === undefined ? undefined : { cause });
    try {
      this.deps.onError?.(error);
    } catch {
      // A failing error handler must not stop the evaluation (nor escape a timer).
    }
    return error;
  }

  private setGauges(rule: string, pending: number, firing: number): void {
    this.metrics.series.set({ rule, state: "pending" }, pending);
    this.metrics.series.set({ rule, state: "firing" }, firing);
  }

  private schedule(state: RuleState, delayMs: number): void {
    this.unschedule(state);
    state.timer = setTimeout(() => {
      state.timer = null;
      const started = Date.now();
      const run = this.evaluate(state.rule, this.deps.clock.now()).then(
        () => undefined,
        () => undefined, // evaluate reports its own failures; a TypeError here means the rule was removed meanwhile
      );
      state.running = run;
      void run.then(() => {
        state.running = null;
        // Only if the rule is still this one and the evaluator still runs: the next evaluation one interval after this one started.
        if (this.started && this.states.get(state.rule.name) === state) {
          this.schedule(state, Math.max(0, state.rule.rule.spec.trigger.metric.interval - (Date.now() - started)));
        }
      });
    }, delayMs);
    state.timer.unref();
  }

  private unschedule(state: RuleState): void {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }
}

/** Does `value op threshold` hold? `NaN` never holds, whatever the operator: a series without a number is no evidence. */
export function holds(value: number, op: MetricTrigger["op"], threshold: number): boolean {
  if (Number.isNaN(value)) return false;
  switch (op) {
    case ">":
      return value > threshold;
    case ">=":
      return value >= threshold;
    case "<":
      return value < threshold;
    case "<=":
      return value <= threshold;
    case "==":
      return value === threshold;
    case "!=":
      return value !== threshold;
  }
}

/** A series' identity: its labels, sorted, as `{a="1",b="2"}`. */
export function seriesKey(labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `{${parts.join(",")}}`;
}

function sameTrigger(a: MetricRule, b: MetricRule): boolean {
  return JSON.stringify(a.rule.spec.trigger.metric) === JSON.stringify(b.rule.spec.trigger.metric);
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** `120000` → `2m`; the largest unit that divides it exactly. */
function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
