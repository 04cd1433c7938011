/**
 * FACTORY_EVENT_FIELDS (what `rules validate` believes the factory writes on
 * each event) against the lines a real factory writes: a title placeholder is
 * refused only for a field no line of the event ever carries, so a field the
 * factory writes but the table lacks would refuse a valid rule.
 */
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { FactoryEvent } from "../../../src/contract/events.js";
import { connect, isRefusal } from "../../../src/demo/clients.js";
import { FACTORY_EVENT_FIELDS } from "../../../src/operator/rules/template.js";
import { eventually, startTestFactory, type TestFactory } from "../../support/factory.js";

/** On every line: Cloud Logging's structured fields, the event, the pod. */
const EVERY_LINE = new Set(["severity", "message", "time", "event", "pod"]);

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

describe("FACTORY_EVENT_FIELDS", () => {
  it("lists every field of every line a factory writes through a lockout, its remediation and its shutdown", async () => {
    factory = await startTestFactory({ limit: 2, probeTimeoutMs: 50, closeGraceMs: 50, drainMs: 0, shutdownGraceMs: 100, allowedOrigins: ["https://chat.example"] });
    const f = factory;
    // Two zombies, then a third tab: the factory's own probe evicts them.
    await f.open("u1", "no-pong");
    await f.open("u1", "no-pong");
    await f.open("u1");
    await eventually(() => f.events(FactoryEvent.zombie, "u1").length === 2, 5000, "the zombies to be evicted");
    // At the limit with live tabs: refused (HARD LIMIT, UNEXPECTED FACTORY ERROR, refused).
    await f.open("u1");
    expect(isRefusal(await f.attempt("u1"))).toBe(true);
    // The operator's rungs, through the control API.
    expect((await f.control("POST", "/v1/users/u1/rungs/force", { max: 1, freeSlots: 1 })).status).toBe(200);
    expect((await f.control("POST", "/v1/users/u1/rungs/degrade", { limit: 3, ttlMs: 60_000 })).status).toBe(200);
    // Refused before admission: a bad token, a foreign origin.
    expect(isRefusal(await connect(f.wsUrl, "not-a-token", "live"))).toBe(true);
    const token = await f.token("u2");
    const foreign = new WebSocket(f.wsUrl, { headers: { Authorization: `Bearer ${token}` }, origin: "https://evil.example" });
    await new Promise<void>((resolve) => foreign.once("error", () => resolve()));
    await f.shutdown();

    const seen = new Set(f.lines.map((l) => String(l.event)));
    for (const event of [
      FactoryEvent.started,
      FactoryEvent.connectionOpened,
      FactoryEvent.resourceLimit,
      FactoryEvent.cleanup,
      FactoryEvent.zombie,
      FactoryEvent.hardLimit,
      FactoryEvent.error,
      FactoryEvent.refused,
      FactoryEvent.evicted,
      FactoryEvent.degraded,
      FactoryEvent.authFailed,
      FactoryEvent.originRefused,
      FactoryEvent.stopping,
      FactoryEvent.stopped,
    ]) {
      expect(seen, `a ${event} line`).toContain(event);
    }
    const unlisted = f.lines.flatMap((line) => {
      const event = String(line.event);
      const listed: readonly string[] | undefined = (FACTORY_EVENT_FIELDS as Record<string, readonly string[]>)[event];
      if (listed === undefined) return [`${event}: not in the table`];
      return Object.keys(line)
        .filter((k) => !EVERY_LINE.has(k) && !listed.includes(k))
        .map((k) => `${event}: ${k}`);
    });
    expect([...new Set(unlisted)]).toEqual([]);
  });

  it("has an entry for every event the factory writes, and nothing else", () => {
    expect(Object.keys(FACTORY_EVENT_FIELDS).sort()).toEqual(Object.values(FactoryEvent).sort());
  });
});
