/**
 * A fake cluster for the operator's Kubernetes tests: the fake API server,
 * real factories as "pods" (each on its own loopback address, so pod IPs are
 * real), their log lines fed into the pods' logs, and operators in
 * Kubernetes mode.
 */
import { createServer } from "node:net";
import { afterEach } from "vitest";
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import type { FakeKubeApi } from "../../support/k8s/server.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { startTestFactory, type TestFactory } from "../../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";
import type { FactoryConfigInput } from "../../../src/factory/config.js";
import type { KubernetesConfig } from "../../../src/operator/operator.js";

export const NS = "reclaim";
export const APP = { "app.kubernetes.io/name": "chat-factory" };
export const SOURCE = `k8s:${NS}/app.kubernetes.io/name=chat-factory`;

/** A port free on both 127.0.0.1 and 127.0.0.2, for the factories' control APIs. */
export async function controlPortFreeOnBoth(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer()
        .once("error", () => resolve(false))
        .listen(port, "127.0.0.2", () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** A factory running as pod `name` at `ip`, its log lines appended to the pod's log. */
export async function factoryPod(api: FakeKubeApi, name: string, ip: string, controlPort: number, config: FactoryConfigInput = {}): Promise<TestFactory> {
  api.addPod({ namespace: NS, name, labels: { ...APP }, podIP: ip, phase: "Running", ready: true, containers: ["factory"] });
  return startTestFactory(
    { host: ip, controlHost: ip, controlPort, probeTimeoutMs: 300, ...config },
    { pod: name, onLine: (line) => api.pod(NS, name) !== undefined && api.appendLog(NS, name, `${line}\n`) },
  );
}

export interface K8sOperatorOptions {
  identity: string;
  controlPort: number;
  leader?: boolean;
  token?: string;
  rule?: string;
  dir?: string;
  watchRules?: boolean;
  files?: boolean;
}

/** An operator in Kubernetes mode: pod logs, Incident objects, pod targeting, optionally leader election. */
export async function k8sOperator(api: FakeKubeApi, options: K8sOperatorOptions): Promise<TestOperator> {
  const dir = options.dir ?? (await tempDir("reclaim-k8s-"));
  const kubeConfig: k8s.KubeConfig = kubeConfigFor(api, { namespace: NS, ...(options.token === undefined ? {} : { token: options.token }) });
  const kubernetes: KubernetesConfig = {
    kubeConfig,
    namespace: NS,
    identity: options.identity,
    leaderElection: options.leader === true ? { name: "reclaim-operator", leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200 } : null,
    incidents: true,
    podTargets: true,
    controlPort: options.controlPort,
    watchRules: options.watchRules ?? false,
  };
  return startTestOperator({
    dir,
    source: SOURCE,
    control: "http://127.0.0.1:9",
    incidentsDir: options.files === true ? join(dir, "incidents") : null,
    kubernetes,
    ...(options.rule === undefined ? {} : { rule: options.rule }),
  });
}

/** What a test started, closed after each test (operators, then factories, then the API server). */
export interface Started {
  api: FakeKubeApi | undefined;
  factories: TestFactory[];
  operators: TestOperator[];
}

/** Registers the cleanup of everything a test file starts; returns where to put it. */
export function closedAfterEach(): Started {
  const started: Started = { api: undefined, factories: [], operators: [] };
  afterEach(async () => {
    for (const o of started.operators.splice(0)) await o.close();
    for (const f of started.factories.splice(0)) await f.close();
    await started.api?.close();
    started.api = undefined;
  });
  return started;
}
