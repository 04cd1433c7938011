#!/usr/bin/env node
/**
 * Writes the Cloud Monitoring copy of the Grafana dashboard, for GKE users on
 * Google Managed Prometheus (the same PromQL, charted by Cloud Monitoring):
 *
 *   node manifests/monitoring/cloud-dashboard.mjs           # rewrite dashboard.cloud-monitoring.json
 *   node manifests/monitoring/cloud-dashboard.mjs --check   # exit 1 if it differs (CI: test/monitoring)
 *   gcloud monitoring dashboards create --config-from-file=manifests/monitoring/dashboard.cloud-monitoring.json
 *
 * `--dashboard FILE` and `--out FILE` change the paths. Each Grafana panel
 * becomes a chart tile at the same place (Grafana's 24 columns, doubled to
 * Cloud Monitoring's 48), one data set per query; Grafana's `$__rate_interval`
 * becomes a fixed 5m (GMP scrapes every 30 s); row panels are dropped. Exit 0
 * done or up to date, 1 out of date, 2 bad usage or an unreadable or invalid
 * dashboard.
 */
import { fileURLToPath } from "node:url";
import { generatorMain } from "./generate.mjs";

export const DEFAULT_DASHBOARD = fileURLToPath(new URL("dashboard.json", import.meta.url));
export const DEFAULT_OUT = fileURLToPath(new URL("dashboard.cloud-monitoring.json", import.meta.url));

/** The window that replaces Grafana's `$__rate_interval`. */
export const RATE_WINDOW = "5m";

/** A dashboard that is not a Grafana dashboard with PromQL panels. */
export class InvalidDashboardError extends Error {
  code = "ERR_RECLAIM_DASHBOARD";
}

/** A Grafana query's PromQL with Grafana's variables filled in for Cloud Monitoring. */
export function cloudPromql(expr) {
  const out = expr.replaceAll("$__rate_interval", RATE_WINDOW);
  if (/\$/.test(out)) throw new InvalidDashboardError(`a Grafana variable Cloud Monitoring cannot fill in: ${JSON.stringify(expr)}`);
  return out;
}

/** The Cloud Monitoring dashboard (JSON text) for the Grafana dashboard text `grafanaText`. */
export function renderCloudDashboard(grafanaText) {
  let grafana;
  try {
    grafana = JSON.parse(grafanaText);
  } catch (err) {
    throw new InvalidDashboardError(`dashboard is not JSON: ${err.message}`, { cause: err });
  }
  if (grafana === null || typeof grafana !== "object" || typeof grafana.title !== "string" || !Array.isArray(grafana.panels)) {
    throw new InvalidDashboardError("dashboard needs a title and a panels list");
  }
  const tiles = [];
  for (const panel of grafana.panels) {
    if (panel.type === "row") continue;
    const where = `panel ${JSON.stringify(panel.title)}`;
    if (!Array.isArray(panel.targets) || panel.targets.length === 0) throw new InvalidDashboardError(`${where} has no targets`);
    const { x, y, w, h } = panel.gridPos ?? {};
    if (![x, y, w, h].every(Number.isInteger)) throw new InvalidDashboardError(`${where} needs a gridPos with integer x, y, w and h`);
    tiles.push({
      xPos: x * 2,
      yPos: y * 2,
      width: w * 2,
      height: h * 2,
      widget: {
        title: panel.title,
        xyChart: {
          dataSets: panel.targets.map((t) => {
            if (typeof t.expr !== "string" || t.expr.trim() === "") throw new InvalidDashboardError(`${where} has a target without expr`);
            return { timeSeriesQuery: { prometheusQuery: cloudPromql(t.expr) }, plotType: "LINE", targetAxis: "Y1" };
          }),
          yAxis: { scale: "LINEAR" },
        },
      },
    });
  }
  return `${JSON.stringify({ displayName: grafana.title, mosaicLayout: { columns: 48, tiles } }, null, 2)}\n`;
}

function main(argv) {
  return generatorMain(argv, { name: "cloud-dashboard", inputFlag: "--dashboard", defaultInput: DEFAULT_DASHBOARD, defaultOut: DEFAULT_OUT, render: renderCloudDashboard });
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
