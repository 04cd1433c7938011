/**
 * The staging overlay's Google Managed Prometheus `Rules` object
 * (manifests/overlays/staging/monitoring-rules.yaml) is generated from
 * manifests/monitoring/alerts.yaml by manifests/monitoring/gmp-rules.mjs and
 * cannot drift from it: the script's `--check` passes, the object carries the
 * very same groups, promtool accepts them, and kustomize renders the object
 * in the overlay's namespace (whether or not the overlay lists it yet).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, cp, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments, stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { describeNeeding } from "../support/needs.js";
import { tempDir } from "../support/operator.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ALERTS = join(ROOT, "manifests/monitoring/alerts.yaml");
const SCRIPT = join(ROOT, "manifests/monitoring/gmp-rules.mjs");
const OVERLAY = join(ROOT, "manifests/overlays/staging");
const GMP_RULES = join(OVERLAY, "monitoring-rules.yaml");

const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? "/usr/bin/promtool";
const PROMTOOL_MISSING = existsSync(PROMTOOL_BIN) ? null : `${PROMTOOL_BIN} is missing: install Debian's prometheus package (.ci/run does)`;
const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
const KUBECTL_MISSING = kubectl.error === undefined && kubectl.status === 0 ? null : "kubectl is not installed (.ci/run installs it)";

// The objects are read loosely; the assertions check their shape.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function script(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stderr: r.stderr };
}

describe("the GMP Rules object is generated from alerts.yaml", () => {
  it("gmp-rules.mjs --check: the committed file is what the script writes", () => {
    const r = script(["--check"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("a Rules object of monitoring.googleapis.com/v1 with exactly the groups of alerts.yaml", async () => {
    const rules = parse(await readFile(GMP_RULES, "utf8"));
    const alerts = parse(await readFile(ALERTS, "utf8"));
    expect(rules).toMatchObject({ apiVersion: "monitoring.googleapis.com/v1", kind: "Rules", metadata: { name: "reclaim-alerts" } });
    expect(rules.metadata.namespace, "the overlay sets the namespace").toBeUndefined();
    expect(rules.spec.groups).toEqual(alerts.groups);
    // GMP's CRD requires an interval on each group.
    for (const g of rules.spec.groups) expect(g.interval, g.name).toMatch(/^\d+[smh]$/);
  });

  it("--check fails, naming the file, when the Rules object and alerts.yaml differ", async () => {
    const dir = await tempDir("reclaim-gmp-");
    const alerts = join(dir, "alerts.yaml");
    const out = join(dir, "monitoring-rules.yaml");
    await copyFile(ALERTS, alerts);
    expect(script(["--alerts", alerts, "--out", out]).status).toBe(0);
    expect(script(["--check", "--alerts", alerts, "--out", out]).status).toBe(0);
    await writeFile(alerts, (await readFile(alerts, "utf8")).replace("for: 15m", "for: 20m"));
    const r = script(["--check", "--alerts", alerts, "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${out} is out of date`);
    // A missing output is out of date too.
    expect(script(["--check", "--alerts", alerts, "--out", join(dir, "none.yaml")]).status).toBe(1);
  });

  it.each([
    ["not YAML", "groups: [\n", "is not YAML"],
    ["no groups", "rules: []\n", "no `groups:` list"],
    ["a group without rules", "groups:\n  - name: a\n    interval: 30s\n", "groups[0] needs a name and a rules list"],
    ["a group without an interval", "groups:\n  - name: a\n    rules: []\n", "group a needs an interval"],
  ])("an alerts file with %s: exit 2 and why", async (_title, text, why) => {
    const dir = await tempDir("reclaim-gmp-");
    const alerts = join(dir, "alerts.yaml");
    await writeFile(alerts, text);
    const r = script(["--alerts", alerts, "--out", join(dir, "out.yaml")]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(why);
    expect(existsSync(join(dir, "out.yaml")), "nothing written").toBe(false);
  });

  it("an unknown argument: exit 2 with the usage", () => {
    const r = script(["--bogus"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("usage: gmp-rules.mjs [--check] [--alerts FILE] [--out FILE]");
  });
});

describeNeeding(PROMTOOL_MISSING, "the GMP Rules object's groups under promtool", () => {
  it("promtool check rules accepts its spec as a rule file", async () => {
    const rules = parse(await readFile(GMP_RULES, "utf8"));
    const dir = await tempDir("reclaim-gmp-");
    const file = join(dir, "rules.yaml");
    await writeFile(file, stringify({ groups: rules.spec.groups }));
    const r = spawnSync(PROMTOOL_BIN, ["check", "rules", file], { encoding: "utf8", timeout: 30_000 });
    expect(`${r.stdout}${r.stderr}`).toContain(`SUCCESS: ${rules.spec.groups.flatMap((g: Any) => g.rules).length} rules found`);
    expect(r.status).toBe(0);
  });
});

describeNeeding(KUBECTL_MISSING, "the staging overlay with the GMP Rules object", () => {
  it("kubectl kustomize renders it in the reclaim namespace, with the overlay's other objects", async () => {
    const kustomization = await readFile(join(OVERLAY, "kustomization.yaml"), "utf8");
    const listed = /^\s*-\s*monitoring-rules\.yaml\s*$/m.test(kustomization);
    let dir = OVERLAY;
    if (!listed) {
      // Not listed yet: render the overlay plus the file, as the added line will.
      dir = await tempDir("reclaim-gmp-kustomize-");
      await copyFile(GMP_RULES, join(dir, "monitoring-rules.yaml"));
      await writeFile(join(dir, "kustomization.yaml"), stringify({ resources: [relative(dir, OVERLAY), "monitoring-rules.yaml"], namespace: "reclaim" }));
    }
    const r = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    expect(r.status, r.stderr).toBe(0);
    const objects = parseAllDocuments(r.stdout).map((d) => d.toJS());
    const rules = objects.filter((o) => o.kind === "Rules");
    expect(rules).toHaveLength(1);
    expect(rules[0].metadata).toMatchObject({ name: "reclaim-alerts", namespace: "reclaim" });
    expect(rules[0].spec.groups).toEqual((parse(await readFile(ALERTS, "utf8"))).groups);
    // The jobs the alerts name are the PodMonitorings' names (GMP sets job to it).
    const monitorings = objects.filter((o) => o.kind === "PodMonitoring").map((o) => o.metadata.name);
    const jobs = new Set([...(await readFile(ALERTS, "utf8")).matchAll(/job="([^"]+)"/g)].map((m) => m[1]));
    expect([...jobs].sort()).toEqual(["chat-factory", "reclaim-operator"]);
    for (const job of jobs) expect(monitorings).toContain(job);
  });

  it("the line to add under the overlay's `resources:` renders the object exactly once", async () => {
    const copy = await tempDir("reclaim-gmp-overlay-");
    await cp(join(ROOT, "manifests"), join(copy, "manifests"), { recursive: true });
    const file = join(copy, "manifests/overlays/staging/kustomization.yaml");
    const kustomization = await readFile(file, "utf8");
    if (!/^\s*-\s*monitoring-rules\.yaml\s*$/m.test(kustomization)) {
      expect(kustomization).toMatch(/^resources:\n/m);
      await writeFile(file, kustomization.replace(/^resources:\n/m, "resources:\n  - monitoring-rules.yaml\n"));
    }
    const r = spawnSync("kubectl", ["kustomize", join(copy, "manifests/overlays/staging")], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    expect(r.status, r.stderr).toBe(0);
    const rules = parseAllDocuments(r.stdout)
      .map((d) => d.toJS())
      .filter((o) => o.kind === "Rules");
    expect(rules.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(["reclaim/reclaim-alerts"]);
    // What test/manifests/kustomize.test.ts asks of every rendered object.
    expect(rules[0].metadata.labels["app.kubernetes.io/part-of"]).toBe("reclaim");
  });
});
