/**
 * Every metric name that manifests/monitoring/alerts.yaml and dashboard.json
 * read is one the factory or the operator actually exposes, so a renamed
 * metric cannot leave a silent alert or an empty panel behind. A real factory
 * and a real operator run one real remediation (a user at the limit with
 * zombie tabs, refused, probed, verified, resolved, and the incident posted
 * to an Alertmanager API on 127.0.0.1; and a bad token); then both `/metrics` endpoints are
 * scraped over HTTP and every name is looked up in what they serve: declared
 * (`# TYPE`), a histogram's `_bucket`/`_sum`/`_count` under its base name, and
 * with samples, except the few series that only a failure creates (listed
 * below with the failure).
 */
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, isRefusal } from "../../src/demo/clients.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";
import { metricNames } from "./promql-names.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const USER = "105945141827451681156";
const LIMIT = 3;

/** Series Prometheus makes itself, per target: no exporter serves them. */
const PROMETHEUS_OWN = new Set(["up"]);

/**
 * Names the alerts or the dashboard read whose series only a failure creates (a labelled
 * metric has no sample before its first labelled update): they must be
 * declared, and samples are not asked for.
 */
const FAILURE_ONLY: Record<string, string> = {
  reclaim_operator_circuit_open: "set when a rule's circuit breaker opens",
  reclaim_operator_source_errors_total: "counted when the log tail fails",
  reclaim_operator_source_connected: "set by a streaming source (Cloud Logging) only",
  reclaim_operator_source_not_understood_total: "counted when most lines are not log entries",
  reclaim_operator_entries_dropped_total: "counted when a matched entry is dropped",
};

/** What one `/metrics` endpoint serves: declared names with their type, and names that have samples. */
interface Exposition {
  types: Map<string, string>;
  sampled: Set<string>;
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const sampled = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/.exec(line);
    if (type !== null) types.set(type[1]!, type[2]!);
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample !== null) sampled.add(sample[1]!);
  }
  return { types, sampled };
}

/** Why `name` is not served by any of `expositions` (null when it is): not declared, or declared with no samples. */
function lookUp(name: string, expositions: readonly Exposition[], requireSamples: boolean): string | null {
  if (PROMETHEUS_OWN.has(name)) return null;
  const histogram = /^(.+)_(bucket|sum|count)$/.exec(name);
  const declared = expositions.some(
    (e) =>
      e.types.has(name) ||
      (histogram !== null && (e.types.get(histogram[1]!) === "histogram" || (histogram[2] !== "bucket" && e.types.get(histogram[1]!) === "summary"))),
  );
  if (!declared) return "not exposed";
  if (requireSamples && !expositions.some((e) => e.sampled.has(name))) return "declared, but no sample after a remediation";
  return null;
}

/** Every metric name the alert rules read, by alert. */
function alertNames(alertsText: string): Map<string, string[]> {
  const file = parse(alertsText) as { groups: { rules: { alert: string; expr: string }[] }[] };
  return new Map(file.groups.flatMap((g) => g.rules).map((r) => [r.alert, metricNames(r.expr)]));
}

/** Every metric name the dashboard's panels read, by panel title. */
function dashboardNames(dashboardText: string): Map<string, string[]> {
  const d = JSON.parse(dashboardText) as { panels: { title: string; targets?: { expr: string }[] }[] };
  return new Map(d.panels.filter((p) => p.targets !== undefined).map((p) => [p.title, [...new Set(p.targets!.flatMap((t) => metricNames(t.expr)))]]));
}

/** `where: name (why)` for each name in `used` that the expositions do not serve. */
function problems(used: Map<string, string[]>, expositions: readonly Exposition[]): string[] {
  const out: string[] = [];
  for (const [where, names] of used) {
    for (const name of names) {
      const why = lookUp(name, expositions, FAILURE_ONLY[name] === undefined);
      if (why !== null) out.push(`${where}: ${name} (${why})`);
    }
  }
  return out;
}

async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return parseExposition(await res.text());
}

describe("the metric names of alerts.yaml and dashboard.json exist after a real remediation", () => {
  let factory: TestFactory | undefined;
  let operator: TestOperator | undefined;
  let alertmanager: Server | undefined;
  const posted: unknown[] = [];
  let expositions: Exposition[] = [];

  beforeAll(async () => {
    // Alertmanager's v2 API as far as the operator uses it: POST /api/v2/alerts, 200.
    alertmanager = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8").on("data", (c: string) => (body += c));
      req.on("end", () => {
        if (req.method === "POST" && req.url === "/api/v2/alerts") {
          posted.push(JSON.parse(body));
          res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
        } else res.writeHead(404).end();
      });
    });
    alertmanager.listen(0, "127.0.0.1");
    await once(alertmanager, "listening");
    const amUrl = `http://127.0.0.1:${(alertmanager.address() as AddressInfo).port}`;

    const dir = await tempDir("reclaim-metric-names-");
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ limit: LIMIT, cleanup: "legacy", probeTimeoutMs: 300, logFile });
    operator = await startTestOperator({
      dir,
      source: `file:${logFile}`,
      control: factory.controlUrl,
      notifications: { alertmanagers: [amUrl], file: null, externalUrl: null },
    });

    // The outage in small: LIMIT zombie tabs, a refused upgrade; the operator's probe frees them.
    for (let i = 0; i < LIMIT; i++) await factory.open(USER, "no-pong");
    const refused = await factory.attempt(USER);
    expect(isRefusal(refused) && refused.status).toBe(503);
    const incident = await operator.ended(USER);
    expect(incident.status).toBe("resolved");
    expect(incident.rungs.map((r) => r.rung)).toContain("probe");
    await factory.open(USER);
    // A bad token (the dashboard's refusals panel shows 401s by reason).
    const badToken = await connect(factory.wsUrl, "not-a-token");
    expect(isRefusal(badToken) && badToken.status).toBe(401);
    // The resolution reached the Alertmanager API, and the factory's probe histogram has its observation.
    await eventually(() => posted.length > 0, 10_000, "a notice posted to Alertmanager");
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${operator!.metricsPort}/metrics`).then((r) => r.text())).includes('result="delivered"'),
      10_000,
      "a delivery counted",
    );
    await eventually(() => factory!.metrics.probeDuration.get().then((m) => m.values.some((v) => v.metricName?.endsWith("_count") === true && v.value > 0)), 5000, "a probe observed");

    const factoryMetrics = factory.metricsPort === null ? `${factory.controlUrl}/metrics` : `http://127.0.0.1:${factory.metricsPort}/metrics`;
    expositions = [await scrape(factoryMetrics), await scrape(`http://127.0.0.1:${operator.metricsPort}/metrics`)];
  });

  afterAll(async () => {
    await operator?.close();
    await factory?.close();
    if (alertmanager !== undefined) {
      alertmanager.closeAllConnections();
      await new Promise<void>((resolve) => alertmanager!.close(() => resolve()));
    }
  });

  it("the scrapes are the factory's and the operator's, after the remediation", () => {
    const [f, o] = expositions;
    expect(f!.sampled).toContain("reclaim_factory_admissions_total");
    expect(o!.sampled).toContain("reclaim_operator_rungs_total");
    expect(o!.sampled).toContain("reclaim_operator_detect_to_resolved_seconds_bucket");
  });

  it("every metric alerts.yaml reads is exposed (with samples, except the failure-only ones)", async () => {
    const used = alertNames(await readFile(join(ROOT, "manifests/monitoring/alerts.yaml"), "utf8"));
    expect(used.size).toBeGreaterThanOrEqual(15);
    expect(problems(used, expositions)).toEqual([]);
  });

  it("every metric dashboard.json reads is exposed (with samples, except the failure-only ones)", async () => {
    const used = dashboardNames(await readFile(join(ROOT, "manifests/monitoring/dashboard.json"), "utf8"));
    expect(used.size).toBeGreaterThanOrEqual(8);
    expect(problems(used, expositions)).toEqual([]);
  });

  it("the failure-only list holds only names the alerts or the dashboard read, each declared", async () => {
    const used = new Set([
      ...[...alertNames(await readFile(join(ROOT, "manifests/monitoring/alerts.yaml"), "utf8")).values()].flat(),
      ...[...dashboardNames(await readFile(join(ROOT, "manifests/monitoring/dashboard.json"), "utf8")).values()].flat(),
    ]);
    for (const name of Object.keys(FAILURE_ONLY)) {
      expect(used, `${name} is still read`).toContain(name);
      expect(lookUp(name, expositions, false), name).toBeNull();
    }
  });

  // The check above catches what it is for: a renamed metric in an alert, a misspelt bucket on the dashboard.
  it.each([
    ["alerts.yaml", "reclaim_operator_circuit_open)", "reclaim_operator_circuit_opened)", "ReclaimCircuitBreakerOpen: reclaim_operator_circuit_opened (not exposed)"],
    ["alerts.yaml", "reclaim_factory_admissions_total{outcome=", "reclaim_factory_admission_total{outcome=", "ReclaimUsersRefusedWithoutIncident: reclaim_factory_admission_total (not exposed)"],
    ["dashboard.json", "reclaim_operator_detect_to_resolved_seconds_bucket[", "reclaim_operator_detect_to_resolved_bucket[", "Detect to resolved: reclaim_operator_detect_to_resolved_bucket (not exposed)"],
  ])("a renamed metric in %s is reported: %s → %s", async (file, from, to, report) => {
    const text = await readFile(join(ROOT, "manifests/monitoring", file), "utf8");
    expect(text).toContain(from);
    const used = file === "alerts.yaml" ? alertNames(text.replace(from, to)) : dashboardNames(text.replaceAll(from, to));
    expect(problems(used, expositions)).toContain(report);
  });

  it("a name declared but never sampled is reported unless only a failure creates it", () => {
    const declaredOnly: Exposition = { types: new Map([["reclaim_operator_x_total", "counter"]]), sampled: new Set() };
    expect(lookUp("reclaim_operator_x_total", [declaredOnly], true)).toBe("declared, but no sample after a remediation");
    expect(lookUp("reclaim_operator_x_total", [declaredOnly], false)).toBeNull();
    const histogram: Exposition = { types: new Map([["h_seconds", "histogram"]]), sampled: new Set(["h_seconds_bucket"]) };
    expect(lookUp("h_seconds_bucket", [histogram], true)).toBeNull();
    expect(lookUp("h_seconds_count", [histogram], false)).toBeNull();
    expect(lookUp("h_seconds_total", [histogram], false)).toBe("not exposed");
  });
});
