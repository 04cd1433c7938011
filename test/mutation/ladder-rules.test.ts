/**
 * The ladder runner's rules, each pinned (issue 20: mutation testing found
 * most of ladder.ts reached only through the built CLI): a rung's attempts
 * and waits, its idempotency key, a resumed rung, `degrade` for a user with
 * no connection, the "freed nothing" shortcut, what each verification
 * outcome leads to, `restartPod`, the confirmation a text rule needs, the
 * "before" snapshot, a store that cannot write, and an abort at each point.
 *
 * A real factory answers over real HTTP, through a pass-through proxy that
 * can answer errors instead; the incident store is the in-memory one; time is
 * a stepping clock, so every wait the ladder asks for is recorded and taken
 * at once. `restartPod` goes through the operator's own `Target.restart`,
 * implemented here, with a second real factory as the replacement pod.
 */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { systemTimers, type Timers } from "../../src/contract/clock.js";
import type { ChatClient } from "../../src/demo/clients.js";
import type { FactoryConfigInput } from "../../src/factory/config.js";
import { ControlClient } from "../../src/operator/act/control-client.js";
import { LadderRunner, NotLeader, StoreFailure, type LadderOptions } from "../../src/operator/act/ladder.js";
import type { RestartOutcome, Target } from "../../src/operator/act/target.js";
import { GuardState } from "../../src/operator/decide/guards.js";
import type { Incident, RungRun } from "../../src/operator/incidents/model.js";
import { createOperatorLog } from "../../src/operator/log.js";
import { OperatorMetrics } from "../../src/operator/metrics.js";
import type { RemediationRule, RemediationRuleInput } from "../../src/operator/rules/schema.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type Json, type TestFactory } from "../support/factory.js";
import { startFaultyControl, type FaultyControl } from "../support/faulty-control.js";
import { buildIncident, RecordingStore } from "../support/incidents.js";
import { rule, T0 } from "../support/rules.js";

const factories: TestFactory[] = [];
const proxies: FaultyControl[] = [];
afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
  for (const f of factories.splice(0)) await f.close();
});

const HOUR = 3_600_000;
const DETECTED = T0 - 5000;
const iso = (ms: number): string => new Date(ms).toISOString();
const isAdmission = (method: string, path: string): boolean => method === "GET" && path.endsWith("/admission");

/** Time that moves only when the ladder sleeps: each wait is recorded, then taken at once. `onSleep` runs first. */
type SteppingTimers = Timers & { waits: number[]; onSleep: (n: number) => void };
function steppingTimers(): SteppingTimers {
  let t = T0;
  const timers: SteppingTimers = {
    ...systemTimers,
    waits: [],
    onSleep: () => undefined,
    now: () => t,
    sleep: (ms, signal) => {
      timers.onSleep(timers.waits.length);
      if (signal?.aborted === true) return Promise.resolve();
      timers.waits.push(ms);
      t += ms;
      return Promise.resolve();
    },
  };
  return timers;
}

/** The in-memory store, keeping every record written; it can fail the next `failing` writes, and calls `onSave` before each. */
class HookedStore extends RecordingStore {
  failing = 0;
  calls = 0;
  onSave: (n: number) => void | Promise<void> = () => undefined;
  override async save(incident: Incident): Promise<void> {
    const n = this.calls++;
    await this.onSave(n);
    if (this.failing > 0) {
      this.failing--;
      throw new Error("disk full");
    }
    return super.save(incident);
  }
}

/** The real client, with hooks after an admission check and after a rung call answered. */
class HookedClient extends ControlClient {
  afterAdmission: () => void = () => undefined;
  afterRung: () => Promise<void> = () => Promise.resolve();
  override async admission(...args: Parameters<ControlClient["admission"]>): ReturnType<ControlClient["admission"]> {
    try {
      return await super.admission(...args);
    } finally {
      this.afterAdmission();
    }
  }
  override async runRung(...args: Parameters<ControlClient["runRung"]>): ReturnType<ControlClient["runRung"]> {
    const answer = await super.runRung(...args);
    await this.afterRung();
    return answer;
  }
}

interface Rig {
  factory: TestFactory;
  proxy: FaultyControl;
  control: HookedClient;
  target: Target;
  store: HookedStore;
  guards: GuardState;
  metrics: OperatorMetrics;
  timers: SteppingTimers;
  lines: Record<string, unknown>[];
  ladder(options?: LadderOptions): LadderRunner;
}

/** A factory with `limit` slots per user behind a proxy, and everything a ladder needs around it. */
async function rig(limit = 2, config: FactoryConfigInput = {}): Promise<Rig> {
  const factory = await startTestFactory({ limit, ...config });
  factories.push(factory);
  const proxy = await startFaultyControl(factory.controlUrl);
  proxies.push(proxy);
  const control = new HookedClient(proxy.url, TEST_CONTROL_TOKEN);
  const store = new HookedStore();
  const guards = new GuardState();
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const timers = steppingTimers();
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const log = createOperatorLog({ streams: [sink], level: "debug" });
  return {
    factory,
    proxy,
    control,
    target: { control, pod: null, namespace: null },
    store,
    guards,
    metrics,
    timers,
    lines,
    ladder: (options = {}) => new LadderRunner({ store, guards, clock: timers, metrics, log }, options),
  };
}

/** Opens `n` connections of `userId`. */
async function hold(factory: TestFactory, userId: string, n: number, kind: "live" | "no-pong" = "live"): Promise<ChatClient[]> {
  const tabs: ChatClient[] = [];
  for (let i = 0; i < n; i++) tabs.push(await factory.open(userId, kind));
  return tabs;
}

/** A rule named lockout with a short verification. */
function lockout(spec: Partial<RemediationRuleInput["spec"]>): RemediationRule {
  return rule("lockout", { verify: { settle: "100ms", timeout: "1s" }, ...spec }).rule;
}

/** A rule that takes the user from a log line's text. */
function textRule(spec: Partial<RemediationRuleInput["spec"]>): RemediationRule {
  return lockout({
    trigger: { log: { text: { pattern: "^HARD LIMIT: User (?P<userId>[a-z0-9]{1,64}) still over limit.*$", trust: { "resource.container_name": "chat-backend" } } } },
    key: ["userId"],
    ...spec,
  });
}

/** An incident just opened for `userId` (no snapshot yet), detected 5 s before the clock starts. */
function opened(userId: string, overrides: Partial<Incident> = {}, pod: string | null = null): Incident {
  return buildIncident({ status: "open", userId, pod, rule: "lockout", detectedAt: iso(DETECTED) }, { before: null, ...overrides });
}

/** The log lines of `event`, without the time and pod every line carries. */
function logged(r: Rig, event: string): Record<string, unknown>[] {
  return r.lines
    .filter((l) => l.event === `operator.${event}`)
    .map((l) => {
      const { time: _t, pod: _p, ...rest } = l;
      return rest;
    });
}

interface MetricLike {
  get(): Promise<{ values: { labels: Record<string, unknown>; value: number; metricName?: string }[] }>;
}
/** Every series of a counter or gauge, as its labels and value. */
async function series(metric: MetricLike): Promise<Record<string, unknown>[]> {
  return (await metric.get()).values.map((v) => ({ ...v.labels, value: v.value }));
}
async function gauge(metric: MetricLike): Promise<number> {
  return (await metric.get()).values[0]?.value ?? Number.NaN;
}
/** A histogram's sum and count. */
async function observed(metric: MetricLike): Promise<{ sum: number; count: number }> {
  const { values } = await metric.get();
  const pick = (suffix: string): number => values.find((v) => v.metricName?.endsWith(suffix) === true)?.value ?? Number.NaN;
  return { sum: pick("_sum"), count: pick("_count") };
}

const decisionsAfter = (incident: Incident, n: number): [string, string][] => incident.decisions.slice(n).map((d) => [d.kind, d.detail]);
const rungUrl = (r: Rig, userId: string, rung: string): string => `${r.proxy.url}/v1/users/${userId}/rungs/${rung}`;
const admissionUrl = (r: Rig, userId: string): string => `${r.proxy.url}/v1/users/${userId}/admission`;
/** What the factory answers about `userId` now, asked directly (not through the proxy). */
async function admissionNow(factory: TestFactory, userId: string): Promise<Json> {
  return (await factory.control("GET", `/v1/users/${userId}/admission`)).body;
}
/** Requests the proxy saw, as `GET admission` / `POST probe`. */
const seen = (r: Rig): string[] => r.proxy.requests.map((q) => `${q.method} ${q.path.split("/").pop() ?? ""}`);

const FAILED_FOLLOW_UPS = (userId: string): string[] => [
  "The control API could not be used: check the factory's control port, its token and the network path.",
  `Check by hand whether user ${userId} can connect (GET /v1/users/${userId}/admission); no further rung was run.`,
];
const ESCALATED_FOLLOW_UPS = (userId: string): string[] => [
  "Every rung ran and the user still cannot connect: page the owner of the chat backend.",
  `Check the factory's pod (memory, event loop lag) and the user's connections: GET /v1/users/${userId}`,
];

describe("a rung call's attempts", () => {
  it("a recoverable failure is tried 3 times, waiting exactly 200 then 1000 ms, each retry decided and saved before its wait; then the rung is an error and the incident fails", async () => {
    const r = await rig();
    r.proxy.fault("500");
    const incident = opened("u1");
    const atWait: [string, string, number][] = [];
    r.timers.onSleep = () => {
      const last = r.store.saved.at(-1)!;
      atWait.push([last.decisions.at(-1)!.kind, last.decisions.at(-1)!.detail, last.rungs[0]!.attempts]);
    };
    const done = await r.ladder().run(incident, lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 50 } }, { rung: "force" }] }), r.target);

    const error = `POST ${rungUrl(r, "u1", "probe")} answered 500 (internal: injected 500)`;
    expect(r.timers.waits).toEqual([200, 1000]);
    expect(r.proxy.rungCalls()).toHaveLength(3);
    expect(atWait).toEqual([
      ["retry", `probe attempt 1 failed (${error}); retrying in 200 ms`, 1],
      ["retry", `probe attempt 2 failed (${error}); retrying in 1000 ms`, 2],
    ]);
    expect(done.rungs).toHaveLength(1);
    expect(done.rungs[0]).toEqual({
      index: 0,
      rung: "probe",
      params: { timeoutMs: 50 },
      timeoutMs: 10_000,
      startedAt: iso(T0),
      finishedAt: iso(T0 + 1200),
      durationMs: 1200,
      attempts: 3,
      outcome: "error",
      request: { method: "POST", url: rungUrl(r, "u1", "probe"), body: { timeoutMs: 50 } },
      response: { status: 500, body: { error: { code: "internal", message: "injected 500" } } },
      result: null,
      error,
      verification: null,
    });
    expect(decisionsAfter(done, 2)).toEqual([
      ["acting", `acting on user u1 through ${r.proxy.url}`],
      ["rung_started", 'rung 1 of 2: probe {"timeoutMs":50}'],
      ["retry", `probe attempt 1 failed (${error}); retrying in 200 ms`],
      ["retry", `probe attempt 2 failed (${error}); retrying in 1000 ms`],
      ["rung_finished", `probe error after 3 attempt(s): ${error}`],
      ["failed", `rung probe failed: ${error}`],
    ]);
    expect(done.status).toBe("failed");
    expect(done.closedAt).toBe(iso(T0 + 1200));
    expect(done.followUps).toEqual(FAILED_FOLLOW_UPS("u1"));
    expect(r.store.saved.at(-1)).toEqual(done);
    expect(await series(r.metrics.rungs)).toEqual([{ rung: "probe", result: "error", value: 1 }]);
    expect(await series(r.metrics.incidents)).toEqual([{ status: "failed", value: 1 }]);
    expect((await observed(r.metrics.detectToResolved)).count).toBe(0);
    expect(await gauge(r.metrics.storeWaiting)).toBe(0);
    expect(logged(r, "rung")).toEqual([
      { severity: "INFO", event: "operator.rung", message: `Incident ${done.id}: rung probe error: ${error}`, incident: done.id, rule: "lockout", userId: "u1", rung: "probe", outcome: "error", removed: 0, attempts: 3 },
    ]);
    expect(logged(r, "incident_closed")).toEqual([
      { severity: "WARNING", event: "operator.incident_closed", message: `Incident ${done.id} failed: rung probe failed: ${error}`, incident: done.id, rule: "lockout", userId: "u1", status: "failed" },
    ]);
  });

  it("options.attempts and options.backoffMs set them: the last wait repeats once the list runs out", async () => {
    const r = await rig();
    r.proxy.fault("500");
    const done = await r.ladder({ attempts: 4, backoffMs: [5, 7] }).run(opened("u1"), lockout({ ladder: [{ rung: "probe" }] }), r.target);
    expect(r.timers.waits).toEqual([5, 7, 7]);
    expect(r.proxy.rungCalls()).toHaveLength(4);
    expect(done.rungs[0]).toMatchObject({ attempts: 4, outcome: "error", durationMs: 19 });
  });

  it("a fault that is not a control call error is thrown, not recorded as the rung's failure", async () => {
    const r = await rig();
    const incident = opened("u1");
    incident.target.userId = "not a user id";
    await expect(r.ladder().run(incident, lockout({ ladder: [{ rung: "probe" }] }), r.target)).rejects.toThrow(/invalid user id/);
    expect(r.store.saved.map((s) => s.rungs[0]!.outcome)).toEqual(["pending"]);
    expect(r.proxy.requests).toEqual([]);
  });

  it("a failure retrying cannot help (400) is not tried again: one call, no wait, the answer recorded", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "degrade", params: { limit: 1 } }] }), r.target);
    expect(r.timers.waits).toEqual([]);
    expect(r.proxy.rungCalls()).toHaveLength(1);
    const run = done.rungs[0]!;
    expect(run).toMatchObject({ attempts: 1, outcome: "error", result: null, response: { status: 400, body: { error: { code: "invalid_params" } } } });
    expect(run.error).toMatch(/^POST .*\/rungs\/degrade answered 400 \(invalid_params: degrade limit must be above the normal limit/);
    expect(done.status).toBe("failed");
    expect(await series(r.metrics.rungs)).toEqual([{ rung: "degrade", result: "error", value: 1 }]);
  });

  it("a call that times out is a timeout, recorded without a response, and the incident fails naming it", async () => {
    const r = await rig();
    r.proxy.fault("hang");
    const done = await r.ladder({ attempts: 2, backoffMs: [3] }).run(opened("u1"), lockout({ ladder: [{ rung: "probe", timeout: "100ms" }] }), r.target);
    const error = `POST ${rungUrl(r, "u1", "probe")} timed out after 100 ms`;
    expect(r.timers.waits).toEqual([3]);
    expect(done.rungs[0]).toMatchObject({ attempts: 2, outcome: "timeout", response: null, result: null, error });
    expect(decisionsAfter(done, 4)).toEqual([
      ["retry", `probe attempt 1 failed (${error}); retrying in 3 ms`],
      ["rung_finished", `probe timeout after 2 attempt(s): ${error}`],
      ["failed", `rung probe failed: ${error}`],
    ]);
    expect(await series(r.metrics.rungs)).toEqual([{ rung: "probe", result: "timeout", value: 1 }]);
    expect(logged(r, "rung")[0]).toMatchObject({ outcome: "timeout", message: `Incident ${done.id}: rung probe timeout: ${error}` });
  });

  it("a retry after a lost answer carries the key <incident id>/<index>: the factory answers its first run's result, and the record says so", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2, "no-pong");
    r.proxy.fault("500-after", { times: 1 });
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 50 } }] }), r.target);
    expect(r.proxy.rungCalls().map((c) => c.forwarded)).toEqual([true, true]);
    expect(r.factory.events("factory.cleanup", "u1")).toHaveLength(1); // the probe ran once
    expect(done.rungs[0]).toMatchObject({ attempts: 2, outcome: "ok", error: null, response: { status: 200 } });
    expect(done.decisions.find((d) => d.kind === "rung_finished")!.detail).toBe(
      `probe removed 2 manager(s); 0/2 remain; factory says admit=true (the factory had already run it for this incident: result of that run, key ${done.id}/0; not run again)`,
    );
    expect(done.status).toBe("resolved");
  });
});

describe("a resumed rung", () => {
  /** A record left by a stopped operator: probe ran and was not verified, then `pending` was in flight. */
  function leftBehind(userId: string, pending: Partial<RungRun>): Incident {
    const incident = buildIncident({ status: "remediating", userId, pod: null, rule: "lockout", detectedAt: iso(DETECTED) });
    const probe: RungRun = {
      ...incident.rungs[0]!,
      outcome: "ok",
      finishedAt: iso(DETECTED + 3000),
      durationMs: 2000,
      result: { rung: "probe", userId, removed: [], remaining: 2, limit: 2, effectiveLimit: 2, degradedUntil: null, admit: false, durationMs: 5 },
      response: { status: 200, body: null },
      verification: { at: iso(DETECTED + 3000), verified: false, admission: null, heldMs: 0, durationMs: 0, canary: null, detail: "freed nothing" },
    };
    const force: RungRun = {
      ...incident.rungs[0]!,
      index: 1,
      rung: "force",
      params: { max: 1, freeSlots: 1 },
      timeoutMs: 5000,
      attempts: 1,
      request: { method: "POST", url: `http://127.0.0.1:8081/v1/users/${userId}/rungs/force`, body: { max: 1, freeSlots: 1 } },
      ...pending,
    };
    incident.rungs = [probe, force];
    return incident;
  }
  const rule3 = (): RemediationRule => lockout({ ladder: [{ rung: "probe" }, { rung: "force", params: { max: 3 }, timeout: "10s" }] });

  it("is sent again with its recorded params under the same key <incident id>/<index>, not as the rule says now: the factory answers the run it already did", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    const incident = leftBehind("u1", {});
    const before = structuredClone(incident.before);
    const decisions = incident.decisions.length;
    // The first operator's call reached the factory before it stopped.
    const first = await new ControlClient(r.factory.controlUrl, TEST_CONTROL_TOKEN).runRung("u1", "force", { max: 1, freeSlots: 1 }, 5000, `${incident.id}/1`);
    expect(first.value.removed).toHaveLength(1);

    const done = await r.ladder().run(incident, rule3(), r.target);
    expect(seen(r)[0]).toBe("POST force"); // no snapshot of a resumed incident
    expect(r.factory.events("factory.evicted", "u1")).toHaveLength(1);
    expect(done.rungs).toHaveLength(2);
    expect(done.rungs[1]).toMatchObject({ params: { max: 1, freeSlots: 1 }, timeoutMs: 5000, attempts: 2, outcome: "ok" });
    expect(done.before).toEqual(before);
    expect(decisionsAfter(done, decisions).slice(0, 2)).toEqual([
      [
        "resumed",
        'rung force was in flight when the operator stopped; sending it again as first sent ({"max":1,"freeSlots":1}) with the same idempotency key (a factory that already ran it answers that run\'s result)',
      ],
      ["rung_finished", `force removed 1 manager(s); 1/2 remain; factory says admit=true (the factory had already run it for this incident: result of that run, key ${done.id}/1; not run again)`],
    ]);
    expect(done.decisions.filter((d) => d.kind === "acting")).toEqual([]);
    expect(done.status).toBe("resolved");
  });

  it("of a rule that takes the user from text is not confirmed again: the factory was asked before the first rung", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1); // the factory would admit u1 now: asked again, it would be not_confirmed
    const done = await r.ladder().run(leftBehind("u1", {}), textRule({ ladder: [{ rung: "probe" }, { rung: "force", params: { max: 1 } }] }), r.target);
    expect(seen(r)[0]).toBe("POST force");
    expect(done.decisions.map((d) => d.kind)).not.toContain("suppressed");
    expect(done.status).toBe("resolved");
  });

  it("is sent with its recorded timeout, not the rule's", async () => {
    const r = await rig();
    r.proxy.fault("hang");
    const done = await r.ladder({ attempts: 1 }).run(leftBehind("u1", { timeoutMs: 150 }), rule3(), r.target);
    expect(done.rungs[1]).toMatchObject({ outcome: "timeout", error: `POST ${rungUrl(r, "u1", "force")} timed out after 150 ms` });
  });

  it("an ok rung without a verification is verified, not sent again", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    const incident = leftBehind("u1", {
      outcome: "ok",
      result: { rung: "force", userId: "u1", removed: [{ managerId: "m1", reason: "evicted" }], remaining: 1, limit: 2, effectiveLimit: 2, degradedUntil: null, admit: true, durationMs: 3 },
    });
    const done = await r.ladder().run(incident, rule3(), r.target);
    expect(r.proxy.rungCalls()).toEqual([]);
    expect(done.rungs[1]!.verification).toMatchObject({ verified: true, detail: "admitted for 100 ms" });
    expect(done.status).toBe("resolved");
  });

  it.each([
    ["timeout", null, "rung force failed: timeout"],
    ["error", "boom", "rung force failed: boom"],
  ] as const)("a last rung that ended %s fails the incident without sending anything, and is not counted as resolved", async (outcome, error, detail) => {
    const r = await rig();
    const incident = leftBehind("u1", { outcome, error });
    incident.durations.mitigateMs = 1234; // a duration on the record is not a resolution: only a resolved incident is observed
    const done = await r.ladder().run(incident, rule3(), r.target);
    expect(r.proxy.requests).toEqual([]);
    expect(done.status).toBe("failed");
    expect(done.decisions.at(-1)!.detail).toBe(detail);
    expect((await observed(r.metrics.detectToResolved)).count).toBe(0);
    expect(await series(r.metrics.incidents)).toEqual([{ status: "failed", value: 1 }]);
  });
});

describe("degrade for a user with no connection", () => {
  it("409 no_connections is not a failure: ok with result null and its answer kept, and verification decides", async () => {
    const r = await rig();
    const done = await r.ladder().run(opened("gone"), lockout({ ladder: [{ rung: "degrade" }] }), r.target);
    const run = done.rungs[0]!;
    expect(run).toMatchObject({ attempts: 1, outcome: "ok", result: null, error: null, response: { status: 409, body: { error: { code: "no_connections" } } } });
    expect(r.timers.waits).toEqual([50, 50]);
    expect(decisionsAfter(done, 4)).toEqual([
      ["rung_finished", "degrade not needed: the factory says the user holds no connection now (409 no_connections); verifying"],
      ["verified", "after degrade: admitted for 100 ms"],
      ["resolved", "user gone can connect again (verified after degrade)"],
    ]);
    expect(await series(r.metrics.rungs)).toEqual([{ rung: "degrade", result: "ok", value: 1 }]);
    expect(logged(r, "rung")[0]).toMatchObject({ outcome: "ok", removed: 0, attempts: 1, message: `Incident ${done.id}: rung degrade ok, removed 0` });
  });
});

describe("a rung that freed nothing while the factory would not admit", () => {
  it("goes to the next rung at once: no wait and no admission check, and says why", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }, { rung: "force" }] }), r.target);
    expect(seen(r).slice(0, 3)).toEqual(["GET admission", "POST probe", "POST force"]);
    expect(done.rungs[0]!.verification).toEqual({
      at: iso(T0),
      verified: false,
      admission: { userId: "u1", admit: false, active: 2, effectiveLimit: 2, queued: 0 },
      heldMs: 0,
      durationMs: 0,
      canary: null,
      detail: "probe freed nothing and the factory would not admit (2/2): next rung",
    });
    expect(done.decisions.find((d) => d.kind === "not_verified")!.detail).toBe("after probe: probe freed nothing and the factory would not admit (2/2): next rung");
    expect(done.rungs[1]).toMatchObject({ rung: "force", outcome: "ok", verification: { verified: true } });
    expect(r.timers.waits).toEqual([50, 50]); // force's verification only
    expect(done.status).toBe("resolved");
  });

  it("the ladder exhausted: escalated with follow-ups, saying how many rungs ran", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }] }), r.target);
    expect(r.timers.waits).toEqual([]);
    expect(done.status).toBe("escalated");
    expect(done.decisions.at(-1)).toEqual({ at: iso(T0), kind: "escalated", detail: "ladder exhausted after 1 rung(s) without a verified recovery" });
    expect(done.followUps).toEqual(ESCALATED_FOLLOW_UPS("u1"));
    expect(await series(r.metrics.incidents)).toEqual([{ status: "escalated", value: 1 }]);
    expect(logged(r, "incident_closed")).toEqual([
      {
        severity: "WARNING",
        event: "operator.incident_closed",
        message: `Incident ${done.id} escalated: ladder exhausted after 1 rung(s) without a verified recovery`,
        incident: done.id,
        rule: "lockout",
        userId: "u1",
        status: "escalated",
      },
    ]);
  });

  it("does not apply when the factory would admit: it verifies", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }] }), r.target);
    expect(done.rungs[0]!.result).toMatchObject({ removed: [], admit: true });
    expect(r.timers.waits).toEqual([50, 50]);
    expect(done.status).toBe("resolved");
  });

  it("does not apply when the rung freed something, though the factory would not admit: it verifies", async () => {
    const r = await rig(2, { queueTimeoutMs: 10_000, ladder: ["conservative"] }); // its own cleanup leaves fresh tabs be
    await hold(r.factory, "u1", 1);
    await hold(r.factory, "u1", 1, "no-pong");
    // A third connection waits in the user's queue: the slot the probe frees goes to it.
    const queued = r.factory.attempt("u1");
    await eventually(async () => (await admissionNow(r.factory, "u1")).queued === 1, 5000, "the queued connection");
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }] }), r.target);
    await queued;
    expect(done.rungs[0]!.result).toMatchObject({ removed: [{ reason: "no_pong" }], admit: false });
    expect(done.rungs[0]!.verification!.detail).not.toMatch(/freed nothing/);
    expect(seen(r).slice(2).filter((q) => q === "GET admission").length).toBeGreaterThan(0);
  });

  it("does not apply to degrade: a raise that removes nothing is verified", async () => {
    const r = await rig(2, { maxDegradeLimit: 10 });
    await hold(r.factory, "u1", 1);
    expect((await r.factory.control("POST", "/v1/users/u1/rungs/degrade", { limit: 5 })).status).toBe(200);
    await hold(r.factory, "u1", 4);
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "degrade", params: { limit: 3 } }], verify: { settle: "100ms", timeout: "200ms" } }), r.target);
    expect(done.rungs[0]!.result).toMatchObject({ removed: [], admit: false, remaining: 5, effectiveLimit: 3 });
    expect(r.timers.waits).toEqual([50, 50, 50, 50]);
    expect(done.rungs[0]!.verification).toMatchObject({ verified: false, detail: "not admitted (5/3, 0 queued)" });
    expect(done.status).toBe("escalated");
  });
});

describe("verification decides what comes next", () => {
  it("verified: resolved, with the last admission as `after`, the time to resolve observed, and both logged", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2, "no-pong");
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 50 } }, { rung: "force" }] }), r.target);
    const run = done.rungs[0]!;
    expect(r.proxy.rungCalls()).toHaveLength(1);
    expect(run.verification).toMatchObject({ verified: true, at: iso(T0 + 100), detail: "admitted for 100 ms" });
    expect(done.after).toEqual({ ...run.verification!.admission, at: iso(T0 + 100) });
    expect(done.after).toMatchObject({ userId: "u1", admit: true, active: 0, effectiveLimit: 2 });
    expect(decisionsAfter(done, 4)).toEqual([
      ["rung_finished", "probe removed 2 manager(s); 0/2 remain; factory says admit=true"],
      ["verified", "after probe: admitted for 100 ms"],
      ["resolved", "user u1 can connect again (verified after probe)"],
    ]);
    expect(done).toMatchObject({ status: "resolved", resolvedAt: iso(T0 + 100), followUps: [], durations: { mitigateMs: 5100 } });
    expect(await observed(r.metrics.detectToResolved)).toEqual({ sum: 5.1, count: 1 });
    expect(await series(r.metrics.incidents)).toEqual([{ status: "resolved", value: 1 }]);
    expect(await series(r.metrics.rungs)).toEqual([{ rung: "probe", result: "ok", value: 1 }]);
    expect(await gauge(r.metrics.storeWaiting)).toBe(0);
    expect(logged(r, "rung")).toEqual([
      { severity: "INFO", event: "operator.rung", message: `Incident ${done.id}: rung probe ok, removed 2`, incident: done.id, rule: "lockout", userId: "u1", rung: "probe", outcome: "ok", removed: 2, attempts: 1 },
    ]);
    expect(logged(r, "verification")).toEqual([
      { severity: "INFO", event: "operator.verification", message: `Incident ${done.id}: after probe, admitted for 100 ms`, incident: done.id, rule: "lockout", userId: "u1", rung: "probe", verified: true },
    ]);
    expect(logged(r, "incident_closed")).toEqual([
      {
        severity: "INFO",
        event: "operator.incident_closed",
        message: `Incident ${done.id} resolved: user u1 can connect again (verified after probe)`,
        incident: done.id,
        rule: "lockout",
        userId: "u1",
        status: "resolved",
      },
    ]);
  });

  it("asks every options.verifyPollMs when given", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    await r.ladder({ verifyPollMs: 25 }).run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }] }), r.target);
    expect(r.timers.waits).toEqual([25, 25, 25, 25]);
  });

  it("unknown (the factory could not be asked): failed without running the next rung; the snapshot that could not be taken is null", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2, "no-pong");
    r.proxy.fault("500", { match: isAdmission });
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 50 } }, { rung: "force" }] }), r.target);
    const why = `could not tell whether the user can connect: GET ${admissionUrl(r, "u1")} answered 500 (internal: injected 500)`;
    expect(r.proxy.rungCalls()).toHaveLength(1);
    expect(done.before).toBeNull();
    expect(done.rungs[0]!.verification).toMatchObject({ verified: false, unknown: true, detail: why });
    expect(done.status).toBe("failed");
    expect(decisionsAfter(done, 5)).toEqual([
      ["not_verified", `after probe: ${why}`],
      ["failed", `could not verify after probe (${why}); stopped without running the next rung: whether the user can connect is not known`],
    ]);
    expect(done.followUps).toEqual(FAILED_FOLLOW_UPS("u1"));
    expect(logged(r, "verification")[0]).toMatchObject({ verified: false, message: `Incident ${done.id}: after probe, ${why}` });
    expect((await observed(r.metrics.detectToResolved)).count).toBe(0);
  });

  it("not verified: saved, and the next rung runs; the canary is run with the rule's message when both the rule and the operator have one", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    const asked: string[] = [];
    const canary = (message: string): Promise<{ ok: boolean; detail: string }> => {
      asked.push(message);
      return Promise.resolve(asked.length === 1 ? { ok: false, detail: "no echo" } : { ok: true, detail: "echo" });
    };
    const done = await r.ladder({ canary }).run(
      opened("u1"),
      lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }, { rung: "force" }], verify: { settle: "100ms", timeout: "1s", canary: { message: "hello" } } }),
      r.target,
    );
    expect(asked).toEqual(["hello", "hello"]);
    expect(done.rungs.map((run) => run.verification?.detail)).toEqual(["admitted, but the canary failed: no echo", "admitted for 100 ms; canary answered"]);
    const notVerified = done.decisions.findIndex((d) => d.kind === "not_verified");
    expect(done.decisions[notVerified]!.detail).toBe("after probe: admitted, but the canary failed: no echo");
    // Written before the next rung starts.
    expect(r.store.saved.some((s) => s.decisions.length === notVerified + 1 && s.rungs.length === 1)).toBe(true);
    expect(done.status).toBe("resolved");
  });

  it("the operator's canary is not run for a rule that asks for none", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    const asked: string[] = [];
    const canary = (message: string): Promise<{ ok: boolean; detail: string }> => {
      asked.push(message);
      return Promise.resolve({ ok: false, detail: "no echo" });
    };
    const done = await r.ladder({ canary }).run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }] }), r.target);
    expect(asked).toEqual([]);
    expect(done.status).toBe("resolved");
  });

  it("connections admitted since the rung are counted: only managers that were not there right after it", async () => {
    const r = await rig(3);
    await hold(r.factory, "u1", 2);
    await hold(r.factory, "u1", 1, "no-pong");
    // The user's own tab takes the freed slot as soon as the probe has answered.
    r.control.afterRung = async () => void (await hold(r.factory, "u1", 1));
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }] }), r.target);
    expect(done.rungs[0]!.result).toMatchObject({ removed: [{ reason: "no_pong" }], remaining: 2 });
    expect(done.rungs[0]!.verification).toMatchObject({
      verified: true,
      admission: { admit: false, active: 3 },
      detail: "the user connected again by themselves: 1 connection(s) admitted since the rung now hold the freed slots",
    });
    expect(r.timers.waits).toEqual([]);
    expect(done.status).toBe("resolved");
  });
});

describe("restartPod", () => {
  interface Restarts {
    calls: { waitReadyMs: number; signal?: AbortSignal }[];
    target: Target;
  }
  /** Pod `pod-a` of namespace chat on `r`'s factory, restarted as `answer` says (after `work`). */
  function restartable(r: Rig, answer: () => RestartOutcome, work: () => Promise<void> = () => Promise.resolve()): Restarts {
    const calls: Restarts["calls"] = [];
    return {
      calls,
      target: {
        control: r.control,
        pod: "pod-a",
        namespace: "chat",
        restart: async (options) => {
          calls.push(options);
          await work();
          return answer();
        },
      },
    };
  }
  /** The replacement pod: another real factory where the user holds `tabs` connections of 2. */
  async function replacement(tabs: number): Promise<{ factory: TestFactory; proxy: FaultyControl; target: Target }> {
    const factory = await startTestFactory({ limit: 2 });
    factories.push(factory);
    const proxy = await startFaultyControl(factory.controlUrl);
    proxies.push(proxy);
    await hold(factory, "u1", tabs);
    return { factory, proxy, target: { control: new ControlClient(proxy.url, TEST_CONTROL_TOKEN), pod: "pod-b", namespace: "chat" } };
  }
  const restartRule = (maxPerHour = 1, more: RemediationRuleInput["spec"]["ladder"] = [{ rung: "force" }]): RemediationRule =>
    lockout({ ladder: [{ rung: "restartPod", params: { waitReady: "5s", maxPerHour } }, ...more], verify: { settle: "100ms", timeout: "200ms" } });
  /** A closed incident of `ruleName` with one rung `rung` that ended `outcome` at `startedAt`. */
  function past(ruleName: string, rung: RungRun["rung"], outcome: RungRun["outcome"], startedAt: number, salt: string): Incident {
    const incident = buildIncident({ status: "escalated", rule: ruleName, userId: "other", salt, detectedAt: iso(startedAt - 1000) });
    incident.rungs = [{ ...incident.rungs[0]!, rung, outcome, startedAt: iso(startedAt), params: {} }];
    incident.updatedAt = iso(T0 - 1000);
    return incident;
  }

  it("deletes the pod, records it first, and goes on with the Ready replacement: the record, later rungs and verification all move to it", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    const b = await replacement(2);
    let atRestart: Incident | undefined;
    const restarts = restartable(
      r,
      () => ({ deleted: true, replacement: b.target, detail: "pod-b is Ready" }),
      async () => {
        atRestart = structuredClone(r.store.saved.at(-1));
        await r.timers.sleep(1500);
      },
    );
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target);

    expect(restarts.calls).toHaveLength(1);
    expect(Object.keys(restarts.calls[0]!)).toEqual(["waitReadyMs"]);
    expect(restarts.calls[0]!.waitReadyMs).toBe(5000);
    expect(atRestart!.rungs).toEqual([expect.objectContaining({ rung: "restartPod", outcome: "pending", attempts: 1 })]);
    expect(done.target).toMatchObject({ pod: "pod-b", control: b.proxy.url });
    expect(done.rungs[0]).toEqual({
      index: 0,
      rung: "restartPod",
      params: { waitReady: 5000, maxPerHour: 1 },
      timeoutMs: 10_000,
      startedAt: iso(T0),
      finishedAt: iso(T0 + 1500),
      durationMs: 1500,
      attempts: 1,
      outcome: "ok",
      request: { method: "DELETE", url: "pods/chat/pod-a", body: null },
      response: { status: 200, body: { deleted: true, replacement: "pod-b", detail: "pod-b is Ready" } },
      result: null,
      error: null,
      verification: expect.objectContaining({ verified: false, detail: "not admitted (2/2, 0 queued)" }) as unknown,
    });
    // Verified on the replacement, and the next rung sent to it: nothing more to the old pod after the snapshot.
    expect(seen(r)).toEqual(["GET admission"]);
    expect(b.proxy.rungCalls()).toHaveLength(1);
    expect(r.timers.waits).toEqual([1500, 50, 50, 50, 50, 50, 50]);
    expect(decisionsAfter(done, 3).slice(0, 3)).toEqual([
      ["rung_started", "rung 1 of 2: restartPod chat/pod-a"],
      ["rung_finished", "restartPod ok"],
      ["not_verified", "after restartPod: not admitted (2/2, 0 queued)"],
    ]);
    expect(done.status).toBe("resolved");
    expect(await series(r.metrics.rungs)).toEqual([
      { rung: "restartPod", result: "ok", value: 1 },
      { rung: "force", result: "ok", value: 1 },
    ]);
  });

  it("passes the run's signal to the restart", async () => {
    const r = await rig();
    const b = await replacement(0);
    const restarts = restartable(r, () => ({ deleted: true, replacement: b.target, detail: "ready" }));
    const term = new AbortController();
    await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(1, []), restarts.target, term.signal);
    expect(restarts.calls).toEqual([{ waitReadyMs: 5000, signal: term.signal }]);
  });

  it("counts restarts per rule in the last hour from the records of other incidents: only restartPod runs that were ok, started after the hour began", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    for (const record of [
      past("another-rule", "restartPod", "ok", T0 - 1000, "1"),
      past("lockout", "restartPod", "error", T0 - 1000, "2"),
      past("lockout", "force", "ok", T0 - 1000, "3"),
      past("lockout", "restartPod", "ok", T0 - HOUR, "4"),
    ])
      await r.store.save(record);
    const b = await replacement(0);
    const restarts = restartable(r, () => ({ deleted: true, replacement: b.target, detail: "ready" }));
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target);
    expect(restarts.calls).toHaveLength(1);
    expect(done.rungs[0]!.outcome).toBe("ok");
  });

  it("over maxPerHour it is skipped, saying why, and the ladder moves on; under it, it runs", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    await r.store.save(past("lockout", "restartPod", "ok", T0 - HOUR + 1, "1"));
    const restarts = restartable(r, () => ({ deleted: true, replacement: null, detail: "never" }));
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target);
    const why = "restartPod limit reached: 1 in the last hour for rule lockout (maxPerHour 1)";
    expect(restarts.calls).toEqual([]);
    expect(done.rungs[0]).toMatchObject({
      outcome: "skipped",
      error: why,
      attempts: 0,
      response: { status: 0, body: null },
      request: { method: "DELETE", url: "pods/chat/pod-a", body: null },
      finishedAt: iso(T0),
      durationMs: 0,
      verification: null,
    });
    expect(decisionsAfter(done, 3).slice(0, 3)).toEqual([
      ["rung_started", "rung 1 of 2: restartPod"],
      ["rung_finished", `restartPod skipped: ${why}`],
      ["rung_started", "rung 2 of 2: force {\"max\":1,\"freeSlots\":1}"],
    ]);
    expect(r.proxy.rungCalls()).toHaveLength(1); // force, on the same pod
    expect(done.status).toBe("resolved");
    expect(await series(r.metrics.rungs)).toEqual([
      { rung: "restartPod", result: "skipped", value: 1 },
      { rung: "force", result: "ok", value: 1 },
    ]);

    const b = await replacement(0);
    const twice = restartable(r, () => ({ deleted: true, replacement: b.target, detail: "ready" }));
    const second = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(2), twice.target);
    expect(twice.calls).toHaveLength(1);
    expect(second.rungs[0]!.outcome).toBe("ok");
  });

  it("the incident's own earlier restart does not count against it", async () => {
    const r = await rig();
    const b = await replacement(2);
    const calls: number[] = [];
    const again: Target = { ...b.target, restart: () => Promise.resolve((calls.push(2), { deleted: true, replacement: again, detail: "again" })) };
    const restarts = restartable(r, () => ({ deleted: true, replacement: again, detail: "ready" }));
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(1, [{ rung: "restartPod", params: { maxPerHour: 1 } }]), restarts.target);
    expect(restarts.calls).toHaveLength(1);
    expect(calls).toEqual([2]);
    expect(done.rungs.map((run) => [run.rung, run.outcome])).toEqual([
      ["restartPod", "ok"],
      ["restartPod", "ok"],
    ]);
    expect(done.status).toBe("escalated");
  });

  it("a restart in flight when the operator stopped runs again, over the limit too, as the same rung", async () => {
    const r = await rig();
    await r.store.save(past("lockout", "restartPod", "ok", T0 - 1000, "1"));
    const b = await replacement(0);
    const restarts = restartable(r, () => ({ deleted: true, replacement: b.target, detail: "ready" }));
    const incident = buildIncident({ status: "remediating", userId: "u1", pod: "pod-a", rule: "lockout", detectedAt: iso(DETECTED) });
    incident.rungs = [
      {
        ...incident.rungs[0]!,
        rung: "restartPod",
        params: { waitReady: 5000, maxPerHour: 1 },
        attempts: 1,
        startedAt: iso(T0 - 2000),
        request: { method: "DELETE", url: "pods/chat/pod-old", body: null },
      },
    ];
    const decisions = incident.decisions.length;
    const done = await r.ladder().run(incident, restartRule(1, []), restarts.target);
    expect(restarts.calls).toHaveLength(1);
    expect(done.rungs).toHaveLength(1);
    expect(done.rungs[0]).toMatchObject({ outcome: "ok", attempts: 2, startedAt: iso(T0 - 2000), request: { url: "pods/chat/pod-old" } });
    expect(decisionsAfter(done, decisions).slice(0, 2)).toEqual([
      ["resumed", "restartPod was in flight when the operator stopped; running it again"],
      ["rung_finished", "restartPod ok"],
    ]);
    expect(done.status).toBe("resolved");
  });

  it.each([
    ["no restart and no pod", { pod: null, namespace: null }, "pods/?/?"],
    ["a restart but no pod", { pod: null, namespace: "chat", restart: true }, "pods/chat/?"],
    ["a pod but no restart", { pod: "pod-a", namespace: null }, "pods/?/pod-a"],
  ] as const)("without pod targeting (%s) it is an error and the incident fails", async (_name, where, url) => {
    const r = await rig();
    const calls: number[] = [];
    const target: Target = {
      control: r.control,
      pod: where.pod,
      namespace: where.namespace,
      ...("restart" in where ? { restart: () => Promise.resolve((calls.push(1), { deleted: true, replacement: null, detail: "x" })) } : {}),
    };
    const done = await r.ladder().run(opened("u1"), restartRule(), target);
    const why = "restartPod needs Kubernetes pod targeting (--target pod) and the pod the entry came from";
    expect(calls).toEqual([]);
    expect(done.rungs[0]).toMatchObject({ outcome: "error", error: why, attempts: 0, request: { url }, response: { status: 0, body: null } });
    expect(decisionsAfter(done, 3)).toEqual([
      ["rung_started", "rung 1 of 2: restartPod"],
      ["rung_finished", `restartPod error: ${why}`],
      ["failed", `rung restartPod failed: ${why}`],
    ]);
    expect(await series(r.metrics.rungs)).toEqual([{ rung: "restartPod", result: "error", value: 1 }]);
  });

  it("no Ready replacement in time: an error with the restart's detail, on the pod it had", async () => {
    const r = await rig();
    const restarts = restartable(r, () => ({ deleted: true, replacement: null, detail: "no replacement Ready within 5000 ms" }));
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target);
    expect(done.rungs[0]).toMatchObject({
      outcome: "error",
      error: "no replacement Ready within 5000 ms",
      response: { status: 0, body: { deleted: true, replacement: null, detail: "no replacement Ready within 5000 ms" } },
    });
    expect(done.target.pod).toBe("pod-a");
    expect(done.decisions.at(-1)!.detail).toBe("rung restartPod failed: no replacement Ready within 5000 ms");
  });

  it("a replacement without the pod deleted is an error too, though the record follows the replacement", async () => {
    const r = await rig();
    const b = await replacement(0);
    const restarts = restartable(r, () => ({ deleted: false, replacement: b.target, detail: "delete refused" }));
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target);
    expect(done.rungs[0]).toMatchObject({ outcome: "error", error: "delete refused", response: { status: 0, body: { deleted: false, replacement: "pod-b" } } });
    expect(done.target).toMatchObject({ pod: "pod-b", control: b.proxy.url });
    expect(done.status).toBe("failed");
  });

  it("the term ending while it waits for the replacement is not a failure: the rung stays pending, nothing more written", async () => {
    const r = await rig();
    const term = new AbortController();
    const restarts = restartable(
      r,
      () => ({ deleted: true, replacement: null, detail: "stopped waiting" }),
      () => Promise.resolve(term.abort()),
    );
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target, term.signal);
    const saves = r.store.saved.length;
    expect(done.status).toBe("remediating");
    expect(done.rungs[0]).toMatchObject({ outcome: "pending", attempts: 1, finishedAt: null });
    expect(r.store.saved.at(-1)!.rungs[0]!.outcome).toBe("pending");
    expect(saves).toBe(1);
    expect(await series(r.metrics.rungs)).toEqual([]);
  });

  it("a replacement Ready after the term ended is not written: NotLeader", async () => {
    const r = await rig();
    const b = await replacement(0);
    const term = new AbortController();
    const restarts = restartable(
      r,
      () => ({ deleted: true, replacement: b.target, detail: "ready" }),
      () => Promise.resolve(term.abort()),
    );
    await expect(r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target, term.signal)).rejects.toBeInstanceOf(NotLeader);
    expect(r.store.saved).toHaveLength(1);
  });

  it("the term ending as the pending restart is written: the pod is not deleted", async () => {
    const r = await rig();
    const term = new AbortController();
    r.store.onSave = () => term.abort();
    const restarts = restartable(r, () => ({ deleted: true, replacement: null, detail: "x" }));
    const done = await r.ladder().run(opened("u1", {}, "pod-a"), restartRule(), restarts.target, term.signal);
    expect(restarts.calls).toEqual([]);
    expect(done.rungs[0]).toMatchObject({ outcome: "pending", attempts: 1 });
    expect(r.store.saved).toHaveLength(1);
  });
});

describe("a rule that takes the user from text asks the factory first", () => {
  it("refused now: the answer is the before snapshot, guards_passed says so, and the ladder runs (no second snapshot)", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    const answer = await admissionNow(r.factory, "u1");
    const done = await r.ladder().run(opened("u1"), textRule({ ladder: [{ rung: "force" }] }), r.target);
    expect(seen(r).slice(0, 2)).toEqual(["GET admission", "POST force"]);
    expect(done.before).toEqual({ ...answer, at: iso(T0) });
    expect(decisionsAfter(done, 2).slice(0, 3)).toEqual([
      [
        "guards_passed",
        "the factory confirms user u1 is refused now (2/2, admit=false): the key came from the text of a log line, so this was asked before any rung",
      ],
      ["acting", `acting on user u1 through ${r.proxy.url}`],
      ["rung_started", 'rung 1 of 1: force {"max":1,"freeSlots":1}'],
    ]);
    expect(done.status).toBe("resolved");
  });

  it("admitted now: suppressed (not_confirmed), saying why, nothing sent", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    const done = await r.ladder().run(opened("u1"), textRule({ ladder: [{ rung: "force" }] }), r.target);
    const why = "the factory admits user u1 now (1/2, admit=true)";
    expect(seen(r)).toEqual(["GET admission"]);
    expect(done).toMatchObject({ status: "suppressed", closedAt: iso(T0), before: null, rungs: [], suppressed: { not_confirmed: { count: 1, lastAt: iso(T0) } } });
    expect(decisionsAfter(done, 2)).toEqual([
      ["suppressed", `not acted on (not_confirmed): ${why}`],
      ["suppressed", `not_confirmed: ${why}; rule lockout takes the user from log text, which only acts once the factory confirms the user is refused`],
    ]);
    expect(r.store.saved).toEqual([done]);
    expect(await series(r.metrics.incidents)).toEqual([{ status: "suppressed", value: 1 }]);
    expect(logged(r, "incident_closed")[0]).toMatchObject({ severity: "WARNING", status: "suppressed" });
  });

  it("no answer: suppressed, naming the error; the check's deadline is options.confirmTimeoutMs", async () => {
    const r = await rig();
    r.proxy.fault("500", { match: isAdmission });
    const done = await r.ladder().run(opened("u1"), textRule({ ladder: [{ rung: "force" }] }), r.target);
    expect(done.status).toBe("suppressed");
    expect(done.decisions.at(-2)!.detail).toBe(
      `not acted on (not_confirmed): the factory did not say whether user u1 is refused (GET ${admissionUrl(r, "u1")} answered 500 (internal: injected 500))`,
    );
    const s = await rig();
    s.proxy.fault("hang", { match: isAdmission });
    const hung = await s.ladder({ confirmTimeoutMs: 100 }).run(opened("u1"), textRule({ ladder: [{ rung: "force" }] }), s.target);
    expect(hung.decisions.at(-2)!.detail).toBe(`not acted on (not_confirmed): the factory did not say whether user u1 is refused (GET ${admissionUrl(s, "u1")} timed out after 100 ms)`);
    expect(s.proxy.rungCalls()).toEqual([]);
  });

  it("a fault that is not a control call error is thrown, not taken for an answer", async () => {
    const r = await rig();
    const incident = opened("u1");
    incident.target.userId = "not a user id";
    await expect(r.ladder().run(incident, textRule({ ladder: [{ rung: "force" }] }), r.target)).rejects.toThrow(/invalid user id/);
    expect(r.store.saved).toEqual([]);
  });

  it.each([
    ["before the check", "before"],
    ["while the factory answered 'admitted'", "admitted"],
    ["while the factory answered 500", "error"],
  ] as const)("the term ending %s: nothing written, nothing sent, the incident left open", async (_name, when) => {
    const r = await rig();
    await hold(r.factory, "u1", 1);
    if (when === "error") r.proxy.fault("500", { match: isAdmission });
    const term = new AbortController();
    if (when === "before") term.abort();
    else r.control.afterAdmission = () => term.abort();
    const incident = opened("u1");
    const decisions = structuredClone(incident.decisions);
    const done = await r.ladder().run(incident, textRule({ ladder: [{ rung: "force" }] }), r.target, term.signal);
    expect(done.status).toBe("open");
    expect(done.decisions).toEqual(decisions);
    expect(r.store.calls).toBe(0);
    expect(r.proxy.rungCalls()).toEqual([]);
  });
});

describe("the before snapshot", () => {
  it("is taken once, before the first rung acts, at the clock's now", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    const answer = await admissionNow(r.factory, "u1");
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 1000 } }, { rung: "force" }] }), r.target);
    expect(seen(r).slice(0, 3)).toEqual(["GET admission", "POST probe", "POST force"]);
    expect(done.before).toEqual({ ...answer, at: iso(T0) });
    expect(r.store.saved[0]).toMatchObject({ status: "remediating", rungs: [{ rung: "probe", outcome: "pending" }] });
  });
});

describe("a record the store will not write holds the ladder", () => {
  it("written again every storeRetryMs until it works, nothing done meanwhile; counted, gauged, logged at the first failure and every 60th", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2);
    r.store.failing = 121;
    const during: [number, number][] = [];
    r.store.onSave = async (n) => {
      if (n === 60) during.push([await gauge(r.metrics.storeWaiting), r.proxy.rungCalls().length]);
    };
    const term = new AbortController();
    const incident = opened("u1");
    const done = await r.ladder({ storeRetryMs: 7 }).run(incident, lockout({ ladder: [{ rung: "force" }] }), r.target, term.signal);
    expect(during).toEqual([[1, 0]]);
    expect(r.timers.waits).toEqual([...Array.from({ length: 121 }, () => 7), 50, 50]);
    expect(await gauge(r.metrics.storeWaiting)).toBe(0);
    expect(await gauge(r.metrics.storeErrors)).toBe(121);
    const message = `Cannot write incident ${done.id}; NOT acting further until it is recorded (trying again every 7 ms): disk full`;
    expect(logged(r, "store_error")).toEqual([
      { severity: "ERROR", event: "operator.store_error", message, incident: done.id, rule: "lockout", failures: 1 },
      { severity: "ERROR", event: "operator.store_error", message, incident: done.id, rule: "lockout", failures: 60 },
      { severity: "ERROR", event: "operator.store_error", message, incident: done.id, rule: "lockout", failures: 120 },
      {
        severity: "WARNING",
        event: "operator.store_error",
        message: `Incident ${done.id} recorded again after 121 failed write(s); its ladder goes on`,
        incident: done.id,
        rule: "lockout",
        failures: 121,
      },
    ]);
    expect(done.status).toBe("resolved");
  });

  it("waits 1000 ms between writes by default", async () => {
    const r = await rig();
    r.store.failing = 1;
    await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 50 } }] }), r.target, new AbortController().signal);
    expect(r.timers.waits[0]).toBe(1000);
  });

  it("without a signal it gives up at once: a StoreFailure with the store's error as cause, and nothing sent", async () => {
    const r = await rig();
    r.store.failing = 1;
    const incident = opened("u1");
    const failure = await r.ladder().run(incident, lockout({ ladder: [{ rung: "force" }] }), r.target).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(StoreFailure);
    expect(failure).toMatchObject({ code: "ERR_RECLAIM_STORE", message: `could not persist incident ${incident.id}`, cause: { message: "disk full" } });
    expect(r.proxy.rungCalls()).toEqual([]);
    expect(r.timers.waits).toEqual([]);
    expect(await gauge(r.metrics.storeWaiting)).toBe(0);
    expect(await gauge(r.metrics.storeErrors)).toBe(1);
    expect(logged(r, "store_error")).toEqual([
      {
        severity: "ERROR",
        event: "operator.store_error",
        message: `Cannot write incident ${incident.id}; NOT acting further until it is recorded: disk full`,
        incident: incident.id,
        rule: "lockout",
        failures: 1,
      },
    ]);
  });

  it("the term ending during the hold gives up with a StoreFailure, the gauge back to 0", async () => {
    const r = await rig();
    r.store.failing = 5;
    const term = new AbortController();
    r.timers.onSleep = (n) => n === 1 && term.abort();
    const failure = await r.ladder({ storeRetryMs: 7 }).run(opened("u1"), lockout({ ladder: [{ rung: "force" }] }), r.target, term.signal).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(StoreFailure);
    expect(r.timers.waits).toEqual([7]);
    expect(await gauge(r.metrics.storeWaiting)).toBe(0);
    expect(await gauge(r.metrics.storeErrors)).toBe(2);
    expect(r.proxy.rungCalls()).toEqual([]);
  });

  it("leadership lost during the hold: NotLeader, the gauge back to 0", async () => {
    const r = await rig();
    r.store.failing = 5;
    r.timers.onSleep = (n) => {
      if (n === 1) r.guards.leader = () => false;
    };
    const incident = opened("u1");
    const failure = await r.ladder({ storeRetryMs: 7 }).run(incident, lockout({ ladder: [{ rung: "force" }] }), r.target, new AbortController().signal).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(NotLeader);
    expect(failure).toMatchObject({ code: "ERR_RECLAIM_NOT_LEADER", message: `not the leader any more; incident ${incident.id} is left for the next one` });
    expect(r.timers.waits).toEqual([7, 7]);
    expect(await gauge(r.metrics.storeWaiting)).toBe(0);
    expect(r.proxy.rungCalls()).toEqual([]);
  });

  it("not the leader at all: NotLeader before any write, nothing sent, the gauge untouched", async () => {
    const r = await rig();
    r.guards.leader = () => false;
    await expect(r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "force" }] }), r.target)).rejects.toBeInstanceOf(NotLeader);
    expect(r.store.calls).toBe(0);
    expect(r.proxy.rungCalls()).toEqual([]);
    expect(await gauge(r.metrics.storeWaiting)).toBe(0);
  });
});

describe("after the term ends nothing more is sent or written", () => {
  it("ended before the run: no request, no write", async () => {
    const r = await rig();
    const term = new AbortController();
    term.abort();
    await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "force" }] }), r.target, term.signal);
    expect(r.proxy.requests).toEqual([]);
    expect(r.store.calls).toBe(0);
  });

  it("ended as the pending rung was written: the rung is not sent", async () => {
    const r = await rig();
    const term = new AbortController();
    r.store.onSave = () => term.abort();
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "force" }] }), r.target, term.signal);
    expect(r.proxy.rungCalls()).toEqual([]);
    expect(done.rungs[0]).toMatchObject({ outcome: "pending", attempts: 0 });
    expect(r.store.saved).toHaveLength(1);
  });

  it("ended during the call: the rung stays pending, no result recorded", async () => {
    const r = await rig();
    r.proxy.fault("hang");
    const term = new AbortController();
    const running = r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "force" }] }), r.target, term.signal);
    await eventually(() => r.proxy.rungCalls().length === 1, 5000, "the rung call");
    term.abort();
    const done = await running;
    expect(done.rungs[0]).toMatchObject({ outcome: "pending", attempts: 1, error: null, response: null });
    expect(done.decisions.filter((d) => d.kind === "rung_finished")).toEqual([]);
    expect(r.store.saved).toHaveLength(1);
    expect(await series(r.metrics.rungs)).toEqual([]);
  });

  it("ended during a retry's wait: no further attempt", async () => {
    const r = await rig();
    r.proxy.fault("500");
    const term = new AbortController();
    r.timers.onSleep = () => term.abort();
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "force" }] }), r.target, term.signal);
    expect(r.proxy.rungCalls()).toHaveLength(1);
    expect(done.rungs[0]).toMatchObject({ outcome: "pending", attempts: 1 });
    expect(r.store.saved.at(-1)!.decisions.at(-1)!.kind).toBe("retry");
  });

  it("ended during verification: verification stops at once and nothing is recorded of it", async () => {
    const r = await rig();
    await hold(r.factory, "u1", 2, "no-pong");
    const term = new AbortController();
    r.timers.onSleep = () => term.abort();
    const done = await r.ladder().run(opened("u1"), lockout({ ladder: [{ rung: "probe", params: { timeoutMs: 50 } }] }), r.target, term.signal);
    expect(r.timers.waits).toEqual([]);
    expect(done.status).toBe("remediating");
    expect(done.rungs[0]).toMatchObject({ outcome: "ok", verification: null });
    expect(r.store.saved.at(-1)!.rungs[0]!.verification).toBeNull();
    expect(r.proxy.requests.filter((q) => isAdmission(q.method, q.path))).toHaveLength(2); // the snapshot and one check
  });
});
