/**
 * The on-call Role (manifests/base/operator/oncall-role.yaml) is enough for
 * every command on-call runs with `--k8s` — list, show, ack and note
 * incidents; add, list and expire silences; pause and resume — and no more:
 * it cannot create an incident. The real CLI (bin/reclaim) and the real
 * Kubernetes client against the local API server, which enforces exactly the
 * Role's rules.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { KubernetesIncidentStore } from "../../src/operator/k8s/incident-store.js";
import { runCli } from "../support/cli.js";
import { buildIncident } from "../support/incidents.js";
import { kubeConfigFor, writeKubeConfig } from "../support/k8s/kubeconfig.js";
import { ALLOW_ALL, FakeKubeApi, rulesFromManifest } from "../support/k8s/server.js";
import { tempDir } from "../support/operator.js";

const NS = "reclaim";
const ONCALL_TOKEN = "oncall-token";
const ONCALL_USER = "alice@example.com";
const ADMIN_TOKEN = "admin-token";

let api: FakeKubeApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

describe("the on-call Role", () => {
  it("lets on-call list, show, ack and note incidents, and manage silences and the pause; nothing it calls is refused", async () => {
    const role = await readFile(new URL("../../manifests/base/operator/oncall-role.yaml", import.meta.url), "utf8");
    api = await FakeKubeApi.start({
      tokens: { [ONCALL_TOKEN]: { user: ONCALL_USER, rules: rulesFromManifest(role, NS) }, [ADMIN_TOKEN]: { user: "admin", rules: ALLOW_ALL } },
    });
    const incident = buildIncident({ status: "escalated" });
    await new KubernetesIncidentStore(kubeConfigFor(api, { token: ADMIN_TOKEN }).makeApiClient(k8s.CustomObjectsApi), NS).save(incident);
    const kubeconfig = await writeKubeConfig(join(await tempDir("reclaim-oncall-"), "kubeconfig"), api, { token: ONCALL_TOKEN, namespace: NS });
    const k = ["--k8s", "--kubeconfig", kubeconfig];

    const listed = await runCli(["incidents", "list", ...k]);
    expect(listed).toMatchObject({ code: 0, stderr: "" });
    expect(listed.stdout).toContain(incident.id);
    expect(await runCli(["incidents", "show", incident.id, ...k])).toMatchObject({ code: 0, stderr: "" });
    expect(await runCli(["incidents", "ack", incident.id, "--by", "alice", ...k])).toMatchObject({ code: 0 });
    expect(await runCli(["incidents", "note", incident.id, "--by", "alice", "--text", "paging the owners", ...k])).toMatchObject({ code: 0 });

    const added = await runCli(["silence", "add", "--user", "victim", "--for", "2h", "--by", "alice", "--comment", "known bug", ...k]);
    expect(added).toMatchObject({ code: 0, stderr: "" });
    const id = added.stdout.trim();
    expect((await runCli(["silence", "list", ...k])).stdout).toContain(id);
    expect(await runCli(["silence", "expire", id, "--by", "alice", ...k])).toMatchObject({ code: 0 });
    expect(await runCli(["pause", "--for", "1h", "--by", "alice", "--comment", "deploy going wrong", ...k])).toMatchObject({ code: 0 });
    expect(await runCli(["resume", "--by", "alice", ...k])).toMatchObject({ code: 0 });
    // A silence that ended over 7 days ago is removed by the next `silence add` (pruning needs delete).
    const old = api.object("silences.reclaim.dev", NS, id) as unknown as { spec: Record<string, unknown> };
    const longAgo = (days: number): string => new Date(Date.now() - days * 86_400_000).toISOString();
    api.putObject("silences.reclaim.dev", { ...old, spec: { ...old.spec, startsAt: longAgo(9), createdAt: longAgo(9), endsAt: longAgo(8), expiredAt: longAgo(8) } } as never);
    expect(await runCli(["silence", "add", "--user", "other", "--for", "2h", "--by", "alice", "--comment", "another", ...k])).toMatchObject({ code: 0, stderr: "" });
    expect(api.object("silences.reclaim.dev", NS, id)).toBeUndefined();

    const object = api.object("incidents.reclaim.dev", NS, incident.id.toLowerCase()) as unknown as { status: { human: { kind: string; by: string }[] } };
    expect(object.status.human.map((h) => [h.kind, h.by])).toEqual([
      ["ack", "alice"],
      ["note", "alice"],
    ]);
    const mine = api.requests().filter((r) => r.user === ONCALL_USER);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.filter((r) => r.status === 403)).toEqual([]);
  }, 120_000); // a dozen CLI processes, each starting node

  it("does not let on-call create an incident or touch the rules", async () => {
    const role = await readFile(new URL("../../manifests/base/operator/oncall-role.yaml", import.meta.url), "utf8");
    api = await FakeKubeApi.start({ tokens: { [ONCALL_TOKEN]: { user: ONCALL_USER, rules: rulesFromManifest(role, NS) } } });
    const store = new KubernetesIncidentStore(kubeConfigFor(api, { token: ONCALL_TOKEN }).makeApiClient(k8s.CustomObjectsApi), NS);
    await expect(store.save(buildIncident({ status: "escalated" }))).rejects.toThrow();
    const rules = kubeConfigFor(api, { token: ONCALL_TOKEN }).makeApiClient(k8s.CustomObjectsApi);
    await expect(rules.listNamespacedCustomObject({ group: "reclaim.dev", version: "v1", namespace: NS, plural: "remediationrules" })).rejects.toThrow();
    const refused = api.requests().filter((r) => r.user === ONCALL_USER).map((r) => [r.verb, r.resource, r.status]);
    expect(refused).toEqual(expect.arrayContaining([["create", "incidents", 403], ["list", "remediationrules", 403]]));
  });
});
