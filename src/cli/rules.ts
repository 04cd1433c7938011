/**
 * `reclaim rules …`: validate, schema, test, replay.
 */
import { Command } from "commander";
import { loadRules } from "../operator/rules/load.js";
import { ruleJsonSchema } from "../operator/rules/schema.js";
import { rulesReplayCommand } from "./rules-replay.js";
import { rulesTestCommand } from "./rules-test.js";

/** The `rules` command group. */
export function rulesCommand(): Command {
  return new Command("rules")
    .description("validate, test and replay remediation rules")
    .addCommand(rulesValidateCommand())
    .addCommand(rulesSchemaCommand())
    .addCommand(rulesTestCommand())
    .addCommand(rulesReplayCommand());
}

const plural = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`;

/**
 * `reclaim rules validate PATH…`: loads rule files and folders as the operator
 * does. Every problem goes to stderr as `file:line:col: message` and the exit
 * code is 1; when there is none it prints e.g. `3 rules valid in 1 file`.
 * A title placeholder that nothing fills in (not a key field, not required by
 * a `where` condition, and never written by the factory on the rule's events)
 * is a problem at the placeholder's `{`: every title would show "?".
 * Warnings (valid, but probably not meant: an event name the factory never
 * writes, a title placeholder that cannot be checked because the entries are
 * not the factory's or come from a metric) go to stderr as
 * `file:line:col: warning: message` and do not change the exit code.
 */
export function rulesValidateCommand(): Command {
  return new Command("validate")
    .description("check rule files and folders; prints every problem as file:line:col: message (exit 1)")
    .argument("<paths...>", "rule files, or folders (their *.yaml and *.yml files, not recursing)")
    .action(async (paths: string[]) => {
      const { rules, errors, files, warnings } = await loadRules(paths);
      process.stderr.write(warnings.map((w) => `${w.format()}\n`).join(""));
      if (errors.length > 0) {
        process.stderr.write(errors.map((e) => `${e.format()}\n`).join(""));
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${plural(rules.length, "rule")} valid in ${plural(files.length, "file")}\n`);
    });
}

/** `reclaim rules schema`: prints the JSON Schema of a rule document (what `rules/schema.json` holds). */
export function rulesSchemaCommand(): Command {
  return new Command("schema")
    .description("print the JSON Schema of a RemediationRule (for editors: rules/schema.json)")
    .action(() => {
      process.stdout.write(`${JSON.stringify(ruleJsonSchema(), null, 2)}\n`);
    });
}
