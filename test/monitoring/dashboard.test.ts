/**
 * manifests/monitoring/dashboard.json is a Grafana dashboard that imports as
 * is: valid JSON with a schemaVersion, a Prometheus datasource variable that
 * every query uses, the panels the issue asks for, each with PromQL queries
 * that promtool parses (as recording rules, Grafana's variables filled in).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { describeNeeding } from "../support/needs.js";
import { tempDir } from "../support/operator.js";
import { metricNames } from "./promql-names.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DASHBOARD = join(ROOT, "manifests/monitoring/dashboard.json");
const PROMTOOL_BIN = process.env.PROMTOOL_BIN ?? "/usr/bin/promtool";
const PROMTOOL_MISSING = existsSync(PROMTOOL_BIN) ? null : `${PROMTOOL_BIN} is missing: install Debian's prometheus package (.ci/run does)`;

interface Target {
  expr: string;
  refId: string;
  legendFormat?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string }[] };
}

/** The panels the issue asks for, by title. */
const REQUIRED_PANELS = [
  "Admissions by outcome",
  "Refusals",
  "Managers and users at the limit",
  "Zombies removed by kind",
  "Rungs by result",
  "Detect to resolved",
  "Incidents by status",
  "Source lag",
];

const DATASOURCE = { type: "prometheus", uid: "${datasource}" };

async function load(): Promise<Dashboard> {
  return JSON.parse(await readFile(DASHBOARD, "utf8")) as Dashboard;
}
const queryPanels = (d: Dashboard): Panel[] => d.panels.filter((p) => p.type !== "row");

describe("dashboard.json: a Grafana dashboard", () => {
  it("is JSON with a schemaVersion, a uid, a title and a Prometheus datasource variable", async () => {
    const d = await load();
    expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(d.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(d.title).toBe("Reclaim");
    expect(d.templating.list).toContainEqual(expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }));
  });

  it("has the panels the issue asks for", async () => {
    const titles = queryPanels(await load()).map((p) => p.title);
    for (const title of REQUIRED_PANELS) expect(titles).toContain(title);
  });

  it("every panel queries the datasource variable, with one or more PromQL targets that name metrics", async () => {
    const d = await load();
    for (const p of queryPanels(d)) {
      expect(p.datasource, p.title).toEqual(DATASOURCE);
      expect(p.targets?.length, `${p.title} has targets`).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, `${p.title}: refIds are unique`).toBe(refIds.length);
      for (const t of p.targets!) {
        expect(t.datasource, p.title).toEqual(DATASOURCE);
        expect(t.expr.trim(), `${p.title}: expr`).not.toBe("");
        expect(metricNames(t.expr).length, `${p.title}: ${t.expr} reads a metric`).toBeGreaterThan(0);
      }
    }
  });

  it("panel ids are unique and the panels fit the 24-column grid without overlapping", async () => {
    const d = await load();
    const ids = d.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const boxes = d.panels.map((p) => ({ title: p.title, ...p.gridPos }));
    for (const b of boxes) {
      expect(b.x + b.w, b.title).toBeLessThanOrEqual(24);
      expect(b.h * b.w, b.title).toBeGreaterThan(0);
    }
    for (const [i, a] of boxes.entries()) {
      for (const b of boxes.slice(i + 1)) {
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });
});

describeNeeding(PROMTOOL_MISSING, "dashboard.json's queries under promtool", () => {
  it("every expr parses as PromQL (written as recording rules for promtool check rules)", async () => {
    const d = await load();
    const rules = queryPanels(d).flatMap((p, i) =>
      p.targets!.map((t) => ({
        record: `dashboard:panel_${i}:${t.refId}`,
        // Grafana's interval variables, as Grafana fills them in.
        expr: t.expr.replaceAll("$__rate_interval", "2m").replaceAll("$__interval", "30s").replaceAll("$__range", "6h"),
      })),
    );
    const dir = await tempDir("reclaim-dashboard-");
    const file = join(dir, "dashboard-rules.yaml");
    await writeFile(file, stringify({ groups: [{ name: "dashboard", rules }] }));
    const r = spawnSync(PROMTOOL_BIN, ["check", "rules", file], { encoding: "utf8", timeout: 30_000 });
    expect(`${r.stdout}${r.stderr}`).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.status).toBe(0);
  });
});
