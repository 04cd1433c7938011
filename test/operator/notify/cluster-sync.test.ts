/**
 * The leader's passes over the Incident objects (issue 13, ADR 23 "In the
 * cluster"), with the real @kubernetes/client-node against the local API
 * server and a ManualClock for every wait and deadline: an ack written by
 * another process reaches the notifier within one interval; a list that
 * hangs is given up at its deadline and passes never overlap; a pass whose
 * term ended acts on nothing; the marks a MarkWriter records are read back.
 * The notifier's sink is the project's own interface (it records what would
 * go to the outbox).
 */
import { Writable } from "node:stream";
import * as k8s from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { acknowledgement, humanEntry } from "../../../src/operator/incidents/human.js";
import { KubernetesIncidentStore } from "../../../src/operator/k8s/incident-store.js";
import { createOperatorLog } from "../../../src/operator/log.js";
import { ClusterSync } from "../../../src/operator/notify/cluster-sync.js";
import { MarkWriter } from "../../../src/operator/notify/mark-writer.js";
import { noticeFingerprint } from "../../../src/operator/notify/notice.js";
import { NOTIFIED_ANNOTATION } from "../../../src/operator/notify/notified.js";
import { Notifier } from "../../../src/operator/notify/notifier.js";
import type { Notice } from "../../../src/operator/notify/types.js";
import { ManualClock } from "../../support/clock.js";
import { eventually } from "../../support/factory.js";
import { buildIncident } from "../../support/incidents.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi, type KubeObject } from "../../support/k8s/server.js";

const NS = "reclaim";
const T0 = Date.parse("2026-11-26T04:00:00Z");

let api: FakeKubeApi | undefined;
const syncs: ClusterSync[] = [];
const releases: (() => void)[] = [];
afterEach(async () => {
  for (const s of syncs.splice(0)) s.stop();
  for (const r of releases.splice(0)) r();
  await api?.close();
  api = undefined;
});

interface Harness {
  api: FakeKubeApi;
  clock: ManualClock;
  store: KubernetesIncidentStore;
  sync: ClusterSync;
  writer: MarkWriter;
  sent: Notice[];
  registry: Registry;
  lines: Record<string, unknown>[];
}

async function harness(): Promise<Harness> {
  api = await FakeKubeApi.start();
  const clock = new ManualClock(T0);
  // The store's own deadline is long and on the real timers: only the pass's deadline (ManualClock) ends a call here.
  const store = new KubernetesIncidentStore(kubeConfigFor(api).makeApiClient(k8s.CustomObjectsApi), NS, { callTimeoutMs: 60_000 });
  const lines: Record<string, unknown>[] = [];
  const log = createOperatorLog({
    pod: "test",
    streams: [
      new Writable({
        write(chunk: Buffer, _e, done) {
          for (const l of chunk.toString().split("\n")) if (l.trim() !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    ],
  });
  const sent: Notice[] = [];
  const registry = new Registry();
  const notifier = new Notifier({ sink: { enqueue: (n) => sent.push(n) }, route: () => ["pager"], externalUrl: null, clock, acknowledgement });
  const writer = new MarkWriter({ marks: store, log, registry, timers: clock });
  const sync = new ClusterSync({ marks: store, notifier, writer, log, registry, timers: clock, intervalMs: 15_000, listTimeoutMs: 10_000 });
  syncs.push(sync);
  return { api, clock, store, sync, writer, sent, registry, lines };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (m === undefined) throw new Error(`no metric ${name}`);
  return (await m.get()).values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0);
}

function listCalls(a: FakeKubeApi): number {
  return a.requests().filter((r) => r.verb === "list" && r.resource === "incidents").length;
}

describe("ClusterSync", () => {
  it("at the start, sends what was not recorded as delivered; then an ack written by another process reaches the notifier at the next pass", async () => {
    const h = await harness();
    const escalated = buildIncident({ status: "escalated", detectedAt: new Date(T0 - 60_000).toISOString() });
    await h.store.save(escalated);

    await h.sync.start();
    expect(h.sent.map((n) => [n.subject, n.needsHuman])).toEqual([[escalated.id, true]]);
    expect(h.lines.find((l) => l.event === "operator.term_started")).toMatchObject({ notificationsRead: 1, notificationsResent: 1 });

    // `reclaim incidents ack` from a laptop: another store, the same objects.
    const person = new KubernetesIncidentStore(kubeConfigFor(h.api).makeApiClient(k8s.CustomObjectsApi), NS);
    await person.appendHuman(escalated.id, humanEntry({ kind: "ack", by: "alice", at: T0 + 1000 }));
    await h.clock.run(14_999);
    expect(h.sent).toHaveLength(1);
    await h.clock.run(1);
    await eventually(() => h.sent.length === 2, 5000, "the ack to be sent");
    expect(h.sent[1]).toMatchObject({ subject: escalated.id, needsHuman: false, acknowledged: { by: "alice" } });
    // The next pass finds nothing new.
    await h.clock.run(15_000);
    await eventually(async () => (await metric(h.registry, "reclaim_operator_notification_sync_total", { result: "ok" })) === 3, 5000, "a third pass");
    expect(h.sent).toHaveLength(2);
  });

  it("gives a hanging list up at its deadline, and never runs two passes at once", async () => {
    const h = await harness();
    releases.push(h.api.hang({ verb: "list", resource: "incidents" }));
    void h.sync.start();
    // Passes start at 0, 25 s and 50 s: each list is given up 10 s after it started, the next starts 15 s after that.
    for (let t = 0; t < 55_000; t += 1000) await h.clock.run(1000);
    expect(await metric(h.registry, "reclaim_operator_notification_sync_total", { result: "failed" })).toBe(2);
    const warned = h.lines.filter((l) => l.event === "operator.store_error");
    expect(warned).toHaveLength(1); // then at most once a minute
    expect(warned[0]?.message).toContain("no answer within 10000 ms");
    releases.pop()!();
    await eventually(() => listCalls(h.api) === 3, 5000, "the held lists to be answered");
    expect(listCalls(h.api)).toBe(3);
  });

  it("acts on nothing it read once its term ended", async () => {
    const h = await harness();
    await h.store.save(buildIncident({ status: "escalated" }));
    const stall = h.api.stallNext({ verb: "list", resource: "incidents" });
    const first = h.sync.start();
    await stall.reached;
    h.sync.stop();
    stall.release();
    await first;
    await h.clock.run(60_000);
    expect(h.sent).toEqual([]);
    expect(listCalls(h.api)).toBe(1);
  });

  it("records what every receiver accepted as an annotation, without conflicting with the operator's writes, and reads it back", async () => {
    const h = await harness();
    const escalated = buildIncident({ status: "escalated" });
    await h.store.save(escalated);
    await h.sync.start();
    const notice = h.sent[0]!;
    h.writer.delivered(notice);
    await h.writer.idle();
    const object = h.api.object<KubeObject>("incidents.reclaim.dev", NS, escalated.id.toLowerCase());
    expect(object?.metadata.annotations?.[NOTIFIED_ANNOTATION]).toBe(noticeFingerprint(notice));
    const patches = h.api.requests().filter((r) => r.verb === "patch" && r.resource === "incidents");
    expect(patches.map((r) => [r.contentType, r.subresource, r.status])).toEqual([["application/merge-patch+json", undefined, 200]]);
    // The same state again (Alertmanager's re-posts) costs no call.
    h.writer.delivered({ ...notice, at: new Date(T0 + 60_000).toISOString() });
    await h.writer.idle();
    expect(h.api.requests().filter((r) => r.verb === "patch")).toHaveLength(1);
    // The operator's next status write keeps it.
    await h.store.save({ ...escalated, updatedAt: new Date(T0).toISOString() });
    const [read] = await h.store.listNotified({});
    expect(read?.notified).toBe(noticeFingerprint(notice));
    expect(await metric(h.registry, "reclaim_operator_notification_marks_total", { result: "written" })).toBe(1);
  });
});
