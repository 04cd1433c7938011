/**
 * `reclaim rules test PATH…`: runs rule unit tests (rules/tests/*.yaml).
 * A problem in a test file (an unknown or missing key, a wrong type, a rule
 * file that cannot be read, an input entry that is not a log entry) is
 * printed as `✘ file:line:col: path: message`, as `rules validate` prints
 * rule problems, and counts as a failure; exit 1 on any failure.
 */
import { Command } from "commander";

/** The `rules test` command. */
export function rulesTestCommand(): Command {
  return new Command("test")
    .description("run rule unit tests: input log entries and the incidents they must open (files or folders)")
    .argument("<paths...>", "test files or folders, e.g. rules/tests")
    .action(async (paths: string[]) => {
      // Loaded here, not at start: the engine (and its logger and metrics) is for this subcommand only.
      const { runRuleTests } = await import("../operator/rules/rule-tests.js");
      const run = await runRuleTests(paths);
      for (const e of run.errors) process.stdout.write(`✘ ${e.format()}\n`);
      for (const r of run.results) {
        process.stdout.write(`${r.passed ? "✔" : "✘"} ${r.file}: ${r.name}\n`);
        for (const p of r.problems) process.stdout.write(`    ${p}\n`);
      }
      process.stdout.write(`${run.passed} passed, ${run.failed} failed\n`);
      process.exitCode = run.failed > 0 || run.results.length === 0 ? 1 : 0;
    });
}
