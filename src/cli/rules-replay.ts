/**
 * `reclaim rules replay --rules DIR (--logs FILE | --source gcp:PROJECT
 * [--since 24h] [--filter F]) [--json]`: a dry run of the rules over a
 * recorded log, or over Cloud Logging history, in event time. The history
 * is read oldest first with the rules' server-side filter (gcp-filter.ts)
 * and goes through the same scanner and Replayer as a file, so the same
 * entries give the same report. Same answer every run.
 *
 * When no incident would have opened, the text report says why before its
 * totals line (which stays the last line): the entries by event, and for
 * each rule how many had its events, fell below minSeverity, failed `where`
 * or the pattern, lacked a key field, were older than maxAge, or counted
 * without reaching the threshold. `--json` always carries these counts as
 * `diagnosis`. The exit code does not change.
 *
 * `--logs FILE` (or `-` for stdin) may hold the factory's JSON lines, Cloud
 * Logging LogEntry NDJSON (a log sink's export), or the JSON array that
 * `gcloud logging read --format=json` prints (newest first: streamed,
 * sorted in bounded memory and replayed oldest first). Lines are counted by
 * shape (sources/shapes.ts: text `Shapes:` line, `lines.shapes` in JSON).
 * A log in which no line is a log entry it can read exits 1 and says which
 * shapes were expected and which were seen: a wrong file must not look like
 * a quiet day.
 */
import { Command, Option } from "commander";
import { durationIn } from "./options.js";

/** Bounds of `--since`, in ms: 1 s to 3650 days, the longest a Cloud Logging bucket keeps entries. */
export const SINCE_BOUNDS = { min: 1000, max: 3650 * 86_400_000 } as const;

/** The flags of `rules replay`. */
export interface ReplayFlags {
  rules?: string[];
  logs?: string;
  source?: string;
  since: number;
  filter?: string;
  json: boolean;
}

/** The `rules replay` command. */
export function rulesReplayCommand(): Command {
  return new Command("replay")
    .description("dry-run the rules over a recorded log (factory JSON lines, Cloud Logging LogEntry NDJSON or a gcloud logging read --format=json array), in event time")
    .addOption(
      new Option("--rules <path>", "rule file or folder, repeatable (default: rules)")
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .addOption(
      new Option(
        "--logs <file>",
        "the recorded log, - for stdin (this or --source): factory JSON lines, Cloud Logging LogEntry NDJSON, or a gcloud logging read --format=json array",
      ),
    )
    .addOption(new Option("--source <spec>", "gcp:PROJECT: replay Cloud Logging history instead of a file (plaintext endpoint for tests: RECLAIM_GCP_ENDPOINT)"))
    .addOption(
      new Option("--since <duration>", "with --source gcp:PROJECT, how far back to read (1s to 3650d)")
        .argParser(durationIn(SINCE_BOUNDS.min, SINCE_BOUNDS.max))
        .default(86_400_000, "24h"),
    )
    .addOption(new Option("--filter <filter>", "with --source gcp:PROJECT, a Cloud Logging filter AND-ed with the rules' own"))
    .addOption(new Option("--json", "print the report as JSON").default(false))
    // The replay machinery is loaded when the subcommand runs (rules-replay-run.ts), not when the CLI starts.
    .action(async (flags: ReplayFlags) => (await import("./rules-replay-run.js")).runReplay(flags));
}
