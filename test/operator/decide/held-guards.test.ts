/**
 * `held` behind each of the rule's own guards (ADR 25): the engine asks a
 * real factory's control API whether the held-back user is still refused.
 * The factory's limit is 1, so one real client puts a user at the limit.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import type { TargetResolver } from "../../../src/operator/act/target.js";
import { Detector } from "../../../src/operator/detect/detector.js";
import { Engine, MAX_HELD_PER_RULE_HOUR, type Actor, type TriggerOutcome } from "../../../src/operator/decide/engine.js";
import { GuardState } from "../../../src/operator/decide/guards.js";
import { MemoryIncidentStore } from "../../../src/operator/incidents/memory-store.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { close } from "../../../src/operator/incidents/record.js";
import type { OperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";
import { hardLimit, rule, T0 } from "../../support/rules.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

const MIN = 60_000;

/** An engine acting through a real factory's control API; each ladder ends with `ending` at once. */
async function harness(r: CompiledRule, ending: "resolved" | "escalated") {
  factory = await startTestFactory({ limit: 1 });
  let now = T0;
  const store = new MemoryIncidentStore();
  const guards = new GuardState();
  const errors: string[] = [];
  const log: OperatorLog = { debug() {}, info() {}, warn() {}, error: (_e, _f, message) => void errors.push(message), close: () => Promise.resolve() };
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const control = new ControlClient(factory.controlUrl, TEST_CONTROL_TOKEN);
  const targets: TargetResolver = { resolve: (q) => Promise.resolve({ control, pod: q.pod, namespace: q.namespace }) };
  const actor: Actor = {
    act(incident) {
      close(incident, ending, now, "test");
      guards.closed(incident);
      engine.release(incident);
      void store.save(incident);
    },
  };
  const engine = new Engine({ detector: new Detector({ now: () => now }), guards, store, targets, actor, clock: { now: () => now }, metrics, log, dryRun: false });
  engine.setRules([r]);
  const fire = async (userId: string, at: number): Promise<TriggerOutcome> => {
    now = at;
    const [outcome] = await engine.handle(hardLimit(userId, at));
    await engine.refusalChecksDone();
    return outcome!;
  };
  const held = async (): Promise<Incident[]> => (await store.list()).filter((i) => i.status === "held");
  const checks = async (result: string): Promise<number> => (await metrics.refusalChecks.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  return { engine, store, fire, held, checks, errors };
}

describe("held: the factory still refuses a user the rule's guards hold back", () => {
  it("circuit_open: the held record says the breaker is open; a user the factory admits is not held", async () => {
    const h = await harness(rule("r", { guards: { cooldown: "1m", circuitBreaker: { failures: 2, openFor: "30m" } } }), "escalated");
    await factory!.open("locked"); // at the limit of 1: refused
    expect("acted" in (await h.fire("a", T0))).toBe(true);
    expect("acted" in (await h.fire("b", T0 + 1))).toBe(true);
    expect(await h.fire("free", T0 + 2)).toMatchObject({ suppressed: "circuit_open" });
    expect(await h.held()).toEqual([]);
    expect(await h.checks("admitted")).toBe(1);

    expect(await h.fire("locked", T0 + 3)).toMatchObject({ suppressed: "circuit_open" });
    const [held] = await h.held();
    expect(held).toMatchObject({ target: { userId: "locked" }, before: { admit: false, active: 1, effectiveLimit: 1 }, suppressed: { circuit_open: { count: 1 } } });
    expect(held!.decisions.at(-1)!.detail).toContain("circuit breaker is open after 2 failed or escalated incidents in a row");
    // The next trigger for the user is counted on it.
    await h.fire("locked", T0 + 2 * MIN);
    expect((await h.held()).map((i) => i.suppressed.circuit_open?.count)).toEqual([2]);
  });

  it("max_attempts: the held record names the attempts and the most the rule allows", async () => {
    const h = await harness(rule("r", { guards: { cooldown: "1m", maxAttemptsPerDay: 2 } }), "resolved");
    expect("acted" in (await h.fire("u", T0))).toBe(true);
    expect("acted" in (await h.fire("u", T0 + 2 * MIN))).toBe(true);
    await factory!.open("u");
    expect(await h.fire("u", T0 + 4 * MIN)).toMatchObject({ suppressed: "max_attempts" });
    const [held] = await h.held();
    expect(held!.decisions.at(-1)!.detail).toContain("2 attempts in the last day, the most the rule allows is 2");
    // A held record is no attempt and starts no cooldown: tomorrow the rule acts again.
    expect("acted" in (await h.fire("u", T0 + 25 * 60 * MIN))).toBe(true);
  });

  it(`rate_limit: at most ${MAX_HELD_PER_RULE_HOUR} held records per rule per hour; beyond, counted and said once`, async () => {
    const h = await harness(rule("r", { guards: { maxPerHour: 1 } }), "resolved");
    expect("acted" in (await h.fire("first", T0))).toBe(true);
    const users = Array.from({ length: MAX_HELD_PER_RULE_HOUR + 3 }, (_, i) => `user-${i}`);
    for (const u of users) await factory!.open(u);
    for (const [i, u] of users.entries()) expect(await h.fire(u, T0 + 1 + i)).toMatchObject({ suppressed: "rate_limit" });
    expect(await h.held()).toHaveLength(MAX_HELD_PER_RULE_HOUR);
    expect(await h.checks("capped")).toBe(3);
    expect(h.errors.filter((m) => m.includes("more users held back than are checked"))).toHaveLength(1);
  });
});
