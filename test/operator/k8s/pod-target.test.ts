/**
 * PodTargetResolver against the fake API server through the real client:
 * `restart()` verifies on the pod that replaced the deleted one (a new uid of
 * the same controller, created after the deletion, Ready), never on a
 * sibling that was there all along; every API call has a deadline; a stop
 * ends the wait; per-pod control clients are bounded.
 */
import * as k8s from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import type { RestartOutcome, Target } from "../../../src/operator/act/target.js";
import { PodTargetResolver, type PodTargetOptions } from "../../../src/operator/k8s/pod-target.js";
import { ManualClock } from "../../support/clock.js";
import { eventually } from "../../support/factory.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi, type PodSeed } from "../../support/k8s/server.js";
import { idle, tracked, type CallCount } from "./calls.js";

const NS = "reclaim";
const LABELS = { "app.kubernetes.io/name": "chat-factory", "pod-template-hash": "7d4b9" };
const OWNER = { apiVersion: "apps/v1", kind: "ReplicaSet", name: "chat-factory-7d4b9", uid: "rs-7d4b9", controller: true };
const STUCK = "chat-factory-7d4b9-stuck";
const SIBLING = "chat-factory-7d4b9-sibln";

let api: FakeKubeApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

interface Setup {
  api: FakeKubeApi;
  resolver: PodTargetResolver;
  calls: CallCount;
  clock: ManualClock | null;
}

async function setUp(options: Partial<PodTargetOptions> & { manual?: boolean } = {}): Promise<Setup> {
  const a = await FakeKubeApi.start();
  api = a;
  const { manual = false, ...rest } = options;
  const clock = manual ? new ManualClock() : null;
  const calls: CallCount = { inFlight: 0 };
  const core = tracked(kubeConfigFor(a).makeApiClient(k8s.CoreV1Api), calls);
  const resolver = new PodTargetResolver(core, {
    namespace: NS,
    token: "t",
    pollMs: 10,
    ...(clock === null ? {} : { timers: clock }),
    ...rest,
  });
  return { api: a, resolver, calls, clock };
}

function seed(name: string, extra: Partial<PodSeed> = {}): PodSeed {
  return { namespace: NS, name, labels: { ...LABELS }, ownerReferences: [OWNER], ...extra };
}

async function stuckTarget(s: Setup): Promise<Target> {
  s.api.addPod(seed(STUCK));
  const target = await s.resolver.resolve({ userId: "u", pod: STUCK, namespace: NS });
  expect(target?.restart).toBeTypeOf("function");
  return target!;
}

/** How many pod lists the server has answered. */
function lists(a: FakeKubeApi): number {
  return a.requests().filter((r) => r.resource === "pods" && r.verb === "list").length;
}

/** Resolves with the outcome, and says whether it has settled yet. */
function watched(p: Promise<RestartOutcome>): { outcome: Promise<RestartOutcome>; settled: () => boolean } {
  let done = false;
  const outcome = p.finally(() => (done = true));
  return { outcome, settled: () => done };
}

describe("PodTargetResolver.restart", () => {
  it("with an old Ready sibling present, waits for the new pod and verifies there, not on the sibling", async () => {
    const s = await setUp();
    s.api.addPod(seed(SIBLING)); // Ready all along
    const target = await stuckTarget(s);
    const restart = watched(target.restart!({ waitReadyMs: 20_000 }));
    await eventually(() => s.api.pod(NS, STUCK) === undefined, 5000, "the stuck pod to be deleted");
    const looked = lists(s.api);
    await eventually(() => lists(s.api) >= looked + 2, 5000, "the restart to look for the replacement");
    expect(restart.settled()).toBe(false);

    // The replacement appears (Pending), with the same controller: not Ready yet, so still not verified.
    const fresh = s.api.addPod(seed("chat-factory-7d4b9-fresh", { phase: "Pending", ready: false }));
    const lookedAgain = lists(s.api);
    await eventually(() => lists(s.api) >= lookedAgain + 2, 5000, "the restart to look again");
    expect(restart.settled()).toBe(false);

    s.api.updatePod(NS, fresh.metadata.name, { phase: "Running", ready: true });
    const outcome = await restart.outcome;
    expect(outcome.deleted).toBe(true);
    expect(outcome.replacement?.pod).toBe("chat-factory-7d4b9-fresh");
    expect(outcome.replacement?.control.baseUrl).toBe(`http://${s.api.pod(NS, "chat-factory-7d4b9-fresh")!.status.podIP}:8081`);
    expect(outcome.detail).toBe(`pod ${STUCK} deleted; its replacement chat-factory-7d4b9-fresh is Ready`);
    // Exactly that pod was deleted: the delete named its uid.
    expect(s.api.pod(NS, SIBLING)).toBeDefined();
  });

  it("accepts a replacement that a ReplicaSet makes (same controller, new uid), even under the same name", async () => {
    const s = await setUp();
    s.api.addPod(seed(SIBLING));
    const target = await stuckTarget(s);
    const oldUid = s.api.pod(NS, STUCK)!.metadata.uid;
    const restart = target.restart!({ waitReadyMs: 20_000 });
    await eventually(() => s.api.pod(NS, STUCK) === undefined, 5000, "the stuck pod to be deleted");
    // A StatefulSet-like replacement: the same name, a new uid, Ready.
    s.api.addPod(seed(STUCK));
    const outcome = await restart;
    expect(outcome.replacement?.pod).toBe(STUCK);
    expect(s.api.pod(NS, STUCK)!.metadata.uid).not.toBe(oldUid);
  });

  it("no replacement within waitReady (only a new pod that is not Ready, and one of another controller): no target, and a detail that says so", async () => {
    const s = await setUp({ manual: true, pollMs: 1000 });
    s.api.addPod(seed(SIBLING));
    const target = await stuckTarget(s);
    const restart = watched(target.restart!({ waitReadyMs: 30_000 }));
    await eventually(() => s.api.pod(NS, STUCK) === undefined, 5000, "the stuck pod to be deleted");
    s.api.addPod(seed("chat-factory-7d4b9-fresh", { phase: "Pending", ready: false }));
    // New and Ready, with the same labels but of another ReplicaSet (a rollout's): not this pod's replacement.
    s.api.addPod(seed("chat-factory-5c8f1-other", { labels: { ...LABELS, "pod-template-hash": "5c8f1" }, ownerReferences: [{ ...OWNER, name: "chat-factory-5c8f1", uid: "rs-5c8f1" }] }));
    await idle(s.calls);
    for (let t = 0; t < 30_000; t += 1000) {
      await s.clock!.run(1000);
      await idle(s.calls);
    }
    const outcome = await restart.outcome;
    expect(outcome).toEqual({
      deleted: true,
      replacement: null,
      detail: `pod ${STUCK} deleted, but no new Ready pod of the same controller within 30000 ms; new but not Ready (or without an address): chat-factory-7d4b9-fresh`,
    });
  });

  it("a pod created before the deletion that the first list missed is not the replacement (its creationTimestamp is older)", async () => {
    const s = await setUp({ manual: true, pollMs: 1000 });
    const target = await stuckTarget(s);
    const deleting = s.api.stallNext({ verb: "delete", resource: "pods", namespace: NS });
    const restart = watched(target.restart!({ waitReadyMs: 5000 }));
    await deleting.reached;
    // Appears between the list of siblings and the deletion, but was created an hour ago.
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString().replace(/\.\d{3}Z$/, "Z");
    s.api.addPod(seed("chat-factory-7d4b9-older", { creationTimestamp: hourAgo }));
    deleting.release();
    await eventually(() => s.api.pod(NS, STUCK) === undefined, 5000, "the stuck pod to be deleted");
    await idle(s.calls);
    for (let t = 0; t < 5000; t += 1000) {
      await s.clock!.run(1000);
      await idle(s.calls);
    }
    const outcome = await restart.outcome;
    expect(outcome.replacement).toBeNull();
    expect(outcome.detail).toBe(`pod ${STUCK} deleted, but no new Ready pod of the same controller within 5000 ms`);
  });

  it("stops waiting at once when its signal aborts, also with a list in flight", async () => {
    const s = await setUp({ manual: true, pollMs: 1000 });
    const target = await stuckTarget(s);
    const stop = new AbortController();
    const restart = target.restart!({ waitReadyMs: 60_000, signal: stop.signal });
    await eventually(() => s.api.pod(NS, STUCK) === undefined, 5000, "the stuck pod to be deleted");
    await idle(s.calls);
    const listing = s.api.stallNext({ verb: "list", resource: "pods", namespace: NS });
    await s.clock!.run(1000); // the next look: held by the server
    await listing.reached;
    stop.abort();
    expect(await restart).toEqual({
      deleted: true,
      replacement: null,
      detail: `pod ${STUCK} deleted; stopped waiting for its replacement: the rung was stopped`,
    });
    listing.release();
  });

  it.each([
    ["listing the siblings", { verb: "list" }, false, `did not delete pod ${NS}/${STUCK}: could not list its siblings first`],
    ["deleting the pod", { verb: "delete" }, false, `the delete of pod ${NS}/${STUCK} did not complete`],
  ] as const)("%s has a deadline: the restart says what happened and does not guess", async (_name, match, deleted, detail) => {
    const s = await setUp({ manual: true, callTimeoutMs: 4000 });
    const target = await stuckTarget(s);
    const held = s.api.stallNext({ ...match, resource: "pods", namespace: NS });
    const restart = watched(target.restart!({ waitReadyMs: 60_000 }));
    await held.reached;
    await idle(s.calls, 1);
    await s.clock!.run(3999);
    expect(restart.settled()).toBe(false);
    await s.clock!.run(1);
    const outcome = await restart.outcome;
    expect(outcome.deleted).toBe(deleted);
    expect(outcome.replacement).toBeNull();
    expect(outcome.detail).toContain(detail);
    expect(outcome.detail).toContain("did not answer within 4000 ms");
    held.release();
  });
});

describe("PodTargetResolver.resolve", () => {
  it("gives the pod lookup a deadline", async () => {
    const s = await setUp({ manual: true, callTimeoutMs: 4000 });
    s.api.addPod(seed(STUCK));
    const held = s.api.stallNext({ verb: "get", resource: "pods", namespace: NS });
    const resolving = s.resolver.resolve({ userId: "u", pod: STUCK, namespace: NS });
    const failed = resolving.then(
      () => null,
      (err: unknown) => err,
    );
    await held.reached;
    await s.clock!.run(4000);
    expect(await failed).toMatchObject({ code: "ERR_RECLAIM_K8S_DEADLINE", message: `reading pod ${NS}/${STUCK} did not answer within 4000 ms` });
    held.release();
  });

  it("abandons the pod lookup when the caller's signal aborts", async () => {
    const s = await setUp({ manual: true });
    s.api.addPod(seed(STUCK));
    const held = s.api.stallNext({ verb: "get", resource: "pods", namespace: NS });
    const stop = new AbortController();
    const failed = s.resolver.resolve({ userId: "u", pod: STUCK, namespace: NS, signal: stop.signal }).then(
      () => null,
      (err: unknown) => err,
    );
    await held.reached;
    stop.abort();
    expect(await failed).toMatchObject({ code: "ERR_RECLAIM_K8S_ABORTED" });
    held.release();
  });
});

describe("PodTargetResolver: per-pod control clients", () => {
  it("keeps at most maxClients, dropping the least recently used, and drops those unused for clientIdleMs", async () => {
    const s = await setUp({ manual: true, maxClients: 3, clientIdleMs: 60_000 });
    for (let i = 0; i < 5; i++) s.api.addPod(seed(`p-${i}`));
    const control = async (i: number): Promise<unknown> => (await s.resolver.resolve({ userId: "u", pod: `p-${i}`, namespace: NS }))!.control;

    const first = [await control(0), await control(1), await control(2)];
    expect(s.resolver.clientCount).toBe(3);
    expect(await control(0)).toBe(first[0]); // reused, and now the most recently used
    await control(3); // p-1 is the least recently used: dropped
    expect(s.resolver.clientCount).toBe(3);
    expect(await control(1)).not.toBe(first[1]); // a new client; p-2 dropped now
    expect(await control(0)).toBe(first[0]);
    expect(s.resolver.clientCount).toBe(3);

    s.clock!.advance(60_000); // an hour for real; a minute here
    const fresh = await control(4);
    expect(s.resolver.clientCount).toBe(1);
    expect(await control(0)).not.toBe(first[0]);
    expect(await control(4)).toBe(fresh);
    expect(s.resolver.clientCount).toBe(2);
  });
});
