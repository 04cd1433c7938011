/**
 * The operator in Kubernetes mode, against the fake API server through the
 * real @kubernetes/client-node, with real factories as pods: incidents as
 * Incident objects with Events on the pod, acting only on the pod that logged
 * the entry, a pod that is gone, leader election (the loser never acts; a
 * leader cut off mid-ladder is replaced and the incident finished, once), and
 * restartPod with a replacement pod.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../../src/operator/incidents/file-store.js";
import { FakeKubeApi } from "../../support/k8s/server.js";
import { eventually, type Json, type TestFactory } from "../../support/factory.js";
import { LOCKOUT_RULE } from "../../support/operator.js";
import { APP, NS, closedAfterEach, controlPortFreeOnBoth, factoryPod, k8sOperator } from "./support.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { startTestFactory } from "../../support/factory.js";
import { startTestOperator, tempDir } from "../../support/operator.js";
import { isRefusal } from "../../../src/demo/clients.js";

const USER = "105945141827451681156";

const started = closedAfterEach();
const { factories, operators } = started;

async function setUp(): Promise<{ api: FakeKubeApi; port: number }> {
  const api = (started.api = await FakeKubeApi.start());
  return { api, port: await controlPortFreeOnBoth() };
}

async function lockOut(factory: TestFactory, user = USER, kind: "no-pong" | "live" = "no-pong"): Promise<void> {
  for (let i = 0; i < 20; i++) await factory.open(user, kind);
  const refused = await factory.attempt(user);
  expect(isRefusal(refused) && refused.status).toBe(503);
}

function incidentObjects(a: FakeKubeApi): Json[] {
  return a.objects<Json>("incidents.reclaim.dev", NS);
}

describe("Kubernetes mode: incidents, Events, pod targeting", () => {
  it("acts only on the pod that logged the lockout, records an Incident object and Events on that pod", async () => {
    const { api, port } = await setUp();
    const a = await factoryPod(api, "chat-factory-a", "127.0.0.1", port);
    const b = await factoryPod(api, "chat-factory-b", "127.0.0.2", port, { cleanup: "legacy" });
    factories.push(a, b);
    // Both stores on: Incident objects and the folder.
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port, files: true });
    operators.push(operator);
    await lockOut(b);

    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the incident to resolve");
    // Both stores are written in parallel: the folder may show the last save a moment later.
    const folder = new FileIncidentStore({ dir: join(operator.dir, "incidents") });
    await eventually(async () => (await folder.list()).some((i) => i.status === "resolved"), 5000, "the folder's record to resolve");
    const inFolder = await folder.list();
    expect(inFolder.map((i) => [i.id, i.status])).toEqual([[incident!.id, "resolved"]]);
    expect(incident).toMatchObject({ target: { userId: USER, pod: "chat-factory-b", control: `http://127.0.0.2:${port}` } });
    expect(b.events("factory.cleanup").filter((l) => l.trigger === "control")).toHaveLength(1);
    expect(a.events("factory.cleanup").filter((l) => l.trigger === "control")).toHaveLength(0);

    const objects = incidentObjects(api);
    expect(objects).toHaveLength(1);
    expect(objects[0]).toMatchObject({
      metadata: { name: incident!.id.toLowerCase(), labels: { "reclaim.dev/rule": "lockout", "reclaim.dev/status": "resolved" } },
      spec: { id: incident!.id, target: { userId: USER, pod: "chat-factory-b" } },
      status: { status: "resolved", rungs: [{ rung: "probe", outcome: "ok" }] },
    });
    await eventually(() => (api.objects<Json>("events.events.k8s.io", NS)).some((e) => e.reason === "ReclaimResolved"), 5000, "the Events");
    const events = api.objects<Json>("events.events.k8s.io", NS);
    expect(new Set(events.map((e) => e.regarding.name))).toEqual(new Set(["chat-factory-b"]));
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(["ReclaimRungFinished", "ReclaimVerified", "ReclaimResolved"]));
    expect(events.every((e) => e.reportingController === "reclaim.dev/operator" && e.reportingInstance === "operator-0")).toBe(true);
  });

  it("an entry whose pod no longer exists is recorded, not acted on", async () => {
    const { api, port } = await setUp();
    const a = await factoryPod(api, "chat-factory-a", "127.0.0.1", port);
    factories.push(a);
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port });
    operators.push(operator);
    api.appendLog(
      NS,
      "chat-factory-a",
      `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "chat-factory-gone", event: "factory.hard_limit", userId: "ghost-user", message: "HARD LIMIT" })}\n`,
    );
    const [incident] = await operator.until((all) => all.length === 1, "the record");
    expect(incident).toMatchObject({ status: "suppressed", suppressed: { no_target: { count: 1 } }, target: { pod: "chat-factory-gone" } });
    expect(a.events("factory.cleanup")).toHaveLength(0);
  });
});

describe("Kubernetes mode: leader election", () => {
  it("two operators race for the lease: exactly one acts; the loser never acts", async () => {
    const { api, port } = await setUp();
    const b = await factoryPod(api, "chat-factory-b", "127.0.0.2", port, { cleanup: "legacy" });
    factories.push(b);
    const one = await k8sOperator(api, { identity: "operator-one", controlPort: port, leader: true });
    const two = await k8sOperator(api, { identity: "operator-two", controlPort: port, leader: true });
    operators.push(one, two);
    await eventually(() => one.leading() !== two.leading(), 10_000, "one leader");
    const [leader, follower] = one.leading() ? [one, two] : [two, one];
    await lockOut(b);
    await leader.until((all) => all.some((i) => i.status === "resolved"), "the leader to resolve it");

    expect(incidentObjects(api)).toHaveLength(1);
    const followerMetrics = await follower.metrics.registry.metrics();
    expect(followerMetrics).not.toMatch(/reclaim_operator_triggers_total\{[^}]*outcome="acted"/);
    expect(followerMetrics).toContain("reclaim_operator_leader 0");
    expect(follower.term()).toBeNull();
    const lease = api.object<Json>("leases.coordination.k8s.io", NS, "reclaim-operator");
    expect(lease.spec.holderIdentity).toBe(leader === one ? "operator-one" : "operator-two");
    expect(lease.spec.renewTime).toMatch(/\.\d{6}Z$/); // MicroTime
    expect(leader.leading() && !follower.leading()).toBe(true);
  });

  it("a leader cut off mid-ladder stops writing; the other takes over and finishes the same incident", async () => {
    const { api, port } = await setUp();
    api.grant("token-a", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
    api.grant("token-b", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
    const b = await factoryPod(api, "chat-factory-b", "127.0.0.2", port, { cleanup: "legacy" });
    factories.push(b);
    // A slow first rung: the probe waits 2.5 s for the zombies' pongs.
    const rule = LOCKOUT_RULE.replace("- { rung: probe, timeout: 5s }", "- { rung: probe, timeout: 10s, params: { timeoutMs: 2500 } }");
    const first = await k8sOperator(api, { identity: "operator-a", controlPort: port, leader: true, token: "token-a", rule });
    operators.push(first);
    await eventually(() => first.leading(), 10_000, "the first operator to lead");
    const second = await k8sOperator(api, { identity: "operator-b", controlPort: port, leader: true, token: "token-b", rule });
    operators.push(second);

    await lockOut(b);
    await eventually(() => incidentObjects(api).some((o) => o.status?.rungs?.[0]?.outcome === "pending"), 10_000, "the probe to be in flight");
    api.revoke("token-a"); // the leader loses the API server: it cannot renew, and stops acting
    await eventually(() => !first.leading(), 5000, "the first operator to stop leading");
    await eventually(() => second.leading(), 10_000, "the second operator to take over");
    await second.until((all) => all.some((i) => i.status === "resolved"), "the second operator to finish the incident", 20_000);

    const objects = incidentObjects(api);
    expect(objects).toHaveLength(1);
    expect(objects[0]!.status.rungs.map((r: Json) => [r.rung, r.outcome])).toEqual([["probe", "ok"]]);
    expect(objects[0]!.status.decisions.map((d: Json) => d.kind)).toEqual(expect.arrayContaining(["resumed", "resolved"]));
    expect(b.registry.active(USER)).toBe(0);
  });
});

const USER_A = "system:serviceaccount:default:token-a";

function grantBoth(api: FakeKubeApi): void {
  api.grant("token-a", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
  api.grant("token-b", { rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] });
}

describe("Kubernetes mode: one leader acts, even when the API hangs", () => {
  it("a leader whose lease renewal hangs stops acting at its renew deadline, before the other takes the lease; the rung in flight runs once", async () => {
    const { api, port } = await setUp();
    const b = await factoryPod(api, "chat-factory-b", "127.0.0.2", port, { cleanup: "legacy" });
    factories.push(b);
    const rule = LOCKOUT_RULE.replace("- { rung: probe, timeout: 5s }", "- { rung: probe, timeout: 10s, params: { timeoutMs: 2500 } }");
    grantBoth(api);
    const first = await k8sOperator(api, { identity: "operator-a", controlPort: port, leader: true, rule, token: "token-a" });
    operators.push(first);
    await eventually(() => first.leading(), 10_000, "the first operator to lead");
    const second = await k8sOperator(api, { identity: "operator-b", controlPort: port, leader: true, rule, token: "token-b" });
    operators.push(second);

    await lockOut(b);
    await eventually(() => incidentObjects(api).some((o) => o.status?.rungs?.[0]?.outcome === "pending"), 10_000, "the probe to be in flight");
    // The network silently drops the leader's lease requests: they never answer, and every retry hangs too.
    const heal = api.hang({ user: USER_A, resource: "leases" });
    await eventually(() => !first.leading(), 5000, "the first operator to stop at its renew deadline");
    await eventually(() => second.leading(), 10_000, "the second operator to take over");
    await second.until((all) => all.some((i) => i.status === "resolved"), "the second operator to finish the incident", 20_000);
    heal();

    const at = (op: typeof first, event: string, text: string): number =>
      Date.parse(String(op.lines.find((l) => l.event === event && String(l.msg ?? l.message).includes(text))?.time));
    expect(at(first, "operator.stopping", "Lost the leadership")).toBeLessThan(at(second, "operator.started", "Became the leader"));
    // The probe the first leader sent is answered from the factory's first run when the second sends it again (ADR 13).
    expect(b.events("factory.cleanup").filter((l) => l.trigger === "control")).toHaveLength(1);
    const [incident] = await second.incidents();
    expect(incident!.decisions.map((d) => d.kind)).toEqual(expect.arrayContaining(["resumed", "resolved"]));
  });

  it("winning leadership back changes nothing: the guards are rebuilt from the records, so the next lockout of the user is acted on", async () => {
    const { api, port } = await setUp();
    const b = await factoryPod(api, "chat-factory-b", "127.0.0.2", port, { cleanup: "legacy" });
    factories.push(b);
    // Two attempts a day: a term that counted the first incident twice would suppress the second lockout.
    const rule = LOCKOUT_RULE.replace("guards: { cooldown: 10m }", "guards: { cooldown: 1s, maxAttemptsPerDay: 2 }");
    grantBoth(api);
    const first = await k8sOperator(api, { identity: "operator-a", controlPort: port, leader: true, rule, token: "token-a" });
    operators.push(first);
    await eventually(() => first.leading(), 10_000, "the first operator to lead");
    await lockOut(b);
    await first.until((all) => all.some((i) => i.status === "resolved"), "the first incident");

    // Lose the lease to a second replica, then win it back when that one stops.
    const second = await k8sOperator(api, { identity: "operator-b", controlPort: port, leader: true, rule, token: "token-b" });
    operators.push(second);
    const heal = api.hang({ user: USER_A, resource: "leases" });
    await eventually(() => !first.leading() && second.leading(), 10_000, "the second operator to lead");
    // The new leader reads the pod's log 60 s back, so it reads the first lockout again; its cooldown is over, but the
    // record says an incident acted on that line: counted as a duplicate, not acted on a second time.
    await eventually(
      async () => /reclaim_operator_entries_dropped_total\{rule="lockout",reason="duplicate"\} [1-9]/.test(await second.metrics.registry.metrics()),
      10_000,
      "the second operator to read the handled lockout again",
    );
    heal();
    await second.close();
    await eventually(() => first.leading() && first.term()?.ready === true, 10_000, "the first operator to lead again");

    const key = `userId=${USER},pod=chat-factory-b`;
    expect(first.term()!.guards.attemptsToday("lockout", key, Date.now())).toBe(1);
    await lockOut(b);
    // The factory writes one HARD LIMIT per user per minute (refusal-log.ts): the line it writes when that minute is
    // over, now rather than in a minute. Newer than anything an incident handled, so it is news.
    const [hardLimit] = b.events("factory.hard_limit", USER);
    api.appendLog(NS, "chat-factory-b", `${JSON.stringify({ ...hardLimit, time: new Date().toISOString() })}\n`);
    const all = await first.until((incidents) => incidents.filter((i) => i.status === "resolved").length === 2, "the second lockout to be resolved")
    expect(all.map((i) => i.suppressed.max_attempts)).toEqual([undefined, undefined]);
  });
});

describe("Kubernetes mode: factories in another namespace", () => {
  it("a k8s:NAMESPACE/… source's namespace is where the sweep looks for factory pods and where their pods are looked up", async () => {
    const { api, port } = await setUp();
    // The factory runs in `chat`; the operator (its Lease, its records) in `reclaim`.
    api.addPod({ namespace: "chat", name: "chat-factory-0", labels: { ...APP }, podIP: "127.0.0.2", phase: "Running", ready: true, containers: ["factory"] });
    const factory = await startTestFactory({ host: "127.0.0.2", controlHost: "127.0.0.2", controlPort: port, probeTimeoutMs: 300, cleanup: "legacy" }, { pod: "chat-factory-0" });
    factories.push(factory);
    const user = "swept-in-chat";
    for (let i = 0; i < 20; i++) await factory.open(user, "no-pong");
    expect(isRefusal(await factory.attempt(user))).toBe(true); // its line goes nowhere: only the sweep can find it
    const rule = LOCKOUT_RULE.replace("name: lockout", "name: factory-users-at-limit");
    const operator = await startTestOperator({
      dir: await tempDir("reclaim-k8s-"),
      source: "k8s:chat/app.kubernetes.io/name=chat-factory",
      control: "http://127.0.0.1:9",
      incidentsDir: null,
      rule,
      kubernetes: {
        kubeConfig: kubeConfigFor(api, { namespace: NS }),
        namespace: NS,
        identity: "operator-0",
        leaderElection: null,
        incidents: true,
        podTargets: true,
        controlPort: port,
        watchRules: false,
      },
      jobs: { sweepSchedule: "0 0 1 1 *", sweepRule: "factory-users-at-limit", digestSchedule: null, retentionSchedule: null, retentionDays: 30, timezone: "UTC" },
    });
    operators.push(operator);
    const report = await operator.scheduler!.runNow("sweep");
    expect(report).toMatchObject({ result: "ok" });
    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the swept user's incident to resolve");
    expect(incident).toMatchObject({ rule: "factory-users-at-limit", target: { userId: user, pod: "chat-factory-0", namespace: "chat" } });
    expect(api.requests().some((r) => r.resource === "pods" && r.verb === "list" && r.namespace === "chat")).toBe(true);
    expect(api.requests().some((r) => r.resource === "pods" && r.namespace === NS)).toBe(false);
  });
});

describe("Kubernetes mode: restartPod", () => {
  it("deletes the stuck pod, waits for a Ready replacement, and verifies the user there; a second one within the hour is skipped", async () => {
    const { api, port } = await setUp();
    const stuck = await factoryPod(api, "chat-factory-a", "127.0.0.1", port);
    factories.push(stuck);
    // The replacement process, listening where the replacement pod will say it is.
    const fresh = await factoryPod(api, "placeholder", "127.0.0.2", port);
    factories.push(fresh);
    api.deletePod(NS, "placeholder");
    const stop = api.simulateReplicaSet({
      namespace: NS,
      matchLabels: { "app.kubernetes.io/name": "chat-factory" },
      createAfterMs: 50,
      readyAfterMs: 400,
      podIP: "127.0.0.2", // where the fresh process listens
    });
    const rule = LOCKOUT_RULE.replace(
      "    - { rung: probe, timeout: 5s }\n    - { rung: force, timeout: 5s, params: { max: 1 } }",
      "    - { rung: restartPod, timeout: 5s, params: { waitReady: 10s } }",
    );
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port, rule });
    operators.push(operator);
    await lockOut(stuck, USER, "live");

    const [incident] = await operator
      .until((all) => all.some((i) => i.status === "resolved"), "the restart to be verified", 20_000)
      .catch(async (err: unknown) => {
        throw new Error(`${String(err)}: ${JSON.stringify((await operator.incidents()).map((i) => [i.status, i.rungs, i.decisions.slice(-4)]))}`);
      });
    stop();
    expect(incident!.rungs.map((r) => [r.rung, r.outcome, r.verification?.verified])).toEqual([["restartPod", "ok", true]]);
    const replacement = api.pods(NS).find((p) => p.metadata.name !== "chat-factory-a")!.metadata.name;
    expect(replacement).toMatch(/^chat-factory-a-[a-z0-9]{5}$/);
    expect(incident!.target).toMatchObject({ pod: replacement, control: `http://127.0.0.2:${port}` });
    expect(api.requests().some((r) => r.verb === "delete" && r.resource === "pods" && r.name === "chat-factory-a")).toBe(true);
    expect(api.pod(NS, "chat-factory-a")).toBeUndefined();

    // Every user on a pod reconnects after a restart: at most one per rule and hour.
    const again = await factoryPod(api, "chat-factory-c", "127.0.0.1", await controlPortFreeOnBoth());
    factories.push(again);
    api.appendLog(
      NS,
      "chat-factory-c",
      `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: replacement, event: "factory.hard_limit", userId: "second-user", message: "HARD LIMIT" })}\n`,
    );
    const all = await operator.until((incidents) => incidents.some((i) => i.target.userId === "second-user" && i.status === "escalated"), "the second to escalate");
    const second = all.find((i) => i.target.userId === "second-user")!;
    expect(second.rungs[0]).toMatchObject({ rung: "restartPod", outcome: "skipped" });
    expect(second.rungs[0]!.error).toContain("restartPod limit reached");
  });
});
