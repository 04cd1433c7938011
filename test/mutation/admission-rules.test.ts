/**
 * The rules of admission and of the registry, each pinned (mutation testing
 * found these unpinned): who is admitted without waiting, what a request whose
 * client went away is told, the fields and text of every admission log line,
 * the notice of a degraded or queued admission, the refusal log's window
 * timer and `close`, whether the clock admission is given is also its timers;
 * the registry's reservations and counts, its listing of users, its raise
 * timers (replaced, cleared, ended without a hook) and when it forgets a user.
 *
 * The parts are real and built by hand (test/support/admission.ts):
 * Registry, AdmissionQueue, InProcessCleanup (with an empty ladder: it frees
 * nothing), RefusalTracker, FactoryMetrics and AdmissionControl on a
 * ManualClock. Only the log is an in-memory recorder. A registry's managers
 * are real Managers on one real `ws` connection on 127.0.0.1 (the registry
 * only keys them by id). Raises and queue timeouts end on the clock's timers
 * when it has them (a ManualClock: the tests move it), on Node's otherwise.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { WebSocket } from "ws";
import type { Clock, Timers } from "../../src/contract/clock.js";
import { FactoryEvent, OutageMessage } from "../../src/contract/events.js";
import { Manager } from "../../src/factory/manager.js";
import { Registry, type Raise } from "../../src/factory/registry.js";
import { ManualClock } from "../support/clock.js";
import { admissionHarness as buildHarness, NEVER_MS, type Harness, type HarnessOptions } from "../support/admission.js";
import { eventually } from "../support/factory.js";
import { wsPair, type WsPair } from "../support/ws-pair.js";

const USER = "user-u";
const iso = (t: number): string => new Date(t).toISOString();

const harnesses: Harness[] = [];
afterEach(() => {
  for (const h of harnesses.splice(0)) h.close();
});

/** `admissionHarness` of test/support/admission.ts, closed after the test. */
function admissionHarness(clock: Clock, options?: HarnessOptions): Harness {
  const h = buildHarness(clock, options);
  harnesses.push(h);
  return h;
}

/** Fills `userId`'s slots with reservations (they count against the limit like managers). */
function fill(registry: Registry, userId: string, n: number): void {
  for (let i = 0; i < n; i++) registry.reserve(userId);
}

describe("AdmissionControl", () => {
  it("wouldAdmit: yes only with room and nobody queued ahead", () => {
    const { registry, queue, admission } = admissionHarness(new ManualClock(), { limit: 2 });
    expect(admission.wouldAdmit(USER)).toBe(true);
    registry.reserve(USER);
    expect(admission.wouldAdmit(USER)).toBe(true);
    registry.reserve(USER);
    expect(admission.wouldAdmit(USER)).toBe(false); // no room, nobody queued
    registry.release(USER);
    void queue.wait(USER, NEVER_MS, 10); // someone waits although there is room now (ended by abortAll after the test)
    expect(registry.hasRoom(USER)).toBe(true);
    expect(admission.wouldAdmit(USER)).toBe(false);
  });

  it("a request does not jump the queue: with a slot free but someone waiting, it is not admitted without waiting", async () => {
    const { registry, queue, admission, log } = admissionHarness(new ManualClock(), { limit: 2, retryAfterSeconds: 5 });
    registry.reserve(USER);
    void queue.wait(USER, NEVER_MS, 10);
    // Queueing is off (queueTimeoutMs 0), so the newcomer is refused rather than admitted ahead of the waiter.
    expect(await admission.decide(USER)).toEqual({ admitted: false, reason: "limit", retryAfterSeconds: 5 });
    expect(registry.occupied(USER)).toBe(1);
    expect(log.events()[0]).toBe(FactoryEvent.resourceLimit);
  });

  it("a request whose client went away while cleanup ran is answered 'aborted', not recorded, with no refusal lines", async () => {
    const { registry, admission, refusals, log } = admissionHarness(new ManualClock(), { limit: 2, retryAfterSeconds: 5 });
    fill(registry, USER, 2);
    const controller = new AbortController();
    controller.abort();
    expect(await admission.decide(USER, controller.signal)).toEqual({ admitted: false, reason: "aborted", retryAfterSeconds: 5 });
    expect(refusals.of(USER)).toBeNull();
    expect(log.lines).toEqual([
      {
        level: "warn",
        event: FactoryEvent.resourceLimit,
        fields: { userId: USER, managers: 2, limit: 2 },
        message: `Resource limit exceeded for user ${USER} (2/2 managers) - attempting immediate cleanup`,
      },
    ]);
    expect(registry.occupied(USER)).toBe(2);
  });

  it("at the limit with no signal and no queueing: refused for 'limit', recorded, with the refusal lines word for word", async () => {
    const { registry, admission, refusals, log } = admissionHarness(new ManualClock(), { limit: 2, retryAfterSeconds: 7 });
    fill(registry, USER, 2);
    expect(await admission.decide(USER)).toEqual({ admitted: false, reason: "limit", retryAfterSeconds: 7 });
    expect(refusals.of(USER)?.refusals).toBe(1);
    const fields = { userId: USER, managers: 2, limit: 2, effectiveLimit: 2 };
    expect(log.lines).toEqual([
      { level: "warn", event: FactoryEvent.resourceLimit, fields: { userId: USER, managers: 2, limit: 2 }, message: OutageMessage.resourceLimit(USER, 2, 2) },
      { level: "error", event: FactoryEvent.hardLimit, fields, message: `HARD LIMIT: User ${USER} still over limit after cleanup (2/2)` },
      { level: "error", event: FactoryEvent.error, fields, message: OutageMessage.factoryError(USER, 2) },
      {
        level: "warn",
        event: FactoryEvent.refused,
        fields: { userId: USER, reason: "limit", managers: 2, limit: 2 },
        message: `Connection for user ${USER} refused (limit), retry after 7 s`,
      },
    ]);
  });

  it("under a raise: admitted above the normal limit, told how long the raise lasts, logged with the count it will reach", async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const { registry, admission, log } = admissionHarness(clock, { limit: 2 });
    fill(registry, USER, 2);
    registry.setRaise(USER, { limit: 4, until: t0 + 30_000, queueTimeoutMs: 0 });
    clock.advance(1000);
    expect(await admission.decide(USER)).toEqual({ admitted: true, outcome: "degraded", notice: { mode: "degraded", retryAfterMs: 29_000 } });
    expect(registry.occupied(USER)).toBe(3);
    expect(log.lines.slice(1)).toEqual([
      {
        level: "info",
        event: FactoryEvent.degraded,
        fields: { userId: USER, managers: 3, limit: 2, effectiveLimit: 4 },
        message: `User ${USER} admitted above the normal limit under a temporary raise (3/4)`,
      },
    ]);
  });

  it("queued: logs the wait, admits when a slot frees with a queued notice, and logs how long it waited by the clock", async () => {
    const clock = new ManualClock();
    const { registry, queue, admission, log } = admissionHarness(clock, { limit: 1, queueTimeoutMs: 60_000 });
    registry.reserve(USER);
    const decision = admission.decide(USER);
    await eventually(() => queue.length(USER) === 1, 5000, "the request to queue");
    clock.advance(1234);
    registry.release(USER); // the slot frees; the waiter takes it
    expect(await decision).toEqual({ admitted: true, outcome: "queued", notice: { mode: "queued", retryAfterMs: 0 } });
    expect(registry.occupied(USER)).toBe(1);
    expect(log.lines.slice(1)).toEqual([
      {
        level: "info",
        event: FactoryEvent.queued,
        fields: { userId: USER, managers: 1, limit: 1, effectiveLimit: 1 },
        message: `User ${USER} at the limit: connection queued for up to 60000 ms`,
      },
      {
        level: "info",
        event: FactoryEvent.dequeued,
        fields: { userId: USER, managers: 1, limit: 1 },
        message: `User ${USER} admitted from the queue after 1234 ms`,
      },
    ]);
  });

  it("close writes the count of refusal lines left out so far and stops the window's timer", async () => {
    const clock = new ManualClock();
    const { registry, admission, log } = admissionHarness(clock, { limit: 1 });
    registry.reserve(USER);
    await admission.decide(USER);
    await admission.decide(USER); // its 4 lines (resource_limit, hard_limit, error, refused) are left out
    expect(log.lines).toHaveLength(4);
    expect(clock.timers).toBe(1);
    admission.close();
    expect(clock.timers).toBe(0);
    expect(log.lines.slice(4)).toEqual([
      {
        level: "warn",
        event: FactoryEvent.refusalsSuppressed,
        fields: { userId: USER, suppressed: 1, suppressedLines: 4 },
        message: `1 more refusal for user ${USER} in the last 1 s (4 log lines left out)`,
      },
    ]);
  });
});

describe("admission's clock: also its timers only when it has all four timer methods", () => {
  /** Two refusals (the second's lines left out), then a minute on `manual`: was the count written by the clock's timer? */
  async function windowEndsOnTheClock(manual: ManualClock, clock: Clock): Promise<{ timersOnClock: number; writtenByClock: boolean; writtenByClose: boolean }> {
    const { registry, admission, log } = admissionHarness(clock, { limit: 1 });
    registry.reserve(USER);
    expect(await admission.decide(USER)).toMatchObject({ admitted: false, reason: "limit" });
    expect(await admission.decide(USER)).toMatchObject({ admitted: false, reason: "limit" });
    const timersOnClock = manual.timers;
    manual.advance(60_000);
    const suppressed = (): number => log.lines.filter((l) => l.event === FactoryEvent.refusalsSuppressed).length;
    const writtenByClock = suppressed() === 1;
    admission.close();
    return { timersOnClock, writtenByClock, writtenByClose: !writtenByClock && suppressed() === 1 };
  }

  it("a ManualClock (a full Timers) ends the refusal window on itself", async () => {
    const manual = new ManualClock();
    expect(await windowEndsOnTheClock(manual, manual)).toEqual({ timersOnClock: 1, writtenByClock: true, writtenByClose: false });
  });

  it("a plain Clock gets real timers: its window does not end when the clock moves (close writes the count)", async () => {
    const manual = new ManualClock();
    expect(await windowEndsOnTheClock(manual, { now: () => manual.now() })).toEqual({ timersOnClock: 0, writtenByClock: false, writtenByClose: true });
  });

  it.each(["after", "every", "sleep", "timeout"] as const)("a clock with every timer method but %s is a plain Clock", async (missing) => {
    const manual = new ManualClock();
    const all: Timers = {
      now: () => manual.now(),
      after: (ms, fn) => manual.after(ms, fn),
      every: (ms, fn) => manual.every(ms, fn),
      sleep: (ms, signal) => manual.sleep(ms, signal),
      timeout: (ms) => manual.timeout(ms),
    };
    const partial: Partial<Timers> = { ...all };
    delete partial[missing];
    expect(Object.keys(partial).sort()).toHaveLength(4);
    expect(await windowEndsOnTheClock(manual, partial as Clock)).toEqual({ timersOnClock: 0, writtenByClock: false, writtenByClose: true });
  });
});

describe("Registry", () => {
  let pair: WsPair;
  let socket: WebSocket;

  beforeAll(async () => {
    pair = await wsPair();
    socket = pair.socket;
  });
  afterAll(() => pair.close());
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A real manager of `userId` (on the shared socket: the registry only keys managers by id). */
  const manager = (clock: Clock, userId: string): Manager => new Manager(userId, socket, clock);

  it("counts managers across users (size) as they are committed and removed; a commit without a reservation takes none away", () => {
    const clock = new ManualClock();
    const r = new Registry(5, clock);
    const a = manager(clock, "a");
    r.commit(a); // no reservation held
    expect([r.active("a"), r.occupied("a"), r.size]).toEqual([1, 1, 1]);
    r.reserve("b");
    r.reserve("b");
    r.commit(manager(clock, "b"));
    expect([r.active("b"), r.occupied("b"), r.size]).toEqual([1, 2, 2]);
    expect(r.remove(a)).toBe(true);
    expect(r.size).toBe(1);
  });

  it("release without a reservation changes nothing and frees no slot", () => {
    const clock = new ManualClock();
    const freed: string[] = [];
    const r = new Registry(5, clock, { slotFreed: (u) => freed.push(u) });
    expect(() => r.release("nobody")).not.toThrow();
    expect(r.userCount).toBe(0);
    r.commit(manager(clock, USER));
    r.release(USER);
    expect([r.active(USER), r.occupied(USER)]).toEqual([1, 1]);
    expect(freed).toEqual([]);
  });

  it("forgets a user only when no manager, no reservation and no raise are left", () => {
    const clock = new ManualClock();
    const forgotten: string[] = [];
    const r = new Registry(5, clock, { forgotten: (u) => forgotten.push(u) });
    // A manager leaves while a reservation is still held.
    r.reserve("a");
    r.reserve("a");
    const a = manager(clock, "a");
    r.commit(a);
    r.remove(a);
    expect([r.holds("a"), r.occupied("a")]).toEqual([true, 1]);
    // A reservation is given back while a manager is still registered.
    r.reserve("b");
    r.commit(manager(clock, "b"));
    r.reserve("b");
    r.release("b");
    expect([r.holds("b"), r.active("b"), r.occupied("b")]).toEqual([true, 1, 1]);
    // A reservation is given back while a raise is in force.
    const raise = { limit: 3, until: clock.now() + NEVER_MS, queueTimeoutMs: 0 };
    r.setRaise("c", raise);
    r.reserve("c");
    r.release("c");
    expect([r.holds("c"), r.raiseOf("c")]).toEqual([true, raise]);
    r.clearTimers();
    expect(forgotten).toEqual([]);
    r.release("a");
    expect(forgotten).toEqual(["a"]);
  });

  it("lists every user with its queued count, at most `max`; countAtLimit counts only users at their limit", () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const r = new Registry(2, clock);
    for (const [userId, n] of [["a", 2], ["b", 1], ["c", 1]] as const) {
      for (let i = 0; i < n; i++) {
        r.reserve(userId);
        r.commit(manager(clock, userId));
      }
    }
    const summary = (userId: string, active: number, queued: number): object => ({
      userId,
      active,
      limit: 2,
      effectiveLimit: 2,
      queued,
      atLimitSince: active >= 2 ? iso(t0) : null,
    });
    expect(r.summaries()).toEqual([summary("a", 2, 0), summary("b", 1, 0), summary("c", 1, 0)]);
    expect(r.summaries({ queued: (u) => (u === "b" ? 3 : 0) })).toEqual([summary("a", 2, 0), summary("b", 1, 3), summary("c", 1, 0)]);
    expect(r.summaries({ max: 1 })).toEqual([summary("a", 2, 0)]);
    expect(r.summaries({ max: 2 })).toEqual([summary("a", 2, 0), summary("b", 1, 0)]);
    expect(r.summaries({ atLimit: true })).toEqual([summary("a", 2, 0)]);
    expect(r.countAtLimit()).toBe(1);
  });

  it("allManagers yields every manager of every user", () => {
    const clock = new ManualClock();
    const r = new Registry(5, clock);
    const ms = [manager(clock, "a"), manager(clock, "b"), manager(clock, "a")];
    for (const m of ms) r.commit(m);
    expect(new Set(r.allManagers())).toEqual(new Set(ms));
    expect([...r.allManagers()]).toHaveLength(3);
  });

  // A raise ends on the timers of the registry's clock (timersOf): a ManualClock's own, moved by the test.
  it("a raise that replaces an earlier one is not ended by the earlier one's timer", () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const ended: [string, Raise][] = [];
    const r = new Registry(2, clock, { raiseEnded: (u, raise) => ended.push([u, raise]) });
    r.setRaise(USER, { limit: 3, until: t0 + 1000, queueTimeoutMs: 0 });
    const later = { limit: 4, until: t0 + 10_000, queueTimeoutMs: 0 };
    r.setRaise(USER, later);
    expect(clock.timers).toBe(1);
    clock.advance(5000);
    expect(ended).toEqual([]);
    expect(r.raiseOf(USER)).toEqual(later);
    clock.advance(4999);
    expect(ended).toEqual([]);
    clock.advance(1);
    expect(ended).toEqual([[USER, later]]);
    expect(r.holds(USER)).toBe(false);
  });

  it("clearTimers stops every raise from ending by its timer", () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const ended: string[] = [];
    const r = new Registry(2, clock, { raiseEnded: (u) => ended.push(u) });
    r.setRaise("a", { limit: 3, until: t0 + 1000, queueTimeoutMs: 0 });
    r.setRaise("b", { limit: 3, until: t0 + 2000, queueTimeoutMs: 0 });
    expect(clock.timers).toBe(2);
    r.clearTimers();
    expect(clock.timers).toBe(0);
    clock.advance(5000);
    expect(ended).toEqual([]);
    expect([r.holds("a"), r.holds("b")]).toEqual([true, true]);
  });

  it("a raise ends without a raiseEnded hook, and the user it alone kept is forgotten", () => {
    const clock = new ManualClock();
    const r = new Registry(2, clock);
    r.setRaise(USER, { limit: 3, until: clock.now() + 1000, queueTimeoutMs: 0 });
    expect(r.userCount).toBe(1);
    expect(() => clock.advance(1000)).not.toThrow();
    expect(r.userCount).toBe(0);
  });

  it("with a clock that keeps no time for waits, a raise ends on the real timers", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    let now = Date.parse("2026-11-26T12:00:00Z");
    const ended: string[] = [];
    const r = new Registry(2, { now: () => now }, { raiseEnded: (u) => ended.push(u) });
    r.setRaise(USER, { limit: 3, until: now + 1000, queueTimeoutMs: 0 });
    expect(vi.getTimerCount()).toBe(1);
    now += 1000;
    vi.advanceTimersByTime(999);
    expect(ended).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(ended).toEqual([USER]);
  });
});
