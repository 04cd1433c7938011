/**
 * `reclaim rules …`: validate, schema, test, replay.
 */
import { Command } from "commander";
import { rulesReplayCommand } from "./rules-replay.js";
import { rulesTestCommand } from "./rules-test.js";

export function rulesCommand(): Command {
  return new Command("rules")
    .description("validate, test and replay remediation rules")
    .addCommand(rulesTestCommand())
    .addCommand(rulesReplayCommand());
}
