/**
 * The deadline every Kubernetes API call of the operator runs under, with
 * the real client against the local API server: a held request fails at its
 * deadline (on a ManualClock: not a moment before), the signal reaches the
 * client's own fetch, and HTTP errors pass through unchanged.
 */
import * as k8s from "@kubernetes/client-node";
import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { callOptions, KubeCallError, statusOf, withDeadline } from "../../../src/operator/k8s/client.js";
import { ManualClock } from "../../support/clock.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../../support/k8s/server.js";

const NS = "reclaim";

let api: FakeKubeApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function setUp(): Promise<{ api: FakeKubeApi; core: k8s.CoreV1Api }> {
  api = await FakeKubeApi.start();
  api.addPod({ namespace: NS, name: "p-0" });
  return { api, core: kubeConfigFor(api).makeApiClient(k8s.CoreV1Api) };
}

function settled<T>(p: Promise<T>): { result: Promise<{ value?: T; error?: unknown }>; done: () => boolean } {
  let done = false;
  const result = p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  void result.then(() => (done = true));
  return { result, done: () => done };
}

describe("withDeadline", () => {
  it("fails a held request exactly at its deadline, with ERR_RECLAIM_K8S_DEADLINE", async () => {
    const { api: a, core } = await setUp();
    const clock = new ManualClock();
    const held = a.stallNext({ verb: "get", resource: "pods" });
    const call = settled(withDeadline((o) => core.readNamespacedPod({ name: "p-0", namespace: NS }, o), { timers: clock, ms: 3000, what: "reading pod p-0" }));
    await held.reached;
    await clock.run(2999);
    expect(call.done()).toBe(false);
    await clock.run(1);
    const { error } = await call.result;
    expect(error).toBeInstanceOf(KubeCallError);
    expect(error).toMatchObject({ code: "ERR_RECLAIM_K8S_DEADLINE", message: "reading pod p-0 did not answer within 3000 ms" });
    held.release();
  });

  it("fails at once with ERR_RECLAIM_K8S_ABORTED when the caller's signal aborts, and before sending when it already has", async () => {
    const { api: a, core } = await setUp();
    const clock = new ManualClock();
    const held = a.stallNext({ verb: "get", resource: "pods" });
    const stop = new AbortController();
    const call = settled(withDeadline((o) => core.readNamespacedPod({ name: "p-0", namespace: NS }, o), { timers: clock, ms: 3000, signal: stop.signal }));
    await held.reached;
    stop.abort();
    expect((await call.result).error).toMatchObject({ code: "ERR_RECLAIM_K8S_ABORTED" });
    held.release();

    const early = await withDeadline((o) => core.readNamespacedPod({ name: "p-1", namespace: NS }, o), { timers: clock, ms: 3000, signal: stop.signal }).catch((err: unknown) => err);
    expect(early).toMatchObject({ code: "ERR_RECLAIM_K8S_ABORTED" });
    await core.readNamespacedPod({ name: "p-0", namespace: NS }); // the server is serving, and never saw p-1
    expect(a.requests().filter((r) => r.name === "p-1")).toEqual([]);
  });

  it("answers as the call does: the object, or the client's ApiException", async () => {
    const { core } = await setUp();
    const clock = new ManualClock();
    const pod = await withDeadline((o) => core.readNamespacedPod({ name: "p-0", namespace: NS }, o), { timers: clock, ms: 3000 });
    expect(pod.metadata?.name).toBe("p-0");
    const missing = await withDeadline((o) => core.readNamespacedPod({ name: "nope", namespace: NS }, o), { timers: clock, ms: 3000 }).catch((err: unknown) => err);
    expect(missing).toBeInstanceOf(k8s.ApiException);
    expect(statusOf(missing)).toBe(404);
  });
  it("leaves nothing attached to a long-lived signal once its calls are done", async () => {
    const { core } = await setUp();
    const clock = new ManualClock();
    const term = new AbortController();
    for (let i = 0; i < 20; i++) {
      await withDeadline((o) => core.readNamespacedPod({ name: "p-0", namespace: NS }, o), { timers: clock, ms: 3000, signal: term.signal });
      await withDeadline((o) => core.readNamespacedPod({ name: "nope", namespace: NS }, o), { timers: clock, ms: 3000, signal: term.signal }).catch(() => undefined);
    }
    expect(getEventListeners(term.signal, "abort")).toHaveLength(0);
  });
});

describe("callOptions", () => {
  it("hands the signal to the client's own request: aborting it ends the request", async () => {
    const { api: a, core } = await setUp();
    const held = a.stallNext({ verb: "get", resource: "pods" });
    const stop = new AbortController();
    const call = settled(core.readNamespacedPod({ name: "p-0", namespace: NS }, callOptions(stop.signal)));
    await held.reached;
    stop.abort();
    const { error } = await call.result;
    expect(error).toMatchObject({ name: "AbortError" });
    held.release();
  });
});
