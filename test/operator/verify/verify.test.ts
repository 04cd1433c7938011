/**
 * Verification against a real factory's control API: admission must hold for
 * the settle time, and a short settle is not rounded up to a poll interval.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { systemClock } from "../../../src/contract/clock.js";
import type { ChatClient } from "../../../src/demo/clients.js";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import { verifyUser } from "../../../src/operator/verify/verify.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";
import { faultRule, lockOut, rungsRun } from "../../support/fault-matrix.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
const tabs: ChatClient[] = [];
afterEach(async () => {
  await operator?.close();
  for (const tab of tabs.splice(0)) tab.destroy();
  await factory?.close();
  factory = undefined;
  operator = undefined;
});

/** A control client that counts its admission checks. */
class CountingClient extends ControlClient {
  checks = 0;
  override admission(userId: string, timeoutMs: number): ReturnType<ControlClient["admission"]> {
    this.checks++;
    return super.admission(userId, timeoutMs);
  }
}

describe("verifyUser", () => {
  it("with a settle shorter than the poll interval, looks again once the settle is up, not a poll later", async () => {
    factory = await startTestFactory();
    const control = new CountingClient(factory.controlUrl, TEST_CONTROL_TOKEN);
    // A poll interval far beyond the test's own timeout: only a wait cut to the settle time lets this finish.
    const verification = await verifyUser(control, "alice", systemClock, { settleMs: 5, timeoutMs: 600_000, pollMs: 300_000 });
    expect(verification.verified).toBe(true);
    expect(verification.heldMs).toBeGreaterThanOrEqual(5);
    expect(control.checks).toBeGreaterThanOrEqual(2); // admitted at the first check, and still at a later one
    expect(verification.detail).toBe(`admitted for ${verification.heldMs} ms`);
  }, 20_000);

  it("keeps polling at the poll interval while the user is not admitted, and fails at the timeout", async () => {
    factory = await startTestFactory({ limit: 2 });
    const tabs: ChatClient[] = [await factory.open("bob"), await factory.open("bob")];
    const control = new CountingClient(factory.controlUrl, TEST_CONTROL_TOKEN);
    const verification = await verifyUser(control, "bob", systemClock, { settleMs: 1, timeoutMs: 300, pollMs: 20 });
    expect(verification.verified).toBe(false);
    expect(verification.admission).toMatchObject({ admit: false, active: 2, effectiveLimit: 2 });
    expect(verification.detail).toBe("not admitted (2/2, 0 queued)");
    expect(control.checks).toBeGreaterThanOrEqual(2);
    for (const tab of tabs) await tab.close();
  }, 20_000);
});

describe("verification when the user's own tabs reconnect first", () => {
  const SLOTS = 3;
  // Probe, then force: without noticing the reconnects, the probe would not verify and force would evict a live tab.
  const rule = faultRule({ extraRungs: ["{ rung: force, timeout: 2s }"] }).replace("settle: 100ms, timeout: 2s", "settle: 1s, timeout: 3s");

  async function setUp(): Promise<{ f: TestFactory; op: TestOperator; reconnected: Promise<void> }> {
    const dir = await tempDir("reclaim-verify-");
    const logFile = join(dir, "factory.log");
    await writeFile(logFile, "");
    let reconnect!: () => void;
    const probed = new Promise<void>((resolve) => (reconnect = resolve));
    // As a browser does: the moment the probe has freed the zombies' slots, the user's tabs reconnect and take them all.
    const f = (factory = await startTestFactory(
      { cleanup: "legacy", limit: SLOTS, probeTimeoutMs: 200, logFile, logLevel: "info" },
      {
        onLine: (line) => {
          if (line.includes('"factory.cleanup"') && line.includes('"trigger":"control"') && line.includes('"rung":"probe"')) reconnect();
        },
      },
    ));
    const reconnected = probed.then(async () => {
      for (let i = 0; i < SLOTS; i++) tabs.push(await f.open("returning", "live"));
    });
    operator = await startTestOperator({ dir, source: `file:${logFile}`, control: f.controlUrl, rule });
    return { f, op: operator, reconnected };
  }

  it("counts connections admitted since the rung as recovery: resolved after the probe, nothing evicted", async () => {
    const { f, op, reconnected } = await setUp();
    await lockOut(f, "returning", SLOTS);
    const [incident] = await op.until((all) => all.some((i) => i.closedAt !== null), "the incident to end");
    await reconnected;
    expect(incident!.status).toBe("resolved");
    expect(incident!.rungs.map((r) => r.rung)).toEqual(["probe"]);
    const verification = incident!.rungs[0]!.verification!;
    expect(verification.verified).toBe(true);
    expect(verification.admission).toMatchObject({ admit: false, active: SLOTS }); // full again: of the user's own new tabs
    expect(verification.detail).toMatch(/^the user connected again by themselves: 3 connection\(s\) admitted since the rung/);
    expect(rungsRun(f, "returning")).toEqual(["probe"]);
    // The tabs that reconnected are all still open: nothing was evicted to "verify".
    expect(tabs.map((t) => t.ws.readyState)).toEqual(tabs.map(() => WebSocket.OPEN));
  }, 20_000);
});
