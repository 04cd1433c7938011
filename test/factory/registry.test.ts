import { describe, expect, it } from "vitest";
import type { Clock } from "../../src/contract/clock.js";
import type { Manager } from "../../src/factory/manager.js";
import { AdmissionQueue } from "../../src/factory/queue.js";
import { Registry } from "../../src/factory/registry.js";

const clockAt = (t: { now: number }): Clock => ({ now: () => t.now });
const fakeManager = (userId: string, id: string): Manager => ({ userId, id, removed: false }) as unknown as Manager;

describe("Registry", () => {
  it("counts reservations against the limit and turns them into managers", () => {
    const r = new Registry(2, clockAt({ now: 0 }));
    r.reserve("u");
    r.reserve("u");
    expect(r.hasRoom("u")).toBe(false);
    r.commit(fakeManager("u", "m1"));
    expect([r.active("u"), r.occupied("u")]).toEqual([1, 2]);
    r.release("u");
    expect([r.active("u"), r.occupied("u"), r.hasRoom("u")]).toEqual([1, 1, true]);
  });

  it("forgets a user once nothing is left, so memory does not grow with past users", () => {
    const forgotten: string[] = [];
    const r = new Registry(2, clockAt({ now: 0 }), { forgotten: (u) => forgotten.push(u) });
    const m = fakeManager("u", "m1");
    r.reserve("u");
    r.commit(m);
    expect(r.holds("u")).toBe(true);
    expect(r.remove(m)).toBe(true);
    expect(r.remove(m)).toBe(false);
    expect(r.userCount).toBe(0);
    expect(r.holds("u")).toBe(false);
    expect(forgotten).toEqual(["u"]);
    expect(m.removed).toBe(true);
  });

  it("applies a raise until it ends, by the injected clock", () => {
    const t = { now: 1000 };
    const ended: string[] = [];
    const r = new Registry(20, clockAt(t), { raiseEnded: (u) => ended.push(u) });
    r.setRaise("u", { limit: 25, until: 5000, queueTimeoutMs: 0 });
    expect(r.effectiveLimit("u")).toBe(25);
    t.now = 5000;
    expect(r.effectiveLimit("u")).toBe(20);
    expect(r.raiseOf("u")).toBeNull();
    r.clearTimers();
  });

  it("reports users at their effective limit", () => {
    const r = new Registry(1, clockAt({ now: 0 }));
    r.reserve("a");
    r.commit(fakeManager("a", "1"));
    r.reserve("b");
    r.commit(fakeManager("b", "2"));
    r.setRaise("b", { limit: 2, until: 10_000, queueTimeoutMs: 0 });
    expect(r.summaries({ atLimit: true }).map((s) => s.userId)).toEqual(["a"]);
    expect(r.countAtLimit()).toBe(1);
    r.clearTimers();
  });

  it("dates when a user reached their effective limit, clears it below, and follows a raise and its end", () => {
    const t = { now: 1000 };
    const forgotten: string[] = [];
    const r = new Registry(2, clockAt(t), { forgotten: (u) => forgotten.push(u) });
    const [m1, m2] = [fakeManager("u", "1"), fakeManager("u", "2")];
    r.reserve("u");
    r.commit(m1);
    expect(r.atLimitSince("u")).toBeNull();
    t.now = 2000;
    r.reserve("u");
    r.commit(m2);
    t.now = 3000;
    expect(r.atLimitSince("u")).toBe(2000);
    r.setRaise("u", { limit: 3, until: 5000, queueTimeoutMs: 0 });
    expect(r.atLimitSince("u")).toBeNull();
    // The raise lapsed by the clock before its timer fired: at the limit again, dated from when it is seen.
    t.now = 6000;
    expect(r.atLimitSince("u")).toBe(6000);
    t.now = 7000;
    expect(r.atLimitSince("u")).toBe(6000);
    r.clearTimers();
    r.remove(m1);
    expect(r.atLimitSince("u")).toBeNull();
    expect(forgotten).toEqual([]);
  });

  it("tells the queue when a slot frees", () => {
    const freed: string[] = [];
    const r = new Registry(1, clockAt({ now: 0 }), { slotFreed: (u) => freed.push(u) });
    const m = fakeManager("u", "1");
    r.reserve("u");
    r.commit(m);
    r.remove(m);
    expect(freed).toEqual(["u"]);
  });
});

describe("AdmissionQueue", () => {
  it("serves waiters first come, first served, as slots can be reserved", async () => {
    let free = 0;
    const q = new AdmissionQueue(() => (free > 0 ? (free--, true) : false));
    const order: string[] = [];
    const a = q.wait("u", 10_000, 5).then((o) => order.push(`a:${o}`));
    const b = q.wait("u", 10_000, 5).then((o) => order.push(`b:${o}`));
    expect(q.length("u")).toBe(2);
    free = 1;
    q.wake("u");
    await a;
    expect(order).toEqual(["a:admitted"]);
    free = 1;
    q.wake("u");
    await b;
    expect(order).toEqual(["a:admitted", "b:admitted"]);
    expect(q.size).toBe(0);
  });

  it("answers full, timeout and aborted", async () => {
    const q = new AdmissionQueue(() => false);
    const waiting = q.wait("u", 50, 1);
    expect(await q.wait("u", 1000, 1)).toBe("full");
    expect(await waiting).toBe("timeout");
    const controller = new AbortController();
    const aborted = q.wait("u", 10_000, 1, controller.signal);
    controller.abort();
    expect(await aborted).toBe("aborted");
    const shutdown = q.wait("v", 10_000, 1);
    q.abortAll();
    expect(await shutdown).toBe("aborted");
    expect(q.size).toBe(0);
  });
});
