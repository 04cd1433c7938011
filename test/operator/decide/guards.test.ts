/**
 * Every guard, table-driven: the state that makes it stop a trigger, the
 * reason it gives, and that the incident it counts on is the key's latest.
 */
import { describe, expect, it } from "vitest";
import { Detector, type Trigger } from "../../../src/operator/detect/detector.js";
import { Engine, type Actor, type TriggerOutcome } from "../../../src/operator/decide/engine.js";
import { GuardState, checkGuards } from "../../../src/operator/decide/guards.js";
import { MemoryIncidentStore } from "../../../src/operator/incidents/memory-store.js";
import { close } from "../../../src/operator/incidents/record.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import type { OperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { hardLimit, rule, T0 } from "../../support/rules.js";
import { ManualClock } from "../../support/clock.js";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import type { Target, TargetResolver } from "../../../src/operator/act/target.js";
import { syntheticTrigger } from "../../../src/operator/detect/synthetic.js";

const silent: OperatorLog = { debug() {}, info() {}, warn() {}, error() {}, close: () => Promise.resolve() };

/** An engine whose actor ends each ladder with `ending` after it starts. */
function harness(r: CompiledRule, options: { dryRun?: boolean; ending?: "resolved" | "escalated" | "failed" | null } = {}) {
  let now = T0;
  const store = new MemoryIncidentStore();
  const guards = new GuardState();
  const ending = options.ending === undefined ? "resolved" : options.ending;
  const actor: Actor = {
    act(incident) {
      if (ending === null) return; // stays in flight
      close(incident, ending, now, "test");
      guards.closed(incident);
      engine.release(incident);
      void store.save(incident);
    },
  };
  const engine = new Engine({
    detector: new Detector({ now: () => now }),
    guards,
    store,
    targets: null,
    actor,
    clock: { now: () => now },
    metrics: new OperatorMetrics({ defaultMetrics: false }),
    log: silent,
    dryRun: options.dryRun ?? false,
  });
  engine.setRules([r]);
  const fire = async (userId: string, at: number): Promise<TriggerOutcome> => {
    now = at;
    const outcomes = await engine.handle(hardLimit(userId, at));
    if (outcomes.length !== 1) throw new Error(`expected one trigger, got ${outcomes.length}`);
    return outcomes[0]!;
  };
  return { engine, store, guards, fire, setNow: (t: number) => (now = t) };
}

const reasonOf = (o: TriggerOutcome): string => ("acted" in o ? "acted" : o.suppressed);

/** A trigger of the harness's rule for `userId` (as the sweep would raise it). */
async function triggerOf(h: { engine: Engine }, userId: string): Promise<Trigger> {
  const r = h.engine.ruleSet[0]!;
  return Promise.resolve(syntheticTrigger(r, { userId, pod: "factory-0", namespace: null }, T0, { kind: "sweep", message: "at the limit", fields: {} })!);
}
const MIN = 60_000;

describe("guards", () => {
  it.each<[string, Parameters<typeof rule>[1], { dryRun?: boolean; ending?: "resolved" | "escalated" | null }, [string, number][], string[]]>([
    ["in_flight: a second trigger while the first ladder runs", {}, { ending: null }, [["u", T0], ["u", T0 + MIN]], ["acted", "in_flight"]],
    [
      "cooldown: a trigger within the cooldown after the incident ended",
      { guards: { cooldown: "10m" } },
      {},
      [["u", T0], ["u", T0 + 5 * MIN], ["u", T0 + 11 * MIN]],
      ["acted", "cooldown", "acted"],
    ],
    [
      "max_attempts: more incidents for one key in a day than allowed",
      { guards: { cooldown: "1m", maxAttemptsPerDay: 2 } },
      {},
      [["u", T0], ["u", T0 + 2 * MIN], ["u", T0 + 4 * MIN], ["u", T0 + 25 * 60 * MIN]],
      ["acted", "acted", "max_attempts", "acted"],
    ],
    [
      "rate_limit: more incidents across keys in an hour than allowed",
      { guards: { maxPerHour: 2 } },
      {},
      [["a", T0], ["b", T0 + 1], ["c", T0 + 2], ["d", T0 + 61 * MIN]],
      ["acted", "acted", "rate_limit", "acted"],
    ],
    [
      "circuit_open: after N failed verifications in a row the rule stops acting for a period",
      { guards: { cooldown: "1m", circuitBreaker: { failures: 2, openFor: "30m" } } },
      { ending: "escalated" },
      [["a", T0], ["b", T0 + 1], ["c", T0 + 2], ["d", T0 + 31 * MIN]],
      ["acted", "acted", "circuit_open", "acted"],
    ],
    ["dry_run (rule): records what it would do, acts on nothing", { guards: { dryRun: true } }, {}, [["u", T0]], ["dry_run"]],
    ["dry_run (--dry-run): the same for every rule", {}, { dryRun: true }, [["u", T0]], ["dry_run"]],
  ])("%s", async (_name, spec, options, triggers, expected) => {
    const h = harness(rule("r", spec), options);
    const got: string[] = [];
    for (const [user, at] of triggers) got.push(reasonOf(await h.fire(user, at)));
    expect(got).toEqual(expected);
  });

  it("user_busy: a second rule waits while another rule's ladder acts on the same user (and pod)", async () => {
    let now = T0;
    const store = new MemoryIncidentStore();
    const guards = new GuardState();
    const engine = new Engine({
      detector: new Detector({ now: () => now }),
      guards,
      store,
      targets: null,
      actor: { act: () => undefined }, // ladders stay in flight
      clock: { now: () => now },
      metrics: new OperatorMetrics({ defaultMetrics: false }),
      log: silent,
      dryRun: false,
    });
    const log = rule("log-rule");
    const other = rule("other-rule");
    engine.setRules([log, other]);
    const outcomes = (await engine.handle(hardLimit("u", now))).map(reasonOf);
    expect(outcomes).toEqual(["acted", "user_busy"]);
    now += 1000;
    const otherPod = { ...hardLimit("u", now, "factory-9") };
    // Another pod has its own limit: the first rule acts there too; the second waits for it again.
    expect((await engine.handle(otherPod)).map(reasonOf)).toEqual(["acted", "user_busy"]);
    expect(guards.userBusy("u", null)).toBe(true); // a trigger that does not know the pod waits too
    expect(guards.userBusy("someone-else", "factory-0")).toBe(false);
  });

  it("two triggers for one key that arrive together never both act: the verdict and the hold on the key are one step", async () => {
    // A log rule, the sweep (the same rule) and a metric rule (another rule) call in for one user while the pod
    // lookup of the first is still in flight.
    let release!: () => void;
    const lookup = new Promise<void>((resolve) => (release = resolve));
    const target: Target = { control: new ControlClient("http://127.0.0.1:9", "x".repeat(16)), pod: "factory-0", namespace: null };
    const targets: TargetResolver = { resolve: async () => (await lookup, target) };
    const store = new MemoryIncidentStore();
    const acted: string[] = [];
    const engine = new Engine({
      detector: new Detector({ now: () => T0 }),
      guards: new GuardState(),
      store,
      targets,
      actor: { act: (incident) => void acted.push(incident.rule) }, // ladders stay in flight
      clock: { now: () => T0 },
      metrics: new OperatorMetrics({ defaultMetrics: false }),
      log: silent,
      dryRun: false,
    });
    const logRule = rule("log-rule");
    const metricRule = rule("metric-rule");
    engine.setRules([logRule, metricRule]);
    const at = (r: CompiledRule): Trigger =>
      syntheticTrigger(r, { userId: "u", pod: "factory-0", namespace: null }, T0, { kind: "sweep", message: "at the limit", fields: {} })!;
    const outcomes = [engine.onTrigger(at(logRule)), engine.onTrigger(at(logRule)), engine.onTrigger(at(metricRule))];
    release();
    expect((await Promise.all(outcomes)).map(reasonOf)).toEqual(["acted", "in_flight", "user_busy"]);
    expect(acted).toEqual(["log-rule"]);
    expect((await store.list()).filter((i) => i.status === "open")).toHaveLength(1);
  });

  it("a trigger whose pod lookup fails is tried again with backoff and acted on once it succeeds: the entry is not lost", async () => {
    const clock = new ManualClock(T0);
    let failures = 2;
    const target: Target = { control: new ControlClient("http://127.0.0.1:9", "x".repeat(16)), pod: "factory-0", namespace: null };
    const targets: TargetResolver = {
      resolve: () => (failures-- > 0 ? Promise.reject(new Error("the Kubernetes API answered 500")) : Promise.resolve(target)),
    };
    const logged: string[] = [];
    const log: OperatorLog = { ...silent, error: (_e, _f, message) => void logged.push(message) };
    const metrics = new OperatorMetrics({ defaultMetrics: false });
    const engine = new Engine({
      detector: new Detector({ now: () => clock.now() }),
      guards: new GuardState(),
      store: new MemoryIncidentStore(),
      targets,
      actor: { act: () => undefined },
      clock,
      metrics,
      log,
      dryRun: false,
      timers: clock,
      retryBackoffMs: [100, 1000],
    });
    engine.setRules([rule("r")]);
    const handled = engine.handle(hardLimit("u", T0));
    await clock.run(100); // the first retry: fails again
    await clock.run(200); // the second: succeeds
    const outcomes = await handled;
    expect(outcomes.map(reasonOf)).toEqual(["acted"]);
    expect(logged[0]).toMatch(/^Could not handle the trigger for userId=u,pod=factory-0 \(rule r\); trying again in 100 ms, nothing is acted on meanwhile: the Kubernetes API answered 500$/);
    expect(await metrics.registry.getSingleMetricAsString("reclaim_operator_trigger_errors_total")).toContain('reclaim_operator_trigger_errors_total{rule="r"} 2');
  });

  it("a trigger whose term ended while it waited to be tried again is dropped, not acted on", async () => {
    const clock = new ManualClock(T0);
    const term = new AbortController();
    const engine = new Engine({
      detector: new Detector({ now: () => clock.now() }),
      guards: new GuardState(),
      store: new MemoryIncidentStore(),
      targets: { resolve: () => Promise.reject(new Error("API down")) },
      actor: { act: () => expect.unreachable("acted after the term ended") },
      clock,
      metrics: new OperatorMetrics({ defaultMetrics: false }),
      log: silent,
      dryRun: false,
      signal: term.signal,
      timers: clock,
    });
    engine.setRules([rule("r")]);
    const handled = engine.handle(hardLimit("u", T0));
    await clock.run(50);
    term.abort();
    expect(await handled).toEqual([]);
  });

  it("a suppression whose key's latest record is damaged gets a record of its own instead of failing", async () => {
    const h = harness(rule("r", { guards: { cooldown: "10m" } }));
    const first = await h.fire("u", T0);
    const id = "acted" in first ? first.acted.id : "";
    const damaged = Object.assign(new Error(`incident record ${id}.json is corrupt`), { code: "ERR_RECLAIM_INCIDENT_CORRUPT" });
    h.store.get = () => Promise.reject(damaged);
    const second = await h.fire("u", T0 + 60_000);
    expect(reasonOf(second)).toBe("cooldown");
    expect("incident" in second && second.incident?.id).not.toBe(id);
    // Any other read failure may pass: it is thrown, and the trigger is tried again.
    h.store.get = () => Promise.reject(new Error("the API server answered 500"));
    await expect(h.engine.onTrigger(await triggerOf(h, "u"))).rejects.toThrow("the API server answered 500");
  });

  it("a dry run leaves nothing behind: the first live trigger after it acts, with no cooldown or attempt from the dry run", async () => {
    const r = rule("r", { guards: { cooldown: "10m", maxAttemptsPerDay: 1 } });
    const dry = harness(r, { dryRun: true });
    expect(reasonOf(await dry.fire("u", T0))).toBe("dry_run");
    expect(reasonOf(await dry.fire("u", T0 + MIN))).toBe("cooldown"); // within the dry run, it records what live would do
    // The rollout path: dry run first, then live, over the same records.
    const live = new GuardState();
    live.rebuild(await dry.store.list());
    expect(live.cooling("r", "userId=u,pod=factory-0", T0 + 2 * MIN, 10 * MIN)).toBe(false);
    expect(live.attemptsToday("r", "userId=u,pod=factory-0", T0 + 2 * MIN)).toBe(0);
    expect(live.actedThisHour("r", T0 + 2 * MIN)).toBe(0);
    expect(checkGuards({ trigger: await triggerOf(dry, "u"), now: T0 + 2 * MIN, globalDryRun: false }, live).reason).toBeNull();
    // And in one process: the rule's dryRun flag turned off by a reload.
    expect(checkGuards({ trigger: await triggerOf(dry, "u"), now: T0 + 2 * MIN, globalDryRun: false }, dry.guards).reason).toBeNull();
  });

  it("remembers a bounded number of keys, and forgets those no guard can use any more, so weeks of lockouts cost flat memory", async () => {
    const r = rule("r", { guards: { cooldown: "10m", maxAttemptsPerDay: 3, maxPerHour: 100_000 } });
    const state = new GuardState({ maxKeys: 100 });
    const h = harness(r);
    for (let n = 0; n < 1000; n++) await h.fire(`user-${n}`, T0 + n);
    state.rebuild(await h.store.list());
    expect(state.size.live).toBe(100); // the least recently changed were forgotten first
    expect(state.cooling("r", "userId=user-999,pod=factory-0", T0 + 1000, 10 * MIN)).toBe(true);
    state.prune(T0 + 1000 + 25 * 60 * MIN); // a day and an hour later: every attempt and cooldown has run out
    expect(state.size).toEqual({ live: 0, dry: 0, inFlight: 0, users: 0 });
    // A longer horizon (a rule's cooldown of two days) keeps them.
    const kept = new GuardState();
    kept.rebuild(await h.store.list());
    kept.prune(T0 + 1000 + 25 * 60 * MIN, 2 * 24 * 60 * MIN);
    expect(kept.size.live).toBe(1000);
  });

  it("not_leader stops everything (the slot for leader election)", () => {
    const state = new GuardState();
    state.leader = () => false;
    const trigger = { rule: rule(), keyString: "userId=u" } as unknown as Trigger;
    expect(checkGuards({ trigger, now: T0, globalDryRun: false }, state)).toEqual({ reason: "not_leader", passed: [] });
  });

  it("records every passed guard on the incident and counts suppressions on it, not in new records", async () => {
    const h = harness(rule("r"), { ending: null });
    const first = await h.fire("u", T0);
    for (let i = 1; i <= 50; i++) await h.fire("u", T0 + i * 1000);
    const incidents = await h.store.list();
    expect(incidents).toHaveLength(1);
    const only = incidents[0]!;
    expect("acted" in first && first.acted.id).toBe(only.id);
    expect(only.suppressed.in_flight?.count).toBe(50);
    expect(only.decisions.find((d) => d.kind === "guards_passed")?.detail).toBe(
      "guards passed: not_leader, paused, silenced, in_flight, user_busy, cooldown, max_attempts, rate_limit, circuit_open, dry_run",
    );
  });

  it("a key without any incident that a rule-wide guard stops is listed in the hour's rollup record, then counted there (ADR 12)", async () => {
    const h = harness(rule("r", { guards: { maxPerHour: 1 } }));
    await h.fire("a", T0);
    await h.fire("b", T0 + 1000);
    await h.fire("b", T0 + 2000);
    await h.engine.flush();
    const suppressed = (await h.store.list()).filter((i: Incident) => i.status === "suppressed");
    expect(suppressed).toHaveLength(1);
    expect(suppressed[0]).toMatchObject({ suppressed: { rate_limit: { count: 2 } }, rollup: { reason: "rate_limit", keys: [{ userId: "b", triggers: 2 }] } });
  });

  it("a new term that reads again entries an incident already had to handle drops them as duplicates, even after the cooldown; a newer entry is acted on", async () => {
    const h = harness(rule("r", { guards: { cooldown: "1s" } }), { ending: null }); // the ladder stays in flight
    expect(reasonOf(await h.fire("u", T0))).toBe("acted");
    expect(reasonOf(await h.fire("u", T0 + 1000))).toBe("in_flight"); // the user tried again while the ladder ran
    const [open] = await h.store.list();
    close(open!, "resolved", T0 + 2000, "test");
    h.guards.closed(open!);
    await h.store.save(open!);
    // The next term: guards and detector built afresh, the same store. Its source starts 60 s back.
    let now = T0 + 30_000;
    const guards = new GuardState();
    guards.rebuild(await h.store.list());
    const metrics = new OperatorMetrics({ defaultMetrics: false });
    const engine = new Engine({
      detector: new Detector({ now: () => now }),
      guards,
      store: h.store,
      targets: null,
      actor: { act: () => undefined },
      clock: { now: () => now },
      metrics,
      log: silent,
      dryRun: false,
    });
    engine.setRules(h.engine.ruleSet);
    // The entry the incident was opened on, the one its ladder was busy for, and one just before it closed.
    for (const at of [T0, T0 + 1000, T0 + 2000]) expect(await engine.handle(hardLimit("u", at))).toEqual([]);
    expect((await metrics.entriesDropped.get()).values).toEqual([expect.objectContaining({ labels: { rule: "r", reason: "duplicate" }, value: 3 })]);
    expect(await h.store.list()).toHaveLength(1);
    // Another key is news, and so is a later entry of this one.
    expect((await engine.handle(hardLimit("v", T0))).map(reasonOf)).toEqual(["acted"]);
    now += 1000;
    expect((await engine.handle(hardLimit("u", T0 + 2001))).map(reasonOf)).toEqual(["acted"]);
  });

  it("an entry covered in the dry-run ledger is not covered live, and the other way round", async () => {
    const dry = harness(rule("r", { guards: { dryRun: true } }));
    expect(reasonOf(await dry.fire("u", T0))).toBe("dry_run");
    const guards = new GuardState();
    guards.rebuild(await dry.store.list());
    const trigger = await triggerOf(dry, "u");
    expect(guards.covered({ ...trigger, at: T0 }, true)).toBe(true);
    expect(guards.covered({ ...trigger, at: T0 }, false)).toBe(false);
    expect(guards.covered({ ...trigger, at: T0 + 1 }, true)).toBe(false);
  });

  it("state rebuilt from the store gives the same verdicts", async () => {
    const h = harness(rule("r", { guards: { cooldown: "10m", maxPerHour: 5 } }), { ending: "resolved" });
    await h.fire("u", T0);
    const rebuilt = new GuardState();
    rebuilt.rebuild(await h.store.list());
    expect(rebuilt.cooling("r", "userId=u,pod=factory-0", T0 + 5 * MIN, 10 * MIN)).toBe(true);
    expect(rebuilt.cooling("r", "userId=u,pod=factory-0", T0 + 11 * MIN, 10 * MIN)).toBe(false);
    expect(rebuilt.actedThisHour("r", T0 + 30 * MIN)).toBe(1);
  });
});
