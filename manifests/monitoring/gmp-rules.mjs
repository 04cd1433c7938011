#!/usr/bin/env node
/**
 * Writes the staging overlay's Google Managed Prometheus `Rules` object from
 * manifests/monitoring/alerts.yaml, so the two cannot drift:
 *
 *   node manifests/monitoring/gmp-rules.mjs           # rewrite the overlay's file
 *   node manifests/monitoring/gmp-rules.mjs --check   # exit 1 if it differs (CI: test/monitoring)
 *
 * `--alerts FILE` and `--out FILE` change the paths (defaults: alerts.yaml
 * beside this script, manifests/overlays/staging/monitoring-rules.yaml).
 * Exit 0 done or up to date, 1 out of date, 2 bad usage or an unreadable or
 * invalid alerts file. Needs only Node and the `yaml` package the project
 * already depends on (no build, no CLI).
 */
import { fileURLToPath } from "node:url";
import { generatorMain } from "./generate.mjs";
import { parse, stringify } from "yaml";

const HERE = fileURLToPath(new URL(".", import.meta.url));
export const DEFAULT_ALERTS = `${HERE}alerts.yaml`;
export const DEFAULT_OUT = fileURLToPath(new URL("../overlays/staging/monitoring-rules.yaml", import.meta.url));

const HEADER = `# GENERATED from manifests/monitoring/alerts.yaml by manifests/monitoring/gmp-rules.mjs:
# edit alerts.yaml, then run \`node manifests/monitoring/gmp-rules.mjs\`.
# test/monitoring fails when this file and alerts.yaml differ.
#
# The same alerting rules for Google Managed Prometheus: a namespaced Rules
# object evaluates them over the metrics of its own namespace (job labels are
# the PodMonitoring names in podmonitoring.yaml) and sends the alerts to the
# Alertmanager that GMP's rule evaluator is configured with.
`;

/** An alerts file that is not a Prometheus rule file with alerting groups. */
export class InvalidAlertsError extends Error {
  code = "ERR_RECLAIM_ALERTS";
}

/**
 * The Rules object (YAML text, header included) for the rule-file text
 * `alertsText`. Throws InvalidAlertsError naming what is wrong.
 */
export function renderGmpRules(alertsText) {
  let doc;
  try {
    doc = parse(alertsText);
  } catch (err) {
    throw new InvalidAlertsError(`alerts file is not YAML: ${err.message}`, { cause: err });
  }
  if (doc === null || typeof doc !== "object" || !Array.isArray(doc.groups) || doc.groups.length === 0) {
    throw new InvalidAlertsError("alerts file has no `groups:` list");
  }
  for (const [i, group] of doc.groups.entries()) {
    if (group === null || typeof group !== "object" || typeof group.name !== "string" || !Array.isArray(group.rules)) {
      throw new InvalidAlertsError(`groups[${i}] needs a name and a rules list`);
    }
    // GMP's Rules CRD requires an evaluation interval on every group.
    if (typeof group.interval !== "string") throw new InvalidAlertsError(`group ${group.name} needs an interval (Google Managed Prometheus requires one)`);
  }
  const rules = {
    apiVersion: "monitoring.googleapis.com/v1",
    kind: "Rules",
    metadata: {
      name: "reclaim-alerts",
      labels: { "app.kubernetes.io/part-of": "reclaim", "app.kubernetes.io/component": "monitoring" },
    },
    spec: { groups: doc.groups },
  };
  return HEADER + stringify(rules, { lineWidth: 0 });
}

function main(argv) {
  return generatorMain(argv, { name: "gmp-rules", inputFlag: "--alerts", defaultInput: DEFAULT_ALERTS, defaultOut: DEFAULT_OUT, render: renderGmpRules });
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
