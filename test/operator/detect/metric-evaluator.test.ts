/**
 * The metric evaluator, driven by `tick` with a manual clock: the real
 * PrometheusClient talks to a fake Prometheus (a local HTTP server whose
 * answers the test sets), and firing series ask a real factory, where one
 * user is at their limit, which users to trigger for.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import type { Trigger } from "../../../src/operator/detect/detector.js";
import { holds, isMetricRule, MetricEvaluator, seriesKey, type MetricEvaluationError, type MetricEvaluatorOptions } from "../../../src/operator/detect/metric-evaluator.js";
import { PrometheusClient, PrometheusError } from "../../../src/operator/sources/prometheus.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import type { z } from "zod";
import type { MetricTrigger } from "../../../src/operator/rules/schema.js";
import { StaticTarget, type TargetResolver } from "../../../src/operator/act/target.js";
import { ManualClock } from "../../support/clock.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";
import { startFakePrometheus, vectorAnswer, type FakeAnswer, type FakePrometheus } from "../../support/prometheus.js";
import { rule } from "../../support/rules.js";

const ALICE = "105945141827451681156"; // at her limit (2/2)
const BOB = "bob"; // 1/2: not at the limit
const QUERY = "max by (pod) (reclaim_factory_users_at_limit)";
const S = 1000;
const M = 60 * S;

function metricRule(metric: Partial<z.input<typeof MetricTrigger>> = {}, name = "users-at-limit"): CompiledRule {
  return rule(name, { trigger: { metric: { query: QUERY, op: ">", threshold: 0, for: "2m", interval: "30s", ...metric } } });
}

const atLimit = (value: number | string = 1, pod = "factory-a"): FakeAnswer => vectorAnswer([{ labels: { pod }, value }]);

describe("MetricEvaluator", () => {
  let factory: TestFactory;
  let prometheus: FakePrometheus;
  let control: ControlClient;
  let clock: ManualClock;
  let triggers: Trigger[];
  let errors: MetricEvaluationError[];
  let evaluator: MetricEvaluator | null;

  beforeAll(async () => {
    factory = await startTestFactory({ limit: 2 }, { pod: "factory-a" });
    await factory.open(ALICE);
    await factory.open(ALICE);
    await factory.attempt(ALICE); // refused: locked out, not only at the limit
    await factory.open(BOB);
    control = new ControlClient(factory.controlUrl, TEST_CONTROL_TOKEN);
    prometheus = await startFakePrometheus(() => atLimit());
  });

  afterAll(async () => {
    await prometheus?.close();
    await factory?.close();
  });

  beforeEach(() => {
    clock = new ManualClock();
    triggers = [];
    errors = [];
    prometheus.answer = () => atLimit();
    prometheus.requests.length = 0;
  });

  afterEach(async () => {
    await evaluator?.stop();
    evaluator = null;
  });

  function make(
    rules: CompiledRule[] = [metricRule()],
    options: { targets?: TargetResolver; onTrigger?: (t: Trigger) => unknown; evaluator?: MetricEvaluatorOptions; url?: string } = {},
  ): MetricEvaluator {
    evaluator = new MetricEvaluator({
      rules,
      prometheus: new PrometheusClient(options.url ?? prometheus.url, { timeoutMs: 2000 }),
      targets: options.targets ?? new StaticTarget(control),
      clock,
      onTrigger: options.onTrigger ?? ((t: Trigger) => triggers.push(t)),
      onError: (e) => errors.push(e),
      ...(options.evaluator === undefined ? {} : { options: options.evaluator }),
    });
    return evaluator;
  }

  const counter = async (ev: MetricEvaluator, name: string, labels: Record<string, string>): Promise<number> => {
    const metric = await ev.metrics.registry.getSingleMetric(name)!.get();
    return metric.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
  };

  it("fires once the condition has held for `for`, for exactly the users at the limit, and again while it holds", async () => {
    const ev = make();
    const t0 = clock.now();
    expect(await ev.tick(t0)).toEqual([expect.objectContaining({ series: 1, pending: 1, firing: 0, triggers: 0, error: null })]);
    expect((await ev.tick(t0 + 1 * M))[0]).toMatchObject({ pending: 1, firing: 0 });
    expect((await ev.tick(t0 + 2 * M - 1))[0]).toMatchObject({ pending: 1, firing: 0 });
    expect(triggers).toEqual([]);

    expect((await ev.tick(t0 + 2 * M))[0]).toMatchObject({ pending: 0, firing: 1, triggers: 1 });
    expect(triggers).toHaveLength(1);
    const trigger = triggers[0]!;
    expect(trigger).toMatchObject({ userId: ALICE, pod: "factory-a", key: { userId: ALICE, pod: "factory-a" }, at: t0 + 2 * M, total: 1 });
    expect(trigger.rule.name).toBe("users-at-limit");
    expect(trigger.entries[0]).toMatchObject({
      event: "reclaim.metric",
      message: `${QUERY} = 1 > 0 for 2m`,
      fields: { pod: "factory-a", value: 1, userId: ALICE, managers: 2, limit: 2 },
    });

    // Still holding: fires again (the engine's guards turn it into a counted suppression).
    expect((await ev.tick(t0 + 2 * M + 30 * S))[0]).toMatchObject({ firing: 1, triggers: 1 });
    expect(triggers.map((t) => t.userId)).toEqual([ALICE, ALICE]);
    expect(await counter(ev, "reclaim_operator_metric_triggers_total", { rule: "users-at-limit" })).toBe(2);
    expect(await counter(ev, "reclaim_operator_metric_queries_total", { rule: "users-at-limit", result: "ok" })).toBe(5);
    expect(await counter(ev, "reclaim_operator_metric_series", { rule: "users-at-limit", state: "firing" })).toBe(1);
    // The evaluation time is the clock's, sent to Prometheus.
    expect(prometheus.requests.at(-1)?.get("time")).toBe(((t0 + 2 * M + 30 * S) / 1000).toFixed(3));
    expect(errors).toEqual([]);
  });

  it("a series that stops holding starts `for` again", async () => {
    const ev = make();
    const t0 = clock.now();
    await ev.tick(t0);
    prometheus.answer = () => atLimit(0);
    expect((await ev.tick(t0 + 1 * M))[0]).toMatchObject({ series: 1, pending: 0, firing: 0 });
    prometheus.answer = () => atLimit(1);
    await ev.tick(t0 + 90 * S);
    expect((await ev.tick(t0 + 2 * M))[0]).toMatchObject({ pending: 1, firing: 0 });
    expect((await ev.tick(t0 + 90 * S + 2 * M))[0]).toMatchObject({ firing: 1, triggers: 1 });
  });

  it("a series absent from a result is forgotten: `for` starts again when it comes back", async () => {
    const ev = make();
    const t0 = clock.now();
    await ev.tick(t0);
    prometheus.answer = () => vectorAnswer([]);
    expect((await ev.tick(t0 + 1 * M))[0]).toMatchObject({ series: 0, pending: 0 });
    prometheus.answer = () => atLimit();
    expect((await ev.tick(t0 + 2 * M))[0]).toMatchObject({ pending: 1, firing: 0 });
    expect(triggers).toEqual([]);
  });

  it("keys series by their whole label set, in any order; each has its own `for`", async () => {
    const ev = make([metricRule({ query: "reclaim_factory_users_at_limit" })]);
    const t0 = clock.now();
    prometheus.answer = () => vectorAnswer([{ labels: { pod: "factory-a", job: "f" }, value: 1 }]);
    await ev.tick(t0);
    // Same series, labels in another order; and a new one.
    prometheus.answer = () =>
      vectorAnswer([
        { labels: { job: "f", pod: "factory-a" }, value: 1 },
        { labels: { pod: "factory-b", job: "f" }, value: 1 },
      ]);
    expect((await ev.tick(t0 + 1 * M))[0]).toMatchObject({ series: 2, pending: 2 });
    expect((await ev.tick(t0 + 2 * M))[0]).toMatchObject({ pending: 1, firing: 1, triggers: 1 });
    expect(triggers[0]).toMatchObject({ pod: "factory-a", userId: ALICE });
    expect(seriesKey({ b: "2", a: "1" })).toBe(seriesKey({ a: "1", b: "2" }));
  });

  it("asks one factory once per evaluation, even when several firing series resolve to it", async () => {
    const ev = make([metricRule({ for: "30s" })]);
    prometheus.answer = () =>
      vectorAnswer([
        { labels: { pod: "factory-a" }, value: 1 },
        { labels: { pod: "factory-b" }, value: 3 },
      ]);
    const t0 = clock.now();
    await ev.tick(t0);
    expect((await ev.tick(t0 + 30 * S))[0]).toMatchObject({ firing: 2, triggers: 1 });
    expect(triggers.map((t) => [t.userId, t.pod])).toEqual([[ALICE, "factory-a"]]);
  });

  it.each<[MetricTrigger["op"], number, number, boolean]>([
    [">", 0, 1, true],
    [">", 0, 0, false],
    [">=", 1, 1, true],
    [">=", 1, 0.5, false],
    ["<", 0.5, 0.1, true],
    ["<", 0.5, 0.5, false],
    ["<=", 0.5, 0.5, true],
    ["<=", 0.5, 0.6, false],
    ["==", 3, 3, true],
    ["==", 3, 2, false],
    ["!=", 3, 2, true],
    ["!=", 3, 3, false],
    [">", 0, Infinity, true],
    ["<", 0, -Infinity, true],
    [">", 0, NaN, false],
    ["!=", 0, NaN, false], // NaN is no evidence, whatever the operator
    ["<", 0, NaN, false],
  ])("value %#: %s %s with %s holds: %s", (op, threshold, value, expected) => {
    expect(holds(value, op, threshold)).toBe(expected);
  });

  it.each([
    ["<", 5, "3", true],
    ["<", 5, "7", false],
    ["==", 1, "1", true],
    ["!=", 0, "NaN", false],
    [">", 0, "+Inf", true],
  ] as const)("through Prometheus: %s %s with value %s fires: %s", async (op, threshold, value, fires) => {
    const ev = make([metricRule({ op, threshold, for: "1s" })]);
    prometheus.answer = () => atLimit(value);
    await ev.tick(clock.now());
    const [result] = await ev.tick(clock.now() + S);
    expect(result?.firing).toBe(fires ? 1 : 0);
    expect(triggers.length).toBe(fires ? 1 : 0);
  });

  it.each<[string, FakeAnswer, string, boolean]>([
    ["hanging up", { body: "", hangUp: true }, "network", true],
    ["answering garbage", { body: "<html>oops</html>" }, "invalid_response", false],
    ["refusing the query", { status: 400, body: { status: "error", errorType: "bad_data", error: "parse error" } }, "query", false],
    ["behind a proxy's 503", { status: 503, body: "upstream down" }, "http", true],
    ["returning a matrix", { body: { status: "success", data: { resultType: "matrix", result: [] } } }, "unsupported_result", false],
  ])("Prometheus %s: counted, reported, never thrown, and every series of the rule is reset", async (_what, failure, kind, recoverable) => {
    const ev = make();
    const t0 = clock.now();
    await ev.tick(t0);
    prometheus.answer = () => failure;
    const [result] = await ev.tick(t0 + 1 * M);
    expect(result?.error?.code).toBe("ERR_RECLAIM_METRIC_EVALUATION");
    expect(result?.error?.kind).toBe("query");
    expect(result?.error?.cause).toBeInstanceOf(PrometheusError);
    expect((result?.error?.cause as PrometheusError).kind).toBe(kind);
    expect(result?.error?.recoverable).toBe(recoverable);
    expect(errors).toEqual([result?.error]);
    expect(await counter(ev, "reclaim_operator_metric_queries_total", { rule: "users-at-limit", result: "error" })).toBe(1);
    expect(await counter(ev, "reclaim_operator_metric_errors_total", { rule: "users-at-limit", kind: "query" })).toBe(1);
    expect(await counter(ev, "reclaim_operator_metric_series", { rule: "users-at-limit", state: "pending" })).toBe(0);

    // Prometheus is back and the series held before and after the failure: `for` counts from now, not from t0.
    prometheus.answer = () => atLimit();
    expect((await ev.tick(t0 + 2 * M))[0]).toMatchObject({ error: null, pending: 1, firing: 0 });
    expect((await ev.tick(t0 + 3 * M))[0]).toMatchObject({ pending: 1, firing: 0 });
    expect((await ev.tick(t0 + 4 * M))[0]).toMatchObject({ firing: 1, triggers: 1 });
  });

  it("evaluates at most maxSeries series and reports the rest", async () => {
    const ev = make([metricRule()], { evaluator: { maxSeries: 3 } });
    prometheus.answer = () => vectorAnswer(Array.from({ length: 5 }, (_, i) => ({ labels: { pod: `p${i}` }, value: 1 })));
    const [result] = await ev.tick(clock.now());
    expect(result).toMatchObject({ series: 5, pending: 3 });
    expect(errors.map((e) => [e.kind, e.recoverable])).toEqual([["series_limit", false]]);
  });

  it("reports a firing series with no target, a failing resolver, and a failing factory, and goes on", async () => {
    const nowhere: TargetResolver = { resolve: () => Promise.resolve(null) };
    const ev1 = make([metricRule({ for: "1s" })], { targets: nowhere });
    await ev1.tick(clock.now());
    expect((await ev1.tick(clock.now() + S))[0]).toMatchObject({ firing: 1, triggers: 0 });
    expect(errors.map((e) => e.kind)).toEqual(["no_target"]);
    await ev1.stop();

    errors = [];
    const throwing: TargetResolver = { resolve: () => Promise.reject(new Error("kubernetes API down")) };
    const ev2 = make([metricRule({ for: "1s" })], { targets: throwing });
    await ev2.tick(clock.now());
    await ev2.tick(clock.now() + S);
    expect(errors.map((e) => e.kind)).toEqual(["target"]);
    await ev2.stop();

    errors = [];
    const wrongToken = new StaticTarget(new ControlClient(factory.controlUrl, "not-the-control-token-at-all"));
    const ev3 = make([metricRule({ for: "1s" })], { targets: wrongToken });
    await ev3.tick(clock.now());
    await ev3.tick(clock.now() + S);
    expect(errors.map((e) => [e.kind, e.recoverable])).toEqual([["control", false]]);
    expect(errors[0]?.message).toContain("401");
    expect(triggers).toEqual([]);
  });

  it("a failing onTrigger is reported and does not stop the evaluation", async () => {
    const ev = make([metricRule({ for: "1s" })], { onTrigger: () => Promise.reject(new Error("store full")) });
    await ev.tick(clock.now());
    const [result] = await ev.tick(clock.now() + S);
    expect(result).toMatchObject({ firing: 1, triggers: 1 });
    expect(errors.map((e) => e.kind)).toEqual(["trigger"]);
    expect(errors[0]?.message).toContain("store full");
  });

  it("leaves alone a user at the limit whom the factory did not refuse: busy, not locked out (counted, no trigger)", async () => {
    const dave = "dave";
    await factory.open(dave);
    await factory.open(dave);
    try {
      const ev = make([metricRule({ for: "1s" })]);
      await ev.tick(clock.now());
      expect((await ev.tick(clock.now() + S))[0]).toMatchObject({ triggers: 1 });
      expect(triggers.map((t) => t.userId)).toEqual([ALICE]);
      expect(await ev.metrics.registry.getSingleMetricAsString("reclaim_operator_metric_users_left_alone_total")).toContain(
        'reclaim_operator_metric_users_left_alone_total{rule="users-at-limit"} 1',
      );
    } finally {
      await factory.control("POST", `/v1/users/${dave}/rungs/force`, { max: 1, freeSlots: 1 });
      await eventually(async () => (await control.usersAtLimit(2000)).value.users.length === 1, 5000, "dave below his limit");
    }
  });

  it("caps the users of one factory at maxUsersPerSeries", async () => {
    const carol = "carol";
    await factory.open(carol);
    await factory.open(carol);
    await factory.attempt(carol);
    try {
      const ev = make([metricRule({ for: "1s" })], { evaluator: { maxUsersPerSeries: 1 } });
      await ev.tick(clock.now());
      expect((await ev.tick(clock.now() + S))[0]).toMatchObject({ triggers: 1 });
      expect(errors.map((e) => e.kind)).toEqual(["user_limit"]);
    } finally {
      // Leave carol below the limit for the other tests.
      const list = await control.usersAtLimit(2000);
      expect(list.value.users.map((u) => u.userId).sort()).toEqual([ALICE, carol].sort());
      await factory.control("POST", `/v1/users/${carol}/rungs/force`, { max: 1, freeSlots: 1 });
      await eventually(async () => (await control.usersAtLimit(2000)).value.users.length === 1, 5000, "carol below her limit");
    }
  });

  it("ignores log rules, and on reload keeps the state of unchanged rules only", async () => {
    const logRule = rule("a-log-rule");
    expect(isMetricRule(logRule)).toBe(false);
    const ev = make([logRule, metricRule({}, "kept"), metricRule({}, "changed")]);
    expect(ev.rules.map((r) => r.name)).toEqual(["kept", "changed"]);
    const t0 = clock.now();
    await ev.tick(t0);
    ev.setRules([metricRule({}, "kept"), metricRule({ threshold: 0.5 }, "changed")]);
    const results = await ev.tick(t0 + 2 * M);
    expect(results.map((r) => [r.rule, r.firing])).toEqual([
      ["kept", 1],
      ["changed", 0],
    ]);
    ev.setRules([]);
    expect(await ev.tick(t0 + 3 * M)).toEqual([]);
    await expect(ev.evaluate(metricRule({}, "kept"))).rejects.toThrow(TypeError);
  });

  it("start() evaluates on its own timers every interval, stop() stops them", async () => {
    const ev = make([metricRule({ interval: "20ms", for: "1ms" })]);
    ev.start();
    ev.start(); // idempotent: still one timer per rule
    // `for` counts in clock time: move the manual clock while the timers run.
    await eventually(
      () => {
        clock.advance(5);
        return prometheus.requests.length >= 3 && triggers.length >= 1;
      },
      5000,
      "three evaluations and a trigger",
    );
    await ev.stop();
    const after = prometheus.requests.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(prometheus.requests.length).toBe(after);
    expect(triggers.every((t) => t.userId === ALICE)).toBe(true);
  });

  it("refuses option values that are not positive integers", () => {
    expect(() => make([metricRule()], { evaluator: { maxSeries: 0 } })).toThrow(TypeError);
    evaluator = null;
  });
});
