/**
 * `reclaim control-api openapi|conformance`: the control API as an open
 * contract.
 *
 * - `openapi` prints the OpenAPI 3.1 document generated from the zod schemas
 *   (docs/control-api.openapi.json is its committed copy).
 * - `conformance --url URL` checks an implementation (the control token from
 *   `RECLAIM_CONTROL_TOKEN`). With `--ws-url`, it also opens WebSocket
 *   connections to check each rung's effect; their client tokens are HS256
 *   JWTs (`sub` = user id) signed with `RECLAIM_AUTH_SECRET`, or with the
 *   built-in dev secret under `--dev` — the same tokens `reclaim token`
 *   prints and the demo uses. A backend with another client auth runs the
 *   HTTP checks alone (no `--ws-url`).
 *
 * Exit codes: 0 every check passed, 1 a check failed (each failure is named
 * on stdout), 2 bad usage (no token, a bad URL or timeout).
 */
import { Command, Option } from "commander";
import { runConformance, type CheckResult } from "../control-api/conformance.js";
import { controlApiDocumentText } from "../control-api/openapi.js";
import { DEV_AUTH_SECRET } from "../contract/dev.js";
import { isUserId } from "../contract/ids.js";
import { TokenAuth } from "../factory/auth.js";
import { durationIn } from "./options.js";

/** Flags of `reclaim control-api conformance`. */
export interface ConformanceFlags {
  url: string;
  wsUrl?: string;
  timeout: number;
  settle: number;
  dev: boolean;
  userPrefix?: string;
}

/** Where the command writes and what it reads: the process's by default, a test's in tests. */
export interface ConformanceIo {
  env: NodeJS.ProcessEnv;
  out: (line: string) => void;
  err: (line: string) => void;
}

/**
 * Runs `conformance` with `flags`; resolves with the exit code (0 all passed,
 * 1 a check failed, 2 bad usage) after printing one line per check and a
 * summary.
 */
export async function conformanceMain(flags: ConformanceFlags, io: ConformanceIo): Promise<number> {
  const token = io.env.RECLAIM_CONTROL_TOKEN;
  if (token === undefined || token === "") {
    io.err("reclaim control-api conformance: RECLAIM_CONTROL_TOKEN is not set (the control token of the implementation under test)");
    return 2;
  }
  for (const [flag, value] of [["--url", flags.url], ["--ws-url", flags.wsUrl]] as const) {
    if (value === undefined) continue;
    const protocols = flag === "--url" ? ["http:", "https:"] : ["ws:", "wss:"];
    if (!URL.canParse(value) || !protocols.includes(new URL(value).protocol)) {
      io.err(`reclaim control-api conformance: ${flag} must be a ${protocols.map((p) => `${p}//`).join(" or ")} URL, got ${JSON.stringify(value)}`);
      return 2;
    }
  }
  if (flags.userPrefix !== undefined && !isUserId(`${flags.userPrefix}-conservative`)) {
    io.err(`reclaim control-api conformance: --user-prefix must be letters, digits and ._:@- (at most 100), got ${JSON.stringify(flags.userPrefix)}`);
    return 2;
  }
  let clientToken: ((userId: string) => Promise<string>) | undefined;
  if (flags.wsUrl !== undefined) {
    const secret = io.env.RECLAIM_AUTH_SECRET || (flags.dev ? DEV_AUTH_SECRET : undefined);
    if (secret === undefined) {
      io.err("reclaim control-api conformance: --ws-url needs RECLAIM_AUTH_SECRET to sign client tokens (or --dev for the built-in development secret)");
      return 2;
    }
    let auth: TokenAuth;
    try {
      auth = new TokenAuth(secret);
    } catch (err) {
      io.err(`reclaim control-api conformance: ${(err as Error).message}`);
      return 2;
    }
    clientToken = (userId) => auth.sign(userId, 600);
  }
  const results: CheckResult[] = await runConformance({
    url: flags.url,
    token,
    requestTimeoutMs: flags.timeout,
    settleTimeoutMs: flags.settle,
    ...(flags.wsUrl === undefined ? {} : { wsUrl: flags.wsUrl }),
    ...(clientToken === undefined ? {} : { clientToken }),
    ...(flags.userPrefix === undefined ? {} : { userPrefix: flags.userPrefix }),
  });
  for (const r of results) io.out(r.ok ? `ok    ${r.name}` : `FAIL  ${r.name}: ${r.detail}`);
  const failed = results.filter((r) => !r.ok);
  io.out(
    failed.length === 0
      ? `${results.length} checks passed${flags.wsUrl === undefined ? " (rung effects not checked: no --ws-url)" : ""}`
      : `${failed.length} of ${results.length} checks failed: ${failed.map((r) => r.name).join(", ")}`,
  );
  return failed.length === 0 ? 0 : 1;
}

/** The `control-api` command and its two subcommands. */
export function controlApiCommand(): Command {
  const command = new Command("control-api").description("the factory's control API as an open contract: its OpenAPI document and a conformance checker");
  command
    .command("openapi")
    .description("print the OpenAPI 3.1 document of the control API (generated from the code's zod schemas)")
    .action(() => {
      process.stdout.write(controlApiDocumentText());
    });
  command
    .command("conformance")
    .description("check an implementation of the control API (token from RECLAIM_CONTROL_TOKEN); exit 1 naming each failed check")
    .requiredOption("--url <url>", "base URL of the control API, e.g. http://127.0.0.1:9091")
    .option("--ws-url <url>", "WebSocket URL of the chat endpoint: also check each rung's effect on real connections")
    .addOption(new Option("--dev", "sign client tokens with the built-in dev secret when RECLAIM_AUTH_SECRET is unset").default(false))
    .addOption(new Option("--timeout <duration>", "deadline of each request and handshake (100ms to 60s)").argParser(durationIn(100, 60_000)).default(5000, "5s"))
    .addOption(new Option("--settle <duration>", "deadline of each wait for the server's state (100ms to 5m)").argParser(durationIn(100, 300_000)).default(10_000, "10s"))
    .option("--user-prefix <prefix>", "prefix of the made-up user ids (default conformance-<random>)")
    .action(async (flags: ConformanceFlags) => {
      process.exitCode = await conformanceMain(flags, { env: process.env, out: (l) => console.log(l), err: (l) => console.error(l) });
    });
  return command;
}
