/**
 * The `reclaim` command: a thin layer that parses flags and calls into the
 * factory (and, later, the operator). Exit codes: 0 success, 1 failure,
 * 2 bad usage or configuration.
 */
import { Command } from "commander";
import { RECLAIM_VERSION } from "../contract/version.js";

/**
 * Each subcommand's module, loaded only when it runs: `reclaim --version`
 * loads none, `reclaim rules validate` only the rules' (issue 18: start-up
 * time is module loading). Help for the whole tree loads them all.
 */
const SUBCOMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  demo: async () => (await import("./demo.js")).demoCommand(),
  up: async () => (await import("./up.js")).upCommand(),
  factory: async () => (await import("./factory.js")).factoryCommand(),
  operator: async () => (await import("./operator.js")).operatorCommand(),
  rules: async () => (await import("./rules.js")).rulesCommand(),
  incidents: async () => (await import("./incidents.js")).incidentsCommand(),
  silence: async () => (await import("./silence.js")).silenceCommand(),
  pause: async () => (await import("./pause.js")).pauseCommand(),
  resume: async () => (await import("./pause.js")).resumeCommand(),
  manifests: async () => (await import("./manifests.js")).manifestsCommand(),
  token: async () => (await import("./token.js")).tokenCommand(),
  "control-api": async () => (await import("./control-api.js")).controlApiCommand(),
};

/** The subcommands, in the order help lists them. */
export const SUBCOMMAND_NAMES: readonly string[] = Object.keys(SUBCOMMANDS);

/**
 * Builds the command tree with `only` (a subcommand's name), or with every
 * subcommand when `only` is undefined (for help, an unknown command's
 * suggestion, and tests of the help text). `null`: none (`--version`).
 */
export async function program(only?: string | null): Promise<Command> {
  const root = new Command("reclaim")
    .description("Keeps a WebSocket chat backend usable when users run out of connection slots.")
    .version(RECLAIM_VERSION);
  const names = only === null ? [] : only === undefined ? SUBCOMMAND_NAMES : [only];
  for (const command of await Promise.all(names.map((name) => SUBCOMMANDS[name]!()))) root.addCommand(command);
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const command of all(root)) {
    // Bad usage exits 2 (help and --version exit 0), with the help hint after the error.
    command.showHelpAfterError().exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  }
  return root;
}

/** Which part of the tree `argv` needs: its subcommand, none for `--version`, all otherwise. */
export function neededBy(argv: readonly string[]): string | null | undefined {
  const first = argv[2];
  if (first === "--version" || first === "-V") return null;
  return first !== undefined && Object.hasOwn(SUBCOMMANDS, first) ? first : undefined;
}

/** Runs the CLI with `argv` (as in `process.argv`). */
export async function main(argv: string[]): Promise<void> {
  await (await program(neededBy(argv))).parseAsync(argv);
}
