/**
 * The `reclaim` command as a user runs it: help, tokens, the factory process
 * with flags and environment, bad usage, and SIGTERM.
 */
import { readFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { connect, isRefusal } from "../../src/demo/clients.js";
import { TokenAuth } from "../../src/factory/auth.js";
import { DEV_AUTH_SECRET, DEV_CONTROL_TOKEN } from "../../src/factory/config.js";
import { runCli, startCli, type RunningCli } from "../support/cli.js";

const SECRET = "cli-test-secret-0123456789abcdef0123";
const CONTROL = "cli-test-control-token-42";

let running: RunningCli | undefined;
afterEach(async () => {
  if (running && running.child.exitCode === null) {
    running.child.kill("SIGKILL");
    await running.exited;
  }
  running = undefined;
});

async function startFactoryProcess(args: string[], env: Record<string, string> = {}): Promise<{ port: number; controlPort: number }> {
  running = startCli(["factory", "--port", "0", "--control-port", "0", "--host", "127.0.0.1", ...args], env);
  const started = await running.waitFor((l) => l.event === FactoryEvent.started);
  return { port: started.port as number, controlPort: started.controlPort as number };
}

describe("reclaim --help", () => {
  it("lists the subcommands", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    for (const sub of ["demo", "factory", "token"]) expect(stdout).toMatch(new RegExp(`^\\s+${sub}\\b`, "m"));
  });

  it("documents every factory flag", async () => {
    const { code, stdout } = await runCli(["factory", "--help"]);
    expect(code).toBe(0);
    for (const flag of [
      "--port",
      "--control-port",
      "--control-host",
      "--limit",
      "--cleanup",
      "--ladder",
      "--probe-timeout",
      "--heartbeat-interval",
      "--queue-timeout",
      "--queue-max",
      "--log-file",
      "--fault",
      "--dev",
    ]) {
      expect(stdout).toContain(flag);
    }
  });
});

describe("reclaim token", () => {
  it("prints a token for the user, signed with RECLAIM_AUTH_SECRET", async () => {
    const { code, stdout } = await runCli(["token", "105945141827451681156", "--ttl", "15m"], { RECLAIM_AUTH_SECRET: SECRET });
    expect(code).toBe(0);
    expect(new TokenAuth(SECRET).verify(stdout.trim())).toEqual({ ok: true, userId: "105945141827451681156" });
    expect(new TokenAuth(DEV_AUTH_SECRET).verify(stdout.trim()).ok).toBe(false);
  });

  it.each([
    [["token", "a b", "--dev"], /invalid user id/],
    [["token", "alice"], /RECLAIM_AUTH_SECRET is not set/],
    [["token", "alice", "--dev", "--ttl", "soon"], /invalid duration/],
  ])("%j exits 2 with a clear error", async (args, message) => {
    const { code, stderr } = await runCli(args);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });
});

describe("reclaim factory: bad usage", () => {
  it.each([
    [[], /RECLAIM_AUTH_SECRET is not set/],
    [["--dev", "--limit", "0"], /--limit.*expected 1\.\.10000, got 0/],
    [["--dev", "--cleanup", "aggressive"], /--cleanup/],
    [["--dev", "--ladder", "probe,restartPod"], /--ladder/],
    [["--dev", "--fault", "disk-full"], /--fault/],
    [["--dev", "--probe-timeout", "fast"], /invalid duration/],
  ])("%j exits 2 and says why", async (args, message) => {
    const { code, stderr } = await runCli(["factory", ...args]);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });
});

describe("reclaim factory: running", () => {
  it("serves chat, reads settings from the environment, logs to a file, and stops on SIGTERM with 1001", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-cli-"));
    const logFile = join(dir, "logs", "factory.log");
    const { port, controlPort } = await startFactoryProcess(["--log-file", logFile], {
      RECLAIM_AUTH_SECRET: SECRET,
      RECLAIM_CONTROL_TOKEN: CONTROL,
      RECLAIM_LIMIT: "3",
    });

    const token = await new TokenAuth(SECRET).sign("alice", 60);
    const client = await connect(`ws://127.0.0.1:${port}/ws`, token);
    if (isRefusal(client)) throw new Error(`refused: ${client.status}`);
    expect(await client.chat("hi")).toBe("echo: hi");

    const user = await fetch(`http://127.0.0.1:${controlPort}/v1/users/alice`, { headers: { Authorization: `Bearer ${CONTROL}` } });
    expect(await user.json()).toMatchObject({ limit: 3, active: 1 });

    running!.child.kill("SIGTERM");
    expect((await client.closed).code).toBe(1001);
    expect(await running!.exited).toBe(0);
    expect(running!.lines.map((l) => l.event)).toContain(FactoryEvent.stopped);
    const fileLines = (await readFile(logFile, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(fileLines.map((l) => l.event)).toEqual(expect.arrayContaining([FactoryEvent.started, FactoryEvent.stopped]));
  });

  it("in dev mode uses the built-in secrets and says so loudly; faults are announced", async () => {
    const { port, controlPort } = await startFactoryProcess(["--dev", "--fault", "leak-on-close", "--cleanup", "legacy"]);
    const dev = running!.lines.find((l) => l.event === FactoryEvent.devMode);
    expect(dev).toMatchObject({ severity: "WARNING" });
    expect(String(dev?.message)).toMatch(/DEV MODE/);
    expect(running!.lines.find((l) => l.event === FactoryEvent.faultEnabled)).toMatchObject({ severity: "WARNING", reason: "leak-on-close" });

    const client = await connect(`ws://127.0.0.1:${port}/ws`, await new TokenAuth(DEV_AUTH_SECRET).sign("bob", 60));
    expect(isRefusal(client)).toBe(false);
    const res = await fetch(`http://127.0.0.1:${controlPort}/v1/users/bob/admission`, {
      headers: { Authorization: `Bearer ${DEV_CONTROL_TOKEN}` },
    });
    expect(await res.json()).toMatchObject({ admit: true, active: 1 });
  });
});
