/**
 * `reclaim rules replay --rules DIR (--logs FILE | --source gcp:PROJECT
 * [--since 24h] [--filter F]) [--json]`: a dry run of the rules over a
 * recorded log, or over Cloud Logging history, in event time. The history
 * is read oldest first with the rules' server-side filter (gcp-filter.ts)
 * and goes through the same scanner and Replayer as a file, so the same
 * entries give the same report. Same answer every run.
 */
import { Command, Option } from "commander";
import { Replayer, type ReplayReport } from "../operator/replay.js";
import { loadRules } from "../operator/rules/load.js";
import { FileSource } from "../operator/sources/file.js";
import { CloudLoggingHistorySource } from "../operator/sources/gcp.js";
import { buildFilter } from "../operator/sources/gcp-filter.js";
import { parseSourceSpec, SourceSpecError } from "../operator/sources/open.js";
import { Scanner } from "../operator/sources/scan.js";
import type { LogSource } from "../operator/sources/source.js";
import { durationIn } from "./options.js";

/** Bounds of `--since`, in ms: 1 s to 3650 days, the longest a Cloud Logging bucket keeps entries. */
export const SINCE_BOUNDS = { min: 1000, max: 3650 * 86_400_000 } as const;

interface ReplayFlags {
  rules?: string[];
  logs?: string;
  source?: string;
  since: number;
  filter?: string;
  json: boolean;
}

export function rulesReplayCommand(): Command {
  return new Command("replay")
    .description("dry-run the rules over a recorded log (factory JSON lines or Cloud Logging LogEntry JSON), in event time")
    .addOption(
      new Option("--rules <path>", "rule file or folder, repeatable (default: rules)")
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .addOption(new Option("--logs <file>", "the recorded log (this or --source)"))
    .addOption(new Option("--source <spec>", "gcp:PROJECT: replay Cloud Logging history instead of a file (plaintext endpoint for tests: RECLAIM_GCP_ENDPOINT)"))
    .addOption(
      new Option("--since <duration>", "with --source gcp:PROJECT, how far back to read (1s to 3650d)")
        .argParser(durationIn(SINCE_BOUNDS.min, SINCE_BOUNDS.max))
        .default(86_400_000, "24h"),
    )
    .addOption(new Option("--filter <filter>", "with --source gcp:PROJECT, a Cloud Logging filter AND-ed with the rules' own"))
    .addOption(new Option("--json", "print the report as JSON").default(false))
    .action(async (flags: ReplayFlags) => {
      const usage = (message: string): never => {
        console.error(`reclaim rules replay: ${message}`);
        process.exit(2);
      };
      if ((flags.logs === undefined) === (flags.source === undefined)) usage("give exactly one of --logs FILE and --source gcp:PROJECT");
      let projectId: string | null = null;
      if (flags.source !== undefined) {
        try {
          const spec = parseSourceSpec(flags.source);
          if (spec.kind !== "gcp") usage(`--source ${flags.source}: replay reads gcp:PROJECT (use --logs for a file)`);
          else projectId = spec.projectId;
        } catch (err) {
          if (err instanceof SourceSpecError) usage(err.message);
          throw err;
        }
      } else if (flags.filter !== undefined) {
        usage("--filter applies to --source gcp:PROJECT only");
      }
      const loaded = await loadRules(flags.rules ?? ["rules"]);
      if (loaded.errors.length > 0) {
        for (const e of loaded.errors) console.error(e.format());
        process.exitCode = 1;
        return;
      }
      const rules = loaded.rules.map((r) => r.compiled);
      const replayer = new Replayer(rules);
      const scanner = new Scanner(rules);
      let source: LogSource;
      try {
        source =
          projectId === null
            ? new FileSource({ path: flags.logs!, follow: false, fromStart: true })
            : new CloudLoggingHistorySource({ projectId, filter: buildFilter(rules, flags.filter), since: Date.now() - flags.since });
      } catch (err) {
        return usage(err instanceof Error ? err.message : String(err));
      }
      try {
        await source.run(async (batch) => {
          for (const event of scanner.scan(batch)) await replayer.handle(event);
        }, new AbortController().signal);
      } catch (err) {
        console.error(`reclaim rules replay: cannot read ${flags.logs ?? source.name}: ${err instanceof Error ? err.message : String(err)}`);
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
