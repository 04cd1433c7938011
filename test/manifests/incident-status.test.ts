/**
 * The Incident objects the operator writes, as `kubectl get rinc` and
 * `kubectl wait` read them: `status.conditions` after the API conventions
 * (Resolved, NeedsHuman, Acknowledged; True/False/Unknown, a CamelCase
 * reason, lastTransitionTime kept while the status holds, observedGeneration)
 * and the scalar `status.rungSummary` behind the Rungs column. Written through
 * the real Kubernetes client to the local API server (test/support/k8s), and
 * each printer column of the generated CRD evaluated on the stored object the
 * way the API server does: first result only, so every column must have
 * exactly one.
 */
import * as k8s from "@kubernetes/client-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { humanEntry } from "../../src/operator/incidents/human.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { incidentCrd } from "../../src/operator/k8s/crds.js";
import { KubernetesIncidentStore } from "../../src/operator/k8s/incident-store.js";
import { CONDITION_REASON_PATTERN, IncidentCondition, incidentObjectName } from "../../src/operator/k8s/resources.js";
import { buildIncident } from "../support/incidents.js";
import { kubeConfigFor } from "../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../support/k8s/server.js";

const NS = "reclaim";
let api: FakeKubeApi;
let store: KubernetesIncidentStore;

beforeEach(async () => {
  api = await FakeKubeApi.start();
  store = new KubernetesIncidentStore(kubeConfigFor(api).makeApiClient(k8s.CustomObjectsApi), NS);
});
afterEach(async () => {
  await api.close();
});

interface Stored {
  metadata: { generation?: number };
  status: { conditions: IncidentCondition[]; rungSummary: string; [field: string]: unknown };
  [field: string]: unknown;
}
const stored = (incident: Incident): Stored => api.object("incidents.reclaim.dev", NS, incidentObjectName(incident.id)) as unknown as Stored;
const condition = (object: Stored, type: string): IncidentCondition | undefined => object.status.conditions.find((c) => c.type === type);

/**
 * The results of a printer column's JSONPath on an object, for the forms the
 * CRDs use: `.a.b`, `[*]`, and `[?(@.key=="value")]`.
 */
function jsonPath(object: unknown, path: string): unknown[] {
  let values: unknown[] = [object];
  const steps = path.match(/\.[A-Za-z0-9_]+|\[\*\]|\[\?\(@\.[A-Za-z]+=="[^"]*"\)\]/g) ?? [];
  expect(steps.join(""), `${path} is made only of supported steps`).toBe(path);
  for (const step of steps) {
    if (step === "[*]") values = values.flatMap((v) => (Array.isArray(v) ? v : []));
    else if (step.startsWith("[?")) {
      const [, key, want] = /^\[\?\(@\.([A-Za-z]+)=="([^"]*)"\)\]$/.exec(step)!;
      values = values.flatMap((v) => (Array.isArray(v) ? v.filter((item) => (item as Record<string, unknown>)?.[key!] === want) : []));
    } else values = values.flatMap((v) => (typeof v === "object" && v !== null && step.slice(1) in v ? [(v as Record<string, unknown>)[step.slice(1)]] : []));
  }
  return values;
}

/** What `kubectl get rinc -o wide` shows for the object: each column's results. */
function columns(object: Stored): Record<string, unknown[]> {
  const withMeta = { ...object, metadata: { ...object.metadata, creationTimestamp: "2026-11-26T03:14:08Z" } };
  return Object.fromEntries(incidentCrd().spec.versions[0]!.additionalPrinterColumns.map((c) => [c.name, jsonPath(withMeta, c.jsonPath)]));
}

describe("Incident status conditions and printer columns", () => {
  it("writes Resolved/NeedsHuman/Acknowledged and rungSummary with each status write, keeping lastTransitionTime while a status holds", async () => {
    const open = buildIncident({ status: "open" });
    await store.save(open);
    let object = stored(open);
    expect(object.status.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`)).toEqual(["Resolved=Unknown/Open", "NeedsHuman=False/Open", "Acknowledged=False/NotAcknowledged"]);
    for (const c of object.status.conditions) {
      expect(IncidentCondition.parse(c)).toEqual(c);
      expect(c.reason).toMatch(CONDITION_REASON_PATTERN);
      expect(c.lastTransitionTime).toBe(open.updatedAt);
      expect(c.observedGeneration).toBe(object.metadata.generation);
      expect(c.message.length).toBeGreaterThan(0);
    }
    expect(object.status.rungSummary).toBe("");

    // The ladder ran probe then force and resolved it, later.
    const resolved = buildIncident({ status: "resolved" });
    expect(resolved.updatedAt).not.toBe(open.updatedAt);
    await store.save(resolved);
    object = stored(resolved);
    expect(condition(object, "Resolved")).toMatchObject({ status: "True", reason: "Resolved", lastTransitionTime: resolved.updatedAt });
    // NeedsHuman stayed False: its transition time is the first write's.
    expect(condition(object, "NeedsHuman")).toMatchObject({ status: "False", reason: "Resolved", lastTransitionTime: open.updatedAt });
    expect(resolved.rungs.map((r) => r.rung)).toEqual(["probe", "force"]);
    expect(object.status.rungSummary).toBe("probe,force");
  });

  it("marks an escalated incident NeedsHuman, and an ack (by a person, then kept by the operator's next write) Acknowledged", async () => {
    const escalated = buildIncident({ status: "escalated" });
    await store.save(escalated);
    expect(condition(stored(escalated), "NeedsHuman")).toMatchObject({ status: "True", reason: "Escalated" });
    expect(condition(stored(escalated), "Resolved")).toMatchObject({ status: "False", reason: "Escalated" });

    const at = Date.parse(escalated.updatedAt) + 60_000;
    await store.appendHuman(escalated.id, humanEntry({ kind: "ack", by: "alice", at }));
    const acked = condition(stored(escalated), "Acknowledged");
    expect(acked).toMatchObject({ status: "True", reason: "Acknowledged", lastTransitionTime: new Date(at).toISOString() });
    expect(acked!.message).toContain("alice");

    // The operator's own copy has no human entries: its write keeps the ack's condition, as read.
    await store.save({ ...escalated, updatedAt: new Date(at + 1000).toISOString() });
    expect(condition(stored(escalated), "Acknowledged")).toEqual(acked);
  });

  it("gives every printer column exactly one value (the API server prints only the first)", async () => {
    const incident = buildIncident({ status: "resolved" });
    await store.save(incident);
    const object = stored(incident);
    const shown = columns(object);
    for (const [name, results] of Object.entries(shown)) expect(results, name).toHaveLength(1);
    expect(shown).toMatchObject({ Status: ["resolved"], Rungs: ["probe,force"], "Needs-Human": ["False"], Acked: ["False"] });
    // The column it replaces showed one rung of two.
    expect(jsonPath(object, ".status.rungs[*].rung")).toEqual(["probe", "force"]);
  });
});
