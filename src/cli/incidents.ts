/**
 * `reclaim incidents list|show`: read the incident records that the operator
 * wrote, for on-call. Read-only: nothing here writes to the folder.
 *
 * The folder is `--dir`, else `RECLAIM_INCIDENTS_DIR`, else `./incidents`.
 * Exit codes: 0 success, 1 failure (no such incident, unreadable record or
 * folder), 2 bad usage (unknown status, malformed id, a `--dir` that does not
 * exist or is not a folder: most likely a typo, so it is not "no incidents").
 *
 * `show` prints plain text by default, on a terminal or not: the Markdown
 * escapes that GitHub needs (`guards\_passed`) are noise in a terminal, a
 * pager or grep. `--format md` gives the Markdown (the `.md` beside the record),
 * `--format json` the record.
 */
import { stat } from "node:fs/promises";
import { Command, Option } from "commander";
import { assertIncidentId, DEFAULT_INCIDENTS_DIR, FileIncidentStore, type IncidentScan } from "../operator/incidents/file-store.js";
import { renderMarkdown, renderText, visible } from "../operator/incidents/markdown.js";
import { type Incident, IncidentStatus } from "../operator/incidents/model.js";
import { listOf } from "./options.js";

interface ListFlags {
  dir: string;
  status?: IncidentStatus[];
  rule?: string;
  user?: string;
  json: boolean;
}

interface ShowFlags {
  dir: string;
  format: "text" | "md" | "json";
}

/** The `incidents` command and its subcommands. */
export function incidentsCommand(): Command {
  return new Command("incidents").description("list and show the incident records the operator wrote").addCommand(listCommand()).addCommand(showCommand());
}

function dirOption(): Option {
  return new Option("--dir <path>", "folder of incident records").default(DEFAULT_INCIDENTS_DIR).env("RECLAIM_INCIDENTS_DIR");
}

function listCommand(): Command {
  return new Command("list")
    .description("list incidents, oldest first")
    .addOption(dirOption())
    .addOption(
      new Option("--status <statuses>", `only these statuses, comma-separated: ${IncidentStatus.options.join(", ")}`).argParser(
        listOf(IncidentStatus.options),
      ),
    )
    .addOption(new Option("--rule <name>", "only incidents of this rule"))
    .addOption(new Option("--user <id>", "only incidents of this user, and rollup records that list them (users nobody acted on)"))
    .addOption(new Option("--json", "print the incidents' summaries as a JSON array").default(false))
    .action(async (flags: ListFlags) => {
      await assertFolder("list", flags.dir);
      const store = new FileIncidentStore({ dir: flags.dir });
      let scan: IncidentScan;
      try {
        scan = await store.scan({ status: flags.status, rule: flags.rule });
      } catch (err) {
        fail("list", err);
      }
      for (const s of scan.skipped) console.error(`reclaim incidents list: skipped ${terminal(s.file)}: ${terminal(s.reason)}`);
      if (flags.user !== undefined) {
        const user = flags.user;
        scan.incidents = scan.incidents.filter((i) => (i.rollup === undefined ? i.target.userId === user : i.rollup.keys.some((k) => k.userId === user)));
      }
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(scan.incidents.map(summaryOf), null, 2)}\n`);
        return;
      }
      if (scan.incidents.length === 0) {
        process.stdout.write(`No incidents in ${terminal(store.dir)}${flags.status || flags.rule || flags.user ? " matching the filter" : ""}.\n`);
        return;
      }
      process.stdout.write(
        columns(
          ["ID", "STATUS", "SEVERITY", "RULE", "USER", "DETECTED", "RUNGS"],
          scan.incidents.map((i) => [
            i.id,
            i.status + (i.dryRun ? " (dry run)" : ""),
            i.severity,
            i.rule,
            i.rollup === undefined ? i.target.userId : `(${i.rollup.keys.length} listed: ${i.rollup.reason})`,
            i.detectedAt,
            i.rungs.length === 0 ? "-" : i.rungs.map((r) => `${r.rung}:${r.outcome}`).join(","),
          ]),
        ),
      );
    });
}

function showCommand(): Command {
  return new Command("show")
    .description("show one incident: as text for on-call, as Markdown, or the JSON record")
    .argument("<id>", "incident id, e.g. 20261126T120000Z-factory-hard-limit-1a2b3c4d")
    .addOption(dirOption())
    .addOption(
      new Option("--format <format>", "text (readable, no Markdown escapes), md (GitHub Markdown) or json (the record)")
        .choices(["text", "md", "json"])
        .default("text"),
    )
    .action(async (id: string, flags: ShowFlags) => {
      try {
        assertIncidentId(id);
      } catch (err) {
        console.error(`reclaim incidents show: ${terminal((err as Error).message)}`);
        process.exit(2);
      }
      await assertFolder("show", flags.dir);
      const store = new FileIncidentStore({ dir: flags.dir });
      let incident: Incident | null;
      try {
        incident = await store.get(id);
      } catch (err) {
        fail("show", err);
      }
      if (incident === null) {
        console.error(`reclaim incidents show: no incident ${id} in ${terminal(store.dir)}`);
        process.exit(1);
      }
      // Always rendered from the JSON: the .md beside it may be stale after a crash.
      const render = { text: renderText, md: renderMarkdown, json: (i: Incident) => `${JSON.stringify(i, null, 2)}\n` }[flags.format];
      process.stdout.write(render(incident));
    });
}

/** What `list --json` prints for each incident: enough to choose one to `show`. */
function summaryOf(i: Incident): Record<string, unknown> {
  return {
    id: i.id,
    status: i.status,
    severity: i.severity,
    rule: i.rule,
    title: i.title,
    key: i.keyString,
    userId: i.target.userId,
    pod: i.target.pod,
    dryRun: i.dryRun,
    detectedAt: i.detectedAt,
    updatedAt: i.updatedAt,
    resolvedAt: i.resolvedAt,
    closedAt: i.closedAt,
    rungs: i.rungs.map((r) => ({ rung: r.rung, outcome: r.outcome })),
    durations: i.durations,
    ...(i.rollup === undefined
      ? {}
      : {
          rollup: {
            reason: i.rollup.reason,
            hour: i.rollup.hour,
            part: i.rollup.part,
            keys: i.rollup.keys.length,
            userIds: i.rollup.keys.map((k) => k.userId),
            unlistedTriggers: i.rollup.unlisted.triggers,
          },
        }),
  };
}

/**
 * Exits 2 with one line naming `dir` when it does not exist or is not a
 * folder. Any other error is left to the store, which reports it (exit 1).
 */
async function assertFolder(command: string, dir: string): Promise<void> {
  let problem: string;
  try {
    if ((await stat(dir)).isDirectory()) return;
    problem = "is not a folder";
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") problem = "does not exist";
    else return;
  }
  console.error(`reclaim incidents ${command}: the incidents folder ${terminal(dir)} ${problem} (--dir or RECLAIM_INCIDENTS_DIR)`);
  process.exit(2);
}

/** Prints the error (and its cause) and exits 1. */
function fail(command: string, err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  console.error(`reclaim incidents ${command}: ${terminal(message)}`);
  process.exit(1);
}

/** A record's text on a terminal: control characters (escape sequences, newlines) made visible, so a record cannot drive the terminal. */
function terminal(text: string): string {
  return visible(text);
}

/** Left-aligned columns, two spaces apart, header first. Cells are made terminal-safe and cut to 60 characters. */
function columns(headers: string[], rows: string[][]): string {
  const fit = (cell: string): string => {
    const safe = terminal(cell);
    return safe.length > 60 ? `${safe.slice(0, 59)}…` : safe;
  };
  const cells = [headers, ...rows].map((row) => row.map(fit));
  const widths = headers.map((_, n) => Math.max(...cells.map((row) => row[n]!.length)));
  const line = (row: string[]): string => row.map((cell, n) => cell.padEnd(widths[n]!)).join("  ").trimEnd();
  return `${cells.map(line).join("\n")}\n`;
}
