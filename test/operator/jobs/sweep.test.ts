/**
 * The sweep against real factories: users put at their limit with real
 * WebSocket clients, asked over the real control API. It must raise exactly
 * one trigger per user at the limit, count a factory that does not answer
 * without failing, and go through the real engine (guards, a persisted
 * incident) when given one.
 */
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Clock } from "../../../src/contract/clock.js";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import { Detector, type Trigger } from "../../../src/operator/detect/detector.js";
import { Engine, type Actor, type TriggerOutcome } from "../../../src/operator/decide/engine.js";
import { GuardState } from "../../../src/operator/decide/guards.js";
import { MemoryIncidentStore } from "../../../src/operator/incidents/memory-store.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { Scheduler } from "../../../src/operator/jobs/scheduler.js";
import { SweepJob, SweepRuleError, formatSweep } from "../../../src/operator/jobs/sweep.js";
import type { OperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { StaticTarget, type Target } from "../../../src/operator/act/target.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";
import { rule as buildRule } from "../../support/rules.js";

const LOCKED = "105945141827451681156";
const BUSY = "user-with-three-tabs";
const SMALL_LOCKED = "small-limit-user";
const NOW = Date.parse("2026-11-26T12:00:00Z");
const clock: Clock = { now: () => NOW };
const silent: OperatorLog = { debug() {}, info() {}, warn() {}, error() {}, close: () => Promise.resolve() };

let big: TestFactory;
let small: TestFactory;
let deadUrl: string;
const sweepRule = buildRule("factory-users-at-limit");
const rules = new Map<string, CompiledRule>([[sweepRule.name, sweepRule]]);

beforeAll(async () => {
  // The outage: one user at 20/20 with real clients, another with 3 tabs (not at the limit).
  big = await startTestFactory({}, { pod: "factory-big-0" });
  for (let i = 0; i < 20; i++) await big.open(LOCKED);
  for (let i = 0; i < 3; i++) await big.open(BUSY);
  // A second factory with a limit of 2: its user at 2/2.
  small = await startTestFactory({ limit: 2 }, { pod: "factory-small-0" });
  for (let i = 0; i < 2; i++) await small.open(SMALL_LOCKED);
  await eventually(async () => (await big.control("GET", "/v1/users?atLimit=true")).body.users.length === 1, 5000, "the user at 20/20");
  await eventually(async () => (await small.control("GET", "/v1/users?atLimit=true")).body.users.length === 1, 5000, "the user at 2/2");
  // A port nothing listens on any more: connection refused.
  deadUrl = await new Promise<string>((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") return reject(new Error("no port"));
      server.close(() => resolve(`http://127.0.0.1:${address.port}`));
    });
  });
});

afterAll(async () => {
  await big?.close();
  await small?.close();
});

function target(url: string, pod: string | null): Target {
  return { control: new ControlClient(url, TEST_CONTROL_TOKEN), pod, namespace: pod === null ? null : "reclaim" };
}

function allTargets(): Target[] {
  return [target(big.controlUrl, "factory-big-0"), target(small.controlUrl, "factory-small-0"), target(deadUrl, "factory-gone-0")];
}

describe("sweep against real factories", () => {
  it("raises exactly one trigger per user at their limit, and counts the factory that does not answer", async () => {
    const triggers: Trigger[] = [];
    const job = new SweepJob({
      targets: () => Promise.resolve(allTargets()),
      rule: (name) => rules.get(name),
      onTrigger: (t): Promise<TriggerOutcome> => {
        triggers.push(t);
        return Promise.resolve({ suppressed: "cooldown", incident: null });
      },
      clock,
      timeoutMs: 2000,
    });

    const result = await job.sweep();
    expect(result).toMatchObject({ factories: 3, usersAtLimit: 2, triggers: 2, acted: 0, suppressed: { cooldown: 2 }, invalidUsers: 0, aborted: false });
    expect(result.unreachable).toHaveLength(1);
    expect(result.unreachable[0]).toMatchObject({ control: deadUrl, pod: "factory-gone-0" });
    expect(result.unreachable[0]!.error).toContain("failed");

    const seen = triggers.map((t) => ({ rule: t.rule.name, userId: t.userId, pod: t.pod, namespace: t.namespace, keyString: t.keyString, at: t.at }));
    expect(seen.sort((a, b) => a.userId.localeCompare(b.userId))).toEqual([
      { rule: "factory-users-at-limit", userId: LOCKED, pod: "factory-big-0", namespace: "reclaim", keyString: `userId=${LOCKED},pod=factory-big-0`, at: NOW },
      { rule: "factory-users-at-limit", userId: SMALL_LOCKED, pod: "factory-small-0", namespace: "reclaim", keyString: `userId=${SMALL_LOCKED},pod=factory-small-0`, at: NOW },
    ]);
    const locked = triggers.find((t) => t.userId === LOCKED)!;
    expect(locked.entries).toHaveLength(1);
    expect(locked.entries[0]).toMatchObject({
      event: "reclaim.sweep",
      time: NOW,
      fields: { managers: 20, limit: 20, effectiveLimit: 20, userId: LOCKED, pod: "factory-big-0", control: big.controlUrl },
    });
    expect(locked.entries[0]!.message).toContain(`user ${LOCKED} at 20/20`);

    // The outcome line, as the scheduler records it.
    expect(formatSweep(result)).toBe(`3 factories, 2 users at their limit, 2 triggers: 0 acted, 2 suppressed (cooldown 2) (1 factory unreachable: factory-gone-0)`);
    expect(await job.run()).toBe(formatSweep(result));
  });

  it("goes through the real engine: an incident persisted for the locked-out user, then the next sweep suppressed as in flight", async () => {
    const control = new ControlClient(big.controlUrl, TEST_CONTROL_TOKEN);
    const store = new MemoryIncidentStore();
    const acted: Incident[] = [];
    const actor: Actor = { act: (incident) => acted.push(incident) };
    const engine = new Engine({
      detector: new Detector({ now: () => clock.now() }),
      guards: new GuardState(),
      store,
      targets: new StaticTarget(control),
      actor,
      clock,
      metrics: new OperatorMetrics({ defaultMetrics: false }),
      log: silent,
      dryRun: false,
    });
    engine.setRules([sweepRule]);
    // Static mode: the one factory of --control, no pod name.
    const job = new SweepJob({ targets: () => Promise.resolve([{ control, pod: null, namespace: null }]), rule: (n) => rules.get(n), onTrigger: (t) => engine.onTrigger(t), clock });

    expect(await job.run()).toBe("1 factory, 1 user at their limit, 1 trigger: 1 acted, 0 suppressed");
    const [incident] = await store.list();
    expect(incident).toMatchObject({ rule: "factory-users-at-limit", status: "open", target: { userId: LOCKED, pod: null, control: big.controlUrl } });
    expect(incident!.evidence.entries[0]).toMatchObject({ event: "reclaim.sweep", fields: { managers: 20, limit: 20 } });
    expect(acted.map((i) => i.id)).toEqual([incident!.id]);

    // Still remediating (the actor never finished it): the next sweep is recorded on it, not acted on.
    expect(await job.run()).toBe("1 factory, 1 user at their limit, 1 trigger: 0 acted, 1 suppressed (in_flight 1)");
    expect(acted).toHaveLength(1);
    expect((await store.get(incident!.id))!.suppressed.in_flight).toMatchObject({ count: 1 });
  });

  it("fails the run (code ERR_RECLAIM_SWEEP_RULE) when the sweep rule is not loaded, before asking any factory", async () => {
    let asked = 0;
    const job = new SweepJob({
      ruleName: "renamed-rule",
      targets: () => {
        asked++;
        return Promise.resolve(allTargets());
      },
      rule: (name) => rules.get(name),
      onTrigger: () => Promise.reject(new Error("not called")),
      clock,
    });
    await expect(job.sweep()).rejects.toMatchObject({ code: "ERR_RECLAIM_SWEEP_RULE", rule: "renamed-rule" });
    await expect(job.sweep()).rejects.toBeInstanceOf(SweepRuleError);
    expect(asked).toBe(0);

    // Through the scheduler: a recorded failure with the reason.
    const report = await new Scheduler([job]).runNow("sweep");
    expect(report).toMatchObject({ result: "error", message: 'the sweep rule "renamed-rule" is not loaded: no sweep triggers were raised' });
  });

  it("a failing target list fails the run; every factory unreachable does not", async () => {
    const failing = new SweepJob({ targets: () => Promise.reject(new Error("pods: 403 forbidden")), rule: (n) => rules.get(n), onTrigger: () => Promise.reject(new Error("no")), clock });
    await expect(failing.run()).rejects.toThrow("pods: 403 forbidden");

    const none = new SweepJob({
      targets: () => Promise.resolve([target(deadUrl, null), target(deadUrl, "duplicate-of-the-same-url")]),
      rule: (n) => rules.get(n),
      onTrigger: () => Promise.reject(new Error("no")),
      clock,
    });
    // Two targets with one control URL are asked once.
    expect(await none.run()).toBe(`1 factory, 0 users at their limit, 0 triggers (1 factory unreachable: ${deadUrl})`);
  });

  it("asks nothing when this replica is not the leader", async () => {
    let asked = 0;
    const job = new SweepJob({
      targets: () => {
        asked++;
        return Promise.resolve(allTargets());
      },
      rule: (n) => rules.get(n),
      onTrigger: () => Promise.reject(new Error("no")),
      clock,
      isLeader: () => false,
    });
    expect(await job.run()).toBe("not the leader: nothing swept");
    expect(asked).toBe(0);
  });

  it("stops raising triggers once the scheduler stops (its signal is aborted)", async () => {
    const abort = new AbortController();
    abort.abort();
    const triggers: Trigger[] = [];
    const job = new SweepJob({
      targets: () => Promise.resolve(allTargets()),
      rule: (n) => rules.get(n),
      onTrigger: (t) => {
        triggers.push(t);
        return Promise.resolve({ suppressed: "cooldown", incident: null });
      },
      clock,
    });
    const result = await job.sweep(abort.signal);
    expect(result).toMatchObject({ usersAtLimit: 2, triggers: 0, aborted: true });
    expect(triggers).toHaveLength(0);
    expect(formatSweep(result)).toContain("stopped early");
  });
});
