/**
 * Notifications in Kubernetes mode, end to end (issue 13, ADR 23 "In the
 * cluster"): a real factory as a pod of the local API server, operators in
 * Kubernetes mode with exactly the manifests' Role, the real
 * @kubernetes/client-node, a local PagerDuty (Events API v2) and a local
 * Alertmanager API endpoint on real HTTP.
 *
 * - `reclaim incidents ack --k8s` (the CLI's own code) writes the ack into
 *   the Incident object; the leader's next pass sends it: PagerDuty
 *   `acknowledge`, Alertmanager `needs_human="false"`.
 * - A leader dies with a page pending for a PagerDuty that is down; the next
 *   leader, with an empty state folder, sends it once PagerDuty is back.
 * - What every receiver accepted is recorded on the Incident object, and a
 *   new leader does not send it again.
 */
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { incidentsCommand } from "../../../src/cli/incidents.js";
import { isRefusal } from "../../../src/demo/clients.js";
import { acknowledgement } from "../../../src/operator/incidents/human.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { NEEDS_HUMAN, noticeFingerprint, noticeOf } from "../../../src/operator/notify/notice.js";
import { NOTIFIED_ANNOTATION } from "../../../src/operator/notify/notified.js";
import type { KubernetesConfig } from "../../../src/operator/operator.js";
import { eventually, type TestFactory } from "../../support/factory.js";
import { kubeConfigFor, writeKubeConfig } from "../../support/k8s/kubeconfig.js";
import { rulesFromManifest } from "../../support/k8s/rbac.js";
import { FakeKubeApi, type KubeObject } from "../../support/k8s/server.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";
import { startPagerDutyServer, type PagerDutyServer } from "../../support/receivers.js";
import { controlPortFreeOnBoth, factoryPod, NS, SOURCE } from "../k8s/support.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const USER = "105945141827451681156";
const ROUTING_KEY = "0123456789abcdef0123456789abcdef";
const OPERATOR_TOKEN = "operator-token";
const OPERATOR_USER = "system:serviceaccount:reclaim:reclaim-operator";
const POD = "chat-factory-a";

/** The outage's rule with one rung, `probe`: live tabs are not zombies, so against them it frees nothing and escalates. */
const PROBE_ONLY = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: lockout }
spec:
  trigger: { log: { event: [factory.hard_limit], minSeverity: ERROR } }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
  verify: { settle: 500ms, timeout: 3s }
  incident: { severity: high, title: "Chat lockout: user {{userId}} on {{pod}}" }
`;

let api: FakeKubeApi | undefined;
const operators: TestOperator[] = [];
const factories: TestFactory[] = [];
const servers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of operators.splice(0)) await o.close();
  for (const f of factories.splice(0)) await f.close();
  for (const s of servers.splice(0)) await s.close();
  await api?.close();
  api = undefined;
});

/** The API server, the operator's token granted exactly the manifests' Role. */
async function cluster(): Promise<FakeKubeApi> {
  api = await FakeKubeApi.start();
  const role = await readFile(`${ROOT}manifests/base/operator/role.yaml`, "utf8");
  api.grant(OPERATOR_TOKEN, { user: OPERATOR_USER, rules: rulesFromManifest(role, NS) });
  return api;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push({ close: () => close(server) });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A local Alertmanager v2 API endpoint: keeps every alert posted to `/api/v2/alerts`, answers 200 as Alertmanager does. */
async function alertsEndpoint(): Promise<{ url: string; alerts: { labels: Record<string, string>; endsAt: string }[] }> {
  const alerts: { labels: Record<string, string>; endsAt: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/api/v2/alerts") {
        res.writeHead(404).end();
        return;
      }
      alerts.push(...(JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof alerts));
      res.writeHead(200, { "content-type": "application/json" }).end("");
    });
  });
  return { url: await listen(server), alerts };
}

/** What went through a `gate`: each PagerDuty event and the status it got. */
interface Passed {
  action: string;
  dedupKey: string;
  status: number;
}

/** PagerDuty behind a switch: while down it answers 503 (as a PagerDuty outage does), else it forwards. */
async function gate(pagerduty: PagerDutyServer): Promise<{ url: string; down: boolean; passed: Passed[] }> {
  const state = { url: "", down: true, passed: [] as Passed[] };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const event = JSON.parse(body) as { event_action: string; dedup_key: string };
      const answer = (status: number, text: string): void => {
        state.passed.push({ action: event.event_action, dedupKey: event.dedup_key, status });
        res.writeHead(status, { "content-type": "application/json" }).end(text);
      };
      if (state.down) return answer(503, JSON.stringify({ status: "unavailable" }));
      void fetch(pagerduty.eventsUrl, { method: "POST", headers: { "content-type": "application/json" }, body, signal: AbortSignal.timeout(5000) }).then(
        async (r) => answer(r.status, await r.text()),
        () => answer(502, ""),
      );
    });
  });
  state.url = `${await listen(server)}/v2/enqueue`;
  return state;
}

/** An operator in Kubernetes mode (no leader election: one replica; a new one is the next leader) with PagerDuty for what needs a human. */
async function clusterOperator(
  a: FakeKubeApi,
  options: { identity: string; port: number; pagerdutyUrl: string; alertmanager?: string },
): Promise<TestOperator> {
  const dir = await tempDir("reclaim-notify-k8s-");
  const file = join(dir, "notifications.yaml");
  await writeFile(
    file,
    [
      "apiVersion: reclaim.dev/v1",
      "kind: Notifications",
      "receivers:",
      "  - name: oncall-pager",
      `    pagerduty: { routingKeyFrom: PD_ROUTING_KEY, endpoint: "${options.pagerdutyUrl}" }`,
      "routes:",
      "  - match: { needsHuman: true }",
      "    receivers: [oncall-pager]",
      "",
    ].join("\n"),
  );
  const kubernetes: KubernetesConfig = {
    kubeConfig: kubeConfigFor(a, { namespace: NS, token: OPERATOR_TOKEN }),
    namespace: NS,
    identity: options.identity,
    leaderElection: null,
    incidents: true,
    podTargets: true,
    controlPort: options.port,
    watchRules: false,
  };
  const operator = await startTestOperator(
    {
      dir,
      source: SOURCE,
      control: "http://127.0.0.1:9",
      incidentsDir: null,
      kubernetes,
      rule: PROBE_ONLY,
      notifications: { alertmanagers: options.alertmanager === undefined ? [] : [options.alertmanager], file, externalUrl: null, reconcileMs: 200 },
    },
    { env: { PD_ROUTING_KEY: ROUTING_KEY } },
  );
  operators.push(operator);
  return operator;
}

/** 20 live tabs and one more refused: the factory logs the lockout; the probe frees nothing. */
async function lockOut(factory: TestFactory): Promise<void> {
  for (let i = 0; i < 20; i++) await factory.open(USER);
  expect(isRefusal(await factory.attempt(USER))).toBe(true);
}

/** The incident once it needs a human (and its ladder has stopped). */
async function escalated(operator: TestOperator): Promise<Incident> {
  const all = await operator.until((list) => list.some((i) => NEEDS_HUMAN.has(i.status)), "the incident to need a human", 30_000);
  await operator.idle();
  return all.find((i) => NEEDS_HUMAN.has(i.status))!;
}

function annotation(a: FakeKubeApi, id: string): string | undefined {
  return a.object<KubeObject>("incidents.reclaim.dev", NS, id.toLowerCase())?.metadata.annotations?.[NOTIFIED_ANNOTATION];
}

/** The fingerprint of what on-call should know of `incident` as it is in the cluster now. */
function fingerprintNow(incident: Incident): string {
  return noticeFingerprint(noticeOf(incident, { externalUrl: null, now: Date.now(), acknowledged: acknowledgement(incident) }));
}

async function counter(operator: TestOperator, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = operator.metrics.registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  return (await metric.get()).values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0);
}

function refusedCalls(a: FakeKubeApi): string[] {
  return a
    .requests()
    .filter((r) => r.user === OPERATOR_USER && r.status === 403)
    .map((r) => `${r.verb} ${r.resource}${r.subresource === undefined ? "" : `/${r.subresource}`}`);
}

describe("notifications in Kubernetes mode", () => {
  it("`reclaim incidents ack --k8s` acknowledges the page: PagerDuty `acknowledge` and Alertmanager `needs_human=\"false\"` at the leader's next pass", async () => {
    const a = await cluster();
    const port = await controlPortFreeOnBoth();
    factories.push(await factoryPod(a, POD, "127.0.0.1", port, { cleanup: "legacy" }));
    const pagerduty = await startPagerDutyServer();
    servers.push(pagerduty);
    const am = await alertsEndpoint();
    const operator = await clusterOperator(a, { identity: "operator-0", port, pagerdutyUrl: pagerduty.eventsUrl, alertmanager: am.url });

    await lockOut(factories[0]!);
    const incident = await escalated(operator);
    await eventually(() => pagerduty.alerts.get(incident.id)?.status === "triggered", 10_000, "the page");
    expect(am.alerts.some((x) => x.labels.incident === incident.id && x.labels.needs_human === "true")).toBe(true);

    // The CLI's own code, in this process: `reclaim incidents ack ID --by alice --k8s`.
    const kubeconfig = await writeKubeConfig(join(operator.dir, "kubeconfig.yaml"), a, { namespace: NS });
    await incidentsCommand().parseAsync(["ack", incident.id, "--by", "alice", "--k8s", "--kubeconfig", kubeconfig, "--namespace", NS], { from: "user" });
    const object = a.object<KubeObject & { status: { human?: { kind: string; by: string }[] } }>("incidents.reclaim.dev", NS, incident.id.toLowerCase());
    expect(object?.status.human).toEqual([expect.objectContaining({ kind: "ack", by: "alice" })]);

    await eventually(() => pagerduty.alerts.get(incident.id)?.status === "acknowledged", 10_000, "PagerDuty to be acknowledged");
    await eventually(() => am.alerts.some((x) => x.labels.incident === incident.id && x.labels.needs_human === "false"), 10_000, "Alertmanager's needs_human=false");
    const acked = (await operator.store.get(incident.id))!;
    await eventually(() => annotation(a, incident.id) === fingerprintNow(acked), 10_000, "the ack recorded as delivered");
    expect(refusedCalls(a)).toEqual([]);
  });

  it("a leader that dies with a page pending for a PagerDuty that is down: the next leader, with an empty state folder, sends it once PagerDuty is back", async () => {
    const a = await cluster();
    const port = await controlPortFreeOnBoth();
    factories.push(await factoryPod(a, POD, "127.0.0.1", port, { cleanup: "legacy" }));
    const pagerduty = await startPagerDutyServer();
    servers.push(pagerduty);
    const pd = await gate(pagerduty);
    const first = await clusterOperator(a, { identity: "operator-a", port, pagerdutyUrl: pd.url });

    await lockOut(factories[0]!);
    const incident = await escalated(first);
    await eventually(() => pd.passed.some((p) => p.dedupKey === incident.id && p.action === "trigger"), 10_000, "the first leader to try the page");
    // It dies (its outbox goes with its pod); the factory's pod goes too, so the next leader only reads the records.
    operators.splice(operators.indexOf(first), 1);
    await first.close();
    a.deletePod(NS, POD);
    expect(pagerduty.requests).toEqual([]);
    expect(annotation(a, incident.id)).toBeUndefined();

    const tried = pd.passed.length;
    const next = await clusterOperator(a, { identity: "operator-b", port, pagerdutyUrl: pd.url });
    await eventually(() => pd.passed.length > tried, 10_000, "the next leader to try the page");
    expect(next.lines.find((l) => l.event === "operator.term_started" && l.notificationsResent !== undefined)).toMatchObject({ notificationsResent: 1 });
    pd.down = false;
    await eventually(() => pagerduty.alerts.get(incident.id)?.status === "triggered", 15_000, "the page");
    await eventually(() => annotation(a, incident.id) === fingerprintNow(incident), 10_000, "the page recorded as delivered");
    // Once per state: a few more passes send nothing more.
    const passes = await counter(next, "reclaim_operator_notification_sync_total", { result: "ok" });
    await eventually(async () => (await counter(next, "reclaim_operator_notification_sync_total", { result: "ok" })) >= passes + 3, 10_000, "three more passes");
    expect(pagerduty.requests.filter((r) => r.status === 202).map((r) => [r.body.event_action, r.body.dedup_key])).toEqual([["trigger", incident.id]]);
    expect(refusedCalls(a)).toEqual([]);
  });

  it("records on the Incident object what every receiver accepted; a new leader does not send it again", async () => {
    const a = await cluster();
    const port = await controlPortFreeOnBoth();
    factories.push(await factoryPod(a, POD, "127.0.0.1", port, { cleanup: "legacy" }));
    const pagerduty = await startPagerDutyServer();
    servers.push(pagerduty);
    const first = await clusterOperator(a, { identity: "operator-a", port, pagerdutyUrl: pagerduty.eventsUrl });

    await lockOut(factories[0]!);
    const incident = await escalated(first);
    await eventually(() => annotation(a, incident.id) === fingerprintNow(incident), 10_000, "the page recorded as delivered");
    expect(pagerduty.alerts.get(incident.id)?.status).toBe("triggered");
    const patches = a.requests().filter((r) => r.user === OPERATOR_USER && r.verb === "patch" && r.name === incident.id.toLowerCase());
    expect(patches.every((r) => r.contentType === "application/merge-patch+json" && r.subresource === undefined && r.status === 200)).toBe(true);
    operators.splice(operators.indexOf(first), 1);
    await first.close();
    a.deletePod(NS, POD);
    const sentBefore = pagerduty.requests.length;

    const next = await clusterOperator(a, { identity: "operator-b", port, pagerdutyUrl: pagerduty.eventsUrl });
    await eventually(async () => (await counter(next, "reclaim_operator_notification_sync_total", { result: "ok" })) >= 3, 10_000, "the term start and two passes");
    expect(next.lines.find((l) => l.event === "operator.term_started" && l.notificationsResent !== undefined)).toMatchObject({ notificationsRead: 1, notificationsResent: 0 });
    expect(await counter(next, "reclaim_operator_notifications_resent_total")).toBe(0);
    expect(pagerduty.requests.length).toBe(sentBefore);
    expect(refusedCalls(a)).toEqual([]);
  });
});
