/**
 * `reclaim demo`: the outage and its fix, end to end on loopback. The main job
 * of `npm start`.
 */
import { Command, Option } from "commander";
import { runDemo, SCENARIOS, type ScenarioName, type ScenarioResult } from "../demo/demo.js";

export function demoCommand(): Command {
  return new Command("demo")
    .description("reproduce the lockout with real WebSocket clients on loopback and show the fix (what `npm start` runs)")
    .addOption(new Option("--scenario <name>", "run one scenario only").choices(SCENARIOS))
    .addOption(new Option("--json", "print the results as JSON instead of the timeline").default(false))
    .action(async (flags: { scenario?: ScenarioName; json: boolean }) => {
      const print = flags.json ? undefined : (line: string): void => void process.stdout.write(`${line}\n`);
      const results = await runDemo({
        ...(flags.scenario ? { scenarios: [flags.scenario] } : {}),
        ...(print ? { print } : { print: () => undefined }),
      });
      if (flags.json) process.stdout.write(`${JSON.stringify({ passed: results.every((r) => r.passed), scenarios: results }, null, 2)}\n`);
      else process.stdout.write(summary(results));
      process.exitCode = results.every((r) => r.passed) ? 0 : 1;
    });
}

function summary(results: ScenarioResult[]): string {
  const rows = results.map((r) => [r.passed ? "PASS" : "FAIL", r.name, r.outcome, `${r.checks.filter((c) => c.ok).length}/${r.checks.length}`, `${r.durationMs} ms`]);
  const header = ["", "scenario", "outcome", "checks", "time"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  const passed = results.every((r) => r.passed);
  return `\nSummary\n  ${line(header)}\n${rows.map((r) => `  ${line(r)}`).join("\n")}\n\n${passed ? "All scenarios behaved as expected." : "Some scenarios did not behave as expected."}\n`;
}
