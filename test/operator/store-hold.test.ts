/**
 * When the incident store cannot write (ADR 14): the engine holds a new
 * incident and writes it again (`retryHeld`), the ladder holds between steps.
 * The edge cases of both, with a store that fails as a full disk does (a real
 * ENOSPC error object from the file system, not a made-up one); the whole
 * operator against a really full and really read-only folder is the fault
 * matrix's row 7 (test/faults/07-incident-store.test.ts).
 */
import { writeFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { ControlClient } from "../../src/operator/act/control-client.js";
import { Detector } from "../../src/operator/detect/detector.js";
import { Engine, type Actor } from "../../src/operator/decide/engine.js";
import { GuardState } from "../../src/operator/decide/guards.js";
import { MemoryIncidentStore } from "../../src/operator/incidents/memory-store.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { LadderRunner, StoreFailure } from "../../src/operator/act/ladder.js";
import type { OperatorLog } from "../../src/operator/log.js";
import { OperatorMetrics } from "../../src/operator/metrics.js";
import type { CompiledRule } from "../../src/operator/rules/compile.js";
import { StaticTarget } from "../../src/operator/act/target.js";
import { hardLimit, rule, T0 } from "../support/rules.js";

/** What writing to a full file system throws: taken from the kernel once (/dev/full), so it is the real thing. */
const ENOSPC: Error = await writeFile("/dev/full", "x").then(
  () => new Error("/dev/full accepted a write"),
  (err: Error) => err,
);

/** A memory store whose saves fail with ENOSPC while `full` is true. */
class FullableStore extends MemoryIncidentStore {
  full = true;
  saves = 0;
  override save(incident: Incident): Promise<void> {
    this.saves++;
    return this.full ? Promise.reject(ENOSPC) : super.save(incident);
  }
}

interface Logged {
  level: string;
  event: string;
  message: string;
}

function setUp(rules: CompiledRule[] = [rule("lockout")]): {
  engine: Engine;
  store: FullableStore;
  acted: Incident[];
  logged: Logged[];
  metrics: OperatorMetrics;
  clock: { t: number; now(): number };
} {
  const clock = { t: T0, now: () => clock.t };
  const store = new FullableStore();
  const acted: Incident[] = [];
  const logged: Logged[] = [];
  const at =
    (level: string) =>
    (event: string, _f: unknown, message: string): void =>
      void logged.push({ level, event, message });
  const log: OperatorLog = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), close: () => Promise.resolve() };
  const actor: Actor = { act: (incident) => void acted.push(incident) };
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const engine = new Engine({ detector: new Detector({ now: () => clock.t }), guards: new GuardState(), store, targets: null, actor, clock, metrics, log, dryRun: false });
  engine.setRules(rules);
  return { engine, store, acted, logged, metrics, clock };
}

async function gauge(metrics: OperatorMetrics, name: string): Promise<number> {
  const text = await metrics.registry.metrics();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
}

describe("the engine, when the store cannot record a new incident", () => {
  it("holds it (not acted on), counts repeats on it, and acts on that same incident once it is written", async () => {
    const { engine, store, acted, logged, metrics, clock } = setUp();
    expect(await engine.handle(hardLimit("u1", T0))).toEqual([{ suppressed: "store_unavailable", incident: null }]);
    expect(logged.filter((l) => l.level === "error").map((l) => l.message)).toEqual([expect.stringMatching(/NOT acting until it is recorded.*ENOSPC/)]);
    clock.t += 1000;
    await engine.handle(hardLimit("u1", clock.t)); // a repeat for the same key while held
    await engine.retryHeld(); // still full
    expect(acted).toEqual([]);
    expect(engine.heldCount).toBe(1);
    expect(await gauge(metrics, "reclaim_operator_store_waiting")).toBe(1);
    expect(await gauge(metrics, "reclaim_operator_store_errors_total")).toBe(2);

    store.full = false;
    clock.t += 1000;
    await engine.retryHeld();
    expect(acted).toHaveLength(1);
    const [stored, ...more] = await store.list();
    expect(more).toEqual([]);
    expect(stored!.id).toBe(acted[0]!.id);
    expect(stored!.suppressed.store_unavailable?.count).toBe(1);
    expect(stored!.decisions.filter((d) => d.kind === "retry").map((d) => d.detail)).toEqual([
      "the incident store could not record it for 2 s (2 failed write(s)); recorded now",
    ]);
    expect(engine.heldCount).toBe(0);
    expect(await gauge(metrics, "reclaim_operator_store_waiting")).toBe(0);
    await engine.retryHeld(); // nothing left: nothing happens
    expect(acted).toHaveLength(1);
  });

  it("one that waited past its rule's maxAge is recorded as not acted on (stale), not acted on late", async () => {
    const { engine, store, acted, clock } = setUp([rule("lockout", { maxAge: "1m" })]);
    await engine.handle(hardLimit("u1", T0));
    store.full = false;
    clock.t += 61_000;
    await engine.retryHeld();
    expect(acted).toEqual([]);
    const [stored] = await store.list();
    expect(stored).toMatchObject({ status: "suppressed", suppressed: { stale: { count: 1 } } });
    expect(stored!.decisions.at(-1)!.detail).toMatch(/^not acted on: the incident store could not record it for 61 s .*older than maxAge/);
  });

  it("one whose rule was removed meanwhile is recorded as not acted on", async () => {
    const { engine, store, acted } = setUp();
    await engine.handle(hardLimit("u1", T0));
    engine.setRules([rule("another")]);
    store.full = false;
    await engine.retryHeld();
    expect(acted).toEqual([]);
    const [stored] = await store.list();
    expect(stored!.status).toBe("suppressed");
    expect(stored!.decisions.at(-1)!.detail).toContain("rule lockout is no longer loaded");
  });

  it("stops retrying at the first write that still fails; dropHeld names each one dropped", async () => {
    const { engine, store, logged, metrics } = setUp();
    await engine.handle(hardLimit("u1", T0));
    await engine.handle(hardLimit("u2", T0));
    const before = store.saves;
    await engine.retryHeld();
    expect(store.saves - before).toBe(1); // not one write per held incident while the disk is still full
    expect(engine.dropHeld("the operator stopped")).toBe(2);
    expect(logged.filter((l) => l.message.includes("was never recorded and NOT acted on (the operator stopped)"))).toHaveLength(2);
    expect(engine.heldCount).toBe(0);
    expect(await gauge(metrics, "reclaim_operator_store_waiting")).toBe(0);
  });

  it("holds at most 1000: the oldest is dropped, and named, beyond that", async () => {
    const { engine, logged, metrics } = setUp();
    for (let n = 0; n <= 1000; n++) await engine.handle(hardLimit(`user-${n}`, T0));
    expect(engine.heldCount).toBe(1000);
    expect(await gauge(metrics, "reclaim_operator_store_waiting")).toBe(1000);
    expect(logged.filter((l) => l.message.includes("dropped without a record"))).toHaveLength(1);
  });
});

describe("the ladder, when the store cannot record a step", () => {
  it("holds without calling anything, and gives up (StoreFailure) only when its run is aborted", async () => {
    const { engine, store, metrics } = setUp();
    store.full = false;
    const [outcome] = await engine.handle(hardLimit("u1", T0));
    const incident = (outcome as { acted: Incident }).acted;
    store.full = true;
    const guards = new GuardState();
    const silent: OperatorLog = { debug() {}, info() {}, warn() {}, error() {}, close: () => Promise.resolve() };
    const ladder = new LadderRunner({ store, guards, clock: { now: () => Date.now() }, metrics, log: silent }, { storeRetryMs: 20 });
    // Nothing listens on port 9: any call the ladder made would fail there and show up as a rung run.
    const target = await new StaticTarget(new ControlClient("http://127.0.0.1:9", "x".repeat(16))).resolve({ userId: "u1", pod: null, namespace: null });
    const abort = new AbortController();
    const running = ladder.run(incident, rule("lockout").rule, target, abort.signal);
    const before = store.saves;
    while (store.saves - before < 3) await new Promise((r) => setTimeout(r, 10));
    expect(await gauge(metrics, "reclaim_operator_store_waiting")).toBe(1);
    abort.abort();
    await expect(running).rejects.toBeInstanceOf(StoreFailure);
    // Nothing was called: a rung may be in the record in memory, never sent.
    expect(incident.rungs.map((r) => [r.outcome, r.attempts])).toEqual(incident.rungs.map(() => ["pending", 0]));
    expect(await gauge(metrics, "reclaim_operator_store_waiting")).toBe(0);
    // Without a signal there is nobody to wait for: it gives up at once, as before.
    await expect(ladder.run(structuredClone(incident), rule("lockout").rule, target)).rejects.toBeInstanceOf(StoreFailure);
  });
});
