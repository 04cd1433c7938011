/**
 * `pingAll` judges a deadline against what the sockets had received by then,
 * not against what a busy event loop had got round to reading: a pong that
 * reached the kernel before the deadline, while the factory's event loop was
 * stalled (a GC pause, a burst of upgrades), counts. The client runs in a
 * process of its own, so that it answers while the factory's loop is stalled.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { pingAll } from "../../src/factory/rungs/probe.js";
import { buildHistory } from "../support/pongers.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** A plain `ws` client (autoPong): after it has answered a ping, it appends a line to MARKER. */
const CLIENT = `
import { appendFileSync } from "node:fs";
import { WebSocket } from "ws";
const ws = new WebSocket(process.env.URL, { headers: { Authorization: "Bearer " + process.env.TOKEN }, perMessageDeflate: false });
ws.on("ping", () => appendFileSync(process.env.MARKER, "pong\\n"));
ws.once("message", () => process.stdout.write("welcomed\\n"));
ws.on("close", () => process.exit(0));
`;

let factory: TestFactory | undefined;
let child: ChildProcess | undefined;
let dir: string | undefined;
afterEach(async () => {
  child?.kill();
  child = undefined;
  await factory?.close();
  factory = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** Pongs the client has sent so far. */
function pongsSent(marker: string): number {
  return existsSync(marker) ? readFileSync(marker, "utf8").split("\n").length - 1 : 0;
}

describe("pingAll and a stalled event loop", () => {
  it("counts a pong the kernel received before the deadline while the event loop was busy past it", async () => {
    const f = (factory = await startTestFactory({}));
    dir = mkdtempSync(join(tmpdir(), "reclaim-stall-"));
    const marker = join(dir, "pongs");
    const proc = (child = spawn(process.execPath, ["--input-type=module", "-e", CLIENT], {
      cwd: ROOT,
      env: { ...process.env, URL: f.wsUrl, TOKEN: await f.token("alice"), MARKER: marker },
      stdio: ["ignore", "pipe", "inherit"],
    }));
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on("data", (d: Buffer) => d.toString().includes("welcomed") && resolve());
      proc.once("exit", (code) => reject(new Error(`the client exited (${String(code)})`)));
    });
    await eventually(() => f.registry.active("alice") === 1, 5000, "alice registered");
    await buildHistory(f, "alice", 3);
    const manager = f.registry.managersOf("alice")[0]!;
    const before = pongsSent(marker);

    const DEADLINE_MS = 20;
    // Ping, then stall this event loop until the client has sent its pong and the deadline is well past. From a
    // setImmediate callback, as from the control API's request handler: the loop's next step is its timers, not a poll.
    const answered = await new Promise<Set<unknown>>((resolve, reject) =>
      setImmediate(() => {
        const running = pingAll([manager], [DEADLINE_MS]);
        const stalled = performance.now();
        while (pongsSent(marker) === before || performance.now() - stalled < 3 * DEADLINE_MS) {
          if (performance.now() - stalled > 20_000) return reject(new Error("the client never answered"));
        }
        resolve(running);
      }),
    );

    expect(answered).toEqual(new Set([manager]));
  });
});
