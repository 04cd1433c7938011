/**
 * Fault matrix, row 1: the control API refuses connections, hangs past the
 * rung timeout, answers 500, answers malformed JSON.
 *
 * A real factory (legacy cleanup, so a lockout stays a lockout) writes its log
 * file; the operator tails it and calls the factory through a misbehaving
 * HTTP server in front of its control API. For each fault: one incident per
 * lockout, never a second; the factory runs each rung at most once (a retry
 * after a lost answer is answered from the first run, ADR 13); and after the
 * fault the same operator remediates a new lockout.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { faultRule, lockOut, rungsRun } from "../support/fault-matrix.js";
import { startFaultyControl, type FaultyControl } from "../support/faulty-control.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const SLOTS = 3;

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let control: FaultyControl | undefined;
afterEach(async () => {
  await operator?.close();
  await control?.close();
  await factory?.close();
  operator = factory = control = undefined;
});

async function setUp(): Promise<{ factory: TestFactory; operator: TestOperator; control: FaultyControl }> {
  const dir = await tempDir("reclaim-fault1-");
  const logFile = join(dir, "factory.log");
  factory = await startTestFactory({ cleanup: "legacy", limit: SLOTS, probeTimeoutMs: 200, logFile, logLevel: "info" });
  control = await startFaultyControl(factory.controlUrl);
  operator = await startTestOperator({
    dir,
    source: `file:${logFile}`,
    control: control.url,
    rule: faultRule({ rungTimeout: "1s" }),
    ladder: { attempts: 3, backoffMs: [20, 50] },
  });
  return { factory, operator, control };
}


/** The row's invariants after the fault: one incident per user, and a new lockout is remediated through the healed API. */
async function stillServing(f: TestFactory, op: TestOperator, users: string[]): Promise<void> {
  const next = `after-${users[0]}`;
  await lockOut(f, next, SLOTS);
  const incident = await op.ended(next);
  expect(incident.status).toBe("resolved");
  expect(rungsRun(f, next)).toEqual(["probe"]);
  const all = await op.incidents();
  expect(all.map((i) => i.target.userId).sort()).toEqual([...users, next].sort());
}

describe("fault matrix, row 1: the control API misbehaves", () => {
  it("refuses connections: the incident fails after bounded retries, nothing ran; once it listens again, the next lockout is resolved", async () => {
    const { factory: f, operator: op, control: c } = await setUp();
    await c.refuse();
    await lockOut(f, "refused", SLOTS);
    const incident = await op.ended("refused");
    expect(incident.status).toBe("failed");
    expect(incident.rungs).toMatchObject([{ rung: "probe", outcome: "error", attempts: 3 }]);
    expect(incident.rungs[0]!.error).toMatch(/ECONNREFUSED|fetch failed/);
    expect(rungsRun(f, "refused")).toEqual([]);
    await c.accept();
    await stillServing(f, op, ["refused"]);
  });

  it("hangs past the rung timeout after the factory ran the rung: the retry gets that run's result, the rung does not run twice", async () => {
    const { factory: f, operator: op, control: c } = await setUp();
    c.fault("hang-after", { times: 1 });
    await lockOut(f, "hung", SLOTS);
    const incident = await op.ended("hung");
    expect(incident.status).toBe("resolved");
    expect(incident.rungs).toMatchObject([{ rung: "probe", outcome: "ok", attempts: 2, result: { removed: expect.any(Array) } }]);
    expect(incident.rungs[0]!.result!.removed).toHaveLength(SLOTS);
    expect(incident.decisions.find((d) => d.kind === "retry")?.detail).toMatch(/timed out after 1000 ms/);
    expect(incident.decisions.find((d) => d.kind === "rung_finished")?.detail).toContain("not run again");
    expect(c.rungCalls().map((r) => [r.fault, r.forwarded])).toEqual([
      ["hang-after", true],
      ["pass", true],
    ]);
    expect(rungsRun(f, "hung")).toEqual(["probe"]); // two calls reached the factory; it ran the probe once
    await stillServing(f, op, ["hung"]);
  });

  it("hangs every time: the incident fails as a timeout after bounded attempts, nothing ran; the operator keeps serving", async () => {
    const { factory: f, operator: op, control: c } = await setUp();
    c.fault("hang");
    await lockOut(f, "hangs", SLOTS);
    const incident = await op.ended("hangs");
    expect(incident.status).toBe("failed");
    expect(incident.rungs).toMatchObject([{ rung: "probe", outcome: "timeout", attempts: 3 }]);
    expect(rungsRun(f, "hangs")).toEqual([]);
    c.fault("pass");
    await stillServing(f, op, ["hangs"]);
  });

  it("answers 500 after the factory ran the rung: retried with the same key, answered from the first run, resolved", async () => {
    const { factory: f, operator: op, control: c } = await setUp();
    c.fault("500-after", { times: 1 });
    await lockOut(f, "five-hundred", SLOTS);
    const incident = await op.ended("five-hundred");
    expect(incident.status).toBe("resolved");
    expect(incident.rungs).toMatchObject([{ rung: "probe", outcome: "ok", attempts: 2, response: { status: 200 } }]);
    expect(incident.rungs[0]!.result!.removed).toHaveLength(SLOTS);
    expect(rungsRun(f, "five-hundred")).toEqual(["probe"]);
    await stillServing(f, op, ["five-hundred"]);
  });

  it("answers 500 every time: failed with the cause after bounded attempts, nothing ran; the operator keeps serving", async () => {
    const { factory: f, operator: op, control: c } = await setUp();
    c.fault("500");
    await lockOut(f, "always-500", SLOTS);
    const incident = await op.ended("always-500");
    expect(incident.status).toBe("failed");
    expect(incident.rungs).toMatchObject([{ rung: "probe", outcome: "error", attempts: 3, response: { status: 500 } }]);
    expect(incident.rungs[0]!.error).toContain("internal: injected 500");
    expect(rungsRun(f, "always-500")).toEqual([]);
    c.fault("pass");
    await stillServing(f, op, ["always-500"]);
  });

  it.each([
    ["garbage", 0],
    ["garbage-after", 1],
  ] as const)(
    "answers malformed JSON (%s): not retried, failed with the body kept for on-call; the rung ran at most once; the operator keeps serving",
    async (fault, runs) => {
      const { factory: f, operator: op, control: c } = await setUp();
      const user = `malformed-${runs}`;
      c.fault(fault, { times: 1 });
      await lockOut(f, user, SLOTS);
      const incident = await op.ended(user);
      expect(incident.status).toBe("failed");
      expect(incident.rungs).toMatchObject([{ rung: "probe", outcome: "error", attempts: 1, response: { status: 200 } }]);
      expect(incident.rungs[0]!.error).toContain("malformed JSON");
      expect(typeof incident.rungs[0]!.response!.body).toBe("string"); // what came back, for on-call
      expect(incident.followUps.join(" ")).toContain("control API");
      expect(rungsRun(f, user)).toHaveLength(runs);
      await stillServing(f, op, [user]);
    },
  );
});
