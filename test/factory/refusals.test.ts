/**
 * "At the limit" is not "locked out": the factory says, per user, since when
 * they have been at their limit (`atLimitSince`), when it last refused them a
 * slot (`lastRefusedAt`) and how often (`refusals`), on every user view of the
 * control API. Real `ws` clients against a real factory on 127.0.0.1; the
 * factory's clock is a ManualClock, so every time asserted is exact.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Admission, REFUSAL_RETENTION_MS, UserList, UserState } from "../../src/contract/control.js";
import { FactoryEvent } from "../../src/contract/events.js";
import { isRefusal, type ChatClient, type Refusal } from "../../src/demo/clients.js";
import type { FactoryConfigInput } from "../../src/factory/config.js";
import { RefusalTracker } from "../../src/factory/refusals.js";
import { ManualClock } from "../support/clock.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

const BUSY = "busy.twenty-live-tabs";
const LOCKED = "locked.asked-for-a-21st";
const iso = (t: number): string => new Date(t).toISOString();

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

async function start(config: FactoryConfigInput = {}, clock?: ManualClock): Promise<TestFactory> {
  factory = await startTestFactory(config, clock === undefined ? {} : { clock });
  return factory;
}

async function openMany(f: TestFactory, userId: string, n: number): Promise<ChatClient[]> {
  const clients: ChatClient[] = [];
  for (let i = 0; i < n; i++) clients.push(await f.open(userId));
  return clients;
}

function refused(result: ChatClient | Refusal): Refusal {
  if (!isRefusal(result)) throw new Error("expected the connection to be refused");
  return result;
}

/** What each of the three user views says about the user's pressure; they must agree. */
async function pressure(f: TestFactory, userId: string): Promise<{ atLimitSince: string | null | undefined; lastRefusedAt: string | null | undefined; refusals: number | undefined }> {
  const state = UserState.parse((await f.control("GET", `/v1/users/${userId}`)).body);
  const admission = Admission.parse((await f.control("GET", `/v1/users/${userId}/admission`)).body);
  const all = UserList.parse((await f.control("GET", "/v1/users")).body);
  const pick = (v: { atLimitSince?: string | null; lastRefusedAt?: string | null; refusals?: number }): object => ({
    atLimitSince: v.atLimitSince,
    lastRefusedAt: v.lastRefusedAt,
    refusals: v.refusals,
  });
  const listed = all.users.find((u) => u.userId === userId);
  expect(pick(admission)).toEqual(pick(state));
  if (listed !== undefined) expect(pick(listed)).toEqual(pick(state));
  return { atLimitSince: state.atLimitSince, lastRefusedAt: state.lastRefusedAt, refusals: state.refusals };
}

describe("at the limit, and refused", () => {
  it("a user at 20/20 who never asks for a 21st: atLimitSince set, never refused", async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const f = await start({}, clock);
    await openMany(f, BUSY, 19);
    clock.advance(1000);
    await f.open(BUSY); // the 20th, one clock second later: at the limit from here

    const list = UserList.parse((await f.control("GET", "/v1/users?atLimit=true")).body);
    expect(list).toEqual({
      users: [{ userId: BUSY, active: 20, limit: 20, effectiveLimit: 20, queued: 0, atLimitSince: iso(t0 + 1000), lastRefusedAt: null, refusals: 0 }],
      asOf: iso(t0 + 1000),
    });
    clock.advance(60_000);
    expect(await pressure(f, BUSY)).toEqual({ atLimitSince: iso(t0 + 1000), lastRefusedAt: null, refusals: 0 });
    expect(UserList.parse((await f.control("GET", "/v1/users?atLimit=true")).body).asOf).toBe(iso(t0 + 61_000));
  });

  it("a refused 21st sets lastRefusedAt to that time and counts it; dropping below the limit clears atLimitSince", async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const f = await start({}, clock);
    const clients = await openMany(f, LOCKED, 20);

    clock.advance(5000);
    expect(refused(await f.attempt(LOCKED)).status).toBe(503);
    expect(await pressure(f, LOCKED)).toEqual({ atLimitSince: iso(t0), lastRefusedAt: iso(t0 + 5000), refusals: 1 });
    const [listed] = UserList.parse((await f.control("GET", "/v1/users?atLimit=true")).body).users;
    expect(listed).toMatchObject({ userId: LOCKED, atLimitSince: iso(t0), lastRefusedAt: iso(t0 + 5000), refusals: 1 });

    clock.advance(2000);
    refused(await f.attempt(LOCKED));
    expect(await pressure(f, LOCKED)).toEqual({ atLimitSince: iso(t0), lastRefusedAt: iso(t0 + 7000), refusals: 2 });

    // One tab closes: below the limit, so no longer "at the limit since"; the refusals stay on record.
    await clients[0]!.close();
    await eventually(() => f.registry.active(LOCKED) === 19, 5000, "the closed tab to be unregistered");
    expect(await pressure(f, LOCKED)).toEqual({ atLimitSince: null, lastRefusedAt: iso(t0 + 7000), refusals: 2 });

    // Back at the limit later: a new time at the limit, not the old one.
    clock.advance(3000);
    await f.open(LOCKED);
    expect(await pressure(f, LOCKED)).toEqual({ atLimitSince: iso(t0 + 10_000), lastRefusedAt: iso(t0 + 7000), refusals: 2 });
  });

  it("a degrade raise takes the user off the limit (atLimitSince null) until they fill it", async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const f = await start({ limit: 2 }, clock);
    await openMany(f, LOCKED, 2);
    expect((await pressure(f, LOCKED)).atLimitSince).toBe(iso(t0));
    expect((await f.control("POST", `/v1/users/${LOCKED}/rungs/degrade`, { limit: 3, ttlMs: 60_000 })).status).toBe(200);
    expect((await pressure(f, LOCKED)).atLimitSince).toBeNull();
    clock.advance(1000);
    await f.open(LOCKED);
    expect((await pressure(f, LOCKED)).atLimitSince).toBe(iso(t0 + 1000));
  });

  it("queue_full is a refusal; a wait ended by shutdown (aborted) is not", async () => {
    const f = await start({ limit: 2, queueTimeoutMs: 10_000, queueMax: 1 });
    await openMany(f, LOCKED, 2);
    const waiting = f.attempt(LOCKED);
    await eventually(() => f.events(FactoryEvent.queued, LOCKED).length === 1, 5000, "the first upgrade to queue");
    // The queue is full now: the next one is refused at once.
    expect(JSON.parse(refused(await f.attempt(LOCKED)).body)).toMatchObject({ error: { reason: "queue_full" } });
    expect(await pressure(f, LOCKED)).toMatchObject({ refusals: 1, lastRefusedAt: expect.any(String) });

    // Shutdown ends the wait (aborted inside the factory, 503 shutting_down on the wire): not a refusal of this user.
    await f.close();
    expect(refused(await waiting).status).toBe(503);
    expect(f.refusals.of(LOCKED)?.refusals).toBe(1);
  });

  it("a queue timeout is a refusal", async () => {
    const f = await start({ limit: 2, queueTimeoutMs: 200 });
    await openMany(f, LOCKED, 2);
    expect(JSON.parse(refused(await f.attempt(LOCKED)).body)).toMatchObject({ error: { reason: "queue_timeout" } });
    expect(await pressure(f, LOCKED)).toMatchObject({ refusals: 1, lastRefusedAt: expect.any(String) });
  });
});

describe("bounded memory", () => {
  it("a user who left keeps their record for the retention window, then it is dropped; one still connected keeps it", async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const f = await start({ limit: 2 }, clock);
    const gone = await openMany(f, LOCKED, 2);
    const staying = await openMany(f, BUSY, 2);
    refused(await f.attempt(LOCKED));
    refused(await f.attempt(BUSY));
    expect(f.refusals.size).toBe(2);

    for (const c of gone) await c.close();
    await eventually(() => !f.registry.holds(LOCKED), 5000, "the registry to forget the user who left");
    // Within the window the record outlives the user's managers: on-call can still see it.
    expect(await pressure(f, LOCKED)).toEqual({ atLimitSince: null, lastRefusedAt: iso(t0), refusals: 1 });

    clock.advance(REFUSAL_RETENTION_MS);
    expect(f.refusals.size).toBe(1);
    expect(await pressure(f, LOCKED)).toEqual({ atLimitSince: null, lastRefusedAt: null, refusals: 0 });
    // Still connected: their refusal stays on record past the window.
    expect(await pressure(f, BUSY)).toEqual({ atLimitSince: iso(t0), lastRefusedAt: iso(t0), refusals: 1 });

    // ... until they leave too: then nothing is kept for either user.
    for (const c of staying) await c.close();
    await eventually(() => !f.registry.holds(BUSY), 5000, "the registry to forget the second user");
    expect(f.refusals.size).toBe(0);
    expect(f.registry.userCount).toBe(0);
  });
});

describe("RefusalTracker", () => {
  it("holds at most maxRecent records of users it does not hold elsewhere, dropping the oldest refusal first", () => {
    const clock = new ManualClock();
    const held = new Set<string>(["c"]);
    const tracker = new RefusalTracker(clock, (u) => held.has(u), { maxRecent: 2, retentionMs: 60_000 });
    for (const u of ["a", "b", "c", "d", "e"]) {
      tracker.record(u);
      clock.advance(1000);
    }
    // a, b and c fell out of the two most recent (oldest first); the registry still holds c, so its record is kept.
    expect(["a", "b", "c", "d", "e"].map((u) => tracker.of(u)?.refusals ?? 0)).toEqual([0, 0, 1, 1, 1]);
    expect(tracker.size).toBe(3);
    tracker.forgotten("c");
    expect(tracker.size).toBe(2);
  });

  it("counts refusals since the record began, and begins again once a record was dropped", () => {
    const clock = new ManualClock();
    const tracker = new RefusalTracker(clock, () => false, { retentionMs: 60_000 });
    tracker.record("u");
    clock.advance(59_999);
    tracker.record("u");
    expect(tracker.of("u")).toEqual({ lastRefusedAt: clock.now(), refusals: 2 });
    clock.advance(60_000);
    expect(tracker.of("u")).toBeNull();
    tracker.record("u");
    expect(tracker.of("u")).toEqual({ lastRefusedAt: clock.now(), refusals: 1 });
  });

  it.each([
    [{ retentionMs: 0 }, "retentionMs"],
    [{ retentionMs: 1.5 }, "retentionMs"],
    [{ maxRecent: 0 }, "maxRecent"],
    [{ maxRecent: Number.NaN }, "maxRecent"],
  ])("rejects %j with a TypeError naming %s", (options, name) => {
    expect(() => new RefusalTracker(new ManualClock(), () => false, options)).toThrow(TypeError);
    expect(() => new RefusalTracker(new ManualClock(), () => false, options)).toThrow(name);
  });
});
