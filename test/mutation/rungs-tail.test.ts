/**
 * `probe` under `phi` stretches its waits where live pongs have come close
 * to them (ADR 38), learned from real pongs of every connection: a live tab
 * whose pong comes 100× later than its usual is kept once other tabs have
 * shown such pongs, and evicted on φ alone where nobody has.
 */
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { PHI_RATIO, TAIL_MARGIN } from "../../src/factory/rtt.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { buildHistory, slowPonger } from "../support/pongers.js";

let factory: TestFactory | undefined;
const clients: WebSocket[] = [];
afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate();
  await factory?.close();
  factory = undefined;
});

const USUAL_MS = 10;
const LATE_MS = 100 * USUAL_MS;

/**
 * alice's one tab and bob's four answer in USUAL_MS; bob's answer their 4th
 * ping LATE_MS late when `bobLate`. After 5 sweeps alice's next pong, the
 * probe's, comes LATE_MS late: 100× her usual, past φ's 18.4×.
 */
async function scenario(bobLate: boolean): Promise<{ removed: unknown; stretch: number; alice: WebSocket }> {
  const f = (factory = await startTestFactory({ probeTimeoutMs: 5000, probeFloorMs: 10, probeDeadline: "phi" }));
  let aliceLate = false;
  const alice = await slowPonger(f, "alice", () => (aliceLate ? LATE_MS : USUAL_MS));
  clients.push(alice);
  for (let i = 0; i < 4; i++) clients.push(await slowPonger(f, "bob", (n) => (bobLate && n === 4 ? LATE_MS : USUAL_MS)));
  await buildHistory(f, ["alice", "bob"], 5);
  const stretch = f.rttTail.stretch();
  aliceLate = true;
  const result = await f.control("POST", "/v1/users/alice/rungs/probe", {});
  expect(result.status).toBe(200);
  return { removed: result.body.removed, stretch, alice };
}

describe("probe: phi covers the network's tail", () => {
  it("keeps a live tab 100× late once other connections' pongs have shown such lateness", async () => {
    const { removed, stretch, alice } = await scenario(true);
    // bob's pongs 100× late used ~100 / 18.4 of their φ waits: the waits are stretched past that (less the SRTT's own noise).
    expect(stretch).toBeGreaterThan((TAIL_MARGIN * 60) / PHI_RATIO);
    // On-call sees it: the gauge reads the same tail.
    const scraped = await fetch(`${factory!.controlUrl}/metrics`).then((r) => r.text());
    const gauge = /^reclaim_factory_probe_stretch (\S+)$/m.exec(scraped);
    expect(Number(gauge?.[1])).toBe(factory!.rttTail.stretch());
    expect(removed).toEqual([]);
    expect(alice.readyState).toBe(WebSocket.OPEN);
  });

  it("evicts the same tab on φ alone when no connection has been late", async () => {
    const { removed, stretch } = await scenario(false);
    expect(stretch).toBe(1);
    expect(removed).toEqual([{ managerId: expect.any(String), reason: "no_pong" }]);
  });
});
