/**
 * LeaderElector against the fake API server through the real client: giving
 * the lease up on stop must win against a renewal that is still in flight and
 * against a write that changed the Lease under it.
 */
import * as k8s from "@kubernetes/client-node";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { LeaderElector } from "../../../src/operator/k8s/leader.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../../support/k8s/server.js";
import { eventually, type Json } from "../../support/factory.js";

const NS = "reclaim";
const LEASE = { verb: "update", resource: "leases", namespace: NS, name: "reclaim-operator" } as const;

let api: FakeKubeApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function leader(events: string[], errors: unknown[]): Promise<{ api: FakeKubeApi; elector: LeaderElector }> {
  api = await FakeKubeApi.start();
  const elector = new LeaderElector(kubeConfigFor(api).makeApiClient(k8s.CoordinationV1Api), {
    name: "reclaim-operator",
    namespace: NS,
    identity: "operator-0",
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    retryPeriodMs: 50,
    onStartedLeading: () => events.push("started"),
    onStoppedLeading: () => events.push("stopped"),
    onError: (err) => errors.push(err),
  });
  elector.start();
  await eventually(() => elector.isLeader, 5000, "the lease to be taken");
  return { api, elector };
}

function holder(a: FakeKubeApi): unknown {
  return a.object<Json>("leases.coordination.k8s.io", NS, "reclaim-operator")?.spec.holderIdentity;
}

describe("LeaderElector.stop", () => {
  it("gives the lease up even when a renewal commits between its read and its write", async () => {
    const events: string[] = [];
    const errors: unknown[] = [];
    const { api: a, elector } = await leader(events, errors);
    const renewal = a.stallNext(LEASE);
    await renewal.reached; // a renewal is in flight, held by the server
    const releaseWrite = a.stallNext(LEASE);
    const stopped = elector.stop();
    // Let the renewal commit only after stop's own write has been sent (if stop does not wait for it).
    await Promise.race([releaseWrite.reached, delay(200)]);
    renewal.release();
    await releaseWrite.reached;
    releaseWrite.release();
    await stopped;
    expect(holder(a)).toBe("");
    expect(events).toEqual(["started", "stopped"]);
    expect(errors).toEqual([]);
  });

  it("reads the Lease again and gives it up when the first write conflicts (409)", async () => {
    const events: string[] = [];
    const errors: unknown[] = [];
    const { api: a, elector } = await leader(events, errors);
    a.failNext({ ...LEASE, code: 409 });
    await elector.stop();
    expect(holder(a)).toBe("");
    expect(a.requests().filter((r) => r.verb === "update" && r.status === 409)).toHaveLength(1);
    expect(errors).toEqual([]);
  });

  it("leaves a lease another candidate now holds alone", async () => {
    const events: string[] = [];
    const errors: unknown[] = [];
    const { api: a, elector } = await leader(events, errors);
    const renewal = a.stallNext(LEASE);
    await renewal.reached;
    const lease = a.object<Json>("leases.coordination.k8s.io", NS, "reclaim-operator")!;
    a.putObject("leases.coordination.k8s.io", { ...lease, spec: { ...lease.spec, holderIdentity: "operator-1" } });
    const stopped = elector.stop();
    renewal.release();
    await stopped;
    expect(holder(a)).toBe("operator-1");
    expect(events).toEqual(["started", "stopped"]);
  });
});
