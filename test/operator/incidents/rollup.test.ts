/**
 * Rollup records (ADR 12): keys without an incident that a rule-wide guard
 * (rate_limit, circuit_open) stops are listed in one record per rule, reason
 * and hour — bounded in size and count — written once per flush, rebuilt on
 * restart, rendered for on-call, and kept the same by every store.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { Detector } from "../../../src/operator/detect/detector.js";
import { Engine, type Actor, type TriggerOutcome } from "../../../src/operator/decide/engine.js";
import { GuardState } from "../../../src/operator/decide/guards.js";
import { FileIncidentStore } from "../../../src/operator/incidents/file-store.js";
import { renderMarkdown } from "../../../src/operator/incidents/markdown.js";
import { MemoryIncidentStore } from "../../../src/operator/incidents/memory-store.js";
import { MAX_ROLLUP_KEYS, MAX_ROLLUP_PARTS, type Incident } from "../../../src/operator/incidents/model.js";
import { close } from "../../../src/operator/incidents/record.js";
import { ROLLUP_COUNTS_EVERY_MS } from "../../../src/operator/incidents/rollup.js";
import type { IncidentStore } from "../../../src/operator/incidents/store.js";
import { summarizeDigest } from "../../../src/operator/jobs/digest.js";
import { incidentCrd } from "../../../src/operator/k8s/crds.js";
import { KubernetesIncidentStore } from "../../../src/operator/k8s/incident-store.js";
import { toIncidentObject } from "../../../src/operator/k8s/resources.js";
import type { OperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { Replayer } from "../../../src/operator/replay.js";
import { resourceProblems } from "../../support/crd-values.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../../support/k8s/server.js";
import { hardLimit, rule, T0 } from "../../support/rules.js";

const HOUR = 3_600_000;

interface Logged {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

/** An engine over `store` whose actor ends every ladder with `ending` at once. */
function harness(r: CompiledRule, options: { store?: IncidentStore; ending?: "resolved" | "failed"; guards?: GuardState } = {}) {
  let now = T0;
  const store = options.store ?? new MemoryIncidentStore();
  const guards = options.guards ?? new GuardState();
  const logged: Logged[] = [];
  const log: OperatorLog = {
    debug: (_e, fields, message) => logged.push({ level: "debug", fields, message }),
    info: (_e, fields, message) => logged.push({ level: "info", fields, message }),
    warn: (_e, fields, message) => logged.push({ level: "warn", fields, message }),
    error: (_e, fields, message) => logged.push({ level: "error", fields, message }),
    close: () => Promise.resolve(),
  };
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const actor: Actor = {
    act(incident) {
      close(incident, options.ending ?? "resolved", now, "test");
      guards.closed(incident);
      engine.release(incident);
      void store.save(incident);
    },
  };
  const engine = new Engine({ detector: new Detector({ now: () => now }), guards, store, targets: null, actor, clock: { now: () => now }, metrics, log, dryRun: false });
  engine.setRules([r]);
  const fire = async (userId: string, at: number, pod = "factory-0"): Promise<TriggerOutcome> => {
    now = at;
    const outcomes = await engine.handle(hardLimit(userId, at, pod));
    if (outcomes.length !== 1) throw new Error(`expected one trigger, got ${outcomes.length}`);
    return outcomes[0]!;
  };
  const counter = async (name: string, labels: string): Promise<number> => {
    const text = await metrics.registry.metrics();
    const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
    return line === undefined ? 0 : Number(line.split(" ").pop());
  };
  return { engine, store, guards, metrics, logged, fire, counter };
}

const acted = (o: TriggerOutcome): boolean => "acted" in o;
const rollups = (incidents: Incident[]): Incident[] => incidents.filter((i) => i.rollup !== undefined);

describe("rollup records", () => {
  it("a flood beyond maxPerHour: exactly maxPerHour acted on, every other user listed once in one record, written only by flush()", async () => {
    const h = harness(rule("r", { guards: { maxPerHour: 5, cooldown: "10m" } }));
    const users = Array.from({ length: 300 }, (_, n) => `user-${n}`);
    const outcomes: TriggerOutcome[] = [];
    for (let round = 0; round < 3; round++) for (const [n, u] of users.entries()) outcomes.push(await h.fire(u, T0 + round * 60_000 + n));

    expect(outcomes.filter(acted)).toHaveLength(5);
    // Nothing of the rollup is written before the flush: one write per batch, not per line.
    expect(rollups(await h.store.list())).toEqual([]);
    expect(await h.engine.flush()).toBe(true);

    const all = await h.store.list();
    const perKey = all.filter((i) => i.rollup === undefined);
    const [rolled, ...more] = rollups(all);
    expect(more).toEqual([]);
    expect(perKey.map((i) => i.target.userId)).toEqual(users.slice(0, 5));
    expect(rolled).toMatchObject({ status: "suppressed", rule: "r", key: {}, rollup: { reason: "rate_limit", part: 1, unlisted: { triggers: 0 } } });
    const listed = rolled!.rollup!.keys.map((k) => k.userId);
    expect(listed).toEqual(users.slice(5));
    expect(rolled!.rollup!.keys.every((k) => k.triggers === 3)).toBe(true);
    expect(rolled!.suppressed.rate_limit?.count).toBe(295 * 3);
    // Every user accounted for: acted on, or listed; and the metric counts the listed keys once.
    expect(new Set([...perKey.map((i) => i.target.userId), ...listed]).size).toBe(300);
    expect(await h.counter("reclaim_operator_suppressed_keys_total", 'rule="r",reason="rate_limit"')).toBe(295);
    expect(await h.counter("reclaim_operator_triggers_total", 'rule="r",outcome="suppressed",reason="rate_limit"')).toBe(295 * 3);
    // The acted users' later triggers are counted on their own incidents (cooldown), not rolled up.
    expect(perKey.every((i) => i.suppressed.cooldown?.count === 2)).toBe(true);
    // One info line names each user the first time; repeats are not logged (the record and the metrics count them).
    expect(h.logged.filter((l) => l.fields.reason === "rate_limit").map((l) => [l.level, l.fields.userId])).toEqual(users.slice(5).map((u) => ["info", u]));
    // The state a flood leaves is the listed keys, not one entry per line.
    expect(h.guards.rollups.size).toEqual({ records: 1, keys: 295, dirty: 0 });
    // Nothing is written again when nothing changed.
    expect(h.guards.rollups.takeDirty(T0 + HOUR, 0)).toEqual([]);
  });

  it("a record that lists a new key is written at the next flush; one whose only change is counts at most every ROLLUP_COUNTS_EVERY_MS", async () => {
    const store = new MemoryIncidentStore();
    let saves = 0;
    const counting: IncidentStore = { save: (i) => (saves++, store.save(i)), get: (id) => store.get(id), list: (f) => store.list(f) };
    const h = harness(rule("r", { guards: { maxPerHour: 1 } }), { store: counting });
    await h.fire("a", T0);
    const acted = saves;
    await h.fire("b", T0 + 1000);
    await h.engine.flush();
    expect(saves - acted).toBe(1);
    await h.fire("b", T0 + 1500); // a count only, half a second after the write: not yet
    await h.engine.flush();
    expect(saves - acted).toBe(1);
    await h.fire("c", T0 + 1600); // a new key: at once, with the count
    await h.engine.flush();
    expect(saves - acted).toBe(2);
    await h.fire("c", T0 + 1700);
    await h.engine.flush();
    expect(saves - acted).toBe(2);
    await h.fire("c", T0 + 1600 + ROLLUP_COUNTS_EVERY_MS); // that long after the last write
    await h.engine.flush();
    expect(saves - acted).toBe(3);
    await h.fire("b", T0 + 1700 + ROLLUP_COUNTS_EVERY_MS);
    await h.engine.flush({ all: true }); // stopping: everything
    expect(saves - acted).toBe(4);
    const [record] = rollups(await store.list());
    expect(record!.rollup!.keys.map((k) => [k.userId, k.triggers])).toEqual([
      ["b", 3],
      ["c", 3],
    ]);
  });

  it("is paged at MAX_ROLLUP_KEYS keys a record, MAX_ROLLUP_PARTS records an hour; keys beyond are counted, logged and in the metric", async () => {
    const h = harness(rule("r", { guards: { maxPerHour: 1 } }));
    const capacity = MAX_ROLLUP_KEYS * MAX_ROLLUP_PARTS;
    await h.fire("first", T0);
    for (let n = 0; n < capacity + 3; n++) await h.fire(`u${n}`, T0 + 1 + n);
    await h.fire("u0", T0 + capacity + 10); // a listed key again: counted on its own record
    await h.engine.flush();

    const parts = rollups(await h.store.list()).sort((a, b) => a.rollup!.part - b.rollup!.part);
    expect(parts.map((p) => [p.rollup!.part, p.rollup!.keys.length])).toEqual(Array.from({ length: MAX_ROLLUP_PARTS }, (_, n) => [n + 1, MAX_ROLLUP_KEYS]));
    expect(new Set(parts.map((p) => p.id)).size).toBe(MAX_ROLLUP_PARTS);
    expect(parts[0]!.rollup!.keys[0]).toMatchObject({ userId: "u0", triggers: 2 });
    expect(parts.slice(0, -1).every((p) => p.rollup!.unlisted.triggers === 0)).toBe(true);
    expect(parts.at(-1)!.rollup!.unlisted.triggers).toBe(3);
    expect(await h.counter("reclaim_operator_suppressed_keys_total", 'rule="r",reason="rate_limit"')).toBe(capacity);
    expect(await h.counter("reclaim_operator_suppressed_unlisted_total", 'rule="r",reason="rate_limit"')).toBe(3);
    expect(h.logged.filter((l) => l.level === "warn" && l.fields.reason === "rate_limit").map((l) => l.fields.userId)).toEqual([`u${capacity}`, `u${capacity + 1}`, `u${capacity + 2}`]);
    expect(renderMarkdown(parts.at(-1)!)).toContain("**3 more triggers of keys not listed here**");
  });

  it("one record per rule, reason and hour: the next hour starts a new one, the one before last is dropped from memory", async () => {
    const h = harness(rule("r", { guards: { maxPerHour: 1, circuitBreaker: { failures: 1, openFor: "3h" } } }), { ending: "failed" });
    expect(acted(await h.fire("a", T0))).toBe(true); // fails: the circuit opens
    await h.fire("b", T0 + 1000); // rate_limit (checked before circuit_open)
    await h.fire("c", T0 + HOUR + 1000); // the hour's rate limit has lifted: circuit_open
    await h.fire("d", T0 + HOUR + 2000);
    await h.fire("b", T0 + 2 * HOUR + 1000);
    await h.engine.flush();
    const byHour = rollups(await h.store.list()).map((i) => [i.rollup!.reason, i.rollup!.hour, i.rollup!.keys.map((k) => k.userId)]);
    expect(byHour).toEqual([
      ["rate_limit", new Date(T0).toISOString(), ["b"]],
      ["circuit_open", new Date(T0 + HOUR).toISOString(), ["c", "d"]],
      ["circuit_open", new Date(T0 + 2 * HOUR).toISOString(), ["b"]],
    ]);
    // Two hours later the first hour's record is no longer held.
    expect(h.guards.rollups.size.records).toBe(2);
  });

  it("a record another leader wrote meanwhile is merged, never written over: the users it lists are kept", async () => {
    const r = rule("r", { guards: { maxPerHour: 1, cooldown: "10m" } });
    const store = new MemoryIncidentStore();
    // This replica leads, lists a and b, and loses the lease; the other leader takes over (building its state
    // from the records), lists c, and loses the lease again; this replica wins it back with its old record in memory.
    const one = harness(r, { store });
    await one.fire("x", T0);
    await one.fire("a", T0 + 1000);
    await one.fire("b", T0 + 2000);
    await one.engine.flush();
    const otherGuards = new GuardState();
    otherGuards.rebuild(await store.list(), T0 + 3000);
    const other = harness(r, { store, guards: otherGuards });
    await other.fire("c", T0 + 3000);
    await other.engine.flush();
    await one.fire("d", T0 + 4000); // still holding its own copy, which never saw c
    await one.engine.flush();
    const [record, ...more] = rollups(await store.list());
    expect(more).toEqual([]);
    expect(record!.rollup!.keys.map((k) => k.userId).sort()).toEqual(["a", "b", "c", "d"]);
    expect(record!.title).toContain("4 keys");
    // And once merged, the key another leader listed is counted in place, not listed twice.
    await one.fire("c", T0 + 5000);
    await one.engine.flush({ all: true });
    const [again] = rollups(await store.list());
    expect(again!.rollup!.keys.filter((k) => k.userId === "c").map((k) => k.triggers)).toEqual([2]);
  });

  it("a restart rebuilds the records: a listed key is not listed again, counting goes on in the same record, and no per-key guard is touched", async () => {
    const r = rule("r", { guards: { maxPerHour: 1, cooldown: "10m" } });
    const store = new MemoryIncidentStore();
    const before = harness(r, { store });
    await before.fire("a", T0);
    await before.fire("b", T0 + 1000);
    await before.engine.flush();
    const [written] = rollups(await store.list());

    const guards = new GuardState();
    guards.rebuild(await store.list(), T0 + 2000);
    // A key in a rollup record has no incident of its own: no cooldown, nothing to count on.
    expect(guards.latestIncident("r", "userId=b,pod=factory-0")).toBeNull();
    expect(guards.cooling("r", "userId=b,pod=factory-0", T0 + 2000, 600_000)).toBe(false);
    expect(guards.actedThisHour("r", T0 + 2000)).toBe(1);
    expect(guards.rollups.size).toEqual({ records: 1, keys: 1, dirty: 0 });

    const after = harness(r, { store, guards });
    await after.fire("b", T0 + 3000);
    await after.fire("c", T0 + 4000);
    await after.engine.flush();
    const [again, ...none] = rollups(await store.list());
    expect(none).toEqual([]);
    expect(again!.id).toBe(written!.id);
    expect(again!.rollup!.keys.map((k) => [k.userId, k.triggers])).toEqual([
      ["b", 2],
      ["c", 1],
    ]);
    expect(await after.counter("reclaim_operator_suppressed_keys_total", 'rule="r",reason="rate_limit"')).toBe(1);

    // Records of hours before the previous one are not held after a rebuild.
    const later = new GuardState();
    later.rebuild(await store.list(), T0 + 3 * HOUR);
    expect(later.rollups.size.records).toBe(0);
  });

  it("a failed write is logged, counted, and written again by the next flush", async () => {
    const inner = new MemoryIncidentStore();
    let failing = true;
    const store: IncidentStore = {
      save: (i) => (failing && i.rollup !== undefined ? Promise.reject(new Error("ENOSPC: no space left on device")) : inner.save(i)),
      get: (id) => inner.get(id),
      list: (f) => inner.list(f),
    };
    const h = harness(rule("r", { guards: { maxPerHour: 1 } }), { store });
    await h.fire("a", T0);
    await h.fire("b", T0 + 1000);
    expect(await h.engine.flush()).toBe(false);
    expect(h.logged.some((l) => l.level === "error" && l.message.includes("ENOSPC"))).toBe(true);
    expect((await h.metrics.registry.getSingleMetricAsString("reclaim_operator_store_errors_total")).trim().split("\n").pop()).toBe(
      "reclaim_operator_store_errors_total 1",
    );
    expect(rollups(await inner.list())).toEqual([]);
    failing = false;
    expect(await h.engine.flush()).toBe(true);
    expect(rollups(await inner.list()).map((i) => i.rollup!.keys.map((k) => k.userId))).toEqual([["b"]]);
  });

  it("renders every listed key for on-call, hostile values escaped, and is nobody's incident in the digest", async () => {
    const h = harness(rule("r", { guards: { maxPerHour: 1 } }));
    await h.fire("a", T0);
    await h.fire("b", T0 + 1000, "pod|<img src=x>");
    await h.fire("c", T0 + 2000);
    await h.engine.flush();
    const [record] = rollups(await h.store.list());
    const md = renderMarkdown(record!);
    expect(md).toContain("## Keys not acted on");
    expect(md).toContain("| 1 | `userId=b,pod=pod\\|<img src=x>` | b | pod\\|\\<img src=x\\> | 1 |");
    expect(md).toMatch(/\| 2 \| `userId=c,pod=factory-0` \| c \| factory-0 \| 1 \|/);
    expect(md).toContain("| Keys not acted on | 2 (listed below) |");
    const digest = summarizeDigest(await h.store.list(), { from: T0 - 1, to: T0 + HOUR });
    expect(digest.topUsers.map((u) => u.userId)).toEqual(["a"]);
    expect(digest.suppressed).toEqual([{ reason: "rate_limit", triggers: 2, incidents: 1, lastAt: new Date(T0 + 2000).toISOString() }]);
  });

  it("replay reports each listed key as the suppressed incident it stands for", async () => {
    const replayer = new Replayer([rule("r", { guards: { maxPerHour: 1 } })]);
    for (const [u, t] of [
      ["a", T0],
      ["b", T0 + 1000],
      ["c", T0 + 2000],
      ["b", T0 + 3000],
    ] as const)
      await replayer.handle(hardLimit(u, t));
    const report = await replayer.report();
    expect(report.incidents.map((i) => [i.key.userId, i.action, i.suppressed])).toEqual([
      ["a", "act", {}],
      ["b", "suppressed", { rate_limit: 2 }],
      ["c", "suppressed", { rate_limit: 1 }],
    ]);
  });
});

describe("rollup records in the stores", () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0)) await f();
  });

  async function rollupRecord(): Promise<Incident> {
    const h = harness(rule("r", { guards: { maxPerHour: 1 } }));
    await h.fire("a", T0);
    for (let n = 0; n < 50; n++) await h.fire(`u${n}`, T0 + 1 + n);
    await h.engine.flush();
    return rollups(await h.store.list())[0]!;
  }

  it("the file store writes it as one .json and one .md, and reads it back whole", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-rollup-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const record = await rollupRecord();
    const store = new FileIncidentStore({ dir });
    await store.save(record);
    expect((await readdir(dir)).sort()).toEqual([`${record.id}.json`, `${record.id}.md`]);
    expect(await store.get(record.id)).toEqual(record);
  });

  it("the Kubernetes store keeps it as one Incident object that the CRD accepts, and reads it back whole", async () => {
    const api = await FakeKubeApi.start();
    cleanup.push(() => api.close());
    const store = new KubernetesIncidentStore(kubeConfigFor(api).makeApiClient(k8s.CustomObjectsApi), "reclaim");
    const record = await rollupRecord();
    expect(resourceProblems(toIncidentObject(record, "reclaim"), incidentCrd().spec.versions[0]!.schema.openAPIV3Schema, "Incident")).toEqual([]);
    await store.save(record);
    record.rollup!.keys[0]!.triggers++;
    await store.save(record);
    const [back, ...none] = await store.list();
    expect(none).toEqual([]);
    expect(back).toEqual(record);
  });
});
