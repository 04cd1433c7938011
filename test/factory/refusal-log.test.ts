/**
 * The log cannot be flooded: one user's refused attempts write the first
 * at-limit attempt's and the first refusal's lines per minute word for word
 * (HARD LIMIT and UNEXPECTED FACTORY ERROR among them, so the operator's rule
 * still fires), and one count of what was left out when the minute ends.
 * Real `ws` clients against a real factory on 127.0.0.1; the factory's clock
 * is a ManualClock, so the test moves the windows' end.
 */
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { Timers } from "../../src/contract/clock.js";
import { FactoryEvent, FactoryLogLine, OutageMessage } from "../../src/contract/events.js";
import { isRefusal, type ChatClient, type Refusal } from "../../src/demo/clients.js";
import { createEventLog } from "../../src/factory/log.js";
import { RefusalLog } from "../../src/factory/refusal-log.js";
import { replay, type ReplayReport } from "../../src/operator/replay.js";
import { loadRules } from "../../src/operator/rules/load.js";
import { normalize, type LogEvent } from "../../src/operator/sources/event.js";
import { ManualClock } from "../support/clock.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

const FLOODER = "flooder.retries-in-a-loop";
const OTHER = "other.locked-out-too";
const POD = "test-factory-0";
const LOCKOUT_RULE = fileURLToPath(new URL("../../rules/factory-lockout.yaml", import.meta.url));

/** The lines one refused attempt at 20/20 writes, in order, when it is the first of its window (ladder conservative, probe). */
const FIRST_ATTEMPT = [
  FactoryEvent.resourceLimit,
  FactoryEvent.cleanup,
  FactoryEvent.cleanup,
  FactoryEvent.hardLimit,
  FactoryEvent.error,
  FactoryEvent.refused,
];

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

async function fill(f: TestFactory, userId: string): Promise<ChatClient[]> {
  const clients: ChatClient[] = [];
  for (let i = 0; i < 20; i++) clients.push(await f.open(userId));
  return clients;
}

function refused(result: ChatClient | Refusal): Refusal {
  if (!isRefusal(result)) throw new Error("expected the connection to be refused");
  return result;
}

/**
 * `n` refused attempts, `parallel` at a time (default 1: one after the other,
 * so that each runs its own in-process cleanup; attempts at the same time
 * share one).
 */
async function refuseMany(f: TestFactory, userId: string, n: number, parallel = 1): Promise<void> {
  let left = n;
  const worker = async (): Promise<void> => {
    while (left > 0) {
      left--;
      expect(refused(await f.attempt(userId)).status).toBe(503);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** The lines written since `from`, parsed and checked against the contract. */
function since(f: TestFactory, from: number): FactoryLogLine[] {
  return f.lines.slice(from).map((l) => FactoryLogLine.parse(l));
}

async function metric(f: TestFactory, name: string, labels: string): Promise<number> {
  const text = await f.metrics.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

function expectFirstAttempt(lines: FactoryLogLine[], userId: string): void {
  expect(lines.map((l) => l.event)).toEqual(FIRST_ATTEMPT);
  expect(lines.every((l) => l.userId === userId)).toBe(true);
  const [resourceLimit, , , hardLimit, error, refusal] = lines;
  // Word for word: log-based alerts written for the old factory still match.
  expect(resourceLimit).toMatchObject({ severity: "WARNING", message: OutageMessage.resourceLimit(userId, 20, 20) });
  expect(hardLimit).toMatchObject({ severity: "ERROR", message: OutageMessage.hardLimit(userId, 20, 20), managers: 20, limit: 20 });
  expect(error).toMatchObject({ severity: "ERROR", message: OutageMessage.factoryError(userId, 20) });
  expect(refusal).toMatchObject({ severity: "WARNING", reason: "limit" });
}

describe("one user's refused attempts", () => {
  it("1,000 of them, 10 at a time, write the first attempt's 6 lines word for word, then one count when the minute ends, although the user stopped", { timeout: 90_000 }, async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({}, { clock });
    await fill(factory, FLOODER);
    const before = factory.lines.length;

    await refuseMany(factory, FLOODER, 1000, 10);

    expectFirstAttempt(since(factory, before), FLOODER);
    // Every refusal still counts where it is read as a number.
    expect(await metric(factory, "reclaim_factory_admissions_total", 'outcome="refused"')).toBe(1000);
    expect((await factory.control("GET", `/v1/users/${FLOODER}`)).body).toMatchObject({ refusals: 1000 });
    const suppressed = (event: string): Promise<number> => metric(factory!, "reclaim_factory_log_lines_suppressed_total", `event="${event}"`);
    expect(await suppressed(FactoryEvent.resourceLimit)).toBe(999);
    // Two rungs (conservative, probe) per cleanup run; attempts that came while one ran joined it.
    const cleanups = await suppressed(FactoryEvent.cleanup);
    expect(cleanups % 2).toBe(0);
    expect(cleanups).toBeLessThanOrEqual(2 * 999);
    expect(await suppressed(FactoryEvent.hardLimit)).toBe(999);
    expect(await suppressed(FactoryEvent.error)).toBe(999);
    expect(await suppressed(FactoryEvent.refused)).toBe(999);

    // The user gives up. Nothing more is written until their minute ends; then exactly one line.
    clock.advance(59_999);
    expect(factory.lines.length).toBe(before + FIRST_ATTEMPT.length);
    clock.advance(1);
    await eventually(() => factory!.lines.length === before + FIRST_ATTEMPT.length + 1, 5000, "the count of what was left out");
    const [count] = since(factory, before + FIRST_ATTEMPT.length);
    expect(count).toMatchObject({
      event: FactoryEvent.refusalsSuppressed,
      severity: "WARNING",
      userId: FLOODER,
      suppressed: 999,
      suppressedLines: 4 * 999 + cleanups,
      pod: POD,
      message: `999 more refusals for user ${FLOODER} in the last 60 s (${4 * 999 + cleanups} log lines left out)`,
    });
    expect(clock.timers).toBe(0); // nothing left armed, no state left
    clock.advance(30_000); // (not past the conservative rung's idle cutoff, 180 s: the tabs must stay)
    expect(factory.lines.length).toBe(before + FIRST_ATTEMPT.length + 1);

    // A new minute: the next refusal is written in full again.
    const next = factory.lines.length;
    await refuseMany(factory, FLOODER, 1);
    expectFirstAttempt(since(factory, next), FLOODER);
  });

  it("leave out a repeated cleanup that freed nothing, but write one that removed a zombie, even inside the minute", async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({ probeTimeoutMs: 300 }, { clock });
    const tabs = await fill(factory, FLOODER);
    await refuseMany(factory, FLOODER, 1);

    // One live tab goes, a tab that never answers a ping takes its slot: the next attempt's probe removes it.
    await tabs[0]!.close();
    await eventually(() => factory!.registry.active(FLOODER) === 19, 5000, "the closed tab to be unregistered");
    await factory.open(FLOODER, "no-pong");
    const before = factory.lines.length;
    await factory.open(FLOODER);
    // The evicted zombie's socket closes after its close handshake, before or after the new tab's welcome: wait for it.
    await eventually(() => since(factory!, before).some((l) => l.userId === FLOODER && l.event === FactoryEvent.connectionClosed), 5000, "the zombie's close");

    const written = since(factory, before).filter((l) => l.userId === FLOODER && l.event !== FactoryEvent.connectionOpened);
    // Not written: resource_limit and the conservative rung that removed nothing. Written: the probe's removal (and the close it caused).
    expect(written.map((l) => [l.event, l.rung, l.removed])).toEqual([
      [FactoryEvent.zombie, undefined, undefined],
      [FactoryEvent.cleanup, "probe", 1],
      [FactoryEvent.connectionClosed, undefined, undefined],
    ]);
    clock.advance(60_000);
    await eventually(() => factory!.events(FactoryEvent.refusalsSuppressed).length === 1, 5000, "the count");
    expect(factory.events(FactoryEvent.refusalsSuppressed)[0]).toMatchObject({
      suppressed: 0,
      suppressedLines: 2,
      message: `0 more refusals for user ${FLOODER} in the last 60 s (2 log lines left out)`,
    });
  });

  it("do not touch another user's lines: each user has their own minute and their own count", async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({}, { clock });
    await fill(factory, FLOODER);
    await fill(factory, OTHER);

    const before = factory.lines.length;
    await refuseMany(factory, FLOODER, 50);
    expectFirstAttempt(since(factory, before), FLOODER);

    clock.advance(10_000);
    const other = factory.lines.length;
    await refuseMany(factory, OTHER, 2);
    expectFirstAttempt(since(factory, other), OTHER);
    await refuseMany(factory, FLOODER, 5);
    expect(factory.lines.length).toBe(other + FIRST_ATTEMPT.length);

    // The flooder's minute ends first (it began 10 s earlier); the other user's count follows at theirs.
    clock.advance(50_000);
    await eventually(() => factory!.events(FactoryEvent.refusalsSuppressed).length === 1, 5000, "the flooder's count");
    expect(factory.events(FactoryEvent.refusalsSuppressed)).toMatchObject([
      { userId: FLOODER, suppressed: 54, suppressedLines: 6 * 54, message: `54 more refusals for user ${FLOODER} in the last 60 s (324 log lines left out)` },
    ]);
    clock.advance(10_000);
    await eventually(() => factory!.events(FactoryEvent.refusalsSuppressed).length === 2, 5000, "the other user's count");
    expect(factory.events(FactoryEvent.refusalsSuppressed)[1]).toMatchObject({
      userId: OTHER,
      suppressed: 1,
      suppressedLines: 6,
      message: `1 more refusal for user ${OTHER} in the last 60 s (6 log lines left out)`,
    });
  });

  it("leave the operator's detection as it was: the shipped lockout rule opens the same incident for each user from the written lines", async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({}, { clock });
    await fill(factory, FLOODER);
    await fill(factory, OTHER);
    await refuseMany(factory, FLOODER, 300);
    await refuseMany(factory, OTHER, 1);
    await refuseMany(factory, FLOODER, 300);

    const { rules, errors } = await loadRules([LOCKOUT_RULE]);
    expect(errors).toEqual([]);
    const detect = (): Promise<ReplayReport> =>
      replay(
        rules.map((r) => r.compiled),
        factory!.raw.map((line) => normalize(JSON.parse(line))).filter((e): e is LogEvent => e !== null),
      );
    const firstHardLimit = (userId: string): string => String(factory!.events(FactoryEvent.hardLimit, userId)[0]!.time);
    const incident = (userId: string): unknown[] => [
      "factory-lockout",
      { userId, pod: POD },
      firstHardLimit(userId),
      firstHardLimit(userId),
      "act",
      ["probe", "force", "degrade"],
      `Chat lockout: user ${userId} at 20/20 on ${POD}`,
    ];
    const expectDetection = (report: ReplayReport): void => {
      // One incident per user, opened by their first HARD LIMIT line, as when every refusal was written.
      expect(report.incidents.map((i) => [i.rule, i.key, i.at, i.firstEntryAt, i.action, i.rungs, i.title])).toEqual([incident(FLOODER), incident(OTHER)]);
      // What the rule matched: HARD LIMIT and UNEXPECTED FACTORY ERROR once per user, not 600 times for the flooder.
      expect(report.matched).toBe(4);
    };
    expectDetection(await detect());

    // The count written when the flooder's minute ends matches no rule.
    clock.advance(60_000);
    await eventually(() => factory!.events(FactoryEvent.refusalsSuppressed).length === 1, 5000, "the flooder's count");
    expectDetection(await detect());
  });
});

describe("RefusalLog bounds", () => {
  function captured(): { log: ReturnType<typeof createEventLog>; lines: Record<string, unknown>[] } {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString("utf8").split("\n")) if (line !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    return { log: createEventLog({ pod: POD, streams: [sink] }), lines };
  }

  function refuseTwice(limiter: RefusalLog, userId: string): void {
    for (let i = 0; i < 2; i++) limiter.refused(userId).error(FactoryEvent.hardLimit, { userId }, OutageMessage.hardLimit(userId, 20, 20));
  }

  it("holds at most maxUsers open windows: one more ends the oldest early, with its count and the time it really covered", () => {
    const clock = new ManualClock();
    const { log, lines } = captured();
    const limiter = new RefusalLog(log, clock, null, { maxUsers: 3 });
    for (const u of ["u1", "u2", "u3"]) {
      refuseTwice(limiter, u);
      clock.advance(5000);
    }
    expect(limiter.size).toBe(3);
    refuseTwice(limiter, "u4");
    expect(limiter.size).toBe(3);
    expect(lines.filter((l) => l.event === FactoryEvent.refusalsSuppressed)).toMatchObject([
      { userId: "u1", suppressed: 1, suppressedLines: 1, message: "1 more refusal for user u1 in the last 15 s (1 log line left out)" },
    ]);
    expect(clock.timers).toBe(1); // one timer for all the windows
    clock.advance(60_000);
    expect(limiter.size).toBe(0);
    expect(lines.filter((l) => l.event === FactoryEvent.refusalsSuppressed).map((l) => l.userId)).toEqual(["u1", "u2", "u3", "u4"]);
    expect(clock.timers).toBe(0);
  });

  it("close() writes every count now and leaves no timer behind", () => {
    const clock = new ManualClock();
    const { log, lines } = captured();
    const limiter = new RefusalLog(log, clock, null);
    refuseTwice(limiter, "u1");
    clock.advance(2500);
    limiter.close();
    expect(clock.timers).toBe(0);
    expect(lines.filter((l) => l.event === FactoryEvent.refusalsSuppressed)).toMatchObject([
      { userId: "u1", suppressed: 1, message: "1 more refusal for user u1 in the last 3 s (1 log line left out)" },
    ]);
    // Closed: nothing would write a count any more, so lines are written as they come.
    refuseTwice(limiter, "u1");
    expect(lines.filter((l) => l.event === FactoryEvent.hardLimit)).toHaveLength(3);
  });

  it("a clock that goes back ends the window: the user's next HARD LIMIT is not held back by the jump", () => {
    const clock = new ManualClock();
    let skew = 0;
    const timers: Timers = {
      now: () => clock.now() - skew,
      sleep: (ms, signal) => clock.sleep(ms, signal),
      timeout: (ms) => clock.timeout(ms),
      after: (ms, fn) => clock.after(ms, fn),
      every: (ms, fn) => clock.every(ms, fn),
    };
    const { log, lines } = captured();
    const limiter = new RefusalLog(log, timers, null);
    refuseTwice(limiter, "u1");
    skew = 3_600_000; // an NTP step back by an hour
    refuseTwice(limiter, "u1");
    expect(lines.map((l) => l.event)).toEqual([
      FactoryEvent.hardLimit,
      FactoryEvent.refusalsSuppressed, // the first window, ended by the jump
      FactoryEvent.hardLimit,
    ]);
  });

  it.each([
    ["windowMs", { windowMs: 999 }],
    ["windowMs", { windowMs: 3_600_001 }],
    ["maxUsers", { maxUsers: 0 }],
  ])("refuses a bad %s with a TypeError that names it", (name, options) => {
    expect(() => new RefusalLog(captured().log, new ManualClock(), null, options)).toThrow(TypeError);
    expect(() => new RefusalLog(captured().log, new ManualClock(), null, options)).toThrow(name);
  });
});
