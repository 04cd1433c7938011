/**
 * Fault matrix, row 9: the Kubernetes API misbehaves while the operator keeps
 * incidents as Incident objects. 409 Conflicts on the status writes are
 * retried with the current resourceVersion; 500s on the create and on the
 * status writes make the operator hold (nothing acted on without a record)
 * and write the same record again until it goes through; a leader cut off
 * mid-ladder stops, and the next one — whose first reads of the records get
 * 500s — does not act until it can read them, then finishes the same
 * incident. Each test: one Incident object, no rung run twice (a pending
 * rung resent by a new leader is harmless by design, ADR 3), the operators
 * still serving.
 *
 * The API server is the fake one in test/support/k8s (real HTTP, the real
 * @kubernetes/client-node), with `failNext` injecting the answers; the
 * factories are real.
 */
import { rm } from "node:fs/promises";
import { afterAll, describe, expect, it } from "vitest";
import { eventually, type Json, type TestFactory } from "../support/factory.js";
import { faultRule, lockOut, rungsRun } from "../support/fault-matrix.js";
import { FakeKubeApi } from "../support/k8s/server.js";
import type { TestOperator } from "../support/operator.js";
import { NS, closedAfterEach, controlPortFreeOnBoth, factoryPod, k8sOperator } from "../operator/k8s/support.js";

const USER = "105945141827451681156";
const started = closedAfterEach();
const { factories, operators } = started;
/** The operators' temp folders, removed once everything is closed. */
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A probe that waits 1 s for pongs: long enough to act on the API while it runs. */
const RULE = faultRule().replace("params: { timeoutMs: 200 }", "params: { timeoutMs: 1000 }");

async function setUp(): Promise<{ api: FakeKubeApi; factory: TestFactory; port: number }> {
  const api = (started.api = await FakeKubeApi.start());
  const port = await controlPortFreeOnBoth();
  const factory = await factoryPod(api, "chat-factory-b", "127.0.0.2", port, { cleanup: "legacy" });
  factories.push(factory);
  return { api, factory, port };
}

const incidentObjects = (api: FakeKubeApi): Json[] => api.objects<Json>("incidents.reclaim.dev", NS);

async function metric(op: TestOperator, name: string): Promise<number> {
  const text = await op.metrics.registry.metrics();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return match === null ? Number.NaN : Number(match[1]);
}

/** Requests the API answered with `status`, as `verb resource[/subresource]`. */
function answered(api: FakeKubeApi, status: number): string[] {
  return api
    .requests()
    .filter((r) => r.status === status && r.resource === "incidents")
    .map((r) => `${r.verb} ${r.resource}${r.subresource === undefined ? "" : `/${r.subresource}`}`);
}

describe("fault matrix 9: the Kubernetes API answers 409 and 500", () => {
  it("409s are retried in the write; 500s on create and on status hold the incident (not acted on) until the same record is written", async () => {
    const { api, factory, port } = await setUp();
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port, rule: RULE });
    operators.push(operator);
    dirs.push(operator.dir);

    // The first write of the incident fails: nothing may be called until it is written.
    api.failNext({ verb: "create", resource: "incidents", code: 500, times: 1 });
    // Then its first status writes conflict.
    api.failNext({ verb: "update", resource: "incidents/status", code: 409, times: 2 });
    await lockOut(factory, USER, 20);
    await eventually(() => answered(api, 500).length === 1, 10_000, "the failed create");
    await eventually(() => operator.lines.some((l) => l.event === "operator.store_error" && l.severity === "ERROR"), 5000, "the ERROR");
    expect(operator.lines.find((l) => l.event === "operator.store_error" && l.severity === "ERROR")?.message).toMatch(/NOT acting.*500|500.*NOT acting/s);
    expect(rungsRun(factory, USER)).toEqual([]);
    expect(await metric(operator, "reclaim_operator_store_waiting")).toBe(1);

    // Held, then written (the same incident, once), then the probe runs; its result hits two 500s.
    await eventually(() => incidentObjects(api)[0]?.status?.rungs?.[0]?.outcome === "pending", 10_000, "the probe to be in flight");
    expect(answered(api, 409)).toEqual(["update incidents/status", "update incidents/status"]);
    api.failNext({ verb: "update", resource: "incidents/status", code: 500, times: 2 });
    await eventually(() => answered(api, 500).length === 3, 10_000, "the two failed status writes");
    expect(rungsRun(factory, USER)).toEqual(["probe"]); // held after the probe: no verification written, nothing else run
    expect(incidentObjects(api)[0].status.rungs[0].outcome).toBe("pending");

    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the incident to resolve", 20_000);
    const objects = incidentObjects(api);
    expect(objects).toHaveLength(1);
    expect(objects[0].spec.id).toBe(incident!.id);
    expect(incident!.rungs.map((r) => [r.rung, r.outcome, r.attempts])).toEqual([["probe", "ok", 1]]);
    expect(rungsRun(factory, USER)).toEqual(["probe"]);
    expect(factory.registry.active(USER)).toBe(0);
    expect(await metric(operator, "reclaim_operator_store_errors_total")).toBe(3);
    expect(await metric(operator, "reclaim_operator_store_waiting")).toBe(0);
    expect((await fetch(`http://127.0.0.1:${operator.metricsPort}/healthz`)).status).toBe(200);
  });
});

describe("fault matrix 9: leadership lost mid-ladder", () => {
  it("the cut-off leader stops; the next one, whose first reads get 500s, waits until it can read the records, then finishes the same incident", async () => {
    const { api, factory, port } = await setUp();
    api.grant("token-a", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
    api.grant("token-b", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
    const first = await k8sOperator(api, { identity: "operator-a", controlPort: port, leader: true, token: "token-a", rule: RULE });
    operators.push(first);
    dirs.push(first.dir);
    await eventually(() => first.leading(), 10_000, "the first operator to lead");
    const second = await k8sOperator(api, { identity: "operator-b", controlPort: port, leader: true, token: "token-b", rule: RULE });
    operators.push(second);
    dirs.push(second.dir);

    await lockOut(factory, USER, 20);
    await eventually(() => incidentObjects(api).some((o) => o.status?.rungs?.[0]?.outcome === "pending"), 10_000, "the probe to be in flight");
    // The next leader's first two reads of the records fail.
    api.failNext({ verb: "list", resource: "incidents", code: 500, times: 2 });
    api.revoke("token-a"); // the leader loses the API server: it cannot renew, and stops acting
    await eventually(() => !first.leading(), 5000, "the first operator to stop leading");
    await eventually(() => second.leading(), 10_000, "the second operator to take over");
    await eventually(() => answered(api, 500).length === 2, 10_000, "the new leader's failed reads");
    await eventually(
      () => second.lines.some((l) => l.event === "operator.store_error" && l.severity === "ERROR" && String(l.message).includes("Cannot read the incident records")),
      5000,
      "the new leader to say it cannot read the records",
    );

    await second.until((all) => all.some((i) => i.status === "resolved"), "the second operator to finish the incident", 20_000);
    const objects = incidentObjects(api);
    expect(objects).toHaveLength(1);
    expect(objects[0].status.rungs.map((r: Json) => [r.rung, r.outcome])).toEqual([["probe", "ok"]]);
    expect(objects[0].status.decisions.map((d: Json) => d.kind)).toEqual(expect.arrayContaining(["resumed", "resolved"]));
    // The pending probe may be sent again by the new leader: harmless by design (ADR 3), and nothing else ran.
    expect(rungsRun(factory, USER).length).toBeGreaterThanOrEqual(1);
    expect(rungsRun(factory, USER).every((r) => r === "probe") && rungsRun(factory, USER).length <= 2).toBe(true);
    expect(factory.registry.active(USER)).toBe(0);
    expect((await fetch(`http://127.0.0.1:${second.metricsPort}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${first.metricsPort}/readyz`)).status).toBe(200); // a follower stays ready to take over
  });
});
