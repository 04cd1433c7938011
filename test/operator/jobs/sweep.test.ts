/**
 * The sweep against real factories: users put at their limit with real
 * WebSocket clients, asked over the real control API. It must raise exactly
 * one trigger per user the factory is REFUSING (never for a user who is only
 * at the limit, nor for one an older factory cannot say about), date it from
 * when the user reached the limit, count a factory that does not answer
 * without failing, and go through the real engine (guards, a persisted
 * incident) when given one.
 */
import { createServer as createHttpServer, type Server } from "node:http";
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
import {
  DEFAULT_SWEEP_REFUSED_WITHIN_MS,
  MAX_SWEEP_REFUSED_WITHIN_MS,
  MIN_SWEEP_REFUSED_WITHIN_MS,
  SweepJob,
  SweepRuleError,
  formatSweep,
  type SweepDeps,
} from "../../../src/operator/jobs/sweep.js";
import type { OperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { StaticTarget, type Target } from "../../../src/operator/act/target.js";
import { isRefusal } from "../../../src/demo/clients.js";
import { ManualClock } from "../../support/clock.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";
import { rule as buildRule } from "../../support/rules.js";

/** At 20/20 and refused a 21st: locked out. */
const LOCKED = "105945141827451681156";
/** At 20/20 with 20 live tabs, never asked for a 21st: busy, not locked out. */
const TWENTY_TABS = "user-with-twenty-live-tabs";
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

/** Asks for one more connection than the limit allows; throws if it was admitted. */
async function refuseOne(f: TestFactory, userId: string): Promise<void> {
  const result = await f.attempt(userId);
  if (!isRefusal(result)) throw new Error(`${userId} was admitted; expected a refusal`);
}

beforeAll(async () => {
  // The outage: one user at 20/20 with real clients who asked for a 21st and was refused; one at 20/20 who never
  // asked (twenty live tabs, nothing wrong); another with 3 tabs (not at the limit).
  big = await startTestFactory({}, { pod: "factory-big-0" });
  for (let i = 0; i < 20; i++) await big.open(LOCKED);
  for (let i = 0; i < 20; i++) await big.open(TWENTY_TABS);
  for (let i = 0; i < 3; i++) await big.open(BUSY);
  await refuseOne(big, LOCKED);
  // A second factory with a limit of 2: its user at 2/2, refused a 3rd.
  small = await startTestFactory({ limit: 2 }, { pod: "factory-small-0" });
  for (let i = 0; i < 2; i++) await small.open(SMALL_LOCKED);
  await refuseOne(small, SMALL_LOCKED);
  await eventually(async () => (await big.control("GET", "/v1/users?atLimit=true")).body.users.length === 2, 5000, "the users at 20/20");
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
  it("raises exactly one trigger per user the factory refused, none for the user only at the limit, and counts the factory that does not answer", async () => {
    const { job, triggers } = recordingSweep(allTargets(), clock);

    const result = await job.sweep();
    expect(result).toMatchObject({ factories: 3, usersAtLimit: 3, atLimitNotRefused: 1, triggers: 2, acted: 0, suppressed: { cooldown: 2 }, invalidUsers: 0, aborted: false });
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
    const state = (await big.control("GET", `/v1/users/${LOCKED}`)).body;
    expect(locked.entries[0]).toMatchObject({
      event: "reclaim.sweep",
      time: NOW,
      fields: {
        managers: 20,
        limit: 20,
        effectiveLimit: 20,
        userId: LOCKED,
        pod: "factory-big-0",
        control: big.controlUrl,
        lastRefusedAt: state.lastRefusedAt,
        refusals: 1,
        atLimitSince: state.atLimitSince,
      },
    });
    expect(locked.entries[0]!.message).toContain(`user ${LOCKED} at 20/20 managers since ${state.atLimitSince as string}`);
    expect(locked.entries[0]!.message).toContain(`refused 1 time, last at ${state.lastRefusedAt as string}, on factory-big-0`);
    // Dated from when the user reached the limit (the factory's clock is the real one here, ours stands still at NOW:
    // the age at the limit, as the factory measures it, is laid on our clock).
    expect(locked.firstAt).toBeLessThanOrEqual(locked.at);

    // The outcome line, as the scheduler records it.
    expect(formatSweep(result)).toBe(
      `3 factories, 3 users at their limit (1 not refused recently: left alone), 2 triggers: 0 acted, 2 suppressed (cooldown 2) (1 factory unreachable: factory-gone-0)`,
    );
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

    expect(await job.run()).toBe("1 factory, 2 users at their limit (1 not refused recently: left alone), 1 trigger: 1 acted, 0 suppressed");
    const [incident] = await store.list();
    expect(incident).toMatchObject({ rule: "factory-users-at-limit", status: "open", target: { userId: LOCKED, pod: null, control: big.controlUrl } });
    expect(incident!.evidence.entries[0]).toMatchObject({ event: "reclaim.sweep", fields: { managers: 20, limit: 20 } });
    expect(acted.map((i) => i.id)).toEqual([incident!.id]);

    // Still remediating (the actor never finished it): the next sweep is recorded on it, not acted on.
    expect(await job.run()).toBe("1 factory, 2 users at their limit (1 not refused recently: left alone), 1 trigger: 0 acted, 1 suppressed (in_flight 1)");
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
    expect(result).toMatchObject({ usersAtLimit: 3, atLimitNotRefused: 1, triggers: 0, aborted: true });
    expect(triggers).toHaveLength(0);
    expect(formatSweep(result)).toContain("stopped early");
  });
});

/** A control API on 127.0.0.1 that answers `GET /v1/users?atLimit=true` with `answer()` (the rest: 404). */
async function startAnswering(answer: () => unknown): Promise<{ url: string; server: Server }> {
  const server = createHttpServer((req, res) => {
    if (req.method !== "GET" || req.url !== "/v1/users?atLimit=true") {
      res.writeHead(404, { "Content-Type": "application/json" }).end(JSON.stringify({ error: { code: "not_found", message: "no route" } }));
      return;
    }
    void Promise.resolve(answer()).then((body) => res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(body)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { url: `http://127.0.0.1:${address.port}`, server };
}

function recordingSweep(targets: Target[], clock: Clock, options: Partial<SweepDeps> = {}): { job: SweepJob; triggers: Trigger[] } {
  const triggers: Trigger[] = [];
  const job = new SweepJob({
    targets: () => Promise.resolve(targets),
    rule: (name) => rules.get(name),
    onTrigger: (t): Promise<TriggerOutcome> => {
      triggers.push(t);
      return Promise.resolve({ suppressed: "cooldown", incident: null });
    },
    clock,
    timeoutMs: 2000,
    ...options,
  });
  return { job, triggers };
}

describe("the sweep acts only for users the factory is refusing", () => {
  it("twenty live tabs and no 21st asked for: no trigger; once a 21st is refused, one dated from when they reached the limit", async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const f = await startTestFactory({}, { clock, pod: "factory-tabs-0" });
    try {
      for (let i = 0; i < 20; i++) await f.open(TWENTY_TABS);
      clock.advance(120_000);
      const { job, triggers } = recordingSweep([target(f.controlUrl, "factory-tabs-0")], clock);

      // At the limit for two minutes, never refused: left alone, every run.
      expect(await job.run()).toBe("1 factory, 1 user at their limit (1 not refused recently: left alone), 0 triggers");
      expect(await job.run()).toBe("1 factory, 1 user at their limit (1 not refused recently: left alone), 0 triggers");
      expect(triggers).toHaveLength(0);

      // Now they ask for a 21st and are refused: locked out, and the next sweep acts.
      clock.advance(30_000);
      await refuseOne(f, TWENTY_TABS);
      clock.advance(60_000);
      const result = await job.sweep();
      expect(result).toMatchObject({ usersAtLimit: 1, atLimitNotRefused: 0, triggers: 1 });
      expect(triggers).toHaveLength(1);
      const [trigger] = triggers;
      expect({ firstAt: trigger!.firstAt, at: trigger!.at, pod: trigger!.pod }).toEqual({ firstAt: t0, at: t0 + 210_000, pod: "factory-tabs-0" });
      expect(trigger!.entries[0]!.fields).toMatchObject({
        userId: TWENTY_TABS,
        pod: "factory-tabs-0",
        atLimitSince: new Date(t0).toISOString(),
        lastRefusedAt: new Date(t0 + 150_000).toISOString(),
        refusals: 1,
        managers: 20,
      });

      // The refusal ages past the window (10 min by default): left alone again.
      clock.advance(DEFAULT_SWEEP_REFUSED_WITHIN_MS - 60_000 + 1);
      expect(await job.run()).toBe("1 factory, 1 user at their limit (1 not refused recently: left alone), 0 triggers");
      expect(triggers).toHaveLength(1);
    } finally {
      await f.close();
    }
  });

  it("a factory older than lastRefusedAt cannot tell locked out from busy: nothing is raised, even for a user it refused", async () => {
    // The real factory, seen through a control API that answers as factories did before these fields.
    const older = await startAnswering(async () => {
      const { body } = await big.control("GET", "/v1/users?atLimit=true");
      return { users: (body.users as Record<string, unknown>[]).map(({ userId, active, limit, effectiveLimit, queued }) => ({ userId, active, limit, effectiveLimit, queued })) };
    });
    try {
      const { job, triggers } = recordingSweep([target(older.url, "factory-old-0")], clock);
      expect(await job.sweep()).toMatchObject({ usersAtLimit: 2, atLimitNotRefused: 2, triggers: 0 });
      expect(triggers).toHaveLength(0);
    } finally {
      older.server.close();
    }
  });

  it("measures the refusal's age on the factory's clock (asOf), so skew between the clocks neither hides nor invents a refusal", async () => {
    const asOf = Date.parse("2026-11-26T12:00:00Z");
    const iso = (t: number): string => new Date(t).toISOString();
    const user = (userId: string, refusedAgoMs: number | null, atLimitAgoMs: number): Record<string, unknown> => ({
      userId,
      active: 20,
      limit: 20,
      effectiveLimit: 20,
      queued: 0,
      atLimitSince: iso(asOf - atLimitAgoMs),
      lastRefusedAt: refusedAgoMs === null ? null : iso(asOf - refusedAgoMs),
      refusals: refusedAgoMs === null ? 0 : 3,
    });
    const factory = await startAnswering(() => ({
      asOf: iso(asOf),
      users: [
        user("refused-5m-ago", 5 * 60_000, 30 * 60_000),
        user("refused-11m-ago", 11 * 60_000, 30 * 60_000),
        user("never-refused", null, 30 * 60_000),
        // Refused "after" the factory's own now: not something a sane factory says, so not acted on.
        user("refused-in-the-future", -60_000, 30 * 60_000),
      ],
    }));
    try {
      for (const skew of [-3_600_000, 0, 3_600_000]) {
        const now = asOf + skew;
        const { job, triggers } = recordingSweep([target(factory.url, "factory-skewed-0")], { now: () => now });
        expect(await job.sweep()).toMatchObject({ usersAtLimit: 4, atLimitNotRefused: 3, triggers: 1 });
        expect(triggers.map((t) => [t.userId, t.firstAt, t.at])).toEqual([["refused-5m-ago", now - 30 * 60_000, now]]);
        expect(triggers[0]!.entries[0]!.fields).toMatchObject({ refusals: 3, atLimitSince: iso(asOf - 30 * 60_000), lastRefusedAt: iso(asOf - 5 * 60_000) });
      }
      // A wider window takes the older refusal in as well.
      const { job, triggers } = recordingSweep([target(factory.url, null)], clock, { refusedWithinMs: 15 * 60_000 });
      expect(await job.sweep()).toMatchObject({ atLimitNotRefused: 2, triggers: 2 });
      expect(triggers.map((t) => t.userId)).toEqual(["refused-11m-ago", "refused-5m-ago"]);
    } finally {
      factory.server.close();
    }
  });

  it("refusedWithinMs: 1000 to 3600000 ms are accepted; anything else is a TypeError naming the value", () => {
    const build = (value: number | undefined) => (): SweepJob => recordingSweep([], clock, value === undefined ? {} : { refusedWithinMs: value }).job;
    expect([MIN_SWEEP_REFUSED_WITHIN_MS, DEFAULT_SWEEP_REFUSED_WITHIN_MS, MAX_SWEEP_REFUSED_WITHIN_MS]).toEqual([1000, 600_000, 3_600_000]);
    for (const value of [undefined, 1000, 600_000, 3_600_000]) expect(build(value)).not.toThrow();
    for (const value of [0, 999, 3_600_001, 1500.5, Number.NaN, -600_000, Number.POSITIVE_INFINITY]) {
      expect(build(value), String(value)).toThrow(TypeError);
      expect(build(value), String(value)).toThrow(`got ${String(value)}`);
    }
  });
});
