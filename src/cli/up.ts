/**
 * `reclaim up`: a factory and an operator with the shipped rules, running
 * together for manual use until Ctrl-C.
 */
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Command, Option } from "commander";
import { DEV_CONTROL_TOKEN } from "../contract/dev.js";
import { isUserId } from "../contract/ids.js";
import { DEMO_USER } from "../demo/demo.js";
import { startStack } from "../demo/stack.js";
import { InvalidRulesError } from "../operator/operator.js";
import { intIn } from "./options.js";
import type { Incident } from "../operator/incidents/model.js";
import { visible } from "../operator/incidents/markdown.js";

/**
 * Prints one line each time an incident's status changes (opened,
 * remediating, resolved, failed, …), so a person trying things sees the
 * operator act without reading its log. Bounded: it forgets closed ones.
 */
export function printChanges(print: (line: string) => void): (incident: Incident) => void {
  const seen = new Map<string, string>();
  return (incident) => {
    if (seen.get(incident.id) === incident.status) return;
    const first = !seen.has(incident.id);
    seen.set(incident.id, incident.status);
    if (incident.closedAt !== null) seen.delete(incident.id);
    const time = new Date().toISOString().slice(11, 19);
    const rungs = incident.rungs.map((r) => `${r.rung}:${r.outcome}`).join(" ");
    const what = first && incident.closedAt === null ? "opened" : incident.status;
    print(`${time} incident ${incident.id} ${what}: ${visible(incident.title)}${incident.closedAt !== null && rungs !== "" ? ` [${rungs}]` : ""}`);
  };
}

interface UpFlags {
  dir: string;
  port: number;
  controlPort: number;
  metricsPort: number;
  cleanup: "ladder" | "legacy";
  rules?: string[];
  user: string;
}

export function upCommand(): Command {
  return new Command("up")
    .description("run a factory and an operator (shipped rules) together on 127.0.0.1 with dev secrets, for trying things by hand")
    .addOption(new Option("--dir <path>", "folder for the factory log, the operator's state and log, and incidents").default("./.reclaim/up"))
    .addOption(new Option("--port <n>", "WebSocket port").argParser(intIn(0, 65535)).default(8080))
    .addOption(new Option("--control-port <n>", "control API port").argParser(intIn(0, 65535)).default(8081))
    .addOption(new Option("--metrics-port <n>", "operator metrics port").argParser(intIn(0, 65535)).default(9464))
    .addOption(new Option("--cleanup <mode>", "the factory's cleanup: ladder, or legacy to reproduce the outage").choices(["ladder", "legacy"]).default("ladder"))
    .addOption(
      new Option("--rules <path>", "rule file or folder, repeatable (default: the shipped rules)").argParser(
        (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
      ),
    )
    .addOption(new Option("--user <id>", "the user to print a token for").default(DEMO_USER))
    .action(async (flags: UpFlags) => {
      if (!isUserId(flags.user)) {
        console.error(`reclaim up: invalid user id ${JSON.stringify(flags.user)}`);
        process.exit(2);
      }
      const dir = resolve(flags.dir);
      await mkdir(dir, { recursive: true });
      const operatorLog = createWriteStream(join(dir, "operator.log"), { flags: "a" });
      let stack;
      try {
        stack = await startStack({
          dir,
          factory: { port: flags.port, controlPort: flags.controlPort, cleanup: flags.cleanup },
          metricsPort: flags.metricsPort,
          operatorStreams: [operatorLog],
          onRecorded: printChanges((line) => process.stdout.write(`${line}\n`)),
          ...(flags.rules === undefined ? {} : { rules: flags.rules }),
        });
      } catch (err) {
        if (err instanceof InvalidRulesError) {
          for (const e of err.errors) console.error(e.format());
          process.exit(2);
        }
        console.error(`reclaim up: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      }
      const token = await stack.factory.auth.sign(flags.user, 24 * 3600);
      process.stdout.write(
        [
          `Reclaim is up (factory cleanup: ${flags.cleanup}; dev secrets: not for production). Ctrl-C stops both.`,
          "",
          `  WebSocket        ${stack.factory.wsUrl}`,
          `  user token       ${token}`,
          `                   (user ${flags.user}, 24 h; more with: reclaim token USER --dev)`,
          `  control API      ${stack.factory.controlUrl}/v1/users/${flags.user}`,
          `  control token    ${stack.factory.config.controlToken ?? DEV_CONTROL_TOKEN}`,
          `  factory metrics  ${stack.factory.controlUrl}/metrics`,
          `  operator metrics ${stack.metricsUrl}`,
          `  factory log      ${stack.logFile}`,
          `  operator log     ${join(dir, "operator.log")}`,
          `  incidents        ${stack.incidentsDir}   (reclaim incidents list --dir ${stack.incidentsDir})`,
          "",
          "Incidents are printed below as they open and close.",
          "",
        ].join("\n"),
      );
      await new Promise<void>((done) => {
        process.once("SIGINT", done);
        process.once("SIGTERM", done);
      });
      process.stdout.write("Stopping…\n");
      await stack.close();
      await new Promise<void>((done) => operatorLog.end(done));
      process.stdout.write("Stopped.\n");
    });
}
