/**
 * `reclaim rules replay --rules DIR --logs FILE [--json]`: a dry run of the
 * rules over a recorded log, in event time. Same answer every run.
 */
import { Command, Option } from "commander";
import { Replayer, type ReplayReport } from "../operator/replay.js";
import { loadRules } from "../operator/rules/load.js";
import { FileSource } from "../operator/sources/file.js";
import { Scanner } from "../operator/sources/scan.js";

export function rulesReplayCommand(): Command {
  return new Command("replay")
    .description("dry-run the rules over a recorded log (factory JSON lines or Cloud Logging LogEntry JSON), in event time")
    .addOption(
      new Option("--rules <path>", "rule file or folder, repeatable (default: rules)")
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .requiredOption("--logs <file>", "the recorded log")
    .addOption(new Option("--json", "print the report as JSON").default(false))
    .action(async (flags: { rules?: string[]; logs: string; json: boolean }) => {
      const loaded = await loadRules(flags.rules ?? ["rules"]);
      if (loaded.errors.length > 0) {
        for (const e of loaded.errors) console.error(e.format());
        process.exitCode = 1;
        return;
      }
      const rules = loaded.rules.map((r) => r.compiled);
      const replayer = new Replayer(rules);
      const scanner = new Scanner(rules);
      const source = new FileSource({ path: flags.logs, follow: false, fromStart: true });
      try {
        await source.run(async (batch) => {
          for (const event of scanner.scan(batch)) await replayer.handle(event);
        }, new AbortController().signal);
      } catch (err) {
        console.error(`reclaim rules replay: cannot read ${flags.logs}: ${err instanceof Error ? err.message : String(err)}`);
        process.exitCode = 1;
        return;
      }
      const report = await replayer.report();
      const lines = { read: scanner.stats.linesRead, malformed: scanner.stats.malformed };
      if (flags.json) process.stdout.write(`${JSON.stringify({ ...report, lines }, null, 2)}\n`);
      else process.stdout.write(text(report, lines));
    });
}

function text(report: ReplayReport, lines: { read: number; malformed: number }): string {
  const out = [`Replayed ${lines.read} line(s) (${report.matched} matched, ${lines.malformed} malformed skipped) against ${report.rules.length} rule(s): ${report.rules.join(", ")}`];
  for (const i of report.incidents) {
    const key = Object.entries(i.key)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    const suppressed = Object.entries(i.suppressed)
      .map(([r, n]) => `${r} ${n}`)
      .join(", ");
    out.push(
      `  ${i.at}  ${i.rule}  ${key}  ${i.action}${i.rungs.length > 0 ? `  ${i.rungs.join(" → ")}` : ""}${suppressed ? `  (later suppressed: ${suppressed})` : ""}`,
    );
  }
  const acted = report.incidents.filter((i) => i.action === "act").length;
  out.push(
    `${report.incidents.length} incident(s) would have opened (${acted} acting); dropped entries: ${report.dropped.duplicate} duplicate, ${report.dropped.unkeyed} without a user id, ${report.dropped.stale} stale`,
  );
  return `${out.join("\n")}\n`;
}
