/**
 * The fake Kubernetes API server, driven only through the real
 * `@kubernetes/client-node`: the requests it makes are the ones the operator
 * makes, so what passes here is what the operator's code can rely on.
 */
import * as k8s from "@kubernetes/client-node";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { kubeConfigFor, writeKubeConfig } from "./k8s/kubeconfig.js";
import { FakeKubeApi, rulesFromManifest, type PolicyRule } from "./k8s/server.js";

const NS = "reclaim";
const CR = { group: "reclaim.dev", version: "v1", namespace: NS };
const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);

let api: FakeKubeApi;
let kc: k8s.KubeConfig;

beforeEach(async () => {
  api = await FakeKubeApi.start();
  kc = kubeConfigFor(api, { namespace: NS });
});

afterEach(async () => {
  await api.close();
});

/** The error a client call rejected with. */
async function failure(promise: Promise<unknown>): Promise<k8s.ApiException<string>> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(k8s.ApiException);
    return err as k8s.ApiException<string>;
  }
  throw new Error("expected the call to fail");
}

/** The `Status` object in a client error's body. */
function statusOf(err: k8s.ApiException<string>): { kind: string; reason: string; code: number; message: string } {
  return JSON.parse(err.body);
}

function incident(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: "reclaim.dev/v1",
    kind: "Incident",
    metadata: { name, labels: { "reclaim.dev/rule": "lockout", "reclaim.dev/status": "open" } },
    spec: { id: name, severity: "high" },
    ...extra,
  };
}

function waitFor(check: () => void): Promise<void> {
  return vi.waitFor(check, { timeout: 5000, interval: 10 });
}

describe("leases", () => {
  it("creates, reads and replaces a lease; a stale resourceVersion is 409 Conflict", async () => {
    const leases = kc.makeApiClient(k8s.CoordinationV1Api);
    const created = await leases.createNamespacedLease({
      namespace: NS,
      body: { metadata: { name: "reclaim-leader" }, spec: { holderIdentity: "a", leaseDurationSeconds: 15 } },
    });
    expect(created.metadata?.uid).toBeTruthy();
    expect(created.metadata?.resourceVersion).toBe(api.resourceVersion());

    const read = await leases.readNamespacedLease({ namespace: NS, name: "reclaim-leader" });
    expect(read.spec?.holderIdentity).toBe("a");

    const renewed = await leases.replaceNamespacedLease({
      namespace: NS,
      name: "reclaim-leader",
      body: { ...read, spec: { ...read.spec, holderIdentity: "b" } },
    });
    expect(renewed.spec?.holderIdentity).toBe("b");
    expect(Number(renewed.metadata?.resourceVersion)).toBeGreaterThan(Number(read.metadata?.resourceVersion));

    const stale = await failure(leases.replaceNamespacedLease({ namespace: NS, name: "reclaim-leader", body: read }));
    expect(stale.code).toBe(409);
    expect(statusOf(stale)).toMatchObject({ kind: "Status", reason: "Conflict", code: 409 });
    expect(statusOf(stale).message).toContain('Operation cannot be fulfilled on leases.coordination.k8s.io "reclaim-leader"');

    const again = await failure(leases.createNamespacedLease({ namespace: NS, body: { metadata: { name: "reclaim-leader" } } }));
    expect(again.code).toBe(409);
    expect(statusOf(again).reason).toBe("AlreadyExists");

    const patched = await leases.patchNamespacedLease({ namespace: NS, name: "reclaim-leader", body: { spec: { holderIdentity: "c" } } }, MERGE);
    expect(patched.spec?.holderIdentity).toBe("c");
    expect(patched.spec?.leaseDurationSeconds).toBe(15);

    await leases.deleteNamespacedLease({ namespace: NS, name: "reclaim-leader" });
    expect((await failure(leases.readNamespacedLease({ namespace: NS, name: "reclaim-leader" }))).code).toBe(404);
  });

  it("answers a fault injected for the next matching request, then behaves again", async () => {
    const leases = kc.makeApiClient(k8s.CoordinationV1Api);
    const lease = await leases.createNamespacedLease({ namespace: NS, body: { metadata: { name: "l" }, spec: {} } });
    api.failNext({ verb: "update", resource: "leases", code: 500 });
    const err = await failure(leases.replaceNamespacedLease({ namespace: NS, name: "l", body: lease }));
    expect(err.code).toBe(500);
    expect(statusOf(err).reason).toBe("InternalError");
    await leases.replaceNamespacedLease({ namespace: NS, name: "l", body: lease });
  });
});

describe("custom objects", () => {
  it("creates, reads, lists by label, replaces and patches (merge and JSON patch)", async () => {
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);
    const created = await objects.createNamespacedCustomObject({ ...CR, plural: "incidents", body: incident("inc-1") });
    expect(created.metadata).toMatchObject({ name: "inc-1", namespace: NS, generation: 1 });
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    await objects.createNamespacedCustomObject({
      ...CR,
      plural: "incidents",
      body: { ...incident("inc-2"), metadata: { name: "inc-2", labels: { "reclaim.dev/rule": "other" } } },
    });

    const read = await objects.getNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1" });
    expect(read.spec).toEqual({ id: "inc-1", severity: "high" });

    const list = await objects.listNamespacedCustomObject({ ...CR, plural: "incidents", labelSelector: "reclaim.dev/rule=lockout" });
    expect(list.kind).toBe("IncidentList");
    expect(list.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(["inc-1"]);
    expect(list.items[0].kind).toBe("Incident"); // custom resource lists keep apiVersion/kind on items
    expect(list.metadata.resourceVersion).toBe(api.resourceVersion());

    const replaced = await objects.replaceNamespacedCustomObject({
      ...CR,
      plural: "incidents",
      name: "inc-1",
      body: { ...read, spec: { ...read.spec, severity: "low" } },
    });
    expect(replaced.spec.severity).toBe("low");
    expect(replaced.metadata.generation).toBe(2);

    const merged = await objects.patchNamespacedCustomObject(
      { ...CR, plural: "incidents", name: "inc-1", body: { metadata: { labels: { "reclaim.dev/status": "closed" } } } },
      MERGE,
    );
    expect(merged.metadata.labels).toEqual({ "reclaim.dev/rule": "lockout", "reclaim.dev/status": "closed" });
    expect(merged.metadata.generation).toBe(2); // labels are metadata: no generation bump

    const jsonPatched = await objects.patchNamespacedCustomObject({
      ...CR,
      plural: "incidents",
      name: "inc-1",
      body: [
        { op: "test", path: "/spec/severity", value: "low" },
        { op: "replace", path: "/spec/severity", value: "critical" },
        { op: "add", path: "/spec/tags", value: ["a"] },
      ],
    });
    expect(jsonPatched.spec).toEqual({ id: "inc-1", severity: "critical", tags: ["a"] });
    expect(jsonPatched.metadata.generation).toBe(3);
    expect(api.requests().filter((r) => r.verb === "patch").map((r) => r.contentType)).toEqual([
      "application/merge-patch+json",
      "application/json-patch+json",
    ]);

    const failedTest = await failure(
      objects.patchNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1", body: [{ op: "test", path: "/spec/severity", value: "low" }] }),
    );
    expect(failedTest.code).toBe(422);
    const notAPatch = await failure(objects.patchNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1", body: { spec: {} } }));
    expect(notAPatch.code).toBe(400); // an object sent as application/json-patch+json
  });

  it("keeps spec and status apart through the status subresource", async () => {
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);
    const created = await objects.createNamespacedCustomObject({
      ...CR,
      plural: "incidents",
      body: incident("inc-1", { status: { status: "open" } }),
    });
    expect(created.status).toBeUndefined(); // status is dropped on create

    const withStatus = await objects.replaceNamespacedCustomObjectStatus({
      ...CR,
      plural: "incidents",
      name: "inc-1",
      body: { ...created, spec: { id: "ignored" }, metadata: { ...created.metadata, labels: {} }, status: { status: "acting" } },
    });
    expect(withStatus.status).toEqual({ status: "acting" });
    expect(withStatus.spec).toEqual(created.spec); // /status writes change only status
    expect(withStatus.metadata.labels).toEqual(created.metadata.labels);
    expect(withStatus.metadata.generation).toBe(1);

    const stale = await failure(
      objects.replaceNamespacedCustomObjectStatus({ ...CR, plural: "incidents", name: "inc-1", body: { ...created, status: { status: "x" } } }),
    );
    expect(stale.code).toBe(409);

    const mainWrite = await objects.replaceNamespacedCustomObject({
      ...CR,
      plural: "incidents",
      name: "inc-1",
      body: { ...withStatus, spec: { ...withStatus.spec, severity: "low" }, status: { status: "ignored" } },
    });
    expect(mainWrite.status).toEqual({ status: "acting" }); // writes to the object ignore status
    expect(mainWrite.metadata.generation).toBe(2);

    const statusPatch = await objects.patchNamespacedCustomObjectStatus(
      { ...CR, plural: "incidents", name: "inc-1", body: { status: { resolvedAt: "2024-01-01T00:00:00Z" } } },
      MERGE,
    );
    expect(statusPatch.status).toEqual({ status: "acting", resolvedAt: "2024-01-01T00:00:00Z" });
    expect(statusPatch.metadata.generation).toBe(2);

    // An unchanged write is not a write: same resourceVersion.
    const same = await objects.replaceNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1", body: statusPatch });
    expect(same.metadata.resourceVersion).toBe(statusPatch.metadata.resourceVersion);
  });

  it.each([
    ["a PUT without resourceVersion", 422, "Invalid"],
    ["a name that is not a DNS subdomain", 422, "Invalid"],
    ["a missing object", 404, "NotFound"],
    ["an unknown resource", 404, "NotFound"],
  ])("refuses %s with %i %s", async (what, code, reason) => {
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);
    await objects.createNamespacedCustomObject({ ...CR, plural: "incidents", body: incident("inc-1") });
    const calls: Record<string, () => Promise<unknown>> = {
      "a PUT without resourceVersion": () =>
        objects.replaceNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1", body: incident("inc-1") }),
      "a name that is not a DNS subdomain": () => objects.createNamespacedCustomObject({ ...CR, plural: "incidents", body: incident("Inc_1") }),
      "a missing object": () => objects.getNamespacedCustomObject({ ...CR, plural: "incidents", name: "nope" }),
      "an unknown resource": () => objects.listNamespacedCustomObject({ ...CR, plural: "nopes" }),
    };
    const err = await failure((calls[what] as () => Promise<unknown>)());
    expect(err.code).toBe(code);
    expect(statusOf(err)).toMatchObject({ kind: "Status", reason, code });
  });

  it("keeps an object with finalizers until they are removed", async () => {
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);
    await objects.createNamespacedCustomObject({
      ...CR,
      plural: "incidents",
      body: { ...incident("inc-1"), metadata: { name: "inc-1", finalizers: ["reclaim.dev/cleanup"] } },
    });
    const deleting = await objects.deleteNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1" });
    expect(deleting.metadata.deletionTimestamp).toBeTruthy();
    expect(api.object("incidents.reclaim.dev", NS, "inc-1")).toBeDefined();
    await objects.patchNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1", body: { metadata: { finalizers: null } } }, MERGE);
    expect(api.object("incidents.reclaim.dev", NS, "inc-1")).toBeUndefined();
  });
});

describe("watches and informers", () => {
  it("streams ADDED, MODIFIED and DELETED and stays open", async () => {
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);
    const seen: string[] = [];
    let ended = false;
    const controller = await new k8s.Watch(kc).watch(
      `/apis/reclaim.dev/v1/namespaces/${NS}/incidents`,
      { resourceVersion: api.resourceVersion(), allowWatchBookmarks: true },
      (type, object: { metadata: { name?: string; resourceVersion: string } }) =>
        seen.push(`${type} ${type === "BOOKMARK" ? object.metadata.resourceVersion : object.metadata.name}`),
      () => {
        ended = true;
      },
    );
    await objects.createNamespacedCustomObject({ ...CR, plural: "incidents", body: incident("inc-1") });
    await objects.patchNamespacedCustomObjectStatus({ ...CR, plural: "incidents", name: "inc-1", body: { status: { status: "acting" } } }, MERGE);
    await objects.deleteNamespacedCustomObject({ ...CR, plural: "incidents", name: "inc-1" });
    await waitFor(() => expect(seen).toEqual(["ADDED inc-1", "MODIFIED inc-1", "DELETED inc-1"]));
    expect(ended).toBe(false);
    expect(api.openWatches()).toBe(1);

    // The server ends the watch: a bookmark first (it was allowed), then the end of the stream.
    expect(api.closeWatches()).toBe(1);
    await waitFor(() => expect(ended).toBe(true));
    expect(seen.at(-1)).toBe(`BOOKMARK ${api.resourceVersion()}`);
    expect(api.openWatches()).toBe(0);
    controller.abort();
  });

  it("ends a watch after its timeoutSeconds", async () => {
    let done = false;
    await new k8s.Watch(kc).watch(
      `/apis/reclaim.dev/v1/namespaces/${NS}/incidents`,
      { timeoutSeconds: 1 },
      () => undefined,
      () => {
        done = true;
      },
    );
    expect(api.openWatches()).toBe(1);
    await waitFor(() => expect(done).toBe(true));
    expect(api.openWatches()).toBe(0);
  });

  it("replays changes after a resourceVersion, filters by label, and answers 410 Expired once history is compacted", async () => {
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);
    const start = api.resourceVersion();
    await objects.createNamespacedCustomObject({ ...CR, plural: "incidents", body: incident("inc-1") });
    await objects.createNamespacedCustomObject({
      ...CR,
      plural: "incidents",
      body: { ...incident("inc-2"), metadata: { name: "inc-2", labels: { "reclaim.dev/rule": "other" } } },
    });
    const seen: string[] = [];
    const controller = await new k8s.Watch(kc).watch(
      `/apis/reclaim.dev/v1/namespaces/${NS}/incidents`,
      { resourceVersion: start, labelSelector: "reclaim.dev/rule=lockout" },
      (type, object: { metadata: { name: string } }) => seen.push(`${type} ${object.metadata.name}`),
      () => undefined,
    );
    // A label change moves an object out of the selection: the watch reports it DELETED.
    await objects.patchNamespacedCustomObject(
      { ...CR, plural: "incidents", name: "inc-1", body: { metadata: { labels: { "reclaim.dev/rule": "other" } } } },
      MERGE,
    );
    await waitFor(() => expect(seen).toEqual(["ADDED inc-1", "DELETED inc-1"]));
    controller.abort();

    api.expireWatchHistory();
    const errors: unknown[] = [];
    let done = false;
    await new k8s.Watch(kc).watch(
      `/apis/reclaim.dev/v1/namespaces/${NS}/incidents`,
      { resourceVersion: start },
      (type, object) => errors.push({ type, object }),
      () => {
        done = true;
      },
    );
    await waitFor(() => expect(done).toBe(true));
    expect(errors).toEqual([{ type: "ERROR", object: expect.objectContaining({ kind: "Status", code: 410, reason: "Expired" }) }]);
  });

  it("feeds an informer that lists, watches, and recovers when the server closes its watch", async () => {
    const objects = kc.makeApiClient(k8s.CustomObjectsApi);
    api.putObject("remediationrules.reclaim.dev", {
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "lockout", namespace: NS },
      spec: { threshold: { count: 1 } },
    });
    const path = `/apis/reclaim.dev/v1/namespaces/${NS}/remediationrules`;
    const informer = k8s.makeInformer<k8s.KubernetesObject>(kc, path, () =>
      objects.listNamespacedCustomObject({ ...CR, plural: "remediationrules" }),
    );
    const seen: string[] = [];
    const errors: unknown[] = [];
    informer.on("add", (o) => seen.push(`add ${o.metadata?.name}`));
    informer.on("update", (o) => seen.push(`update ${o.metadata?.name}`));
    informer.on("delete", (o) => seen.push(`delete ${o.metadata?.name}`));
    informer.on("error", (err) => errors.push(err));
    await informer.start();
    try {
      await waitFor(() => expect(seen).toEqual(["add lockout"]));
      await objects.createNamespacedCustomObject({
        ...CR,
        plural: "remediationrules",
        body: { apiVersion: "reclaim.dev/v1", kind: "RemediationRule", metadata: { name: "ghosts" }, spec: {} },
      });
      await waitFor(() => expect(seen).toEqual(["add lockout", "add ghosts"]));

      // The server ends the watch; the informer re-watches from its last resourceVersion.
      expect(api.closeWatches()).toBe(1);
      await waitFor(() => expect(api.requests().filter((r) => r.verb === "watch")).toHaveLength(2));
      await objects.patchNamespacedCustomObject(
        { ...CR, plural: "remediationrules", name: "lockout", body: { spec: { threshold: { count: 2 } } } },
        MERGE,
      );
      await waitFor(() => expect(seen).toEqual(["add lockout", "add ghosts", "update lockout"]));

      // A change while no watch is open, then compaction: the re-watch gets 410 Expired and the informer lists again.
      api.closeWatches();
      api.removeObject("remediationrules.reclaim.dev", NS, "ghosts");
      api.expireWatchHistory();
      await waitFor(() => expect(api.requests().filter((r) => r.verb === "list")).toHaveLength(2));
      await waitFor(() => expect(seen).toEqual(["add lockout", "add ghosts", "update lockout", "delete ghosts"]));
      await waitFor(() => expect(api.openWatches()).toBe(1));
      expect(informer.list().map((o) => o.metadata?.name)).toEqual(["lockout"]);
      expect(errors).toEqual([]);
      expect(api.requests().map((r) => `${r.verb} ${r.status}`)).toEqual([
        "list 200",
        "watch 200",
        "create 201",
        "watch 200", // after closeWatches()
        "patch 200",
        "watch 200", // answered with an ERROR event: 410 Expired
        "list 200",
        "watch 200",
      ]);
    } finally {
      await informer.stop();
    }
  });
});

describe("pods", () => {
  beforeEach(() => {
    api.addPod({ namespace: NS, name: "chat-0", labels: { app: "chat", tier: "web" } });
    api.addPod({ namespace: NS, name: "chat-1", labels: { app: "chat", tier: "api", canary: "true" } });
    api.addPod({ namespace: NS, name: "db-0", labels: { app: "db" }, phase: "Pending" });
    api.addPod({ namespace: "other", name: "chat-9", labels: { app: "chat" } });
  });

  it.each([
    ["app=chat", undefined, ["chat-0", "chat-1"]],
    ["app==chat", undefined, ["chat-0", "chat-1"]],
    ["app!=chat", undefined, ["db-0"]],
    ["tier in (web,api)", undefined, ["chat-0", "chat-1"]],
    ["tier notin (web)", undefined, ["chat-1", "db-0"]],
    ["canary", undefined, ["chat-1"]],
    ["!canary", undefined, ["chat-0", "db-0"]],
    ["app=chat,tier=web", undefined, ["chat-0"]],
    [undefined, "status.phase=Running", ["chat-0", "chat-1"]],
    [undefined, "metadata.name=db-0", ["db-0"]],
    ["app=chat", "status.phase!=Running", []],
  ])("lists pods with labelSelector %s and fieldSelector %s", async (labelSelector, fieldSelector, names) => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const list = await core.listNamespacedPod({ namespace: NS, labelSelector, fieldSelector });
    expect(list.items.map((p) => p.metadata?.name)).toEqual(names);
  });

  it("reports seeded status: phase, IP, Ready condition", async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const pod = await core.readNamespacedPod({ namespace: NS, name: "chat-0" });
    expect(pod.status?.phase).toBe("Running");
    expect(pod.status?.podIP).toMatch(/^10\.244\.\d+\.\d+$/);
    expect(pod.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    const pending = await core.readNamespacedPod({ namespace: NS, name: "db-0" });
    expect(pending.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("False");
    expect(pending.status?.podIP).toBeUndefined();
  });

  it("replaces a deleted pod as a ReplicaSet would, and a watch sees it become Ready", async () => {
    api.simulateReplicaSet({ namespace: NS, matchLabels: { app: "chat" }, createAfterMs: 5, readyAfterMs: 5 });
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const seen: string[] = [];
    const controller = await new k8s.Watch(kc).watch(
      `/api/v1/namespaces/${NS}/pods`,
      { labelSelector: "app=chat", resourceVersion: api.resourceVersion() },
      (type, pod: k8s.V1Pod) => {
        const ready = pod.status?.conditions?.find((c) => c.type === "Ready")?.status;
        seen.push(`${type} ${pod.metadata?.name === "chat-0" ? "old" : "new"} ${pod.status?.phase} ${ready}`);
      },
      () => undefined,
    );
    const deleted = await core.deleteNamespacedPod({ namespace: NS, name: "chat-0" });
    expect(deleted.metadata?.name).toBe("chat-0");
    await waitFor(() => expect(seen).toEqual(["DELETED old Running True", "ADDED new Pending False", "MODIFIED new Running True"]));
    const replacement = api.pods(NS).find((p) => p.metadata.name.startsWith("chat-") && p.metadata.labels?.tier === "web");
    expect(replacement?.metadata.name).toMatch(/^chat-0-[a-z0-9]{5}$/); // a seeded name without a random suffix keeps its whole name as prefix
    expect(replacement?.status.podIP).toBeTruthy();
    controller.abort();
  });

  it("gives every pod a uid and a whole-second creationTimestamp (a seed may date it earlier); a replacement gets its own, and keeps the owner", async () => {
    const owner = { apiVersion: "apps/v1", kind: "ReplicaSet", name: "chat-7d4b", uid: "rs-1", controller: true };
    api.addPod({ namespace: NS, name: "chat-7d4b-aaaaa", labels: { app: "owned" }, ownerReferences: [owner], creationTimestamp: "2020-01-02T03:04:05Z" });
    api.simulateReplicaSet({ namespace: NS, matchLabels: { app: "owned" } });
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const old = await core.readNamespacedPod({ namespace: NS, name: "chat-7d4b-aaaaa" });
    expect(old.metadata?.creationTimestamp?.toISOString()).toBe("2020-01-02T03:04:05.000Z");
    const seeded = await core.readNamespacedPod({ namespace: NS, name: "chat-0" });
    expect(seeded.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(api.pod(NS, "chat-0")!.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const before = Date.now();
    await core.deleteNamespacedPod({ namespace: NS, name: "chat-7d4b-aaaaa" });
    await waitFor(() => expect(api.pods(NS).filter((p) => p.metadata.labels?.app === "owned")).toHaveLength(1));
    const replacement = api.pods(NS).find((p) => p.metadata.labels?.app === "owned")!;
    expect(replacement.metadata.name).toMatch(/^chat-7d4b-[a-z0-9]{5}$/);
    expect(replacement.metadata.uid).not.toBe(old.metadata?.uid);
    expect(replacement.metadata.ownerReferences).toEqual([owner]);
    expect(Date.parse(replacement.metadata.creationTimestamp!)).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
  });

  it("keeps a deleted pod Terminating for the configured time, then removes it", async () => {
    await api.close();
    api = await FakeKubeApi.start({ podTerminationMs: 20 });
    kc = kubeConfigFor(api, { namespace: NS });
    api.addPod({ namespace: NS, name: "chat-0", labels: { app: "chat" } });
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const terminating = await core.deleteNamespacedPod({ namespace: NS, name: "chat-0" });
    expect(terminating.metadata?.deletionTimestamp).toBeTruthy();
    expect(terminating.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("False");
    await waitFor(() => expect(api.pod(NS, "chat-0")).toBeUndefined());
  });

  it("follows a pod's log: lines written later arrive, and the stream ends when the pod is deleted", async () => {
    api.appendLog(NS, "chat-0", "before 1\nbefore 2\n");
    const out = new PassThrough();
    let text = "";
    let ended = false;
    out.on("data", (chunk: Buffer) => (text += chunk.toString()));
    out.on("end", () => (ended = true));
    await new k8s.Log(kc).log(NS, "chat-0", "app", out, { follow: true, tailLines: 1 });
    await waitFor(() => expect(text).toBe("before 2\n"));
    api.appendLog(NS, "chat-0", "after 1\n");
    api.appendLog(NS, "chat-0", "after 2\n");
    await waitFor(() => expect(text).toBe("before 2\nafter 1\nafter 2\n"));
    expect(ended).toBe(false);
    await kc.makeApiClient(k8s.CoreV1Api).deleteNamespacedPod({ namespace: NS, name: "chat-0" });
    await waitFor(() => expect(ended).toBe(true));
  });

  it("reads a log without following, with timestamps and sinceTime", async () => {
    api.appendLog(NS, "chat-0", "old\n", { time: new Date("2024-01-01T00:00:00Z") });
    api.appendLog(NS, "chat-0", "new\n", { time: new Date("2024-01-01T00:01:00Z") });
    const out = new PassThrough();
    let text = "";
    out.on("data", (chunk: Buffer) => (text += chunk.toString()));
    const ended = new Promise((resolve) => out.on("end", resolve));
    await new k8s.Log(kc).log(NS, "chat-0", "app", out, { follow: false, timestamps: true, sinceTime: "2024-01-01T00:00:30Z" });
    await ended;
    expect(text).toBe("2024-01-01T00:01:00.000000000Z new\n");
  });

  it.each([
    ["a missing pod", 404, "nope", "app", {}],
    ["a pod not running yet", 400, "db-0", "app", {}],
    ["an unknown container", 400, "chat-0", "sidecar", {}],
    ["a previous container that never terminated", 400, "chat-0", "app", { previous: true }],
  ])("answers a log request for %s with %i", async (_what, code, pod, container, options: k8s.LogOptions) => {
    const err = await failure(new k8s.Log(kc).log(NS, pod, container, new PassThrough(), { follow: true, ...options }));
    expect(err.code).toBe(code);
  });
});

describe("MicroTime fields", () => {
  // metav1.MicroTime decodes with exactly six fractional digits; Date#toISOString has three.
  it.each([
    ["a Date", () => new Date("2024-01-02T03:04:05.123Z"), 400],
    ["a V1MicroTime", () => new k8s.V1MicroTime("2024-01-02T03:04:05.123Z"), 201],
  ])("answers a Lease renewTime given as %s with %i", async (_what, time, code) => {
    const leases = kc.makeApiClient(k8s.CoordinationV1Api);
    const create = leases.createNamespacedLease({ namespace: NS, body: { metadata: { name: "l" }, spec: { renewTime: time() } } });
    if (code === 201) {
      expect((await create).spec?.renewTime).toBe("2024-01-02T03:04:05.123000Z");
      return;
    }
    const err = await failure(create);
    expect(err.code).toBe(400);
    expect(statusOf(err).message).toBe(
      'Lease in version "v1" cannot be handled as a Lease: parsing time "2024-01-02T03:04:05.123Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".123Z" as ".000000"',
    );
  });

  it("refuses an Event whose eventTime is a Date", async () => {
    const events = kc.makeApiClient(k8s.EventsV1Api);
    const err = await failure(
      events.createNamespacedEvent({
        namespace: NS,
        body: { metadata: { name: "e" }, eventTime: new Date(), reportingController: "c", reportingInstance: "i", action: "A", reason: "R", type: "Normal" },
      }),
    );
    expect(err.code).toBe(400);
  });
});

describe("events", () => {
  it("creates and lists events.k8s.io/v1 Events about a pod, and validates them", async () => {
    const events = kc.makeApiClient(k8s.EventsV1Api);
    const created = await events.createNamespacedEvent({
      namespace: NS,
      body: {
        metadata: { generateName: "chat-0." },
        eventTime: new k8s.V1MicroTime(),
        reportingController: "reclaim.dev/operator",
        reportingInstance: "reclaim-0",
        action: "Probe",
        reason: "ReclaimProbe",
        type: "Normal",
        note: "probed",
        regarding: { kind: "Pod", namespace: NS, name: "chat-0", apiVersion: "v1" },
      },
    });
    expect(created.metadata?.name).toMatch(/^chat-0\.[a-z0-9]{5}$/);
    const list = await events.listNamespacedEvent({ namespace: NS, fieldSelector: "regarding.name=chat-0" });
    expect(list.items.map((e) => e.reason)).toEqual(["ReclaimProbe"]);

    const invalid = await failure(
      events.createNamespacedEvent({ namespace: NS, body: { metadata: { name: "bad" }, eventTime: new k8s.V1MicroTime() } }),
    );
    expect(invalid.code).toBe(422);
    expect(statusOf(invalid).message).toContain("reportingController: Required value");

    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedEvent({
      namespace: NS,
      body: { metadata: { name: "core-1" }, involvedObject: { kind: "Pod", namespace: NS, name: "chat-0" }, reason: "Old", message: "core" },
    });
    expect((await core.listNamespacedEvent({ namespace: NS })).items.map((e) => e.metadata?.name)).toEqual(["core-1"]);
  });
});

describe("authentication, RBAC and recorded requests", () => {
  const role: PolicyRule[] = [
    { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"], namespaces: [NS] },
    { apiGroups: [""], resources: ["pods/log"], verbs: ["get"], namespaces: [NS] },
    { apiGroups: ["reclaim.dev"], resources: ["incidents", "incidents/status"], verbs: ["*"] },
  ];

  it("answers 403 Forbidden for a verb no rule grants, with the API server's message", async () => {
    api.grant("operator-token", { user: "system:serviceaccount:reclaim:operator", rules: role });
    api.addPod({ namespace: NS, name: "chat-0" });
    const operator = kubeConfigFor(api, { token: "operator-token", namespace: NS });
    const core = operator.makeApiClient(k8s.CoreV1Api);
    await core.readNamespacedPod({ namespace: NS, name: "chat-0" });
    const err = await failure(core.deleteNamespacedPod({ namespace: NS, name: "chat-0" }));
    expect(err.code).toBe(403);
    expect(statusOf(err)).toMatchObject({
      reason: "Forbidden",
      message: 'pods "chat-0" is forbidden: User "system:serviceaccount:reclaim:operator" cannot delete resource "pods" in API group "" in the namespace "reclaim"',
    });
    const elsewhere = await failure(core.listNamespacedPod({ namespace: "kube-system" }));
    expect(elsewhere.code).toBe(403);
    expect(api.pod(NS, "chat-0")).toBeDefined();
  });

  it("grants the rules of a Role manifest in its namespace only", async () => {
    const manifest = `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: reader }
rules:
  - { apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: reader }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader }
subjects: [{ kind: ServiceAccount, name: reader, namespace: ${NS} }]
`;
    api.grant("reader-token", { user: "reader", rules: rulesFromManifest(manifest, NS) });
    const core = kubeConfigFor(api, { token: "reader-token" }).makeApiClient(k8s.CoreV1Api);
    await core.listNamespacedPod({ namespace: NS });
    expect((await failure(core.listNamespacedPod({ namespace: "other" }))).code).toBe(403);
    expect((await failure(core.listPodForAllNamespaces())).code).toBe(403);
    expect((await failure(core.deleteNamespacedPod({ namespace: NS, name: "x" }))).code).toBe(403);
  });

  it("answers 401 for an unknown token", async () => {
    const stranger = kubeConfigFor(api, { token: "who-knows" });
    const err = await failure(stranger.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace: NS }));
    expect(err.code).toBe(401);
  });

  it("records each request's RBAC verb, resource and status, to compare with a Role", async () => {
    api.grant("operator-token", { user: "op", rules: role });
    api.addPod({ namespace: NS, name: "chat-0" });
    const operator = kubeConfigFor(api, { token: "operator-token", namespace: NS });
    const core = operator.makeApiClient(k8s.CoreV1Api);
    const objects = operator.makeApiClient(k8s.CustomObjectsApi);
    await core.listNamespacedPod({ namespace: NS, labelSelector: "app=chat" });
    const created = await objects.createNamespacedCustomObject({ ...CR, plural: "incidents", body: incident("inc-1") });
    await objects.replaceNamespacedCustomObjectStatus({ ...CR, plural: "incidents", name: "inc-1", body: { ...created, status: { status: "open" } } });
    await new k8s.Log(operator).log(NS, "chat-0", "app", new PassThrough(), { follow: false });
    await failure(core.deleteNamespacedPod({ namespace: NS, name: "chat-0" }));

    const seen = api.requests().map(({ verb, apiGroup, resource, subresource, namespace, name, status, user }) => ({
      verb,
      apiGroup,
      resource,
      subresource,
      namespace,
      name,
      status,
      user,
    }));
    expect(seen).toEqual([
      { verb: "list", apiGroup: "", resource: "pods", subresource: undefined, namespace: NS, name: undefined, status: 200, user: "op" },
      { verb: "create", apiGroup: "reclaim.dev", resource: "incidents", subresource: undefined, namespace: NS, name: undefined, status: 201, user: "op" },
      { verb: "update", apiGroup: "reclaim.dev", resource: "incidents", subresource: "status", namespace: NS, name: "inc-1", status: 200, user: "op" },
      { verb: "get", apiGroup: "", resource: "pods", subresource: "log", namespace: NS, name: "chat-0", status: 200, user: "op" },
      { verb: "delete", apiGroup: "", resource: "pods", subresource: undefined, namespace: NS, name: "chat-0", status: 403, user: "op" },
    ]);
  });
});

describe("kubeconfig", () => {
  it("writes a kubeconfig file a separate client can load", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-kube-"));
    const file = await writeKubeConfig(join(dir, "config"), api, { namespace: NS });
    const loaded = new k8s.KubeConfig();
    loaded.loadFromFile(file);
    expect(loaded.getCurrentCluster()?.server).toBe(api.url);
    expect(loaded.getContextObject(loaded.getCurrentContext())?.namespace).toBe(NS);
    api.addPod({ namespace: NS, name: "chat-0" });
    const pods = await loaded.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace: NS });
    expect(pods.items).toHaveLength(1);
  });
});
