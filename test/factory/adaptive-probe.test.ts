/**
 * The probe's wait follows each connection's round trips (issue 18, ADR 28):
 * the estimators on their own, then real clients — with history, without,
 * and live ones whose pong comes ten times later than usual.
 */
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { MIN_SAMPLES, PHI_THRESHOLD, RttEstimator } from "../../src/factory/rtt.js";
import type { FactoryConfigInput } from "../../src/factory/config.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { buildHistory, slowPonger } from "../support/pongers.js";

describe("RttEstimator", () => {
  it("follows RFC 6298: first sample R gives SRTT R and RTTVAR R/2, then α = 1/8, β = 1/4", () => {
    const e = new RttEstimator();
    e.add(100);
    expect([e.srtt, e.rttvar]).toEqual([100, 50]);
    e.add(60);
    expect(e.rttvar).toBeCloseTo(0.75 * 50 + 0.25 * 40);
    expect(e.srtt).toBeCloseTo(0.875 * 100 + 0.125 * 60);
    e.add(80);
    expect(e.deadline("rfc6298", 1, 60_000)).toBeCloseTo(e.srtt + 4 * e.rttvar);
  });

  it("phi waits φ·ln10 times the smoothed round trip, which follows the recent ones", () => {
    const e = new RttEstimator();
    for (let i = 0; i < 40; i++) e.add(1000);
    for (let i = 0; i < 60; i++) e.add(10);
    expect(e.srtt).toBeCloseTo(10, 0);
    expect(e.deadline("phi", 1, 60_000)).toBeCloseTo(PHI_THRESHOLD * Math.LN10 * e.srtt);
  });

  it("gives the ceiling without enough history, and in fixed mode; clamps to the floor and the ceiling", () => {
    const e = new RttEstimator();
    for (let i = 0; i < MIN_SAMPLES - 1; i++) e.add(5);
    expect(e.deadline("phi", 50, 1000)).toBe(1000);
    expect(e.deadline("rfc6298", 50, 1000)).toBe(1000);
    e.add(5);
    expect(e.deadline("phi", 50, 1000)).toBe(Math.max(50, PHI_THRESHOLD * Math.LN10 * 5));
    expect(e.deadline("rfc6298", 50, 1000)).toBe(50);
    expect(e.deadline("fixed", 50, 1000)).toBe(1000);
    const slow = new RttEstimator();
    for (let i = 0; i < 5; i++) slow.add(500);
    expect(slow.deadline("phi", 50, 1000)).toBe(1000);
    slow.add(-3); // a clock step back is not a negative round trip
    expect(slow.srtt).toBeGreaterThan(0);
    expect(slow.rttvar).toBeGreaterThan(0);
  });
});

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

async function probeWith(config: FactoryConfigInput): Promise<TestFactory> {
  factory = await startTestFactory(config);
  return factory;
}

describe("the adaptive probe on real clients", () => {
  it("counts a round trip for each pong to its own ping, and none for a pong it did not ask for", async () => {
    const f = await probeWith({});
    const c = await f.open("alice");
    await buildHistory(f, "alice", 3);
    const manager = f.registry.managersOf("alice")[0]!;
    expect(manager.rtt.samples).toBe(3);
    c.ws.pong(Buffer.from([0, 0, 0, 99]));
    c.ws.pong(Buffer.from("not ours"));
    await c.chat("sync");
    expect(manager.rtt.samples).toBe(3);
  });

  it("evicts a zombie with history long before the ceiling, and keeps the live tabs", async () => {
    const f = await probeWith({ probeTimeoutMs: 30_000, probeFloorMs: 20 });
    await f.open("bob");
    const zombie = await f.open("bob");
    await buildHistory(f, "bob", 4);
    const zombieId = f.registry.managersOf("bob")[1]!.id;
    // It stops answering (a frozen tab, TCP still open).
    (zombie.ws as unknown as { _autoPong: boolean })._autoPong = false;
    const result = await f.control("POST", "/v1/users/bob/rungs/probe", {});
    expect(result.body.removed).toEqual([{ managerId: zombieId, reason: "no_pong" }]);
    // Its deadline came from its round trips (loopback: the floor), not the 30 s ceiling.
    expect(result.body.durationMs).toBeLessThan(30_000);
    expect(f.registry.active("bob")).toBe(1);
  });

  it("waits the ceiling for a connection with no history", async () => {
    const f = await probeWith({ probeTimeoutMs: 300, probeFloorMs: 20 });
    await f.open("carol", "no-pong");
    const result = await f.control("POST", "/v1/users/carol/rungs/probe", {});
    expect(result.body.removed).toHaveLength(1);
    expect(result.body.durationMs).toBeGreaterThanOrEqual(299);
  });

  it("phi keeps a live tab whose pong comes ten times later than usual; rfc6298 would evict it", async () => {
    for (const mode of ["phi", "rfc6298"] as const) {
      const f = await probeWith({ probeTimeoutMs: 5000, probeFloorMs: 10, probeDeadline: mode });
      let delay = 30;
      const ws = await slowPonger(f, "dave", () => delay);
      await buildHistory(f, "dave", 8);
      delay = 300; // one pong ten times later than its history
      const result = await f.control("POST", "/v1/users/dave/rungs/probe", {});
      if (mode === "phi") expect(result.body.removed).toEqual([]);
      else expect(result.body.removed).toEqual([{ managerId: expect.any(String), reason: "no_pong" }]);
      ws.terminate();
      await f.close();
      factory = undefined;
    }
  });

  it("counts a pong that comes after its own deadline while the rung still waits for another connection", async () => {
    const f = await probeWith({ probeTimeoutMs: 2000, probeFloorMs: 10, probeDeadline: "rfc6298" });
    let delay = 1;
    const ws = await slowPonger(f, "erin", () => delay);
    await buildHistory(f, "erin", 5);
    // A connection with no history: the rung waits the 2 s ceiling for it.
    await f.open("erin", "no-pong");
    delay = 300; // past its own (floor) deadline, long before the rung ends
    const result = await f.control("POST", "/v1/users/erin/rungs/probe", {});
    const live = f.registry.managersOf("erin").map((m) => m.id);
    expect(result.body.removed).toHaveLength(1);
    expect(live).toHaveLength(1);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.terminate();
  });
});
