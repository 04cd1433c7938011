/**
 * LeaderElector against the fake API server through the real client: giving
 * the lease up on stop must win against a renewal that is still in flight and
 * against a write that changed the Lease under it; a renewal that hangs ends
 * the term at the renew deadline, before another candidate can take the
 * lease; every call has a deadline. The election tests run on a ManualClock
 * (real HTTP, simulated time), moving time only while no call is in flight
 * unless the test holds one on purpose.
 */
import * as k8s from "@kubernetes/client-node";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { LeaderElector } from "../../../src/operator/k8s/leader.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { ALLOW_ALL, FakeKubeApi } from "../../support/k8s/server.js";
import { ManualClock } from "../../support/clock.js";
import { eventually, type Json } from "../../support/factory.js";
import { idle, tracked } from "./calls.js";

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
    // Also each call's deadline: long enough that a loaded machine does not miss it.
    retryPeriodMs: 500,
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

// ---- elections on simulated time ---------------------------------------------

const LEASE_MS = 3000;
const RENEW_DEADLINE_MS = 2000;
const RETRY_MS = 300;

interface Election {
  api: FakeKubeApi;
  clock: ManualClock;
  /** [identity, "started" | "stopped", simulated ms since the start], in order. */
  events: [string, string, number][];
  errors: { identity: string; err: unknown }[];
  calls: { inFlight: number };
  t0: number;
  candidate(identity: string, token: string, options?: { releaseTimeoutMs?: number }): LeaderElector;
  /** Waits (in real time) until `held` calls are in flight: the others answered and their electors went back to their timers. */
  idle(held?: number): Promise<void>;
  /** Moves simulated time on by `ms` in steps of `step`, letting calls finish after each. */
  advance(ms: number, held?: number, step?: number): Promise<void>;
  now(): number;
}

async function election(): Promise<Election> {
  const a = await FakeKubeApi.start();
  api = a;
  const clock = new ManualClock();
  const t0 = clock.now();
  const calls = { inFlight: 0 };
  const events: [string, string, number][] = [];
  const errors: { identity: string; err: unknown }[] = [];
  const e: Election = {
    api: a,
    clock,
    events,
    errors,
    calls,
    t0,
    now: () => clock.now() - t0,
    candidate(identity, token, options = {}) {
      a.grant(token, { user: identity, rules: ALLOW_ALL });
      const client = tracked(kubeConfigFor(a, { token }).makeApiClient(k8s.CoordinationV1Api), calls);
      return new LeaderElector(client, {
        name: "reclaim-operator",
        namespace: NS,
        identity,
        leaseDurationMs: LEASE_MS,
        renewDeadlineMs: RENEW_DEADLINE_MS,
        retryPeriodMs: RETRY_MS,
        timers: clock,
        ...options,
        onStartedLeading: () => events.push([identity, "started", e.now()]),
        onStoppedLeading: () => events.push([identity, "stopped", e.now()]),
        onError: (err) => errors.push({ identity, err }),
      });
    },
    idle: (held = 0) => idle(calls, held),
    async advance(ms, held = 0, step = 100) {
      for (let done = 0; done < ms; done += step) {
        await clock.run(Math.min(step, ms - done));
        await e.idle(held);
      }
    },
  };
  return e;
}

function codeOf(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

const LEASE_UPDATE = { verb: "update", resource: "leases", namespace: NS, name: "reclaim-operator" } as const;

describe("LeaderElector: the renew deadline is a timer", () => {
  it("a leader whose renewal hangs stops at the renew deadline while the request is held; another takes the lease only after that", async () => {
    const e = await election();
    const a = e.candidate("operator-a", "token-a");
    a.start();
    await eventually(() => a.isLeader, 5000, "operator-a to lead");
    await e.idle();
    const b = e.candidate("operator-b", "token-b");
    b.start();
    await e.idle();

    const renewal = e.api.stallNext(LEASE_UPDATE); // operator-a's next renewal: the server holds it
    await e.clock.run(RETRY_MS);
    await renewal.reached;
    await e.idle(1);
    e.api.revoke("token-a"); // and operator-a cannot reach the API any more
    const answeredUpdates = (): number => e.api.requests().filter((r) => r.verb === "update" && r.user === "operator-a").length;
    const updatesBefore = answeredUpdates();
    await e.advance(RETRY_MS - 100, 1); // until just before the held call's own deadline (at 600)
    for (let i = 0; i < 100 && !b.isLeader; i++) await e.advance(100);

    expect(e.events.map(([id, what]) => `${id} ${what}`)).toEqual(["operator-a started", "operator-a stopped", "operator-b started"]);
    const [, stopped, started] = e.events;
    expect(stopped![2]).toBe(RENEW_DEADLINE_MS); // exactly renewDeadline after its last renewal was sent (at 0), by the timer
    expect(started![2]).toBeGreaterThan(LEASE_MS); // operator-b waited a whole lease duration after the last change it saw
    expect(answeredUpdates()).toBe(updatesBefore); // the server held the renewal all along, through operator-a's stop
    expect(a.isLeader).toBe(false);

    // The held renewal finally reaches the server: stale, it changes nothing.
    renewal.release();
    await eventually(() => answeredUpdates() > updatesBefore, 5000, "the held renewal to be answered");
    expect(e.api.requests().filter((r) => r.verb === "update" && r.user === "operator-a").at(-1)!.status).toBe(409);
    expect(holder(e.api)).toBe("operator-b");
    await e.idle();
    await Promise.all([a.stop(), b.stop()]);
  });

  it("a renewal answered after the renew deadline does not make it leader again; the next acquire does", async () => {
    const e = await election();
    const a = e.candidate("operator-a", "token-a");
    a.start();
    await eventually(() => a.isLeader, 5000, "operator-a to lead");
    await e.idle();

    // Renewals fail at once for a while (401), then one is sent shortly before the deadline and hangs.
    e.api.revoke("token-a");
    await e.advance(1500, 0, RETRY_MS);
    e.api.grant("token-a", { user: "operator-a", rules: ALLOW_ALL });
    const renewal = e.api.stallNext(LEASE_UPDATE);
    await e.clock.run(RETRY_MS); // t = 1800: read, then the write, held
    await renewal.reached;
    await e.idle(1);
    expect(e.events).toEqual([["operator-a", "started", 0]]);

    await e.clock.run(RENEW_DEADLINE_MS - 1800); // t = 2000: the deadline, with the write still in flight (its own deadline is 2100)
    expect(e.events).toEqual([
      ["operator-a", "started", 0],
      ["operator-a", "stopped", RENEW_DEADLINE_MS],
    ]);
    expect(e.calls.inFlight).toBe(1);

    renewal.release(); // the server commits it and answers, before the call's own deadline
    await e.idle();
    expect(e.api.requests().at(-1)).toMatchObject({ verb: "update", status: 200, user: "operator-a" });
    expect(a.isLeader).toBe(false);
    expect(e.events).toHaveLength(2);
    expect(e.errors.map(({ err }) => codeOf(err)).filter((c) => c !== 401)).toEqual(["ERR_RECLAIM_LEASE_STALE_WRITE"]);
    const writesBefore = e.api.requests().filter((r) => r.verb === "update" && r.status === 200).length;

    await e.advance(RETRY_MS); // the next tick reads the lease (still its own) and renews it: a new term
    expect(a.isLeader).toBe(true);
    expect(e.events).toEqual([
      ["operator-a", "started", 0],
      ["operator-a", "stopped", RENEW_DEADLINE_MS],
      ["operator-a", "started", RENEW_DEADLINE_MS + RETRY_MS],
    ]);
    expect(e.api.requests().filter((r) => r.verb === "update" && r.status === 200).length).toBe(writesBefore + 1);
    await a.stop();
  });
});

describe("LeaderElector: every call has a deadline", () => {
  it.each([
    ["reading the Lease", { verb: "get", resource: "leases" }, false, "reading Lease reclaim/reclaim-operator"],
    ["creating the Lease", { verb: "create", resource: "leases" }, false, "creating Lease reclaim/reclaim-operator"],
    ["renewing the Lease", { verb: "update", resource: "leases" }, true, "writing Lease reclaim/reclaim-operator"],
  ] as const)("%s: gives up after one retry period and tries again", async (_name, match, leaderFirst, what) => {
    const e = await election();
    const a = e.candidate("operator-a", "token-a");
    if (leaderFirst) {
      a.start();
      await eventually(() => a.isLeader, 5000, "operator-a to lead");
      await e.idle();
    }
    const held = e.api.stallNext({ ...match, namespace: NS });
    if (leaderFirst) await e.clock.run(RETRY_MS);
    else a.start();
    await held.reached;
    await e.idle(1);
    const started = e.now();
    await e.clock.run(RETRY_MS - 1);
    expect(e.errors).toEqual([]);
    expect(e.calls.inFlight).toBe(1);
    await e.clock.run(1);
    await e.idle();
    expect(e.errors.map(({ err }) => [codeOf(err), (err as Error).message])).toEqual([["ERR_RECLAIM_K8S_DEADLINE", `${what} did not answer within ${RETRY_MS} ms`]]);
    expect(e.now() - started).toBe(RETRY_MS);
    // The loop goes on: the next tick (one retry period later) leads.
    await e.advance(RETRY_MS);
    expect(a.isLeader).toBe(true);
    held.release();
    await a.stop();
  });

  it.each([
    ["reading", { verb: "get" }, "reading Lease reclaim/reclaim-operator"],
    ["writing", { verb: "update" }, "writing Lease reclaim/reclaim-operator"],
  ] as const)("the release on stop gives up %s the Lease after releaseTimeoutMs in all", async (_name, match, what) => {
    const e = await election();
    const a = e.candidate("operator-a", "token-a", { releaseTimeoutMs: 4000 });
    a.start();
    await eventually(() => a.isLeader, 5000, "operator-a to lead");
    await e.idle();
    const held = e.api.stallNext({ ...match, resource: "leases", namespace: NS });
    let done = false;
    const stopping = a.stop().then(() => (done = true));
    await held.reached;
    await e.clock.run(3999);
    expect(done).toBe(false);
    await e.clock.run(1);
    await stopping;
    expect(e.errors.map(({ err }) => [codeOf(err), (err as Error).message])).toEqual([
      ["ERR_RECLAIM_K8S_DEADLINE", `${what} (releasing it on stop) did not answer within 4000 ms`],
    ]);
    expect(e.events.map(([, what]) => what)).toEqual(["started", "stopped"]);
    held.release();
  });
});
