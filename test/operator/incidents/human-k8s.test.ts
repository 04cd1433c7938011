/**
 * Human entries on Incident objects (`status.human`), through the real
 * Kubernetes client against the fake API server: a person's append and the
 * operator's status writes race, each under the resourceVersion it read, and
 * neither loses the other's write nor fails because of it.
 */
import * as k8s from "@kubernetes/client-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acknowledgement, humanEntry, type HumanEntry } from "../../../src/operator/incidents/human.js";
import { IncidentIdError } from "../../../src/operator/incidents/store.js";
import { KubernetesIncidentStore } from "../../../src/operator/k8s/incident-store.js";
import { incidentObjectName } from "../../../src/operator/k8s/resources.js";
import { buildIncident } from "../../support/incidents.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { ALLOW_ALL, DEFAULT_TOKEN, FakeKubeApi } from "../../support/k8s/server.js";

const NS = "reclaim";
const OPERATOR_TOKEN = "operator-token";
const OPERATOR_USER = `system:serviceaccount:${NS}:reclaim-operator`;
const PERSON_USER = "alice@example.com";
const DETECTED = Date.parse("2026-11-26T03:14:08.000Z");

let api: FakeKubeApi;
/** The operator's store (its own service account) and a person's (`reclaim incidents ack --k8s`). */
let operator: KubernetesIncidentStore;
let person: KubernetesIncidentStore;

beforeEach(async () => {
  api = await FakeKubeApi.start({
    tokens: { [OPERATOR_TOKEN]: { user: OPERATOR_USER, rules: ALLOW_ALL }, [DEFAULT_TOKEN]: { user: PERSON_USER, rules: ALLOW_ALL } },
  });
  operator = new KubernetesIncidentStore(kubeConfigFor(api, { token: OPERATOR_TOKEN }).makeApiClient(k8s.CustomObjectsApi), NS);
  person = new KubernetesIncidentStore(kubeConfigFor(api).makeApiClient(k8s.CustomObjectsApi), NS);
});
afterEach(async () => {
  await api.close();
});

const ack = (by: string, ms: number, text?: string): HumanEntry => humanEntry({ kind: "ack", by, at: DETECTED + ms, ...(text === undefined ? {} : { text }) });
const note = (by: string, ms: number, text: string): HumanEntry => humanEntry({ kind: "note", by, text, at: DETECTED + ms });

/** The status writes answered so far, by whom and how. */
function statusWrites(): { user: string | undefined; status: number }[] {
  return api
    .requests()
    .filter((r) => r.resource === "incidents" && r.subresource === "status" && r.verb === "update")
    .map((r) => ({ user: r.user, status: r.status }));
}

describe("KubernetesIncidentStore.appendHuman", () => {
  it("adds acks and notes to status.human, where get() and list() read them, and changes nothing else", async () => {
    const incident = buildIncident({ status: "escalated" });
    await operator.save(incident);
    expect((await person.appendHuman(incident.id, ack("alice", 30_000, "paging the owners")))!.recorded).toBe(true);
    const added = await person.appendHuman(incident.id, note("bob", 31_000, "pod restarted by hand\nwatching"));
    expect(added!.recorded).toBe(true);

    const object = api.object("incidents.reclaim.dev", NS, incidentObjectName(incident.id)) as unknown as { status: Record<string, unknown> };
    expect(object.status.human).toEqual([ack("alice", 30_000, "paging the owners"), note("bob", 31_000, "pod restarted by hand\nwatching")]);
    const read = (await operator.get(incident.id))!;
    expect(read).toEqual({ ...incident, human: object.status.human, humanDropped: 0 });
    expect(added!.incident).toEqual(read);
    expect((await operator.list())[0]).toEqual(read);
    expect(acknowledgement(read)).toEqual({ by: "alice", at: "2026-11-26T03:14:38.000Z" });
  });

  it("an ack by someone who has acknowledged already writes nothing", async () => {
    const incident = buildIncident();
    await operator.save(incident);
    await person.appendHuman(incident.id, ack("alice", 1_000));
    const writes = statusWrites().length;
    const again = await person.appendHuman(incident.id, ack("alice", 2_000, "again"));
    expect(again!.recorded).toBe(false);
    expect(statusWrites()).toHaveLength(writes);
    expect((await operator.get(incident.id))!.human).toEqual([ack("alice", 1_000)]);
  });

  it("resolves null for an incident that is not there, and refuses a malformed id before any request", async () => {
    expect(await person.appendHuman(buildIncident().id, ack("alice", 1))).toBeNull();
    api.clearRequests();
    await expect(person.appendHuman("../../etc/passwd", ack("alice", 1))).rejects.toBeInstanceOf(IncidentIdError);
    expect(api.requests()).toEqual([]);
  });

  it("the operator's later saves, from a copy that never saw the entries, keep them", async () => {
    const remediating = buildIncident({ status: "remediating" });
    await operator.save(remediating);
    await person.appendHuman(remediating.id, ack("alice", 2_000, "watching"));
    await operator.save(buildIncident({ status: "resolved" }));

    const after = (await person.get(remediating.id))!;
    expect(after.status).toBe("resolved");
    expect(after.rungs.map((r) => r.rung)).toEqual(["probe", "force"]);
    expect(after.human).toEqual([ack("alice", 2_000, "watching")]);
  });

  it("an ack landing between the operator's read and its write: the operator's write meets 409, reads again, and both survive", async () => {
    const remediating = buildIncident({ status: "remediating" });
    await operator.save(remediating);
    // The operator has read the object for its next status write; the write itself is held at the server.
    const held = api.stallNext({ verb: "update", resource: "incidents/status", user: OPERATOR_USER });
    const saving = operator.save(buildIncident({ status: "resolved" }));
    await held.reached;
    expect((await person.appendHuman(remediating.id, ack("alice", 12_000, "on it")))!.recorded).toBe(true);
    held.release();
    await saving;

    const after = (await person.get(remediating.id))!;
    expect(after.status).toBe("resolved");
    expect(after.rungs.map((r) => `${r.rung}:${r.outcome}`)).toEqual(["probe:ok", "force:ok"]);
    expect(after.human).toEqual([ack("alice", 12_000, "on it")]);
    // The operator's held write was refused as stale, and its next one went through.
    expect(statusWrites().filter((w) => w.user === OPERATOR_USER).slice(-2)).toEqual([
      { user: OPERATOR_USER, status: 409 },
      { user: OPERATOR_USER, status: 200 },
    ]);
  });

  it("an operator write landing between a person's read and their write: the person's write meets 409, reads again, and both survive", async () => {
    const remediating = buildIncident({ status: "remediating" });
    await operator.save(remediating);
    const held = api.stallNext({ verb: "update", resource: "incidents/status", user: PERSON_USER });
    const adding = person.appendHuman(remediating.id, note("bob", 12_000, "user says chat is back"));
    await held.reached;
    await operator.save(buildIncident({ status: "resolved" }));
    held.release();
    expect((await adding)!.recorded).toBe(true);

    const after = (await operator.get(remediating.id))!;
    expect(after.status).toBe("resolved");
    expect(after.rungs.map((r) => `${r.rung}:${r.outcome}`)).toEqual(["probe:ok", "force:ok"]);
    expect(after.human).toEqual([note("bob", 12_000, "user says chat is back")]);
    expect(statusWrites().filter((w) => w.user === PERSON_USER)).toEqual([
      { user: PERSON_USER, status: 409 },
      { user: PERSON_USER, status: 200 },
    ]);
  });

  it("gives up after 8 conflicting writes in a row, saying so, with nothing half-written", async () => {
    const incident = buildIncident();
    await operator.save(incident);
    api.failNext({ verb: "update", resource: "incidents/status", user: PERSON_USER, code: 409, times: 8 });
    await expect(person.appendHuman(incident.id, ack("alice", 1_000))).rejects.toThrow(/8 conflicting writes in a row/);
    expect((await operator.get(incident.id))!.human).toBeUndefined();
    // The ninth try would have gone through: the limit is what stopped it.
    expect((await person.appendHuman(incident.id, ack("alice", 1_000)))!.recorded).toBe(true);
  });
});
