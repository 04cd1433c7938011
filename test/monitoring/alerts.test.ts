/**
 * manifests/monitoring/alerts.yaml, checked with Prometheus' own tool (Debian's
 * `promtool`): `check rules` accepts it, `test rules` passes its unit tests
 * (alerts.test.yaml, alerts-1d.test.yaml), and a broken copy makes those
 * tests fail. Without the
 * tool: every alert carries a severity, a summary, a description and a runbook
 * link to its own page under docs/runbooks/, and has a unit test where it
 * fires and one where it stays quiet; each shipped remediation rule has a page
 * for its incidents.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { describeNeeding } from "../support/needs.js";
import { tempDir } from "../support/operator.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ALERTS = join(ROOT, "manifests/monitoring/alerts.yaml");
/** promtool unit tests: evaluated every 30 s, and (alerts that compare with the day before) every 5 m. */
const ALERT_TESTS = [join(ROOT, "manifests/monitoring/alerts.test.yaml"), join(ROOT, "manifests/monitoring/alerts-1d.test.yaml")];
const RUNBOOKS = join(ROOT, "docs/runbooks");
/** Where runbook_url points: the repository's docs/runbooks/ on GitHub (documented in manifests/monitoring/README.md). */
const RUNBOOK_BASE = "https://github.com/reclaim-dev/reclaim/blob/main/docs/runbooks/";

const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? "/usr/bin/promtool";
const PROMTOOL_MISSING: string | null = existsSync(PROMTOOL_BIN)
  ? null
  : `${PROMTOOL_BIN} is missing: install Debian's prometheus package (apt-get install -y prometheus; .ci/run does) to check the alert rules`;

interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; interval?: string; rules: AlertRule[] }[];
}
interface AlertTestFile {
  rule_files: string[];
  evaluation_interval?: string;
  tests: { name?: string; alert_rule_test?: { alertname: string; eval_time: string; exp_alerts?: unknown[] }[] }[];
}

async function loadAlerts(): Promise<AlertRule[]> {
  const file = parse(await readFile(ALERTS, "utf8")) as RuleFile;
  return file.groups.flatMap((g) => g.rules);
}

/** The remediation rules shipped in rules/ (one per file): name, file and `spec.runbook`. */
async function shippedRules(): Promise<{ name: string; file: string; runbook?: string }[]> {
  const files = (await readdir(join(ROOT, "rules"))).filter((f) => /\.ya?ml$/.test(f));
  return Promise.all(
    files.map(async (file) => {
      const rule = parse(await readFile(join(ROOT, "rules", file), "utf8")) as { metadata: { name: string }; spec: { runbook?: string } };
      return { name: rule.metadata.name, file, ...(rule.spec.runbook === undefined ? {} : { runbook: rule.spec.runbook }) };
    }),
  );
}

function promtool(args: string[], cwd?: string): { status: number | null; out: string } {
  const r = spawnSync(PROMTOOL_BIN, args, { encoding: "utf8", timeout: 60_000, ...(cwd === undefined ? {} : { cwd }) });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("alerts.yaml: every alert is complete and linked to its runbook", () => {
  it("every rule is a uniquely named alert with severity, summary, description and its runbook URL", async () => {
    const rules = await loadAlerts();
    expect(rules.length).toBeGreaterThanOrEqual(15);
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size, "alert names are unique").toBe(names.length);
    for (const rule of rules) {
      expect(rule.alert, `a recording rule has no place here: ${rule.record}`).toMatch(/^Reclaim[A-Z][A-Za-z]+$/);
      expect(["critical", "warning"], `${rule.alert}: severity`).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary?.length, `${rule.alert}: summary`).toBeGreaterThan(10);
      expect(rule.annotations?.description?.length, `${rule.alert}: description`).toBeGreaterThan(40);
      expect(rule.annotations?.runbook_url, `${rule.alert}: runbook_url`).toBe(`${RUNBOOK_BASE}${rule.alert}.md`);
    }
  });

  it("no alert takes the name of one the operator sends to Alertmanager itself (a route or silence would catch both)", async () => {
    const source = await readFile(join(ROOT, "src/operator/notify/alertmanager.ts"), "utf8");
    const own = [...source.matchAll(/"(Reclaim[A-Z][A-Za-z]+)"/g)].map((m) => m[1]!);
    expect(own, "the operator's own alert names are still found").toEqual(expect.arrayContaining(["ReclaimIncident", "ReclaimCircuitOpen"]));
    const names = (await loadAlerts()).map((r) => r.alert);
    for (const name of own) expect(names).not.toContain(name);
  });

  it("each alert's runbook page exists, names it, and says what it means, what to check and what to do; no page is orphaned", async () => {
    const rules = await loadAlerts();
    for (const rule of rules) {
      const page = await readFile(join(RUNBOOKS, `${rule.alert}.md`), "utf8");
      expect(page.split("\n")[0], `${rule.alert}.md starts with its name`).toBe(`# ${rule.alert}`);
      for (const heading of ["## What it means", "## What to check", "## What to do"]) expect(page, `${rule.alert}.md: ${heading}`).toContain(`\n${heading}\n`);
      expect(page, `${rule.alert}.md: its severity`).toContain(`Severity: **${rule.labels!.severity}**`);
      // The expression on the page is the one that fires (a changed alert must change its page).
      expect(page.replace(/\s+/g, " "), `${rule.alert}.md shows the expression`).toContain(rule.expr.replace(/\s+/g, " ").trim());
    }
    const pages = (await readdir(RUNBOOKS)).filter((f) => f.endsWith(".md") && f !== "README.md");
    const shipped = await shippedRules();
    expect(pages.sort()).toEqual([...rules.map((r) => `${r.alert}.md`), ...shipped.map((r) => `${r.name}.md`)].sort());
  });

  it("each shipped remediation rule has a runbook page for its incidents; a rule that names a runbook names that page", async () => {
    const shipped = await shippedRules();
    expect(shipped.map((r) => r.name)).toContain("factory-lockout");
    for (const rule of shipped) {
      const page = await readFile(join(RUNBOOKS, `${rule.name}.md`), "utf8");
      expect(page.split("\n")[0]).toBe(`# ${rule.name}`);
      for (const heading of ["## What it means", "## What to check", "## What to do"]) expect(page, `${rule.name}.md: ${heading}`).toContain(`\n${heading}\n`);
      expect(page, `${rule.name}.md links the rule file`).toContain(`(../../rules/${rule.file})`);
      if (rule.runbook !== undefined) expect(rule.runbook, `${rule.file}: spec.runbook`).toBe(`${RUNBOOK_BASE}${rule.name}.md`);
    }
  });

  it("the unit tests have, for every alert, a case where it fires and one where it stays quiet, and name no other alert", async () => {
    const rules = await loadAlerts();
    const cases: NonNullable<AlertTestFile["tests"][number]["alert_rule_test"]> = [];
    for (const file of ALERT_TESTS) {
      const tests = parse(await readFile(file, "utf8")) as AlertTestFile;
      expect(tests.rule_files, file).toEqual(["alerts.yaml"]);
      cases.push(...tests.tests.flatMap((t) => t.alert_rule_test ?? []));
    }
    const names = new Set(rules.map((r) => r.alert));
    for (const c of cases) expect(names, `alerts.test.yaml tests ${c.alertname}, which alerts.yaml does not define`).toContain(c.alertname);
    for (const name of names) {
      const mine = cases.filter((c) => c.alertname === name);
      expect(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name} has a case where it fires`).toBe(true);
      expect(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name} has a case where it stays quiet`).toBe(true);
    }
  });
});

describeNeeding(PROMTOOL_MISSING, "alerts.yaml under promtool", () => {
  it("promtool check rules: valid, every alert counted", async () => {
    const rules = await loadAlerts();
    const r = promtool(["check", "rules", ALERTS]);
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.status).toBe(0);
  });

  it.each(ALERT_TESTS.map((f) => relative(ROOT, f)))("promtool test rules %s: every case passes", (file) => {
    const r = promtool(["test", "rules", join(ROOT, file)]);
    expect(r.out).toContain("SUCCESS");
    expect(r.out).not.toContain("FAILED");
    expect(r.status).toBe(0);
  });

  it("promtool check rules refuses an expression that is not PromQL (so the check above means something)", async () => {
    const dir = await tempDir("reclaim-alerts-");
    const file = join(dir, "alerts.yaml");
    await writeFile(file, (await readFile(ALERTS, "utf8")).replace("max by (rule) (reclaim_operator_circuit_open) > 0", "max by (rule (reclaim_operator_circuit_open) > 0"));
    const r = promtool(["check", "rules", file]);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/FAILED|parse error/);
  });

  // Each change breaks one alert the way a careless edit would; its unit tests must say so.
  // Only the test groups that evaluate that alert run (promtool evaluates every rule at every step: the whole file is slow).
  it.each([
    ["a hand-over shorter than `for` would page", "for: 2m\n        labels:\n          severity: critical\n          component: operator\n        annotations:\n          summary: No Reclaim", "for: 30s\n        labels:\n          severity: critical\n          component: operator\n        annotations:\n          summary: No Reclaim", "ReclaimNoLeader"],
    ["a renamed metric never fires", "max by (rule) (reclaim_operator_circuit_open) > 0", "max by (rule) (reclaim_operator_circuit_opened) > 0", "ReclaimCircuitBreakerOpen"],
    ["suppressed triggers no longer count as the operator seeing refusals", '(sum(increase(reclaim_operator_triggers_total{reason!="not_leader"}[15m])) > 0)', '(sum(increase(reclaim_operator_triggers_total{outcome="acted"}[15m])) > 0)', "ReclaimUsersRefusedWithoutIncident"],
    ["a standby's not_leader suppressions hide refusals nobody acts on", '(sum(increase(reclaim_operator_triggers_total{reason!="not_leader"}[15m])) > 0)', "(sum(increase(reclaim_operator_triggers_total[15m])) > 0)", "ReclaimUsersRefusedWithoutIncident"],
    ["a standby's stale stream state pages", "((max by (instance, source) (reclaim_operator_source_connected) == 0)\n            and on(instance) (max by (instance) (reclaim_operator_leader) == 1))", "(max by (instance, source) (reclaim_operator_source_connected) == 0)", "ReclaimSourceFailing"],
    ["a description that no longer renders its label", "deliveries to receiver {{ $labels.receiver }} have", "deliveries to receiver {{ $labels.receivers }} have", "ReclaimNotificationsFailing"],
    ["the day-before baseline ignored", "> 3 * (sum(rate(reclaim_factory_managers_removed_total", "> 0 * (sum(rate(reclaim_factory_managers_removed_total", "ReclaimProbeEvictingUnusually"],
  ])("a broken copy fails promtool test rules: %s", async (_title, from, to, alert) => {
    const original = await readFile(ALERTS, "utf8");
    expect(original, "the text to break is still there").toContain(from);
    const dir = await tempDir("reclaim-alerts-");
    await writeFile(join(dir, "alerts.yaml"), original.replace(from, to));
    expect(promtool(["check", "rules", join(dir, "alerts.yaml")]).status, "still valid rules").toBe(0);
    const outputs: string[] = [];
    for (const [i, file] of ALERT_TESTS.entries()) {
      const tests = parse(await readFile(file, "utf8")) as AlertTestFile;
      tests.tests = tests.tests.filter((t) => (t.alert_rule_test ?? []).some((c) => c.alertname === alert));
      if (tests.tests.length === 0) continue;
      await writeFile(join(dir, `t${i}.yaml`), stringify(tests));
      const r = promtool(["test", "rules", `t${i}.yaml`], dir);
      outputs.push(r.out);
      if (r.status === 1 && r.out.includes(`alertname: ${alert}`)) return;
    }
    throw new Error(`no unit test of ${alert} failed:\n${outputs.join("\n")}`);
  });
});
