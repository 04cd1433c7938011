/**
 * The operator with metric rules and scheduled jobs: a real Prometheus
 * scraping a real factory fires a metric rule after its `for` and the
 * operator remediates through the normal path; Prometheus unreachable is
 * counted and logged, never fatal; the sweep job opens incidents through the
 * same path; and the log rule and the metric rule never act on one user at
 * once (user_busy).
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { AT_LIMIT_METRIC_RULE, emptyLog, LOCKOUT_RULE, startTestOperator, tempDir, type TestOperator } from "../support/operator.js";
import { describeWithPrometheus, startTestPrometheus, type TestPrometheus } from "../support/prometheus.js";


let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let prometheus: TestPrometheus | undefined;
afterEach(async () => {
  await operator?.close();
  await prometheus?.close();
  await factory?.close();
  operator = undefined;
  prometheus = undefined;
  factory = undefined;
});


describeWithPrometheus("metric rules against a real Prometheus", () => {
  it("a user held at the limit with no log line: the metric rule fires after its for, and the operator remediates", async () => {
    // Legacy cleanup; the user's 21st tab is refused, but its HARD LIMIT line never reaches the operator (it reads
    // another file): only the metric, and the factory's record of the refusal, tell.
    factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 300 });
    for (let i = 0; i < 20; i++) await factory.open("quiet-user", "no-pong");
    await factory.attempt("quiet-user");
    prometheus = await startTestPrometheus([{ address: factory.controlUrl.replace("http://", ""), labels: { pod: "test-factory-0" } }]);
    await prometheus.until("reclaim_factory_users_at_limit", (r) => r.some((s) => s.value[1] === "1"), 20_000);
    const dir = await tempDir();
    operator = await startTestOperator({ dir, source: `file:${await emptyLog(dir)}`, control: factory.controlUrl, rule: AT_LIMIT_METRIC_RULE, prometheus: { url: prometheus.url } });

    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the metric rule's incident", 30_000);
    expect(incident).toMatchObject({ rule: "at-limit", target: { userId: "quiet-user", pod: "test-factory-0" }, title: "User quiet-user sat at the limit on test-factory-0" });
    expect(incident!.evidence.entries[0]).toMatchObject({ event: "reclaim.metric", message: "max by (pod) (reclaim_factory_users_at_limit) = 1 > 0 for 1s" });
    expect(incident!.rungs.map((r) => [r.rung, r.result?.removed.length])).toEqual([["probe", 20]]);
    expect(factory.events("factory.hard_limit")).toHaveLength(1); // written, but never read by this operator
  });
});

describe("metric rules without a working Prometheus", () => {
  it("an unreachable Prometheus is counted and logged; the operator keeps serving log rules", async () => {
    factory = await startTestFactory({ probeTimeoutMs: 300 });
    const dir = await tempDir();
    const log = await emptyLog(dir);
    operator = await startTestOperator({
      dir,
      source: `file:${log}`,
      control: factory.controlUrl,
      rule: `${AT_LIMIT_METRIC_RULE}---\n${LOCKOUT_RULE}`,
      prometheus: { url: "http://127.0.0.1:9", timeoutMs: 500 },
    });
    await eventually(() => operator!.lines.some((l) => l.event === "operator.metric_error"), 10_000, "a metric error to be logged");
    const text = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    expect(text).toMatch(/reclaim_operator_metric_queries_total\{rule="at-limit",result="error"\} [1-9]/);
    await writeFile(log, `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "p", event: "factory.hard_limit", userId: "still-served", message: "x" })}\n`, { flag: "a" });
    await operator.until((all) => all.some((i) => i.target.userId === "still-served"), "the log rule to still act");
  });
});

describe("the sweep job", () => {
  it("finds users at their limit with no log line or metric and opens incidents through the normal path", async () => {
    factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 300 });
    for (let i = 0; i < 20; i++) await factory.open("swept-user", "no-pong");
    await factory.attempt("swept-user"); // refused: locked out, not only at the limit (the sweep leaves those alone)
    const dir = await tempDir();
    operator = await startTestOperator({
      dir,
      source: `file:${await emptyLog(dir)}`,
      control: factory.controlUrl,
      rule: AT_LIMIT_METRIC_RULE,
      jobs: { sweepSchedule: "0 0 1 1 *", sweepRule: "at-limit", digestSchedule: null, retentionSchedule: null, retentionDays: 30, timezone: "UTC" },
    });
    const report = await operator.scheduler!.runNow("sweep");
    expect(report).toMatchObject({ result: "ok" });
    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the swept incident");
    expect(incident).toMatchObject({ rule: "at-limit", target: { userId: "swept-user" } });
    expect(incident!.evidence.entries[0]!.event).toBe("reclaim.sweep");
    const text = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    expect(text).toContain('reclaim_operator_job_runs_total{job="sweep",result="ok"} 1');
  });
});

describe("two rules, one user", () => {
  it("while the log rule's ladder acts on a user, the sweep for the same user waits (user_busy)", async () => {
    const dir = await tempDir();
    const log = join(dir, "factory.log");
    factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 1500, logFile: log });
    for (let i = 0; i < 20; i++) await factory.open("both-rules", "no-pong");
    operator = await startTestOperator({
      dir,
      source: `file:${log}`,
      control: factory.controlUrl,
      rule: `${AT_LIMIT_METRIC_RULE}---\n${LOCKOUT_RULE}`,
      jobs: { sweepSchedule: "0 0 1 1 *", sweepRule: "at-limit", digestSchedule: null, retentionSchedule: null, retentionDays: 30, timezone: "UTC" },
    });
    await factory.attempt("both-rules"); // HARD LIMIT: the log rule starts its probe (1.5 s)
    await operator.until((all) => all.some((i) => i.rule === "lockout" && i.status === "remediating"), "the log rule to act");
    await operator.scheduler!.runNow("sweep");
    const all = await operator.until((incidents) => incidents.some((i) => i.rule === "lockout" && i.status === "resolved"), "the log rule to finish");
    const swept = all.find((i) => i.rule === "at-limit");
    expect(swept).toMatchObject({ status: "suppressed", suppressed: { user_busy: { count: 1 } } });
    expect(all.filter((i) => i.rungs.length > 0).map((i) => i.rule)).toEqual(["lockout"]);
  });
});
