import { describe, expect, it } from "vitest";
import { Detector, type Trigger } from "../../../src/operator/detect/detector.js";
import { hardLimit, rule, T0 } from "../../support/rules.js";

const isTrigger = (x: unknown): x is Trigger => typeof x === "object" && x !== null;

describe("Detector", () => {
  it("fires when count entries fall within the window, in event time, then starts over", () => {
    const r = rule("r", { threshold: { count: 3, window: "1m" } });
    const d = new Detector({ now: () => T0 + 120_000 });
    expect(d.observe(r, hardLimit("u", T0), { groups: {} })).toBeNull();
    expect(d.observe(r, hardLimit("u", T0 + 70_000), { groups: {} })).toBeNull(); // T0 is now out of the window
    expect(d.observe(r, hardLimit("u", T0 + 80_000), { groups: {} })).toBeNull();
    const fired = d.observe(r, hardLimit("u", T0 + 90_000), { groups: {} });
    // What fired is the three entries inside the window: T0 fell out of it, so it is neither evidence nor the first time.
    expect(isTrigger(fired) && fired).toMatchObject({ userId: "u", pod: "factory-0", keyString: "userId=u,pod=factory-0", firstAt: T0 + 70_000, total: 3 });
    expect(isTrigger(fired) && fired.entries.map((e) => e.time)).toEqual([T0 + 70_000, T0 + 80_000, T0 + 90_000]);
    expect(d.observe(r, hardLimit("u", T0 + 95_000), { groups: {} })).toBeNull();
  });

  it("keeps as evidence only entries inside the window, also when they arrive out of order", () => {
    const r = rule("r", { threshold: { count: 2, window: "10s" } });
    const d = new Detector({ now: () => T0 + 60_000 });
    expect(d.observe(r, hardLimit("u", T0 + 30_000), { groups: {} })).toBeNull();
    expect(d.observe(r, hardLimit("u", T0), { groups: {} })).toBeNull(); // late, and 30 s before the first: outside any window with it
    const fired = d.observe(r, hardLimit("u", T0 + 35_000), { groups: {} });
    expect(isTrigger(fired) && fired.entries.map((e) => e.time)).toEqual([T0 + 30_000, T0 + 35_000]);
    expect(isTrigger(fired) && fired).toMatchObject({ firstAt: T0 + 30_000, total: 2 });
  });

  it("keys windows by the rule's key fields", () => {
    const r = rule("r", { threshold: { count: 2, window: "1m" } });
    const d = new Detector({ now: () => T0 });
    expect(d.observe(r, hardLimit("a", T0), { groups: {} })).toBeNull();
    expect(d.observe(r, hardLimit("b", T0 + 1), { groups: {} })).toBeNull();
    expect(d.observe(r, hardLimit("a", T0 + 2, "factory-1"), { groups: {} })).toBeNull();
    expect(isTrigger(d.observe(r, hardLimit("a", T0 + 3), { groups: {} }))).toBe(true);
  });

  it("accepts entries out of order", () => {
    const r = rule("r", { threshold: { count: 2, window: "10s" } });
    const d = new Detector({ now: () => T0 });
    expect(d.observe(r, hardLimit("u", T0 + 5000), { groups: {} })).toBeNull();
    expect(isTrigger(d.observe(r, hardLimit("u", T0), { groups: {} }))).toBe(true);
  });

  it.each([
    ["the same entry twice", () => hardLimit("u", T0), "duplicate"],
    ["an entry without a user id", () => ({ ...hardLimit("u", T0 + 1), fields: { event: "factory.hard_limit", pod: "p" } }), "unkeyed"],
    ["a user id that is not valid", () => ({ ...hardLimit("u", T0 + 2), fields: { userId: "../x", pod: "p" } }), "unkeyed"],
    ["an entry older than maxAge", () => hardLimit("v", T0 - 16 * 60_000), "stale"],
  ])("drops %s", (_name, make, reason) => {
    const r = rule("r", { threshold: { count: 5, window: "1h" } });
    const d = new Detector({ now: () => T0 });
    d.observe(r, hardLimit("u", T0), { groups: {} });
    expect(d.observe(r, make(), { groups: {} })).toBe(reason);
  });

  it("forgets the entries it de-duplicates once their rule's maxAge has passed (they would be stale by then anyway)", () => {
    const r = rule("r", { threshold: { count: 5, window: "1m" }, maxAge: "15m" });
    let now = T0;
    const d = new Detector({ now: () => now });
    for (let i = 0; i < 100; i++) d.observe(r, hardLimit(`u${i}`, now), { groups: {} });
    expect(d.remembered).toBe(100);
    now += 16 * 60_000;
    d.observe(r, hardLimit("late-comer", now), { groups: {} });
    expect(d.remembered).toBe(1); // a day of lines costs a bounded memory, not one id per line for ever
    expect(d.observe(r, hardLimit("u0", T0), { groups: {} })).toBe("stale"); // the same entry again, forgotten: still not counted
  });

  it("holds at most maxKeys windows and counts evictions", () => {
    const r = rule("r", { threshold: { count: 2, window: "1h" } });
    const d = new Detector({ now: () => T0, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) d.observe(r, hardLimit(`user-${i}`, T0), { groups: {} });
    expect(d.size).toBe(100);
    expect(d.stats.evictions).toBe(900);
  });
});
