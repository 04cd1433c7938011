/**
 * Kubernetes mode, continued: the pod-log source across pod churn,
 * RemediationRule objects (an invalid one gets a Valid=False condition saying
 * why), a record the operator wrote validated against the generated Incident
 * CRD, and RBAC: the operator run with exactly the manifests' Role, every
 * verb granted is used and nothing is refused.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as k8s from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { incidentCrd } from "../../../src/operator/k8s/crds.js";
import { PodLogSource } from "../../../src/operator/k8s/pod-logs.js";
import { isRefusal } from "../../../src/demo/clients.js";
import { resourceProblems } from "../../support/crd-values.js";
import { eventually, type Json } from "../../support/factory.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { rulesFromManifest } from "../../support/k8s/rbac.js";
import { FakeKubeApi } from "../../support/k8s/server.js";
import { LOCKOUT_RULE } from "../../support/operator.js";
import { APP, NS, closedAfterEach, controlPortFreeOnBoth, factoryPod, k8sOperator } from "./support.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

const started = closedAfterEach();
const { factories, operators } = started;

const line = (n: number, pod: string): string => `${JSON.stringify({ severity: "INFO", time: new Date().toISOString(), pod, event: "factory.connection_opened", n })}\n`;

describe("the pod-log source", () => {
  it("follows every matching pod as pods come and go, and survives the API server closing its watches", async () => {
    const api = (started.api = await FakeKubeApi.start());
    api.addPod({ namespace: NS, name: "f-1", labels: { ...APP } });
    api.addPod({ namespace: NS, name: "other", labels: { app: "something-else" } });
    const source = new PodLogSource(kubeConfigFor(api, { namespace: NS }), { namespace: NS, selector: "app.kubernetes.io/name=chat-factory" });
    const seen: string[] = [];
    const stop = new AbortController();
    const running = source.run(async (batch) => {
      for (const l of batch.data.toString("utf8").split("\n")) if (l !== "") seen.push(`${JSON.parse(l).jsonPayload.pod}#${JSON.parse(l).jsonPayload.n}`);
      await batch.commit();
    }, stop.signal);

    await eventually(() => source.pods.includes("f-1"), 5000, "f-1 to be followed");
    api.appendLog(NS, "f-1", line(1, "f-1"));
    api.appendLog(NS, "other", line(99, "other"));
    await eventually(() => seen.includes("f-1#1"), 5000, "f-1's line");

    api.addPod({ namespace: NS, name: "f-2", labels: { ...APP } });
    await eventually(() => source.pods.includes("f-2"), 5000, "f-2 to be followed");
    api.appendLog(NS, "f-2", line(2, "f-2"));
    api.deletePod(NS, "f-1");
    await eventually(() => seen.includes("f-2#2") && !source.pods.includes("f-1"), 5000, "f-2's line and f-1 gone");

    expect(api.closeWatches()).toBeGreaterThan(0); // the informer re-watches at once
    api.addPod({ namespace: NS, name: "f-3", labels: { ...APP } });
    await eventually(() => source.pods.includes("f-3"), 5000, "f-3 after the re-watch");
    api.appendLog(NS, "f-3", line(3, "f-3"));
    await eventually(() => seen.includes("f-3#3"), 5000, "f-3's line");

    stop.abort();
    await running;
    expect(seen).toEqual(["f-1#1", "f-2#2", "f-3#3"]);
    expect(source.stats.linesRead).toBe(3);
  });
});

describe("RemediationRule objects", () => {
  it("an invalid one gets Valid=False with every problem; a valid one is in force", async () => {
    const api = (started.api = await FakeKubeApi.start());
    const port = await controlPortFreeOnBoth();
    const factory = await factoryPod(api, "chat-factory-a", "127.0.0.1", port);
    factories.push(factory);
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port, watchRules: true });
    operators.push(operator);
    const objects = kubeConfigFor(api, { namespace: NS }).makeApiClient(k8s.CustomObjectsApi);
    const create = (body: object): Promise<unknown> =>
      objects.createNamespacedCustomObject({ group: "reclaim.dev", version: "v1", namespace: NS, plural: "remediationrules", body });
    await create({
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "broken" },
      spec: { trigger: { log: { event: "factory.hard_limit" } }, key: ["pod"], ladder: [{ rung: "reboot" }] },
    });
    await create({
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "lockout" }, // the name of the file rule
      spec: { trigger: { log: { event: "factory.error" } }, ladder: [{ rung: "probe" }] },
    });
    await create({
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "from-the-cluster" },
      spec: { trigger: { log: { event: "factory.custom_alarm" } }, ladder: [{ rung: "probe" }], verify: { settle: "100ms", timeout: "2s" } },
    });
    const condition = (name: string): Json => api.object<Json>("remediationrules.reclaim.dev", NS, name)?.status?.conditions?.[0];
    await eventually(() => condition("broken") !== undefined && condition("lockout") !== undefined && condition("from-the-cluster") !== undefined, 5000, "conditions");
    expect(condition("broken")).toMatchObject({ type: "Valid", status: "False", reason: "Invalid" });
    expect(condition("broken").message).toContain("spec.key: key must include userId");
    expect(condition("broken").message).toContain("spec.ladder[0].rung: rung must be one of");
    expect(condition("lockout")).toMatchObject({ status: "False", message: "metadata.name: a rule file already defines a rule named lockout" });
    expect(condition("from-the-cluster")).toMatchObject({ status: "True", reason: "Valid" });
    expect(operator.rules().map((r) => r.name).sort()).toEqual(["from-the-cluster", "lockout"]);

    api.appendLog(
      NS,
      "chat-factory-a",
      `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "chat-factory-a", event: "factory.custom_alarm", userId: "u-cluster", message: "x" })}\n`,
    );
    const all = await operator.until((incidents) => incidents.some((i) => i.rule === "from-the-cluster" && i.status === "resolved"), "the cluster rule to act");
    expect(all.filter((i) => i.rule === "from-the-cluster")).toHaveLength(1);

    // Fixing the object makes it valid.
    await objects.patchNamespacedCustomObject(
      { group: "reclaim.dev", version: "v1", namespace: NS, plural: "remediationrules", name: "broken", body: { spec: { key: ["userId"], ladder: [{ rung: "probe" }] } } },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    await eventually(() => condition("broken")?.status === "True", 5000, "the fixed rule to be valid");
    expect(operator.rules().map((r) => r.name)).toContain("broken");
  });
});

describe("what the operator writes and calls", () => {
  it("runs with exactly the manifests' Role (base + staging's restartPod), uses every verb it grants, and writes records the Incident CRD accepts", async () => {
    const api = (started.api = await FakeKubeApi.start());
    const role = `${await readFile(`${ROOT}manifests/base/operator/role.yaml`, "utf8")}\n---\n${await readFile(`${ROOT}manifests/overlays/staging/restart-pod-rbac.yaml`, "utf8")}`;
    const granted = rulesFromManifest(role, NS);
    api.grant("operator-token", { user: "system:serviceaccount:reclaim:reclaim-operator", rules: granted });
    const port = await controlPortFreeOnBoth();
    const a = await factoryPod(api, "chat-factory-a", "127.0.0.1", port);
    const fresh = await factoryPod(api, "placeholder", "127.0.0.2", port);
    factories.push(a, fresh);
    api.deletePod(NS, "placeholder");
    api.simulateReplicaSet({ namespace: NS, matchLabels: { ...APP }, createAfterMs: 50, readyAfterMs: 300, podIP: "127.0.0.2" });
    const objects = kubeConfigFor(api, { namespace: NS }).makeApiClient(k8s.CustomObjectsApi);
    await objects.createNamespacedCustomObject({
      group: "reclaim.dev",
      version: "v1",
      namespace: NS,
      plural: "remediationrules",
      body: { apiVersion: "reclaim.dev/v1", kind: "RemediationRule", metadata: { name: "cluster-rule" }, spec: { trigger: { log: { event: "factory.x" } }, ladder: [{ rung: "probe" }] } },
    });
    api.clearRequests();

    const rule = LOCKOUT_RULE.replace(
      "    - { rung: probe, timeout: 5s }\n    - { rung: force, timeout: 5s, params: { max: 1 } }",
      "    - { rung: probe, timeout: 5s }\n    - { rung: restartPod, timeout: 5s, params: { waitReady: 10s } }",
    );
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port, leader: true, token: "operator-token", watchRules: true, rule });
    operators.push(operator);
    await eventually(() => operator.leading(), 10_000, "leadership");
    for (let i = 0; i < 20; i++) await a.open("rbac-user");
    const refused = await a.attempt("rbac-user");
    expect(isRefusal(refused)).toBe(true);
    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the incident (probe, then restartPod)", 20_000);
    expect(incident!.rungs.map((r) => r.rung)).toEqual(["probe", "restartPod"]);
    await operator.idle();

    const requests = api.requests().filter((r) => r.user === "system:serviceaccount:reclaim:reclaim-operator");
    expect(requests.filter((r) => r.status === 403)).toEqual([]);
    const used = new Set(requests.map((r) => `${r.apiGroup}/${r.resource}${r.subresource ? `/${r.subresource}` : ""}:${r.verb}`));
    const allowed = new Set(granted.flatMap((g) => g.apiGroups.flatMap((group) => g.resources.flatMap((res) => g.verbs.map((v) => `${group}/${res}:${v}`)))));
    expect([...used].sort()).toEqual([...allowed].sort());

    const object = api.object<Json>("incidents.reclaim.dev", NS, incident!.id.toLowerCase())!;
    expect(resourceProblems(object, incidentCrd().spec.versions[0]!.schema.openAPIV3Schema, "Incident")).toEqual([]);
  });
});
