/**
 * On-call's holds as guards (ADR 22): `paused` and `silenced` come right
 * after `not_leader`, before every guard of the rules, and a trigger they
 * stop is recorded, with the hold that stopped it — which silence, whose,
 * until when and why — and nothing acts on it.
 */
import { describe, expect, it } from "vitest";
import { Detector } from "../../../src/operator/detect/detector.js";
import { Engine, type Actor, type TriggerOutcome } from "../../../src/operator/decide/engine.js";
import { checkGuards, GuardState } from "../../../src/operator/decide/guards.js";
import { MemoryIncidentStore } from "../../../src/operator/incidents/memory-store.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { close } from "../../../src/operator/incidents/record.js";
import type { OperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { SilenceBook } from "../../../src/operator/silence/book.js";
import { expired, newPause, newSilence, type Silence } from "../../../src/operator/silence/model.js";
import { syntheticTrigger } from "../../../src/operator/detect/synthetic.js";
import { hardLimit, rule, T0 } from "../../support/rules.js";
import { ManualClock } from "../../support/clock.js";
import type { Timers } from "../../../src/contract/clock.js";

const silent: OperatorLog = { debug() {}, info() {}, warn() {}, error() {}, close: () => Promise.resolve() };
const MIN = 60_000;
const HOUR = 60 * MIN;

/** An engine over a real SilenceBook; its actor counts what it was asked to act on, and leaves it in flight unless `ending`. */
function harness(rules: CompiledRule[], options: { ending?: "resolved" | null; dryRun?: boolean } = {}) {
  let now = T0;
  // Time is this variable; the book's timer (the next end) sits on a manual clock nobody moves: the guards compare times themselves.
  const still = new ManualClock(T0);
  const clock: Timers = { now: () => now, sleep: (ms, signal) => still.sleep(ms, signal), timeout: (ms) => still.timeout(ms), after: (ms, fn) => still.after(ms, fn), every: (ms, fn) => still.every(ms, fn) };
  const store = new MemoryIncidentStore();
  const guards = new GuardState();
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const book = new SilenceBook({ where: "test", clock, log: silent, metrics });
  guards.holds = book;
  const acted: Incident[] = [];
  const ending = options.ending === undefined ? null : options.ending;
  const actor: Actor = {
    act(incident) {
      acted.push(incident);
      if (ending === null) return;
      close(incident, ending, now, "test");
      guards.closed(incident);
      engine.release(incident);
      void store.save(incident);
    },
  };
  const engine = new Engine({ detector: new Detector({ now: () => now }), guards, store, targets: null, actor, clock, metrics, log: silent, dryRun: options.dryRun ?? false });
  engine.setRules(rules);
  const holds = (...silences: Silence[]): void => book.replace({ silences, skipped: [] });
  const fire = async (userId: string, at: number, pod = "factory-0"): Promise<TriggerOutcome[]> => {
    now = at;
    const outcomes = await engine.handle(hardLimit(userId, at, pod));
    await engine.flush({ all: true });
    return outcomes;
  };
  const reasons = (outcomes: TriggerOutcome[]): string[] => outcomes.map((o) => ("acted" in o ? "acted" : o.suppressed));
  return { engine, store, guards, book, acted, holds, fire, reasons, setNow: (t: number) => (now = t) };
}

const silenceOf = (matchers: Silence["matchers"], by = "alice", comment = "user reported a bug; leave them be"): Silence =>
  newSilence({ matchers, forMs: 2 * HOUR, by, comment, now: T0 });

describe("the holds come first after not_leader", () => {
  it("order: not_leader, paused, silenced, then the rules' guards", () => {
    const h = harness([rule("lockout")]);
    const trigger = syntheticTrigger(h.engine.ruleSet[0]!, { userId: "u", pod: "factory-0", namespace: null }, T0, { kind: "sweep", message: "m", fields: {} })!;
    const silence = silenceOf({ userId: "u" });
    const pause = newPause({ forMs: HOUR, by: "bob", comment: "deploy", now: T0 });
    h.holds(silence, pause);
    h.guards.reserve(trigger); // in flight: a rule guard that would stop it too
    expect(checkGuards({ trigger, now: T0, globalDryRun: true }, h.guards)).toEqual({
      reason: "paused",
      passed: ["not_leader"],
      detail: `automation paused by bob until ${pause.endsAt}: "deploy"`,
    });
    h.holds(silence);
    expect(checkGuards({ trigger, now: T0, globalDryRun: true }, h.guards)).toEqual({
      reason: "silenced",
      passed: ["not_leader", "paused"],
      detail: `silenced by ${silence.id} (user=u) of alice until ${silence.endsAt}: "user reported a bug; leave them be"`,
    });
    h.holds();
    expect(checkGuards({ trigger, now: T0, globalDryRun: true }, h.guards).reason).toBe("in_flight");
    h.guards.leader = () => false;
    h.holds(silence, pause);
    expect(checkGuards({ trigger, now: T0, globalDryRun: true }, h.guards)).toEqual({ reason: "not_leader", passed: [] });
  });
});

describe("a silenced trigger", () => {
  it("is recorded (suppressed, silenced, naming the silence's id, author and comment) and not acted on; other users are", async () => {
    const h = harness([rule("lockout")]);
    const silence = silenceOf({ userId: "victim" });
    h.holds(silence);
    expect(h.reasons(await h.fire("victim", T0))).toEqual(["silenced"]);
    expect(h.reasons(await h.fire("victim", T0 + MIN))).toEqual(["silenced"]);
    expect(h.reasons(await h.fire("bystander", T0 + MIN))).toEqual(["acted"]);
    expect(h.acted.map((i) => i.target.userId)).toEqual(["bystander"]);
    const records = await h.store.list();
    const held = records.filter((i) => i.status === "suppressed");
    expect(held).toHaveLength(1);
    const [record] = held;
    expect(record!.rollup).toMatchObject({ reason: "silenced", keys: [{ userId: "victim", triggers: 2 }] });
    expect(record!.suppressed.silenced?.count).toBe(2);
    const named = record!.decisions.filter((d) => d.detail.includes(silence.id));
    expect(named).toHaveLength(1); // once per hold, not once per trigger
    expect(named[0]!.detail).toBe(`not acted on (silenced): silenced by ${silence.id} (user=victim) of alice until ${silence.endsAt}: "user reported a bug; leave them be"`);
  });

  it("of a key with an incident on record is counted on it, and the record names the silence", async () => {
    const h = harness([rule("lockout", { guards: { cooldown: "1m" } })], { ending: "resolved" });
    expect(h.reasons(await h.fire("victim", T0))).toEqual(["acted"]);
    const silence = silenceOf({ userId: "victim" }, "carol", "escalated to the chat team");
    h.holds(silence);
    expect(h.reasons(await h.fire("victim", T0 + 5 * MIN))).toEqual(["silenced"]);
    const [incident] = await h.store.list();
    expect(incident!.status).toBe("resolved");
    expect(incident!.suppressed.silenced?.count).toBe(1);
    expect(incident!.decisions.at(-1)!.detail).toContain(`silenced by ${silence.id} (user=victim) of carol`);
  });

  it.each<[string, Silence["matchers"], [string, string, string][]]>([
    ["a pod: every user on it, not on other pods", { pod: "factory-1" }, [["lockout", "a", "silenced"], ["other", "b", "silenced"]]],
    ["a rule: only that rule's triggers", { rule: "lockout" }, [["lockout", "a", "silenced"], ["other", "a", "acted"]]],
    ["a user on a pod: that user there, for every rule", { userId: "a", pod: "factory-1" }, [["lockout", "a", "silenced"], ["other", "a", "silenced"]]],
  ])("silencing %s", async (_name, matchers, expected) => {
    const h = harness([rule("lockout"), rule("other")]);
    h.holds(silenceOf(matchers));
    const seen: [string, string, string][] = [];
    for (const [user, pod] of [["a", "factory-1"], ["b", "factory-1"], ["a", "factory-2"], ["b", "factory-2"]] as const) {
      const outcomes = await h.fire(user, T0, pod);
      outcomes.forEach((o, n) => seen.push([n === 0 ? "lockout" : "other", `${user}@${pod}`, "acted" in o ? "acted" : o.suppressed]));
    }
    for (const [ruleName, user, reason] of expected) expect(seen).toContainEqual([ruleName, `${user}@factory-1`, reason]);
    // Nothing on factory-2 is held by a silence of factory-1, nor by one of user a there.
    if (matchers.pod !== undefined) expect(seen.filter(([, at, reason]) => at.endsWith("factory-2") && reason === "silenced")).toEqual([]);
  });

  it("is acted on again once the silence has ended or was expired", async () => {
    const h = harness([rule("lockout")]);
    const silence = silenceOf({ userId: "victim" });
    h.holds(silence);
    expect(h.reasons(await h.fire("victim", T0))).toEqual(["silenced"]);
    h.holds(expired(silence, "alice", T0 + MIN));
    expect(h.reasons(await h.fire("victim", T0 + 2 * MIN))).toEqual(["acted"]);
    const h2 = harness([rule("lockout")]);
    h2.holds(silence);
    expect(h2.reasons(await h2.fire("victim", T0 + 2 * HOUR))).toEqual(["acted"]); // its end passed
  });
});

describe("a pause", () => {
  it("holds back every rule and every user, dry runs included, and every record says who paused, why and until when", async () => {
    const h = harness([rule("lockout"), rule("other", { guards: { dryRun: true } })]);
    const pause = newPause({ forMs: HOUR, by: "bob", comment: "deploying the factory", now: T0 });
    h.holds(pause);
    expect(h.reasons(await h.fire("a", T0))).toEqual(["paused", "paused"]);
    expect(h.reasons(await h.fire("b", T0 + MIN))).toEqual(["paused", "paused"]);
    expect(h.acted).toEqual([]);
    const records = await h.store.list();
    expect(records.map((i) => [i.rule, i.status, i.rollup?.reason, i.rollup?.keys.map((k) => k.userId)])).toEqual([
      ["lockout", "suppressed", "paused", ["a", "b"]],
      ["other", "suppressed", "paused", ["a", "b"]],
    ]);
    for (const r of records) expect(r.decisions.map((d) => d.detail)).toContain(`not acted on (paused): automation paused by bob until ${pause.endsAt}: "deploying the factory"`);
    h.holds(expired(pause, "bob", T0 + 2 * MIN));
    // Acting again: the first rule acts, so the second waits for the user (user_busy), as without a pause.
    expect(h.reasons(await h.fire("a", T0 + 3 * MIN))).toEqual(["acted", "user_busy"]);
  });
});
