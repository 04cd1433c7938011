/**
 * Both `/metrics` endpoints pass Debian's `promtool check metrics` (exit 0, no
 * lint warnings), default Node metrics included, after real traffic has made
 * every label set and histogram appear: a real factory with real ws clients, a
 * refused upgrade, a bad token, a rejected message and control-API rungs; a real
 * operator that tails the factory's log and remediates one lockout through the
 * control API.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect, isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { describeNeeding } from "../support/needs.js";
import { AT_LIMIT_METRIC_RULE, LOCKOUT_RULE, startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? "/usr/bin/promtool";
const PROMTOOL_MISSING: string | null = existsSync(PROMTOOL_BIN)
  ? null
  : `${PROMTOOL_BIN} is missing: install Debian's prometheus package (apt-get install -y prometheus; .ci/run does) to lint the metrics`;

const USER = "105945141827451681156";
const OTHER = "205945141827451681157";
const LIMIT = 3;


/** What `promtool check metrics` said about `text`; killed after `timeoutMs`. */
function promtool(text: string, timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL_BIN, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"], timeout: timeoutMs });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(text);
  });
}

/** The exposition text of a `/metrics` endpoint, over real HTTP. */
async function scrape(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return res.text();
}

describeNeeding(PROMTOOL_MISSING, "promtool check metrics", () => {
  let factory: TestFactory | undefined;
  let operator: TestOperator | undefined;
  const clients: ChatClient[] = [];

  const control = async (method: string, path: string, body?: unknown): Promise<number> => {
    const res = await fetch(`${factory!.controlUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(5000),
    });
    await res.arrayBuffer();
    return res.status;
  };
  const open = async (userId: string, kind: "live" | "no-pong" = "live"): Promise<ChatClient> => {
    const result = await connect(factory!.wsUrl, await factory!.auth.sign(userId, 3600), kind);
    if (isRefusal(result)) throw new Error(`connection for ${userId} refused: ${result.status} ${result.body}`);
    clients.push(result);
    return result;
  };

  beforeAll(async () => {
    const dir = await tempDir("reclaim-promtool-");
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ limit: LIMIT, cleanup: "legacy", probeTimeoutMs: 300, logFile }, { defaultMetrics: true }); // the Node metrics are what is linted
    operator = await startTestOperator(
      {
        dir,
        source: `file:${logFile}`,
        control: factory.controlUrl,
        rule: `${AT_LIMIT_METRIC_RULE}---\n${LOCKOUT_RULE}`,
        prometheus: { url: "http://127.0.0.1:9", timeoutMs: 500 },
        jobs: { sweepSchedule: "0 0 1 1 *", sweepRule: "at-limit", digestSchedule: null, retentionSchedule: null, retentionDays: 30, timezone: "UTC" },
      },
      { defaultMetrics: true },
    );

    // A user who chats, sends a message the server refuses, and gets a control-API rung run on them.
    const live = await open(OTHER);
    expect(await live.chat("hello")).toBe("echo: hello");
    live.ws.send("{not json");
    await live.next("error");
    expect(await control("POST", `/v1/users/${OTHER}/rungs/conservative`, {})).toBe(200);
    expect(await control("GET", `/v1/users/${OTHER}`)).toBe(200);
    expect(await control("GET", "/v1/nowhere")).toBe(404);
    // A bad token.
    const badToken = await connect(factory.wsUrl, "not-a-token");
    expect(isRefusal(badToken) && badToken.status).toBe(401);

    // The outage in small: LIMIT zombie tabs, a refused upgrade, the operator's probe frees them.
    for (let i = 0; i < LIMIT; i++) await open(USER, "no-pong");
    const refused = await connect(factory.wsUrl, await factory.auth.sign(USER, 3600));
    expect(isRefusal(refused) && refused.status).toBe(503);
    const incident = await operator.ended(USER);
    expect(incident.status).toBe("resolved");
    expect(incident.rungs.map((r) => r.rung)).toContain("probe");
    await open(USER);
    // The scheduled jobs' series appear after a run; the metric evaluator's after a failed query.
    expect(await operator.scheduler!.runNow("sweep")).toMatchObject({ result: "ok" });
    await eventually(() => operator!.lines.some((l) => l.event === "operator.metric_error"), 10_000, "a metric error to be logged");
    // The operator reads its metrics only when scraped; the factory's histogram must have its observation.
    await eventually(() => factory!.metrics.probeDuration.get().then((m) => m.values.some((v) => v.metricName?.endsWith("_count") === true && v.value > 0)), 5000, "a probe observed");
  });

  afterAll(async () => {
    for (const c of clients) c.destroy();
    await operator?.close();
    await factory?.close();
  });

  it("the factory's /metrics, after traffic: exit 0, no warnings", async () => {
    const text = await scrape(`${factory!.controlUrl}/metrics`);
    // The traffic reached the exposition: default metrics, labelled counters, a histogram.
    expect(text).toContain("reclaim_factory_process_cpu_seconds_total");
    expect(text).toMatch(/reclaim_factory_admissions_total\{outcome="refused"\} [1-9]/);
    expect(text).toMatch(/reclaim_factory_auth_failures_total\{reason="[a-z_]+"\} 1/);
    expect(text).toMatch(/reclaim_factory_probe_duration_seconds_count [1-9]/);
    expect(await promtool(text)).toEqual({ code: 0, signal: null, stdout: "", stderr: "" });
  });

  it("the operator's /metrics, after a remediation: exit 0, no warnings", async () => {
    const text = await scrape(`http://127.0.0.1:${operator!.metricsPort}/metrics`);
    expect(text).toContain("reclaim_operator_process_cpu_seconds_total");
    expect(text).toMatch(/reclaim_operator_rungs_total\{rung="probe",result="[a-z_]+"\} 1/);
    expect(text).toMatch(/reclaim_operator_detect_to_resolved_seconds_count [1-9]/);
    expect(text).toMatch(/reclaim_operator_job_last_run_timestamp_seconds\{job="sweep"\} [1-9]/);
    expect(text).toMatch(/reclaim_operator_metric_queries_total\{rule="at-limit",result="error"\} [1-9]/);
    expect(await promtool(text)).toEqual({ code: 0, signal: null, stdout: "", stderr: "" });
  });
});
