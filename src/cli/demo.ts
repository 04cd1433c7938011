/**
 * `reclaim demo`: the outage and its automatic remediation, end to end on
 * loopback. What `npm start` runs.
 */
import { Command, Option } from "commander";
import { DEV_CONTROL_TOKEN } from "../contract/dev.js";
import { DEMO_USER, runDemo, SCENARIOS, type ScenarioName, type ScenarioResult } from "../demo/demo.js";
import type { Stack } from "../demo/stack.js";

export function demoCommand(): Command {
  return new Command("demo")
    .description("reproduce the lockout with real WebSocket clients on loopback and watch the operator fix it (what `npm start` runs)")
    .addOption(new Option("--scenario <name>", "run one scenario only").choices(SCENARIOS))
    .addOption(new Option("--json", "print a machine-readable result instead of the timeline").default(false))
    .addOption(new Option("--keep", "leave the last scenario's factory and operator running (Ctrl-C stops them)").default(false))
    .action(async (flags: { scenario?: ScenarioName; json: boolean; keep: boolean }) => {
      const print = flags.json ? undefined : (line: string): void => void process.stdout.write(`${line}\n`);
      let kept: Stack | undefined;
      const { dir, results } = await runDemo({
        ...(flags.scenario ? { scenarios: [flags.scenario] } : {}),
        ...(print ? { print } : {}),
        keep: flags.keep,
        onKept: (stack) => (kept = stack),
      });
      const passed = results.every((r) => r.passed);
      if (flags.json) process.stdout.write(`${JSON.stringify({ passed, dir, scenarios: results }, null, 2)}\n`);
      else process.stdout.write(summary(results));
      process.exitCode = passed ? 0 : 1;
      if (kept !== undefined) {
        const stack = kept;
        const token = await stack.factory.auth.sign(DEMO_USER, 3600);
        process.stderr.write(
          [
            "",
            "Still running (Ctrl-C stops both):",
            `  WebSocket      ${stack.factory.wsUrl}?token=${token}`,
            `  control API    ${stack.factory.controlUrl}   (Authorization: Bearer ${stack.factory.config.controlToken ?? DEV_CONTROL_TOKEN})`,
            `  factory log    ${stack.logFile}`,
            `  operator       ${stack.metricsUrl}`,
            `  incidents      ${stack.incidentsDir}`,
            "",
          ].join("\n"),
        );
        await new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        await stack.close();
      }
    });
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join("  ")}`.trimEnd();
  return [line(header), ...rows.map(line)];
}

function seconds(ms: number | null): string {
  return ms === null ? "-" : `${(ms / 1000).toFixed(1)} s`;
}

function summary(results: ScenarioResult[]): string {
  const rows = results.map((r) => [
    r.passed ? "PASS" : "FAIL",
    r.name,
    r.outcome,
    r.incident === null ? "-" : seconds(r.incident.detectMs),
    r.incident === null ? "-" : seconds(r.incident.mitigateMs),
    r.incident === null ? "(in-process)" : r.incident.rungs.map((g) => `${g.rung}${g.verified ? "✔" : ""}`).join(" → "),
    `${r.checks.filter((c) => c.ok).length}/${r.checks.length}`,
    seconds(r.durationMs),
  ]);
  const out = ["", "Summary", ...table(["", "scenario", "outcome", "log→detected", "detected→resolved", "rungs (✔ verified)", "checks", "took"], rows)];
  const incidents = results.filter((r) => r.incident !== null);
  if (incidents.length > 0) {
    out.push("", "Incident records for on-call (reclaim incidents show ID --dir …):");
    for (const r of incidents) out.push(`  ${r.name.padEnd(10)} ${r.incident!.files.md}`);
  }
  const passed = results.every((r) => r.passed);
  out.push("", passed ? "Every scenario recovered and was verified." : "Some scenarios did not recover: see the ✘ lines above.", "");
  return out.join("\n");
}
