/**
 * Fault matrix, row 2: the factory (`bin/reclaim factory`, a real process) is
 * killed with SIGKILL in the middle of a ladder — while it is probing the
 * user's connections for the operator — and comes back on the same ports.
 *
 * The operator's call fails (the connection is reset, then refused while the
 * factory is down) and is retried; the retry reaches the new factory, whose
 * probe finds the user's slots free (a new process holds none of the old
 * connections): one incident, resolved; the probe completed once in all
 * (the killed process never finished it); and the operator then remediates a
 * new lockout on the new factory.
 */
import { readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEV_AUTH_SECRET, DEV_CONTROL_TOKEN } from "../../src/contract/dev.js";
import { connect, isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { TokenAuth } from "../../src/factory/auth.js";
import { killAll, type RunningCli, startCli } from "../support/cli.js";
import { faultRule } from "../support/fault-matrix.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const SLOTS = 3;
const auth = new TokenAuth(DEV_AUTH_SECRET);

let operator: TestOperator | undefined;
const processes: RunningCli[] = [];
const clients: ChatClient[] = [];
afterEach(async () => {
  await operator?.close();
  operator = undefined;
  for (const c of clients.splice(0)) c.destroy();
  await killAll(processes);
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Control-API rung runs for `userId` in the factory's log file (every process that wrote it). */
async function rungsRunIn(logFile: string, userId: string): Promise<string[]> {
  return (await readFile(logFile, "utf8"))
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.event === "factory.cleanup" && l.userId === userId && l.trigger === "control")
    .map((l) => String(l.rung));
}

describe("fault matrix, row 2: the factory is killed mid-ladder and comes back", () => {
  it("the operator's retry reaches the new factory: one incident, resolved, the probe completed once; the next lockout is remediated", async () => {
    const dir = await tempDir("reclaim-fault2-");
    const logFile = join(dir, "factory.log");
    await writeFile(logFile, "");
    const [port, controlPort] = [await freePort(), await freePort()];
    const wsUrl = `ws://127.0.0.1:${port}/ws`;
    const args = ["factory", "--dev", "--host", "127.0.0.1", "--port", String(port), "--control-port", String(controlPort), "--cleanup", "legacy", "--limit", String(SLOTS), "--log-file", logFile];
    const startFactory = async (): Promise<RunningCli> => {
      const p = startCli(args, { POD_NAME: "factory-0" });
      processes.push(p);
      await p.waitFor((l) => l.event === "factory.started");
      return p;
    };
    const lockOut = async (userId: string, onPing?: () => void): Promise<void> => {
      const token = await auth.sign(userId, 600);
      for (let i = 0; i < SLOTS; i++) {
        const zombie = await connect(wsUrl, token, "no-pong");
        if (isRefusal(zombie)) throw new Error(`zombie ${i} refused`);
        clients.push(zombie);
        if (onPing !== undefined) zombie.ws.once("ping", onPing);
      }
      const refused = await connect(wsUrl, token);
      expect(isRefusal(refused) && refused.status).toBe(503);
    };

    const first = await startFactory();
    operator = await startTestOperator({
      dir,
      source: `file:${logFile}`,
      control: `http://127.0.0.1:${controlPort}`,
      controlToken: DEV_CONTROL_TOKEN,
      // The probe waits 1 s for pongs that never come: the factory is killed while it waits.
      rule: faultRule({ rungTimeout: "5s" }).replace("timeoutMs: 200", "timeoutMs: 1000"),
      // Long enough for a new factory process to start between attempts.
      ladder: { attempts: 6, backoffMs: [250, 500, 1000, 2000, 2000] },
    });

    let probing!: () => void;
    const pinged = new Promise<void>((resolve) => (probing = resolve));
    await lockOut("victim", () => probing());
    await pinged; // the factory is probing the user's connections for the operator
    first.child.kill("SIGKILL");
    await first.exited;
    expect(first.child.signalCode).toBe("SIGKILL");
    await startFactory();

    const all = await operator.until((list) => list.some((i) => i.closedAt !== null), "the incident to end");
    await operator.idle();
    expect(all).toHaveLength(1);
    const [incident] = all;
    expect(incident!.status).toBe("resolved");
    expect(incident!.rungs).toHaveLength(1);
    expect(incident!.rungs[0]).toMatchObject({ rung: "probe", outcome: "ok", result: { removed: [], admit: true } });
    expect(incident!.rungs[0]!.attempts).toBeGreaterThanOrEqual(2);
    expect(incident!.decisions.filter((d) => d.kind === "retry")[0]!.detail).toMatch(/failed/);
    expect(await rungsRunIn(logFile, "victim")).toEqual(["probe"]); // the killed process never finished it; the new one ran it once

    // Still serving, on the new factory.
    await lockOut("after-restart");
    await operator.until((list) => list.some((i) => i.target.userId === "after-restart" && i.status === "resolved"), "the next lockout to resolve");
    expect(await rungsRunIn(logFile, "after-restart")).toEqual(["probe"]);
    expect(await operator.incidents()).toHaveLength(2);
  });
});
