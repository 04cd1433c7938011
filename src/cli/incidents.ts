/**
 * `reclaim incidents list|show`: read the incident records that the operator
 * wrote, for on-call; `reclaim incidents ack|note`: add on-call's own entries
 * to an incident's timeline (human.ts). Those two are the only writes, and
 * they never touch what the operator wrote.
 *
 * The records are in a folder: `--dir`, else `RECLAIM_INCIDENTS_DIR`, else
 * `./incidents`; or, with `--k8s`, Incident objects in the cluster
 * (`--kubeconfig`, `--namespace`, as the operator takes them).
 * Exit codes: 0 success, 1 failure (no such incident, unreadable record or
 * folder, a write that failed), 2 bad usage (unknown status, malformed id, a
 * missing or bad `--by`/`--text`, a `--dir` that does not exist or is not a
 * folder: most likely a typo, so it is not "no incidents").
 *
 * `show` prints plain text by default, on a terminal or not: the Markdown
 * escapes that GitHub needs (`guards\_passed`) are noise in a terminal, a
 * pager or grep. `--format md` gives the Markdown (the `.md` beside the record),
 * `--format json` the record.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { noticeOf } from "../operator/notify/notice.js";
import { dropNotice } from "../operator/notify/outbox.js";
import { OUTBOX_DIR } from "../operator/notify/setup.js";
import { Command, Option } from "commander";
import { assertIncidentId, DEFAULT_INCIDENTS_DIR, FileIncidentStore, type IncidentScan } from "../operator/incidents/file-store.js";
import { acknowledgement, ackBy, HumanEntryError, humanEntry, type HumanAppend, type HumanTimelineStore } from "../operator/incidents/human.js";
import { renderMarkdown, renderText } from "../operator/incidents/markdown.js";
import { type HumanEntry, type Incident, IncidentStatus } from "../operator/incidents/model.js";
import type { IncidentStore } from "../operator/incidents/store.js";
import { listOf } from "./options.js";
import { chooseStore, withClusterOptions, type ClusterFlags } from "./store-choice.js";
import { columns, terminal } from "./terminal.js";

/** Where the records are: a folder, or Incident objects in the cluster. */
interface StoreFlags extends ClusterFlags {
  dir: string;
}

interface ListFlags extends StoreFlags {
  status?: IncidentStatus[];
  rule?: string;
  user?: string;
  json: boolean;
}

interface ShowFlags extends StoreFlags {
  format: "text" | "md" | "json";
}

interface AckFlags extends StoreFlags {
  by: string;
  comment?: string;
  state: string;
  externalUrl?: string;
}

interface NoteFlags extends StoreFlags {
  by: string;
  text: string;
}

/** The `incidents` command and its subcommands. */
export function incidentsCommand(): Command {
  return new Command("incidents")
    .description("list and show the incident records the operator wrote; acknowledge them and add notes")
    .addCommand(listCommand())
    .addCommand(showCommand())
    .addCommand(ackCommand())
    .addCommand(noteCommand());
}

function dirOption(): Option {
  return new Option("--dir <path>", "folder of incident records").default(DEFAULT_INCIDENTS_DIR).env("RECLAIM_INCIDENTS_DIR");
}

/** `--dir`, or `--k8s` with its `--kubeconfig` and `--namespace`. */
function withStoreOptions(command: Command): Command {
  return withClusterOptions(command.addOption(dirOption()), {
    k8s: "the Incident objects in the cluster instead of a folder",
    namespace: "namespace of the Incident objects",
  });
}

/** The store `flags` select, and how to name it in a message. */
interface SelectedStore {
  store: IncidentStore & HumanTimelineStore & { lastListSkipped: number };
  /** The folder or `namespace NS`. */
  where: string;
  /** What `afterHumanEntry` is told about it. */
  ref: HumanEntryStoreRef;
  /** File mode only: the folder's store, for what only it can do (`scan`). */
  files?: FileIncidentStore;
}

/**
 * Opens the store `flags` select. Exits 2 when the choice is bad usage: `--dir`
 * on the command line with `--k8s`, `--kubeconfig`/`--namespace` without it, a
 * kubeconfig that cannot be loaded, a folder that does not exist.
 */
async function openStore(name: string, flags: StoreFlags, command: Command): Promise<SelectedStore> {
  const choice = await chooseStore(flags, command, "dir", (message) => usage(name, message));
  if (choice.kind === "file") {
    await assertFolder(name, flags.dir);
    const files = new FileIncidentStore({ dir: flags.dir });
    return { store: files, files, where: terminal(files.dir), ref: { kind: "file", dir: files.dir } };
  }
  // Imported here, like the Kubernetes client: only --k8s needs it.
  const { KubernetesIncidentStore } = await import("../operator/k8s/incident-store.js");
  const { api, namespace } = choice;
  return { store: new KubernetesIncidentStore(api, namespace), where: `namespace ${terminal(namespace)}`, ref: { kind: "k8s", namespace } };
}

/** Prints one line and exits 2. */
function usage(command: string, message: string): never {
  console.error(`reclaim incidents ${command}: ${terminal(message)}`);
  process.exit(2);
}

/** Exits 2 unless `id` is an incident id: checked before any path or request is made from it. */
function checkId(command: string, id: string): void {
  try {
    assertIncidentId(id);
  } catch (err) {
    usage(command, (err as Error).message);
  }
}

function listCommand(): Command {
  return withStoreOptions(new Command("list").description("list incidents, oldest first"))
    .addOption(
      new Option("--status <statuses>", `only these statuses, comma-separated: ${IncidentStatus.options.join(", ")}`).argParser(
        listOf(IncidentStatus.options),
      ),
    )
    .addOption(new Option("--rule <name>", "only incidents of this rule"))
    .addOption(new Option("--user <id>", "only incidents of this user, and rollup records that list them (users nobody acted on)"))
    .addOption(new Option("--json", "print the incidents' summaries as a JSON array").default(false))
    .action(async (flags: ListFlags, command: Command) => {
      const selected = await openStore("list", flags, command);
      let scan: Pick<IncidentScan, "incidents">;
      try {
        if (selected.files !== undefined) {
          const found = await selected.files.scan({ status: flags.status, rule: flags.rule });
          for (const s of found.skipped) console.error(`reclaim incidents list: skipped ${terminal(s.file)}: ${terminal(s.reason)}`);
          scan = found;
        } else {
          const { store } = selected;
          scan = { incidents: await store.list({ status: flags.status, rule: flags.rule }) };
          if (store.lastListSkipped > 0) console.error(`reclaim incidents list: skipped ${store.lastListSkipped} Incident object(s) that are not valid records`);
        }
      } catch (err) {
        fail("list", err);
      }
      if (flags.user !== undefined) {
        const user = flags.user;
        scan.incidents = scan.incidents.filter((i) => (i.rollup === undefined ? i.target.userId === user : i.rollup.keys.some((k) => k.userId === user)));
      }
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(scan.incidents.map(summaryOf), null, 2)}\n`);
        return;
      }
      if (scan.incidents.length === 0) {
        process.stdout.write(`No incidents in ${selected.where}${flags.status || flags.rule || flags.user ? " matching the filter" : ""}.\n`);
        return;
      }
      process.stdout.write(
        columns(
          ["ID", "STATUS", "SEVERITY", "RULE", "USER", "DETECTED", "RUNGS"],
          scan.incidents.map((i) => [
            i.id,
            statusCell(i),
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
  return withStoreOptions(
    new Command("show")
      .description("show one incident: as text for on-call, as Markdown, or the JSON record")
      .argument("<id>", "incident id, e.g. 20261126T120000Z-factory-hard-limit-1a2b3c4d"),
  )
    .addOption(
      new Option("--format <format>", "text (readable, no Markdown escapes), md (GitHub Markdown) or json (the record)")
        .choices(["text", "md", "json"])
        .default("text"),
    )
    .action(async (id: string, flags: ShowFlags, command: Command) => {
      checkId("show", id);
      const { store, where } = await openStore("show", flags, command);
      let incident: Incident | null;
      try {
        incident = await store.get(id);
      } catch (err) {
        fail("show", err);
      }
      if (incident === null) {
        console.error(`reclaim incidents show: no incident ${id} in ${where}`);
        process.exit(1);
      }
      // Always rendered from the JSON: the .md beside it may be stale after a crash.
      const render = { text: renderText, md: renderMarkdown, json: (i: Incident) => `${JSON.stringify(i, null, 2)}\n` }[flags.format];
      process.stdout.write(render(incident));
    });
}

function ackCommand(): Command {
  return withStoreOptions(
    new Command("ack")
      .description("acknowledge an incident: you are on it (recorded in its timeline; once per person)")
      .argument("<id>", "incident id, e.g. 20261126T120000Z-factory-hard-limit-1a2b3c4d"),
  )
    .addOption(new Option("--by <name>", "who acknowledges it (required: on-call reviews who did what)").makeOptionMandatory())
    .addOption(new Option("--comment <text>", "a comment kept with the acknowledgement"))
    .addOption(
      new Option("--state <dir>", "the operator's state folder: the acknowledgement is queued in its outbox for PagerDuty, Slack and Alertmanager")
        .default("./.reclaim/state")
        .env("RECLAIM_STATE_DIR"),
    )
    .addOption(new Option("--external-url <url>", "the operator's external URL, for the link in the notification").env("RECLAIM_EXTERNAL_URL"))
    .action(async (id: string, flags: AckFlags, command: Command) => {
      checkId("ack", id);
      const entry = entryOf("ack", { kind: "ack", by: flags.by, ...(flags.comment === undefined ? {} : { text: flags.comment }) }, "--comment");
      await addHumanEntry("ack", id, entry, await openStore("ack", flags, command), { state: flags.state, externalUrl: flags.externalUrl ?? null });
    });
}

function noteCommand(): Command {
  return withStoreOptions(
    new Command("note")
      .description("add a note to an incident's timeline")
      .argument("<id>", "incident id, e.g. 20261126T120000Z-factory-hard-limit-1a2b3c4d"),
  )
    .addOption(new Option("--by <name>", "who writes it (required)").makeOptionMandatory())
    .addOption(new Option("--text <text>", "the note (newlines allowed)").makeOptionMandatory())
    .action(async (id: string, flags: NoteFlags, command: Command) => {
      checkId("note", id);
      const entry = entryOf("note", { kind: "note", by: flags.by, text: flags.text }, "--text");
      await addHumanEntry("note", id, entry, await openStore("note", flags, command));
    });
}

/** The entry the flags describe, stamped now; exits 2 naming the flag when the name or text is not acceptable. */
function entryOf(command: string, input: Omit<Parameters<typeof humanEntry>[0], "at">, textFlag: string): HumanEntry {
  try {
    return humanEntry({ ...input, at: Date.now() });
  } catch (err) {
    if (!(err instanceof HumanEntryError)) throw err;
    usage(command, `${err.code === "ERR_RECLAIM_HUMAN_NAME" ? "--by" : textFlag}: ${err.message}`);
  }
}

/** Adds `entry`, prints one line saying what was recorded, then calls `afterHumanEntry`. Exits 1 when there is no such incident or the store fails. */
async function addHumanEntry(
  command: string,
  id: string,
  entry: HumanEntry,
  selected: SelectedStore,
  notify: { state: string; externalUrl: string | null } | null = null,
): Promise<void> {
  let result: HumanAppend | null;
  try {
    result = await selected.store.appendHuman(id, entry);
  } catch (err) {
    fail(command, err);
  }
  if (result === null) {
    console.error(`reclaim incidents ${command}: no incident ${id} in ${selected.where}; nothing recorded`);
    process.exit(1);
  }
  const first = acknowledgement(result.incident);
  let line: string;
  if (entry.kind === "note") line = `added a note by ${entry.by} to ${id} at ${entry.at}`;
  else if (!result.recorded) line = `${id} was already acknowledged by ${entry.by} at ${ackBy(result.incident, entry.by)?.at ?? "?"}; nothing recorded`;
  else line = `acknowledged ${id} as ${entry.by} at ${entry.at}`;
  if (entry.kind === "ack" && first !== null && first.by !== entry.by) line += ` (first acknowledged by ${first.by} at ${first.at})`;
  process.stdout.write(`${terminal(line)}\n`);
  try {
    const said = await afterHumanEntry(result.incident, { entry, recorded: result.recorded, store: selected.ref, ...(notify === null ? {} : notify) });
    if (said !== null) process.stdout.write(`${terminal(said)}\n`);
  } catch (err) {
    console.error(`reclaim incidents ${command}: the entry is on record, but what follows it failed: ${terminal(err instanceof Error ? err.message : String(err))}`);
    process.exit(1);
  }
}

/** Where `incidents ack|note` found the incident. */
export type HumanEntryStoreRef = { kind: "file"; dir: string } | { kind: "k8s"; namespace: string };

/** What `afterHumanEntry` is told besides the incident. */
export interface AfterHumanEntryOptions {
  /** The entry asked for (as recorded, when `recorded`). */
  entry: HumanEntry;
  /** False for an ack by someone who had acknowledged the incident already: nothing new is on record. */
  recorded: boolean;
  /** Where the incident is: its folder (absolute) or its namespace. */
  store: HumanEntryStoreRef;
  /** The operator's state folder, whose outbox takes the acknowledgement's notice (acks only). */
  state?: string;
  /** The operator's external URL, for the notice's link. */
  externalUrl?: string | null;
}

/**
 * Runs once the entry is on record (`incident` as it is then), and also
 * after an ack that was already there (`recorded: false`), so that a
 * notification lost the first time is sent again. An ack is told to the
 * receivers (PagerDuty `acknowledge`, Alertmanager's alert ended, a Slack
 * message): in file mode its notice is dropped into the operator's outbox
 * (`<state>/outbox/new/`), which the operator routes and delivers (ADR 23).
 * Returns a line to print, or null. A rejection is reported (exit 1); the
 * entry stays recorded.
 */
export async function afterHumanEntry(incident: Incident, options: AfterHumanEntryOptions): Promise<string | null> {
  if (options.entry.kind !== "ack" || options.state === undefined) return null;
  if (options.store.kind === "k8s") return null; // the leading operator reads it within one sync pass (15 s) and tells the receivers
  const outbox = join(options.state, OUTBOX_DIR);
  if (!(await stat(outbox).then((s) => s.isDirectory(), () => false))) return null; // no outbox: the operator sends no notifications
  const notice = noticeOf(incident, { externalUrl: options.externalUrl ?? null, now: Date.now(), acknowledged: acknowledgement(incident) });
  await dropNotice(outbox, notice);
  return `notifications: the acknowledgement is queued in ${outbox}`;
}

/** `list`'s status cell: the status, then whether it is a dry run and whether someone acknowledged it. */
function statusCell(i: Incident): string {
  const marks = [...(i.dryRun ? ["dry run"] : []), ...(acknowledgement(i) === null ? [] : ["acked"])];
  return marks.length === 0 ? i.status : `${i.status} (${marks.join(", ")})`;
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
    /** The first acknowledgement (`{ by, at }`), or null. */
    acknowledged: acknowledgement(i),
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
