/**
 * Verification's rules, each pinned (issue 20: mutation testing found these
 * unpinned): how often it asks, when "admitted" has held long enough, what a
 * control API that errors makes of the answer, the user's own reconnects,
 * the canary, and an abort. The answers come over real HTTP from a real
 * factory, through a pass-through proxy that can answer 500 instead; time is
 * a stepping clock, so every wait verification asks for is recorded exactly.
 */
import { afterEach, describe, expect, it } from "vitest";
import { systemTimers, type Timers } from "../../src/contract/clock.js";
import type { ChatClient } from "../../src/demo/clients.js";
import { ControlClient } from "../../src/operator/act/control-client.js";
import { verifyUser, type VerifyOptions } from "../../src/operator/verify/verify.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { startFaultyControl, type FaultyControl } from "../support/faulty-control.js";
import { T0 } from "../support/rules.js";

let factory: TestFactory | undefined;
let proxy: FaultyControl | undefined;
const tabs: ChatClient[] = [];
afterEach(async () => {
  for (const tab of tabs.splice(0)) tab.destroy();
  await proxy?.close();
  await factory?.close();
  factory = proxy = undefined;
});

/** Time that moves only when verification sleeps: each wait is recorded, then taken at once. `onSleep` runs first. */
function steppingTimers(onSleep: (n: number) => void = () => undefined): Timers & { waits: number[] } {
  let t = T0;
  const waits: number[] = [];
  return {
    ...systemTimers,
    waits,
    now: () => t,
    sleep: (ms, signal) => {
      onSleep(waits.length);
      if (signal?.aborted === true) return Promise.resolve();
      waits.push(ms);
      t += ms;
      return Promise.resolve();
    },
  };
}

const isAdmission = (method: string, path: string): boolean => method === "GET" && path.endsWith("/admission");

/** A factory with 2 slots; "full" holds both. Verification asks through the proxy. */
async function setUp(): Promise<{ control: ControlClient; proxy: FaultyControl }> {
  factory = await startTestFactory({ limit: 2 });
  for (let i = 0; i < 2; i++) tabs.push(await factory.open("full"));
  proxy = await startFaultyControl(factory.controlUrl);
  return { control: new ControlClient(proxy.url, TEST_CONTROL_TOKEN), proxy };
}

const admissionChecks = (p: FaultyControl): number => p.requests.filter((r) => isAdmission(r.method, r.path)).length;

describe("verification: how often and how long", () => {
  it("asks every 50 ms by default while the user is not admitted, and says so at the timeout", async () => {
    const { control, proxy } = await setUp();
    const timers = steppingTimers();
    const v = await verifyUser(control, "full", timers, { settleMs: 100, timeoutMs: 500 });
    expect(timers.waits).toEqual(Array.from({ length: 10 }, () => 50));
    expect(admissionChecks(proxy)).toBe(11);
    expect(v).toMatchObject({ verified: false, heldMs: 0, durationMs: 500, detail: "not admitted (2/2, 0 queued)", admission: { admit: false, active: 2, effectiveLimit: 2 } });
    expect(v.unknown).toBeUndefined(); // the factory answered: "not admitted" is known, not a guess
  });

  it("asks every pollMs when given", async () => {
    const { control } = await setUp();
    const timers = steppingTimers();
    await verifyUser(control, "full", timers, { settleMs: 100, timeoutMs: 300, pollMs: 100 });
    expect(timers.waits).toEqual([100, 100, 100]);
  });

  it("while admitted, looks again when the settle time is up (never later than pollMs), and is verified once it held that long", async () => {
    const { control } = await setUp();
    const timers = steppingTimers();
    const v = await verifyUser(control, "free", timers, { settleMs: 120, timeoutMs: 10_000, pollMs: 50 });
    expect(timers.waits).toEqual([50, 50, 20]);
    expect(v).toMatchObject({ verified: true, heldMs: 120, durationMs: 120, detail: "admitted for 120 ms", canary: null, admission: { admit: true } });
  });

  it("while not admitted, waits pollMs even when the settle time is shorter", async () => {
    const { control } = await setUp();
    const timers = steppingTimers();
    await verifyUser(control, "full", timers, { settleMs: 10, timeoutMs: 100, pollMs: 50 });
    expect(timers.waits).toEqual([50, 50]);
  });

  it("admitted at the timeout but not for the settle time: not verified, and says so", async () => {
    const { control } = await setUp();
    const v = await verifyUser(control, "free", steppingTimers(), { settleMs: 1000, timeoutMs: 200, pollMs: 100 });
    expect(v).toMatchObject({ verified: false, heldMs: 200, detail: "admitted, but not for 1000 ms in a row" });
    expect(v.unknown).toBeUndefined();
  });

  it("admission must hold in a row: an answer lost in between starts the settle time again", async () => {
    const { control, proxy } = await setUp();
    // The second check meets a 500; the ones before and after are answered.
    const timers = steppingTimers((n) => n === 0 && proxy.fault("500", { times: 1, match: isAdmission }));
    const v = await verifyUser(control, "free", timers, { settleMs: 100, timeoutMs: 10_000, pollMs: 50 });
    expect(v.verified).toBe(true);
    expect(v.heldMs).toBe(100);
    expect(v.durationMs).toBe(200); // admitted at 0, lost at 50, admitted again from 100 to 200
    expect(timers.waits).toEqual([50, 50, 50, 50]);
  });
});

describe("verification: when the control API errors", () => {
  it("an error at the end makes the answer unknown, saying why: not a verdict the ladder may act on", async () => {
    const { control, proxy } = await setUp();
    proxy.fault("500", { match: isAdmission });
    const v = await verifyUser(control, "full", steppingTimers(), { settleMs: 100, timeoutMs: 200 });
    expect(v.verified).toBe(false);
    expect(v.unknown).toBe(true);
    expect(v.admission).toBeNull();
    expect(v.detail).toMatch(/^could not tell whether the user can connect: .*500/);
  });

  it("errors that stop before the end leave a known answer: the last one counts", async () => {
    const { control, proxy } = await setUp();
    proxy.fault("500", { times: 2, match: isAdmission });
    const v = await verifyUser(control, "full", steppingTimers(), { settleMs: 100, timeoutMs: 200 });
    expect(admissionChecks(proxy)).toBe(5);
    expect(v.verified).toBe(false);
    expect(v.unknown).toBeUndefined();
    expect(v.detail).toBe("not admitted (2/2, 0 queued)");
  });

  it("an abort ends verification at once as unknown, instead of running on to its timeout", async () => {
    const { control, proxy } = await setUp();
    const controller = new AbortController();
    const timers = steppingTimers((n) => n === 0 && controller.abort());
    const v = await verifyUser(control, "full", timers, { settleMs: 100, timeoutMs: 600_000, signal: controller.signal });
    expect(v.verified).toBe(false);
    expect(v.unknown).toBe(true);
    expect(timers.waits).toEqual([]); // the one sleep asked for was cut short by the abort
    expect(admissionChecks(proxy)).toBeLessThanOrEqual(2);
  });
});

describe("verification: the user's own reconnects and the canary", () => {
  it("a user who is not admitted is verified only when connections were admitted since the rung: none is not recovery", async () => {
    const { control } = await setUp();
    const none = await verifyUser(control, "full", steppingTimers(), { settleMs: 100, timeoutMs: 100, admittedSince: () => Promise.resolve(0) });
    expect(none).toMatchObject({ verified: false, detail: "not admitted (2/2, 0 queued)" });
    const two = await verifyUser(control, "full", steppingTimers(), { settleMs: 100, timeoutMs: 100, admittedSince: () => Promise.resolve(2) });
    expect(two).toMatchObject({
      verified: true,
      durationMs: 0,
      detail: "the user connected again by themselves: 2 connection(s) admitted since the rung now hold the freed slots",
    });
  });

  it("a count of reconnects that cannot be had makes the answer unknown", async () => {
    const { control } = await setUp();
    const v = await verifyUser(control, "full", steppingTimers(), { settleMs: 100, timeoutMs: 100, admittedSince: () => Promise.reject(new Error("boom")) });
    expect(v).toMatchObject({ verified: false, unknown: true, detail: "could not tell whether the user can connect: could not count the connections admitted since the rung: boom" });
  });

  it("the count of reconnects is asked only when the factory answered 'not admitted'", async () => {
    const { control, proxy } = await setUp();
    proxy.fault("500", { match: isAdmission });
    let asked = 0;
    const options: VerifyOptions = { settleMs: 100, timeoutMs: 100, admittedSince: () => Promise.resolve(++asked) };
    const v = await verifyUser(control, "full", steppingTimers(), options);
    expect(asked).toBe(0);
    expect(v.verified).toBe(false);
    const free = await verifyUser(control, "free", steppingTimers(), { ...options, settleMs: 0 });
    expect(asked).toBe(0);
    expect(free.unknown).toBe(true); // still 500: a free user is not told from an error either
  });

  it("with a canary, verified only when it answers; the detail says which way", async () => {
    const { control } = await setUp();
    const ok = await verifyUser(control, "free", steppingTimers(), { settleMs: 50, timeoutMs: 1000, canary: () => Promise.resolve({ ok: true, detail: "pong" }) });
    expect(ok).toMatchObject({ verified: true, detail: "admitted for 50 ms; canary answered", canary: { ok: true } });
    const failed = await verifyUser(control, "free", steppingTimers(), { settleMs: 50, timeoutMs: 1000, canary: () => Promise.resolve({ ok: false, detail: "no pong" }) });
    expect(failed).toMatchObject({ verified: false, detail: "admitted, but the canary failed: no pong", canary: { ok: false } });
    const back = await verifyUser(control, "full", steppingTimers(), {
      settleMs: 50,
      timeoutMs: 1000,
      admittedSince: () => Promise.resolve(1),
      canary: () => Promise.resolve({ ok: false, detail: "no pong" }),
    });
    expect(back.detail).toBe("the user connected again by themselves: 1 connection(s) admitted since the rung now hold the freed slots, but the canary failed: no pong");
  });
});
