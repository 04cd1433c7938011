/**
 * `reclaim operator --leader-elect --incidents k8s --target pod` as a process,
 * against the fake API server through a kubeconfig file: it takes the lease,
 * follows the factory pod's log, remediates on that pod, records an Incident
 * object, and on SIGTERM gives the lease up.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isRefusal } from "../../src/demo/clients.js";
import { startCli, type RunningCli } from "../support/cli.js";
import { eventually, TEST_CONTROL_TOKEN, type Json, type TestFactory } from "../support/factory.js";
import { writeKubeConfig } from "../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../support/k8s/server.js";
import { tempDir } from "../support/operator.js";
import { NS, SOURCE, controlPortFreeOnBoth, factoryPod } from "../operator/k8s/support.js";

let api: FakeKubeApi | undefined;
let factory: TestFactory | undefined;
let operator: RunningCli | undefined;
afterEach(async () => {
  if (operator !== undefined && operator.child.exitCode === null) {
    operator.child.kill("SIGKILL");
    await operator.exited;
  }
  await factory?.close();
  await api?.close();
  operator = undefined;
  factory = undefined;
  api = undefined;
});

describe("reclaim operator in Kubernetes mode", () => {
  it("leads, remediates the pod that logged the lockout, records an Incident object, and releases the lease on SIGTERM", async () => {
    api = await FakeKubeApi.start();
    const port = await controlPortFreeOnBoth();
    factory = await factoryPod(api, "chat-factory-0", "127.0.0.1", port, { cleanup: "legacy" });
    const dir = await tempDir("reclaim-cli-k8s-");
    const kubeconfig = await writeKubeConfig(join(dir, "kubeconfig"), api, { namespace: NS });
    operator = startCli(
      [
        "operator",
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        NS,
        "--leader-elect",
        "--lease-duration",
        "3s",
        "--renew-deadline",
        "2s",
        "--retry-period",
        "500ms",
        "--incidents",
        "k8s",
        "--target",
        "pod",
        "--pod-control-port",
        String(port),
        "--source",
        SOURCE,
        "--watch-rules",
        "--rules",
        "rules",
        "--metrics-port",
        "0",
      ],
      { RECLAIM_CONTROL_TOKEN: TEST_CONTROL_TOKEN, POD_NAME: "reclaim-operator-7f9c-abcde" },
    );
    await operator.waitFor((l) => String(l.message).startsWith("Became the leader"), 15_000);

    for (let i = 0; i < 20; i++) await factory.open("cli-user", "no-pong");
    expect(isRefusal(await factory.attempt("cli-user"))).toBe(true);
    await eventually(() => api!.objects<Json>("incidents.reclaim.dev", NS).some((o) => o.status?.status === "resolved"), 20_000, "the Incident to resolve");
    const [incident] = api.objects<Json>("incidents.reclaim.dev", NS);
    expect(incident.spec).toMatchObject({ rule: "factory-lockout", target: { userId: "cli-user", pod: "chat-factory-0" } });
    expect(incident.status.rungs.map((r: Json) => r.rung)).toEqual(["probe"]);
    expect(api.object<Json>("leases.coordination.k8s.io", NS, "reclaim-operator").spec.holderIdentity).toBe("reclaim-operator-7f9c-abcde");

    operator.child.kill("SIGTERM");
    expect(await operator.exited).toBe(0);
    expect(api.object<Json>("leases.coordination.k8s.io", NS, "reclaim-operator").spec.holderIdentity).toBe("");
  });
});
