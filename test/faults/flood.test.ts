/**
 * Fault matrix row 11: a flood of triggers for many users at once. A real
 * factory (its control API is what the operator would call) and a real
 * operator tailing the factory's log file; hundreds of locked-out users at
 * once. The rate limit and the circuit breaker hold (counted on the factory:
 * the rung calls it received), every user is accounted for in a record, and
 * what the operator holds in memory is the users it lists, not the lines.
 */
import { appendFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OutageMessage } from "../../src/contract/events.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { isRefusal } from "../../src/demo/clients.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const POD = "test-factory-0";

/** Probe only, verified by admission: a user whose tabs are all alive stays locked out, so the ladder fails. */
const floodRule = (guards: string): string => `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: flood }
spec:
  trigger: { log: { event: [factory.hard_limit, factory.error], minSeverity: ERROR } }
  threshold: { count: 1, window: 1m }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
  verify: { settle: 100ms, timeout: 500ms }
  guards: ${guards}
  incident: { severity: high, title: "Chat lockout: user {{userId}} on {{pod}}" }
`;

/** The factory's HARD LIMIT and UNEXPECTED FACTORY ERROR lines for `userId`, as it writes them. */
function lockoutLines(userId: string, at: number): string {
  const head = (t: number): string => `{"severity":"ERROR","time":"${new Date(t).toISOString()}","pod":"${POD}"`;
  return (
    `${head(at)},"event":"factory.hard_limit","userId":"${userId}","managers":20,"limit":20,"message":"${OutageMessage.hardLimit(userId, 20, 20)}"}\n` +
    `${head(at + 1)},"event":"factory.error","userId":"${userId}","managers":20,"limit":20,"message":"${OutageMessage.factoryError(userId, 20)}"}\n`
  );
}

/** Rungs the factory ran for its control API (what the operator really did), from the factory's own log. */
const rungCalls = (factory: TestFactory): Record<string, unknown>[] => factory.events("factory.cleanup").filter((l) => l.trigger === "control");

const rollupsOf = (incidents: Incident[]): Incident[] => incidents.filter((i) => i.rollup !== undefined);
const listed = (incidents: Incident[]): string[] => rollupsOf(incidents).flatMap((i) => i.rollup!.keys.map((k) => k.userId));

describe("fault 11: a flood of triggers for many users at once", () => {
  const open: { factory?: TestFactory; operator?: TestOperator; dir?: string }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0)) {
      await o.operator?.close();
      await o.factory?.close();
      if (o.dir !== undefined) await rm(o.dir, { recursive: true, force: true });
    }
  });

  async function start(guards: string, limit = 20): Promise<{ factory: TestFactory; operator: TestOperator; log: string }> {
    const dir = await tempDir("reclaim-flood-");
    const log = join(dir, "factory.log");
    const slot: { factory?: TestFactory; operator?: TestOperator; dir?: string } = { dir };
    open.push(slot);
    const factory = (slot.factory = await startTestFactory({ logFile: log, limit }));
    const operator = (slot.operator = await startTestOperator({
      dir,
      source: `file:${log}`,
      control: factory.controlUrl,
      rule: floodRule(guards),
      fromStart: true,
    }));
    return { factory, operator, log };
  }

  it("rate limit: 300 users locked out at once, maxPerHour 5 — exactly 5 acted on, the other 295 listed in one rollup record", async () => {
    const { factory, operator, log } = await start("{ maxPerHour: 5, cooldown: 10m }");
    const users = Array.from({ length: 300 }, (_, n) => `flood-${String(n).padStart(3, "0")}`);
    const t0 = Date.now();
    // Three refusals per user, the users interleaved: 1,800 lines in one write.
    let lines = "";
    for (let round = 0; round < 3; round++) for (const [n, u] of users.entries()) lines += lockoutLines(u, t0 + round * 1000 + n);
    await appendFile(log, lines);

    const incidents = await operator.until(
      (all) => rollupsOf(all).length === 1 && rollupsOf(all)[0]!.suppressed.rate_limit?.count === 295 * 6 && all.filter((i) => i.status === "resolved").length === 5,
      "the flood to be drained: 5 resolved, 295 users × 6 triggers rolled up",
      30_000,
    );
    await operator.idle();

    // The rate limit held where it matters: the factory received 5 probes, for 5 users.
    const calls = rungCalls(factory);
    expect(calls.map((c) => c.rung)).toEqual(Array(5).fill("probe"));
    const actedOn = incidents.filter((i) => i.rollup === undefined);
    expect(actedOn.map((i) => i.status)).toEqual(Array(5).fill("resolved"));
    expect(new Set(calls.map((c) => c.userId))).toEqual(new Set(actedOn.map((i) => i.target.userId)));

    // Every user accounted for: acted on, or listed (once) in the rollup record.
    const names = listed(incidents);
    expect(names).toHaveLength(295);
    expect(new Set([...actedOn.map((i) => i.target.userId), ...names])).toEqual(new Set(users));
    expect(rollupsOf(incidents)[0]!.rollup!.keys.every((k) => k.triggers === 6)).toBe(true);
    // Records aggregated: 6 records (12 files), not one per user or per line.
    expect((await readdir(join(operator.dir, "incidents"))).filter((f) => !f.startsWith("."))).toHaveLength(12);
    const metrics = await operator.metrics.registry.metrics();
    expect(metrics).toContain('reclaim_operator_suppressed_keys_total{rule="flood",reason="rate_limit"} 295');
    expect(metrics).toContain('reclaim_operator_triggers_total{rule="flood",outcome="acted",reason="none"} 5');

    // Memory: no detection window left, no ladder, and the rollup holds the 295 users — not the 1,800 lines.
    expect(operator.term()!.engine.sizes()).toEqual({ windows: 0, active: 0, rollups: { records: 1, keys: 295, dirty: 0 } });
  });

  it("circuit breaker: after 3 failed verifications the rule stops acting; the flood that follows is listed, not acted on", async () => {
    const { factory, operator, log } = await start("{ maxPerHour: 100, cooldown: 10m, circuitBreaker: { failures: 3, openFor: 30m } }", 2);
    // Three users really locked out: both slots held by live tabs, so the probe frees nothing and verification fails.
    const locked = ["locked-1", "locked-2", "locked-3"];
    for (const u of locked) {
      await factory.open(u);
      await factory.open(u);
      expect(isRefusal(await factory.attempt(u))).toBe(true); // the factory logs HARD LIMIT to the file itself
    }
    await operator.until((all) => all.filter((i) => i.status === "escalated").length === 3, "3 failed ladders", 30_000);
    await operator.idle();
    expect(rungCalls(factory)).toHaveLength(3);

    // The flood: 200 more users, and a fourth real lockout.
    const users = Array.from({ length: 200 }, (_, n) => `after-${n}`);
    await factory.open("locked-4");
    await factory.open("locked-4");
    expect(isRefusal(await factory.attempt("locked-4"))).toBe(true);
    const t0 = Date.now();
    await appendFile(log, users.map((u, n) => lockoutLines(u, t0 + n)).join(""));

    const incidents = await operator.until(
      (all) => listed(all).length === 201 && rollupsOf(all)[0]!.suppressed.circuit_open?.count === 402,
      "201 users listed as circuit_open",
      30_000,
    );
    // Not one more rung call reached the factory.
    expect(rungCalls(factory)).toHaveLength(3);
    expect(new Set(listed(incidents))).toEqual(new Set([...users, "locked-4"]));
    expect(rollupsOf(incidents).map((i) => i.rollup!.reason)).toEqual(["circuit_open"]);
    const metrics = await operator.metrics.registry.metrics();
    expect(metrics).toContain('reclaim_operator_suppressed_keys_total{rule="flood",reason="circuit_open"} 201');
    expect(operator.term()!.engine.sizes()).toEqual({ windows: 0, active: 0, rollups: { records: 1, keys: 201, dirty: 0 } });
  });
});
