/**
 * `reclaim pause` and `reclaim resume`: stop all automation at once, and
 * start it again (ADR 22). A pause lasts `--for` (default 1 h, at most 24 h)
 * and then ends by itself, so a forgotten one does not keep every lockout
 * unremediated; pausing again replaces it (to extend it, say so again).
 * While paused the operator sends no rung, closes the ladders it was running
 * before their next rung, records every trigger as `paused`, and says so in
 * `/readyz`, the `reclaim_operator_paused` gauge and its log.
 *
 * Same store flags as `reclaim silence`; same exit codes.
 */
import { Command, Option } from "commander";
import { formatDuration } from "../contract/duration.js";
import { Author, Comment, DEFAULT_PAUSE_MS, expired, isActive, MAX_PAUSE_MS, MIN_HOLD_MS, newPause, PAUSE_ID, type Silence } from "../operator/silence/model.js";
import { durationIn } from "./options.js";
import { failure, openHoldStore, pruneEnded, scanOrFail, schemaArg, withHoldStore, type HoldStoreFlags } from "./silence.js";
import { terminal } from "./terminal.js";

interface PauseFlags extends HoldStoreFlags {
  for: number;
  by: string;
  comment: string;
}

interface ResumeFlags extends HoldStoreFlags {
  by: string;
}

/** `reclaim pause`. */
export function pauseCommand(): Command {
  return withHoldStore(
    new Command("pause")
      .description(`stop all automation now, for --for (default ${formatDuration(DEFAULT_PAUSE_MS)}); reclaim resume ends it earlier`)
      .addOption(
        new Option("--for <duration>", `how long (${formatDuration(MIN_HOLD_MS)} to ${formatDuration(MAX_PAUSE_MS)}); then it ends by itself`)
          .argParser(durationIn(MIN_HOLD_MS, MAX_PAUSE_MS))
          .default(DEFAULT_PAUSE_MS, formatDuration(DEFAULT_PAUSE_MS)),
      )
      .addOption(new Option("--by <name>", "who pauses (required)").argParser(schemaArg(Author)).makeOptionMandatory())
      .addOption(new Option("--comment <text>", "why (required)").argParser(schemaArg(Comment)).makeOptionMandatory()),
  ).action(async (flags: PauseFlags, command: Command) => {
    const name = "pause";
    const store = await openHoldStore(name, flags, command);
    const now = Date.now();
    const scan = await scanOrFail(name, store);
    const before = scan.silences.find((s) => s.id === PAUSE_ID && isActive(s, now)) ?? null;
    const pause = newPause({ forMs: flags.for, by: flags.by, comment: flags.comment, now });
    try {
      await store.put(pause);
    } catch (err) {
      failure(name, `cannot write the pause to ${store.where}`, err);
    }
    await pruneEnded(name, store, scan, now);
    const replaced = before === null ? "" : ` (it replaces the pause by ${terminal(before.createdBy)} until ${before.endsAt})`;
    process.stdout.write(`Automation paused until ${pause.endsAt} by ${terminal(pause.createdBy)}${replaced}. End it earlier with: reclaim resume --by NAME\n`);
  });
}

/** `reclaim resume`. */
export function resumeCommand(): Command {
  return withHoldStore(
    new Command("resume")
      .description("end the pause now: automation acts again")
      .addOption(new Option("--by <name>", "who resumes (required)").argParser(schemaArg(Author)).makeOptionMandatory()),
  ).action(async (flags: ResumeFlags, command: Command) => {
    const name = "resume";
    const store = await openHoldStore(name, flags, command);
    let pause: Silence | null;
    try {
      pause = await store.get(PAUSE_ID);
    } catch (err) {
      failure(name, `cannot read the pause in ${store.where}`, err);
    }
    const now = Date.now();
    if (pause === null || !isActive(pause, now)) {
      process.stdout.write("Automation was not paused.\n");
      return;
    }
    try {
      await store.put(expired(pause, flags.by, now));
    } catch (err) {
      failure(name, `cannot write the pause to ${store.where}`, err);
    }
    process.stdout.write(`Automation resumed (the pause by ${terminal(pause.createdBy)} would have lasted until ${pause.endsAt}).\n`);
  });
}
