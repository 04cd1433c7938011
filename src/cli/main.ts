/**
 * The `reclaim` command: a thin layer that parses flags and calls into the
 * factory (and, later, the operator). Exit codes: 0 success, 1 failure,
 * 2 bad usage or configuration.
 */
import { Command } from "commander";
import { RECLAIM_VERSION } from "../contract/version.js";
import { controlApiCommand } from "./control-api.js";
import { demoCommand } from "./demo.js";
import { factoryCommand } from "./factory.js";
import { incidentsCommand } from "./incidents.js";
import { manifestsCommand } from "./manifests.js";
import { operatorCommand } from "./operator.js";
import { pauseCommand, resumeCommand } from "./pause.js";
import { rulesCommand } from "./rules.js";
import { silenceCommand } from "./silence.js";
import { tokenCommand } from "./token.js";
import { upCommand } from "./up.js";

/** Builds the command tree (exported for tests of the help text). */
export function program(): Command {
  const root = new Command("reclaim")
    .description("Keeps a WebSocket chat backend usable when users run out of connection slots.")
    .version(RECLAIM_VERSION)
    .addCommand(demoCommand())
    .addCommand(upCommand())
    .addCommand(factoryCommand())
    .addCommand(operatorCommand())
    .addCommand(rulesCommand())
    .addCommand(incidentsCommand())
    .addCommand(silenceCommand())
    .addCommand(pauseCommand())
    .addCommand(resumeCommand())
    .addCommand(manifestsCommand())
    .addCommand(tokenCommand())
    .addCommand(controlApiCommand());
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const command of all(root)) {
    // Bad usage exits 2 (help and --version exit 0), with the help hint after the error.
    command.showHelpAfterError().exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  }
  return root;
}

/** Runs the CLI with `argv` (as in `process.argv`). */
export async function main(argv: string[]): Promise<void> {
  await program().parseAsync(argv);
}
