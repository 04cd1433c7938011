/**
 * `reclaim silence add|list|expire`: on-call holds automation back for one
 * user, pod or rule, without editing a rule or restarting the operator
 * (ADR 22). The running operator honours a new silence within seconds.
 *
 * Where: the operator's state folder (`--state`, else `RECLAIM_STATE_DIR`,
 * else `./.reclaim/state`; records in its `silences/`), or with `--k8s` the
 * Silence objects of a namespace (`--kubeconfig`, `--namespace`, as
 * `reclaim incidents` takes them). `--by` and `--comment` are required:
 * on-call reviews who silenced what, and why.
 *
 * Exit codes: 0 success, 1 failure (the store cannot be read or written, no
 * such silence, too many silences), 2 bad usage (a malformed id or value, no
 * matcher, `--for` out of bounds).
 */
import { Command, InvalidArgumentError, Option } from "commander";
import type { z } from "zod";
import { errorText } from "../operator/log.js";
import { FileSilenceStore, silenceDir } from "../operator/silence/file-store.js";
import {
  assertHoldId,
  Author,
  Comment,
  DEFAULT_SILENCE_MS,
  describeMatchers,
  expired,
  isActive,
  KEEP_ENDED_MS,
  MAX_ACTIVE_SILENCES,
  MAX_SILENCE_MS,
  MIN_HOLD_MS,
  newSilence,
  PAUSE_ID,
  PodName,
  RuleName,
  type Silence,
  type SilenceMatchers,
} from "../operator/silence/model.js";
import type { SilenceScan, SilenceStore } from "../operator/silence/store.js";
import { UserId } from "../contract/ids.js";
import { durationIn } from "./options.js";
import { chooseStore, withClusterOptions, type ClusterFlags } from "./store-choice.js";
import { columns, terminal } from "./terminal.js";
import { formatDuration } from "../contract/duration.js";

/** The state folder when neither `--state` nor `RECLAIM_STATE_DIR` is given (the operator's default too). */
export const DEFAULT_STATE_DIR = "./.reclaim/state";

/** Where the records are: the flags every silence and pause command takes. */
export interface HoldStoreFlags extends ClusterFlags {
  state: string;
}

/** Adds `--state`, `--k8s`, `--kubeconfig` and `--namespace` to a command. */
export function withHoldStore(command: Command): Command {
  return withClusterOptions(
    command.addOption(new Option("--state <dir>", "the operator's state folder (its --state); records in its silences/").default(DEFAULT_STATE_DIR).env("RECLAIM_STATE_DIR")),
    { k8s: "Silence objects in the cluster instead of the state folder", namespace: "the operator's namespace" },
  );
}

/** Prints `reclaim <command>: message` and exits 2 (bad usage). */
export function usage(command: string, message: string): never {
  console.error(`reclaim ${command}: ${terminal(message)}`);
  process.exit(2);
}

/** Prints `reclaim <command>: message` (and the error's) and exits 1. */
export function failure(command: string, message: string, err?: unknown): never {
  const why = err === undefined ? "" : `: ${errorText(err)}`;
  console.error(`reclaim ${command}: ${terminal(message + why)}`);
  process.exit(1);
}

/**
 * The store the flags select. Exits 2 on bad usage: `--state` given on the
 * command line with `--k8s`, `--kubeconfig`/`--namespace` without it, a
 * kubeconfig that cannot be loaded.
 */
export async function openHoldStore(name: string, flags: HoldStoreFlags, command: Command): Promise<SilenceStore> {
  const choice = await chooseStore(flags, command, "state", (message) => usage(name, message));
  if (choice.kind === "file") return new FileSilenceStore({ dir: silenceDir(flags.state) });
  // Imported here, like the Kubernetes client: only --k8s needs it.
  const { KubernetesSilenceStore } = await import("../operator/silence/k8s-store.js");
  return new KubernetesSilenceStore(choice.api, choice.namespace);
}

/** A flag parser from a zod schema: the schema's message on a bad value (commander then exits 2). */
export function schemaArg<T>(schema: z.ZodType<T>): (value: string) => T {
  return (value) => {
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues.map((i) => i.message).join("; "));
    return parsed.data;
  };
}

/** Reads every record; exits 1 when the store cannot be read. Skipped records are named on stderr. */
export async function scanOrFail(name: string, store: SilenceStore): Promise<SilenceScan> {
  let scan: SilenceScan;
  try {
    scan = await store.scan();
  } catch (err) {
    failure(name, `cannot read ${store.where}`, err);
  }
  for (const s of scan.skipped) console.error(`reclaim ${name}: skipped ${terminal(s.name)}: ${terminal(s.reason)}`);
  return scan;
}

/** Removes records that ended more than KEEP_ENDED_MS ago (not the pause); a failure is only said, the command's work is done. */
export async function pruneEnded(name: string, store: SilenceStore, scan: SilenceScan, now: number): Promise<void> {
  for (const s of scan.silences) {
    if (s.id === PAUSE_ID || Date.parse(s.endsAt) > now - KEEP_ENDED_MS) continue;
    await store.remove(s.id).catch((err: unknown) => console.error(`reclaim ${name}: could not remove the old silence ${s.id}: ${terminal(String(err))}`));
  }
}

interface AddFlags extends HoldStoreFlags {
  user?: string;
  pod?: string;
  rule?: string;
  for: number;
  by: string;
  comment: string;
}

interface ListFlags extends HoldStoreFlags {
  all: boolean;
  json: boolean;
}

interface ExpireFlags extends HoldStoreFlags {
  by: string;
}

/** The `silence` command and its subcommands. */
export function silenceCommand(): Command {
  return new Command("silence")
    .description("hold automation back for a user, a pod or a rule (see also: reclaim pause)")
    .addCommand(addCommand())
    .addCommand(listCommand())
    .addCommand(expireCommand());
}

function addCommand(): Command {
  return withHoldStore(
    new Command("add")
      .description("silence a user, a pod or a rule (every one given must match); prints the silence's id")
      .addOption(new Option("--user <id>", "the user id").argParser(schemaArg(UserId)))
      .addOption(new Option("--pod <name>", "the factory pod (also holds triggers whose pod is unknown)").argParser(schemaArg(PodName)))
      .addOption(new Option("--rule <name>", "the rule").argParser(schemaArg(RuleName)))
      .addOption(
        new Option("--for <duration>", `how long (${formatDuration(MIN_HOLD_MS)} to ${formatDuration(MAX_SILENCE_MS)})`)
          .argParser(durationIn(MIN_HOLD_MS, MAX_SILENCE_MS))
          .default(DEFAULT_SILENCE_MS, formatDuration(DEFAULT_SILENCE_MS)),
      )
      .addOption(new Option("--by <name>", "who silences (required: on-call reviews who silenced what)").argParser(schemaArg(Author)).makeOptionMandatory())
      .addOption(new Option("--comment <text>", "why (required)").argParser(schemaArg(Comment)).makeOptionMandatory()),
  ).action(async (flags: AddFlags, command: Command) => {
    const name = "silence add";
    const matchers: SilenceMatchers = {
      ...(flags.user === undefined ? {} : { userId: flags.user }),
      ...(flags.pod === undefined ? {} : { pod: flags.pod }),
      ...(flags.rule === undefined ? {} : { rule: flags.rule }),
    };
    if (Object.keys(matchers).length === 0) usage(name, "give at least one of --user, --pod, --rule (every one given must match)");
    const store = await openHoldStore(name, flags, command);
    const now = Date.now();
    const scan = await scanOrFail(name, store);
    const active = scan.silences.filter((s) => s.id !== PAUSE_ID && isActive(s, now)).length;
    if (active >= MAX_ACTIVE_SILENCES) failure(name, `${active} silences are in force already (at most ${MAX_ACTIVE_SILENCES}); expire some first`);
    const silence = newSilence({ matchers, forMs: flags.for, by: flags.by, comment: flags.comment, now });
    try {
      await store.put(silence);
    } catch (err) {
      failure(name, `cannot write the silence to ${store.where}`, err);
    }
    await pruneEnded(name, store, scan, now);
    process.stdout.write(`${silence.id}\n`);
  });
}

function listCommand(): Command {
  return withHoldStore(
    new Command("list")
      .description("list the silences in force (and the pause, if any)")
      .addOption(new Option("--all", "also those that ended (kept 7 days) or have not started").default(false))
      .addOption(new Option("--json", "print the records as a JSON array").default(false)),
  ).action(async (flags: ListFlags, command: Command) => {
    const name = "silence list";
    const store = await openHoldStore(name, flags, command);
    const now = Date.now();
    const scan = await scanOrFail(name, store);
    const pause = scan.silences.find((s) => s.id === PAUSE_ID && (flags.all || isActive(s, now))) ?? null;
    const silences = scan.silences
      .filter((s) => s.id !== PAUSE_ID && (flags.all || isActive(s, now)))
      .sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt) || a.id.localeCompare(b.id));
    if (flags.json) {
      process.stdout.write(`${JSON.stringify([...(pause === null ? [] : [pause]), ...silences], null, 2)}\n`);
      return;
    }
    if (pause !== null) {
      const state = stateOf(pause, now);
      process.stdout.write(
        state === "active"
          ? `Automation is PAUSED by ${terminal(pause.createdBy)} until ${pause.endsAt}: ${terminal(pause.comment)}\n\n`
          : `Not paused (the last pause, by ${terminal(pause.createdBy)}, ${state} ${pause.endsAt}).\n\n`,
      );
    }
    if (silences.length === 0) {
      process.stdout.write(`No silences${flags.all ? "" : " in force"} in ${terminal(store.where)}.\n`);
      return;
    }
    process.stdout.write(
      columns(
        ["ID", "STATE", "MATCHES", "ENDS", "BY", "COMMENT"],
        silences.map((s) => [s.id, stateOf(s, now), describeMatchers(s.matchers), s.endsAt, s.expiredBy === null ? s.createdBy : `${s.createdBy} (ended by ${s.expiredBy})`, s.comment]),
      ),
    );
  });
}

function expireCommand(): Command {
  return withHoldStore(
    new Command("expire")
      .description("end a silence now")
      .argument("<id>", "the silence id, e.g. sil-0123456789abcdef")
      .addOption(new Option("--by <name>", "who ends it (required)").argParser(schemaArg(Author)).makeOptionMandatory()),
  ).action(async (id: string, flags: ExpireFlags, command: Command) => {
    const name = "silence expire";
    try {
      assertHoldId(id);
      if (id === PAUSE_ID) throw new TypeError("the pause is ended with `reclaim resume`");
    } catch (err) {
      usage(name, (err as Error).message);
    }
    const store = await openHoldStore(name, flags, command);
    let silence: Silence | null;
    try {
      silence = await store.get(id);
    } catch (err) {
      failure(name, `cannot read ${id} in ${store.where}`, err);
    }
    if (silence === null) failure(name, `no silence ${id} in ${store.where}`);
    const now = Date.now();
    if (Date.parse(silence.endsAt) <= now) {
      process.stdout.write(`${id} had already ended (${silence.endsAt}${silence.expiredBy === null ? "" : `, by ${terminal(silence.expiredBy)}`}).\n`);
      return;
    }
    try {
      await store.put(expired(silence, flags.by, now));
    } catch (err) {
      failure(name, `cannot write ${id} to ${store.where}`, err);
    }
    process.stdout.write(`Expired ${id} (${describeMatchers(silence.matchers)}; it would have held until ${silence.endsAt}).\n`);
  });
}

/** `active`, `ended` or `pending` (starts later). */
function stateOf(s: Silence, now: number): string {
  if (isActive(s, now)) return "active";
  return Date.parse(s.startsAt) > now ? "pending" : "ended";
}
