/**
 * Kubernetes mode (ADR 22): `reclaim silence --k8s` and `reclaim pause
 * --k8s` write Silence objects through the real client to the fake API
 * server; a running operator in Kubernetes mode watches them, holds back
 * what they cover within seconds, and records it in its Incident objects.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isRefusal } from "../../../src/demo/clients.js";
import { runCli } from "../../support/cli.js";
import { eventually, type Json, type TestFactory } from "../../support/factory.js";
import { writeKubeConfig } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../../support/k8s/server.js";
import { tempDir } from "../../support/operator.js";
import { closedAfterEach, controlPortFreeOnBoth, factoryPod, k8sOperator, NS } from "../k8s/support.js";

const started = closedAfterEach();

const hardLimitLine = (userId: string, pod: string): string =>
  `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod, event: "factory.hard_limit", userId, managers: 20, limit: 20, message: `HARD LIMIT: User ${userId} still over limit after cleanup (20/20)` })}\n`;

async function lockOut(factory: TestFactory, user: string): Promise<void> {
  for (let i = 0; i < 20; i++) await factory.open(user, "no-pong");
  const refused = await factory.attempt(user);
  expect(isRefusal(refused) && refused.status).toBe(503);
}

describe("silences and the pause in Kubernetes mode", () => {
  it("a Silence object made by the CLI holds the user back on a running operator; a pause object shows in /readyz; both end by the CLI", async () => {
    const api = (started.api = await FakeKubeApi.start());
    const port = await controlPortFreeOnBoth();
    const factory = await factoryPod(api, "chat-factory-a", "127.0.0.1", port, { cleanup: "legacy" });
    started.factories.push(factory);
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port });
    started.operators.push(operator);
    const kubeconfig = await writeKubeConfig(join(await tempDir("reclaim-silence-k8s-"), "kubeconfig"), api, { namespace: NS });
    const k8s = ["--k8s", "--kubeconfig", kubeconfig];
    const logged = (event: string, fields: Record<string, unknown> = {}): Promise<void> =>
      eventually(() => operator.lines.some((l) => l.event === event && Object.entries(fields).every(([k, v]) => l[k] === v)), 5000, `${event} ${JSON.stringify(fields)}`);

    const added = await runCli(["silence", "add", "--user", "victim", "--by", "alice", "--comment", "known bug, fix deploying", ...k8s]);
    expect(added).toMatchObject({ code: 0, stderr: "" });
    const id = added.stdout.trim();
    await logged("operator.silence_started", { silence: id, userId: "victim" });

    await lockOut(factory, "victim");
    api.appendLog(NS, "chat-factory-a", hardLimitLine("victim", "chat-factory-a"));
    await logged("operator.suppressed", { userId: "victim", reason: "silenced" });
    const record = await (async () => {
      let found: Json;
      await eventually(() => {
        found = api.objects<Json>("incidents.reclaim.dev", NS).find((o) => o.status?.rollup?.reason === "silenced");
        return found !== undefined;
      }, 5000, "the Incident object saying victim was silenced");
      return found;
    })();
    expect(record.status.rollup.keys.map((k: Json) => k.userId)).toEqual(["victim"]);
    expect(record.status.decisions.map((d: Json) => d.detail).join("\n")).toContain(`silenced by ${id} (user=victim) of alice until`);
    await operator.idle();
    expect(factory.events("factory.cleanup", "victim").filter((l) => l.trigger === "control")).toEqual([]);

    expect(await runCli(["pause", "--for", "10m", "--by", "bob", "--comment", "cluster upgrade", ...k8s])).toMatchObject({ code: 0 });
    await logged("operator.pause_started", { by: "bob" });
    const ready = await fetch(`http://127.0.0.1:${operator.metricsPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as Json).paused).toMatchObject({ by: "bob", comment: "cluster upgrade" });

    expect(await runCli(["resume", "--by", "bob", ...k8s])).toMatchObject({ code: 0 });
    await logged("operator.pause_ended");
    expect(await runCli(["silence", "expire", id, "--by", "alice", ...k8s])).toMatchObject({ code: 0 });
    await logged("operator.silence_ended", { silence: id });
    api.appendLog(NS, "chat-factory-a", hardLimitLine("victim", "chat-factory-a"));
    await eventually(() => factory.events("factory.cleanup", "victim").some((l) => l.trigger === "control"), 10_000, "the operator to act on victim again");
  });

  it("invalid Silence objects are skipped, counted and logged; the valid ones hold, each seen starting once", async () => {
    const api = (started.api = await FakeKubeApi.start());
    const now = Date.now();
    const spec = {
      schemaVersion: 1,
      matchers: { userId: "u1" },
      startsAt: new Date(now).toISOString(),
      endsAt: new Date(now + 3_600_000).toISOString(),
      createdBy: "alice",
      comment: "ok",
      createdAt: new Date(now).toISOString(),
      expiredBy: null,
      expiredAt: null,
    };
    const put = (name: string, body: Json): void => void api.putObject("silences.reclaim.dev", { apiVersion: "reclaim.dev/v1", kind: "Silence", metadata: { name, namespace: NS }, spec: body });
    put("sil-00000000000000aa", spec);
    put("sil-00000000000000ab", { ...spec, matchers: { userId: "u2" } });
    put("by-hand", spec);
    put("sil-00000000000000bb", { ...spec, matchers: {} });
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: await controlPortFreeOnBoth() });
    started.operators.push(operator);
    put("sil-00000000000000ac", { ...spec, matchers: { userId: "u3" } });
    await eventually(() => operator.lines.some((l) => l.event === "operator.silence_started" && l.silence === "sil-00000000000000ac"), 5000, "the silence made after the start");
    expect(operator.lines.filter((l) => l.event === "operator.silence_skipped").map((l) => String(l.message))).toEqual([
      expect.stringContaining("Skipped silence record by-hand"),
      expect.stringContaining("a silence needs at least one matcher"),
    ]);
    // The informer fills its cache one object at a time: the book is handed whole lists only, so nothing seemed to end.
    expect(operator.lines.filter((l) => l.event === "operator.silence_started").map((l) => l.silence)).toEqual([
      "sil-00000000000000aa",
      "sil-00000000000000ab",
      "sil-00000000000000ac",
    ]);
    expect(operator.lines.filter((l) => l.event === "operator.silence_ended")).toEqual([]);
    const text = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    expect(text).toMatch(/^reclaim_operator_silences_skipped_total 2$/m);
    expect(text).toMatch(/^reclaim_operator_silences_active 3$/m);
  });
});
