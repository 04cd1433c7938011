/**
 * Verification against a real factory's control API: admission must hold for
 * the settle time, and a short settle is not rounded up to a poll interval.
 */
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/contract/clock.js";
import type { ChatClient } from "../../src/demo/clients.js";
import { ControlClient } from "../../src/operator/control-client.js";
import { verifyUser } from "../../src/operator/verify.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
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
