/**
 * The sweep through the real operator against a real factory: a user with
 * twenty live tabs who never asked for a 21st keeps all twenty after a sweep
 * (no incident, no rung), while a user the factory refused is remediated,
 * with a record that says since when they were at the limit and when they
 * were refused. The rule's ladder ends in `force`, the rung that would close
 * a live tab, so a sweep that acted for the busy user would show.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { UserState } from "../../../src/contract/control.js";
import { isRefusal, type ChatClient } from "../../../src/demo/clients.js";
import { startTestFactory, type TestFactory } from "../../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";

/** A metric rule (never evaluated here: no Prometheus), used by the sweep; a ladder that ends in force. */
const SWEPT_RULE = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: swept }
spec:
  trigger:
    metric: { query: "max by (pod) (reclaim_factory_users_at_limit)", op: ">", threshold: 0, for: 1m, interval: 30s }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
    - { rung: force, timeout: 5s, params: { max: 1, freeSlots: 1 } }
  verify: { settle: 200ms, timeout: 3s }
  incident: { severity: warning, title: "Swept: user {{userId}} at {{managers}}/{{limit}}" }
`;

const TABS = "twenty-live-tabs";
const LOCKED = "locked-out-by-zombies";
const ACTIVE = new Set(["open", "remediating"]);

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  operator = undefined;
  factory = undefined;
});

describe("the sweep through the real operator", () => {
  it("leaves a user with twenty live tabs alone and remediates the user the factory refused", async () => {
    // Legacy in-process cleanup: the factory frees nothing by itself, so the refused user stays locked out until the operator acts.
    factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 300 });
    const tabs: ChatClient[] = [];
    for (let i = 0; i < 20; i++) tabs.push(await factory.open(TABS));
    for (let i = 0; i < 20; i++) await factory.open(LOCKED, "no-pong");
    const refused = await factory.attempt(LOCKED);
    expect(isRefusal(refused)).toBe(true);
    const before = UserState.parse((await factory.control("GET", `/v1/users/${LOCKED}`)).body);
    expect(before).toMatchObject({ active: 20, refusals: 1 });

    const dir = await tempDir();
    const source = join(dir, "factory.log");
    await writeFile(source, ""); // no log line reaches the operator: only the sweep can act
    operator = await startTestOperator({
      dir,
      source: `file:${source}`,
      control: factory.controlUrl,
      rule: SWEPT_RULE,
      jobs: { sweepSchedule: "0 0 1 1 *", sweepRule: "swept", digestSchedule: null, retentionSchedule: null, retentionDays: 30, timezone: "UTC" },
    });

    const sweptFrom = Date.now();
    const report = await operator.scheduler!.runNow("sweep");
    const sweptUntil = Date.now();
    expect(report).toMatchObject({ result: "ok", message: "1 factory, 2 users at their limit (1 not refused recently: left alone), 1 trigger: 1 acted, 0 suppressed" });

    // Every incident finished (none may still be running when the busy user is counted).
    const incidents = await operator.until((all) => all.length > 0 && all.every((i) => !ACTIVE.has(i.status)), "the sweep's incidents to finish");
    expect(incidents.map((i) => [i.target.userId, i.status])).toEqual([[LOCKED, "resolved"]]);
    const [incident] = incidents;
    expect(incident!.rungs.map((r) => [r.rung, r.result?.removed.length])).toEqual([["probe", 20]]);
    expect(incident!.evidence.entries[0]).toMatchObject({
      event: "reclaim.sweep",
      fields: { userId: LOCKED, lastRefusedAt: before.lastRefusedAt, refusals: 1, atLimitSince: before.atLimitSince },
    });
    // Dated from when the user reached the limit (the factory's atLimitSince, laid on the operator's clock by its
    // age at the factory's answer): off by at most the time the sweep took, never the sweep's own time.
    const firstEntryAt = Date.parse(incident!.firstEntryAt);
    const atLimitSince = Date.parse(before.atLimitSince!);
    expect(Math.abs(firstEntryAt - atLimitSince)).toBeLessThanOrEqual(sweptUntil - sweptFrom);

    // The busy user: all twenty tabs open, nothing evicted, no incident.
    expect(factory.registry.active(TABS)).toBe(20);
    expect(tabs.every((c) => c.ws.readyState === c.ws.OPEN)).toBe(true);
    expect(factory.events("factory.evicted", TABS)).toHaveLength(0);
  });
});
