/**
 * What a GKE platform review asks of the rendered manifests (base, staging,
 * crds), checked offline:
 * - every object validates against the Kubernetes OpenAPI schemas
 *   (`kubernetes-models`, generated from Kubernetes' OpenAPI spec; GKE's
 *   BackendConfig and GCPBackendPolicy from `@kubernetes-models/gke`), and
 *   carries no field the API does not know (`@kubernetes/client-node`'s
 *   model attribute maps); Managed Prometheus's kinds, which no package has,
 *   get a shape check;
 * - no `latest` or untagged image; Reclaim's pinned to the package version;
 * - a PodDisruptionBudget for each Deployment;
 * - the factory's shutdown fits its pod: preStop + drain + grace (the
 *   factory's defaults, read from src/factory/config.ts, or its flags) end
 *   well within terminationGracePeriodSeconds, and within the load
 *   balancer's connection draining;
 * - ephemeral-storage requests and limits, startup probes, zone and node
 *   spreading;
 * - NetworkPolicy: evaluated as a CNI would, who reaches what;
 * - the load balancer (Ingress + BackendConfig) and Managed Prometheus's
 *   query frontend in staging; the Lease rule limited by name.
 */
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as k8s from "@kubernetes/client-node";
import * as gkeCloudV1 from "@kubernetes-models/gke/cloud.google.com/v1";
import * as gkeNetworkingV1 from "@kubernetes-models/gke/networking.gke.io/v1";
import * as apiextensionsV1 from "kubernetes-models/apiextensions.k8s.io/v1";
import * as appsV1 from "kubernetes-models/apps/v1";
import * as networkingV1 from "kubernetes-models/networking.k8s.io/v1";
import * as policyV1 from "kubernetes-models/policy/v1";
import * as rbacV1 from "kubernetes-models/rbac.authorization.k8s.io/v1";
import * as coreV1 from "kubernetes-models/v1";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { parseDuration } from "../../src/contract/duration.js";
import { FactoryConfig } from "../../src/factory/config.js";
import { crdsKustomization, CRDS_DIR } from "../../src/cli/manifests.js";
import { operatorCommand } from "../../src/cli/operator.js";
import { reclaimCrds } from "../../src/operator/k8s/crds.js";
import { describeNeeding } from "../support/needs.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NAMESPACE = "reclaim";

// The rendered objects' deeper shapes, read loosely: the assertions check them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: Any;
}

const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
const KUBECTL_MISSING = kubectl.error === undefined && kubectl.status === 0 ? null : "kubectl is not installed (.ci/run installs it)";

function render(dir: string): K8sObject[] {
  const result = spawnSync("kubectl", ["kustomize", `${ROOT}${dir}`], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir} failed (${result.status}): ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined): boolean =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

// ---------------------------------------------------------------------------
// Schemas

interface ModelClass {
  apiVersion: string;
  kind: string;
  new (data: unknown): { validate(): void };
}
/** The kinds a package has a schema for, by `apiVersion/kind`. */
const MODELS = new Map<string, ModelClass>();
for (const module of [coreV1, appsV1, policyV1, networkingV1, rbacV1, apiextensionsV1, gkeCloudV1, gkeNetworkingV1] as Record<string, unknown>[]) {
  for (const value of Object.values(module)) {
    if (typeof value !== "function") continue;
    const model = value as unknown as Partial<ModelClass>;
    if (typeof model.apiVersion === "string" && typeof model.kind === "string") MODELS.set(`${model.apiVersion}/${model.kind}`, value as unknown as ModelClass);
  }
}

/** Google Managed Prometheus's kinds: no npm package ships their schema, so their shape is checked here. */
const GMP_SHAPES: Record<string, (spec: Any) => string[]> = {
  PodMonitoring: (spec) => {
    const problems: string[] = [];
    if (typeof spec?.selector?.matchLabels !== "object") problems.push("spec.selector.matchLabels: required");
    if (!Array.isArray(spec?.endpoints) || spec.endpoints.length === 0) return [...problems, "spec.endpoints: a non-empty list"];
    spec.endpoints.forEach((e: Any, i: number) => {
      for (const key of Object.keys(e)) if (!["port", "path", "interval", "timeout", "scheme", "params", "metricRelabeling", "proxyUrl", "authorization", "basicAuth", "tls", "oauth2"].includes(key)) problems.push(`spec.endpoints[${i}].${key}: unknown`);
      if (!(typeof e.port === "string" || Number.isInteger(e.port))) problems.push(`spec.endpoints[${i}].port: a name or a number`);
      if (e.path !== undefined && !/^\//.test(String(e.path))) problems.push(`spec.endpoints[${i}].path: starts with /`);
      if (e.interval !== undefined && !/^\d+(ms|s|m|h)$/.test(String(e.interval))) problems.push(`spec.endpoints[${i}].interval: a Prometheus duration`);
    });
    for (const key of Object.keys(spec)) if (!["selector", "endpoints", "targetLabels", "limits", "filterRunning"].includes(key)) problems.push(`spec.${key}: unknown`);
    return problems;
  },
  Rules: (spec) => {
    const problems: string[] = [];
    if (!Array.isArray(spec?.groups) || spec.groups.length === 0) return ["spec.groups: a non-empty list"];
    spec.groups.forEach((g: Any, i: number) => {
      if (typeof g.name !== "string" || g.name === "") problems.push(`spec.groups[${i}].name: required`);
      if (!Array.isArray(g.rules) || g.rules.length === 0) problems.push(`spec.groups[${i}].rules: a non-empty list`);
      (g.rules ?? []).forEach((r: Any, j: number) => {
        if ((typeof r.alert === "string") === (typeof r.record === "string")) problems.push(`spec.groups[${i}].rules[${j}]: exactly one of alert, record`);
        if (typeof r.expr !== "string" || r.expr === "") problems.push(`spec.groups[${i}].rules[${j}].expr: required`);
      });
    });
    return problems;
  },
};
GMP_SHAPES.ClusterRules = GMP_SHAPES.Rules!;
GMP_SHAPES.GlobalRules = GMP_SHAPES.Rules!;

interface Attribute {
  baseName: string;
  type: string;
}
const clientModels = k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] } | undefined>;

/** Fields the API would not know (client-node's models are generated from the same OpenAPI spec), as paths. */
function unknownFields(value: unknown, type: string, path: string): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array !== null) return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`)) : [];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map !== null) return typeof value === "object" ? Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1]!, `${path}.${k}`)) : [];
  const attributes = clientModels[type]?.getAttributeTypeMap?.();
  if (attributes === undefined || typeof value !== "object") return [];
  return Object.entries(value as Record<string, unknown>).flatMap(([key, v]) => {
    const attribute = attributes.find((a) => a.baseName === key);
    return attribute === undefined ? [`${path}.${key}: not a field of ${type}`] : unknownFields(v, attribute.type, `${path}.${key}`);
  });
}

/** Every problem of one object against its kind's schema, or its shape check; a kind nothing can check is a problem too. */
function schemaProblems(object: K8sObject): string[] {
  const what = `${object.kind}/${object.metadata?.name}`;
  const model = MODELS.get(`${object.apiVersion}/${object.kind}`);
  if (model !== undefined) {
    const problems: string[] = [];
    try {
      new model(object).validate();
    } catch (err) {
      problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const version = object.apiVersion.split("/").at(-1)!;
    const clientType = `${version.charAt(0).toUpperCase()}${version.slice(1)}${object.kind}`;
    if (clientModels[clientType]?.getAttributeTypeMap !== undefined) problems.push(...unknownFields(object, clientType, what));
    return problems;
  }
  const shape = object.apiVersion === "monitoring.googleapis.com/v1" ? GMP_SHAPES[object.kind] : undefined;
  if (shape !== undefined) return shape(object.spec).map((p) => `${what}: ${p}`);
  return [`${what}: no schema for ${object.apiVersion} ${object.kind} (add its package, or a shape check here)`];
}

// ---------------------------------------------------------------------------
// NetworkPolicy, evaluated as a CNI would (for the selectors and peers these manifests use)

/** A pod (namespace and labels) or an address outside the cluster's pods. */
type Peer = { namespace: string; labels: Record<string, string> } | { ip: string };
const isPod = (p: Peer): p is { namespace: string; labels: Record<string, string> } => "namespace" in p;

function ipToNumber(ip: string): number {
  return ip.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}
function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipToNumber(ip) / size) === Math.floor(ipToNumber(base!) / size);
}

function peerMatches(rulePeer: Any, peer: Peer): boolean {
  if (rulePeer.ipBlock !== undefined) {
    return !isPod(peer) && inCidr(peer.ip, rulePeer.ipBlock.cidr) && !(rulePeer.ipBlock.except ?? []).some((c: string) => inCidr(peer.ip, c));
  }
  if (!isPod(peer)) return false;
  expect(rulePeer.podSelector?.matchExpressions, "only matchLabels selectors").toBeUndefined();
  expect(rulePeer.namespaceSelector?.matchExpressions, "only matchLabels selectors").toBeUndefined();
  const namespaceOk =
    rulePeer.namespaceSelector === undefined
      ? peer.namespace === NAMESPACE
      : matches(rulePeer.namespaceSelector.matchLabels ?? {}, { "kubernetes.io/metadata.name": peer.namespace });
  return namespaceOk && (rulePeer.podSelector === undefined || matches(rulePeer.podSelector.matchLabels ?? {}, peer.labels));
}

/** May traffic cross one pod's side (`direction`) of the connection, from/to `other`, on `port`? */
function allowedAt(policies: Any[], pod: Record<string, string>, direction: "Ingress" | "Egress", other: Peer, port: number, protocol: string): boolean {
  const selecting = policies.filter((p) => {
    expect(p.spec.podSelector.matchExpressions).toBeUndefined();
    return matches(p.spec.podSelector.matchLabels ?? {}, pod) && (p.spec.policyTypes as string[]).includes(direction);
  });
  if (selecting.length === 0) return true;
  const key = direction === "Ingress" ? "from" : "to";
  return selecting.some((p) =>
    ((direction === "Ingress" ? p.spec.ingress : p.spec.egress) ?? []).some((rule: Any) => {
      for (const rp of rule.ports ?? []) expect(typeof rp.port, "numeric ports only: a named port depends on the pod").toBe("number");
      const portOk = rule.ports === undefined || rule.ports.some((rp: Any) => (rp.protocol ?? "TCP") === protocol && (rp.port === undefined || (port >= rp.port && port <= (rp.endPort ?? rp.port))));
      const peerOk = rule[key] === undefined || rule[key].length === 0 || rule[key].some((rp: Any) => peerMatches(rp, other));
      return portOk && peerOk;
    }),
  );
}

/** Can `from` open a connection to `to` on `port`? Both ends' policies apply where they are pods of this namespace. */
function reaches(policies: Any[], from: Peer, to: Peer, port: number, protocol = "TCP"): boolean {
  const egressOk = !isPod(from) || from.namespace !== NAMESPACE || allowedAt(policies, from.labels, "Egress", to, port, protocol);
  const ingressOk = !isPod(to) || to.namespace !== NAMESPACE || allowedAt(policies, to.labels, "Ingress", from, port, protocol);
  return egressOk && ingressOk;
}

// ---------------------------------------------------------------------------

const packageVersion = async (): Promise<string> => (JSON.parse(await readFile(`${ROOT}package.json`, "utf8")) as { version: string }).version;
const argValue = (args: string[], flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
};
const durationMs = (text: string): number => (text.trim() === "0" ? 0 : parseDuration(text));

for (const [dir, flavour] of [
  ["manifests/base", "base"],
  ["manifests/overlays/staging", "staging"],
  [CRDS_DIR, "crds"],
] as const) {
  describeNeeding(KUBECTL_MISSING, `platform review: kubectl kustomize ${dir}`, () => {
    let objects: K8sObject[] = [];
    const find = (kind: string, name: string): Any => {
      const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
      expect(found, `${kind}/${name}`).toBeDefined();
      return found;
    };
    const deployments = (): Any[] => objects.filter((o) => o.kind === "Deployment");
    const containers = (): { what: string; c: Any }[] =>
      deployments().flatMap((d) => [...(d.spec.template.spec.initContainers ?? []), ...d.spec.template.spec.containers].map((c: Any) => ({ what: `${d.metadata.name}/${c.name}`, c })));

    beforeAll(() => {
      objects = render(dir);
    });

    it("validates every object against the Kubernetes OpenAPI schemas (or GKE's, or a shape check for Managed Prometheus's kinds)", () => {
      expect(objects.length).toBeGreaterThan(0);
      expect(objects.flatMap(schemaProblems)).toEqual([]);
    });

    if (flavour === "crds") {
      it("is exactly the generated CRDs, listed by the generated kustomization", async () => {
        expect(objects.map((o) => o.metadata.name)).toEqual(reclaimCrds().map((c) => c.metadata.name));
        for (const crd of reclaimCrds()) expect(find("CustomResourceDefinition", crd.metadata.name)).toEqual(JSON.parse(JSON.stringify(crd)));
        // On failure: npm run build && bin/reclaim manifests crds --out manifests/crds
        expect(await readFile(`${ROOT}${CRDS_DIR}/kustomization.yaml`, "utf8")).toBe(crdsKustomization());
      });
      return;
    }

    it("runs no `latest` or untagged image; Reclaim's is the package version", async () => {
      const version = await packageVersion();
      for (const { what, c } of containers()) {
        const image = String(c.image);
        const digest = /@sha256:[0-9a-f]{64}$/.test(image);
        // The tag is after the last path segment's colon (a registry's port is in the first segment).
        const tag = /:([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$/.exec(image.replace(/@sha256:[0-9a-f]{64}$/, "").split("/").at(-1)!)?.[1];
        expect(digest || tag !== undefined, `${what}: ${image} is tagged or pinned by digest`).toBe(true);
        expect(tag, `${what}: ${image}`).not.toBe("latest");
        if (!what.startsWith("frontend/")) expect(image.endsWith(`/reclaim:${version}`) || image === `reclaim:${version}`, `${what}: ${image}`).toBe(true);
      }
      // The pin lives in the kustomization (`images:`), so a release changes one line per folder.
      const kustomization: Any = parseYaml(await readFile(`${ROOT}${dir}/kustomization.yaml`, "utf8"));
      expect(kustomization.images).toEqual([expect.objectContaining({ name: "reclaim", newTag: version })]);
    });

    it("has a PodDisruptionBudget for each Deployment, and for nothing else", () => {
      const budgets = objects.filter((o): o is Any => o.kind === "PodDisruptionBudget");
      for (const d of deployments()) {
        const covering = budgets.filter((b) => matches(b.spec.selector.matchLabels, d.spec.template.metadata.labels));
        expect(covering.map((b) => b.metadata.name), d.metadata.name).toEqual([d.metadata.name]);
        const [budget] = covering;
        // At least one pod may be evicted (else a drain blocks), and not all at once.
        expect(budget.spec.minAvailable, d.metadata.name).toBeUndefined();
        expect(budget.spec.maxUnavailable).toBeGreaterThanOrEqual(1);
        expect(budget.spec.maxUnavailable).toBeLessThan(d.spec.replicas);
        expect(budget.spec.unhealthyPodEvictionPolicy).toBe("AlwaysAllow");
      }
      expect(budgets).toHaveLength(deployments().length);
    });

    it("requests and limits ephemeral storage in every container, above the emptyDirs it mounts", () => {
      const quantity = (q: string): number => Number(/^(\d+)Mi$/.exec(q)?.[1] ?? Number.NaN);
      for (const d of deployments()) {
        const pod = d.spec.template.spec;
        for (const c of pod.containers) {
          const what = `${d.metadata.name}/${c.name}`;
          const request = quantity(c.resources.requests["ephemeral-storage"]);
          const limit = quantity(c.resources.limits["ephemeral-storage"]);
          expect(request, `${what} requests ephemeral-storage (in Mi)`).toBeGreaterThan(0);
          expect(limit, what).toBeGreaterThanOrEqual(request);
          for (const m of c.volumeMounts ?? []) {
            const sizeLimit = pod.volumes.find((v: Any) => v.name === m.name)?.emptyDir?.sizeLimit;
            if (sizeLimit !== undefined) expect(limit, `${what}: the ${m.name} emptyDir fits the limit`).toBeGreaterThan(quantity(sizeLimit));
          }
        }
      }
    });

    it("gives the factory time to drain: preStop + drain + grace end within terminationGracePeriodSeconds (defaults from src/factory/config.ts)", () => {
      const pod = find("Deployment", "chat-factory").spec.template.spec;
      const [c] = pod.containers;
      const defaults = FactoryConfig.parse({});
      const drainMs = durationMs(argValue(c.args, "--drain") ?? `${defaults.drainMs}ms`);
      const graceMs = durationMs(argValue(c.args, "--shutdown-grace") ?? `${defaults.shutdownGraceMs}ms`);
      const preStopMs = c.lifecycle.preStop.sleep.seconds * 1000;
      expect(preStopMs, "a preStop sleep while the load balancer stops sending").toBeGreaterThanOrEqual(3000);
      expect(drainMs).toBeGreaterThan(0);
      // The last close frame goes out by preStop + drain; the last socket is destroyed `grace` later.
      const shutdownMs = preStopMs + drainMs + graceMs;
      const periodMs = pod.terminationGracePeriodSeconds * 1000;
      // And at least 5 s for the control server to close and the last log lines to be written before SIGKILL.
      expect(periodMs - shutdownMs, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds}s vs ${shutdownMs} ms of shutdown`).toBeGreaterThanOrEqual(5000);
      // A rollout never drops below the replica count while pods drain.
      expect(find("Deployment", "chat-factory").spec.strategy.rollingUpdate).toEqual({ maxSurge: 1, maxUnavailable: 0 });
      if (flavour === "staging") {
        // The load balancer keeps a leaving pod's connections at least as long as the factory takes to close them.
        const draining = find("BackendConfig", "chat-factory").spec.connectionDraining.drainingTimeoutSec * 1000;
        expect(draining).toBeGreaterThanOrEqual(shutdownMs);
        expect(draining).toBeLessThanOrEqual(periodMs);
      }
    });

    it("spreads the factory over zones and nodes", () => {
      const d = find("Deployment", "chat-factory");
      const constraints: Any[] = d.spec.template.spec.topologySpreadConstraints;
      expect(constraints.map((t) => t.topologyKey).sort()).toEqual(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
      for (const t of constraints) {
        expect(t.maxSkew).toBe(1);
        expect(matches(t.labelSelector.matchLabels, d.spec.template.metadata.labels), t.topologyKey).toBe(true);
        expect(matches(t.labelSelector.matchLabels, find("Deployment", "reclaim-operator").spec.template.metadata.labels)).toBe(false);
      }
    });

    it("limits the Lease rule to the operator's Lease (create, which resourceNames cannot limit, apart)", () => {
      // The name the operator uses: --lease-name's default (the Deployment does not set it).
      const leaseName: unknown = operatorCommand().options.find((o) => o.long === "--lease-name")?.defaultValue;
      expect(leaseName, "--lease-name's default").toEqual(expect.any(String));
      expect(argValue(find("Deployment", "reclaim-operator").spec.template.spec.containers[0].args, "--lease-name")).toBeUndefined();
      const leaseRules = (find("Role", "reclaim-operator").rules as Any[]).filter((r) => r.resources.includes("leases"));
      expect(leaseRules).toEqual([
        { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: [leaseName], verbs: ["get", "update"] },
        { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
      ]);
    });

    it("lets through the network exactly what each part needs (default deny, then per part)", () => {
      const policies = objects.filter((o) => o.kind === "NetworkPolicy");
      const deny = find("NetworkPolicy", "default-deny");
      expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ["Ingress", "Egress"] });
      const labels = (name: string): Record<string, string> => find("Deployment", name).spec.template.metadata.labels;
      const factory: Peer = { namespace: NAMESPACE, labels: labels("chat-factory") };
      const operator: Peer = { namespace: NAMESPACE, labels: labels("reclaim-operator") };
      const frontend: Peer = { namespace: NAMESPACE, labels: { "app.kubernetes.io/name": "frontend" } };
      const stranger: Peer = { namespace: NAMESPACE, labels: { "app.kubernetes.io/name": "debug-shell" } };
      const otherNamespace: Peer = { namespace: "default", labels: { "app.kubernetes.io/name": "reclaim-operator" } };
      const collector: Peer = { namespace: "gmp-system", labels: { "app.kubernetes.io/name": "collector" } };
      const kubeDns: Peer = { namespace: "kube-system", labels: { "k8s-app": "kube-dns" } };
      const internet: Peer = { ip: "203.0.113.7" };
      const healthCheck: Peer = { ip: "35.191.7.9" };
      const apiServer: Peer = { ip: "172.16.0.2" };
      const metadata: Peer = { ip: "169.254.169.254" };
      const gkeMetadata: Peer = { ip: "169.254.169.252" };
      const staging = flavour === "staging";
      const cases: [string, Peer, Peer, number, string, boolean][] = [
        // The factory: chat from anywhere; control from the operator only; metrics from Prometheus (and the load balancer's health checks).
        ["internet → factory ws", internet, factory, 8080, "TCP", true],
        ["operator → factory control", operator, factory, 8081, "TCP", true],
        ["internet → factory control", internet, factory, 8081, "TCP", false],
        ["collector → factory control", collector, factory, 8081, "TCP", false],
        ["frontend → factory control", frontend, factory, 8081, "TCP", false],
        ["another pod here → factory control", stranger, factory, 8081, "TCP", false],
        ["an operator-labelled pod elsewhere → factory control", otherNamespace, factory, 8081, "TCP", false],
        ["health check → factory control", healthCheck, factory, 8081, "TCP", false],
        ["collector → factory metrics", collector, factory, 9465, "TCP", staging],
        ["health check → factory metrics", healthCheck, factory, 9465, "TCP", staging],
        ["internet → factory metrics", internet, factory, 9465, "TCP", false],
        ["factory → DNS", factory, kubeDns, 53, "UDP", false],
        ["factory → internet", factory, internet, 443, "TCP", false],
        // The operator: its metrics and web view only to Prometheus; out to DNS, the API server, the factory's control port.
        ["collector → operator metrics", collector, operator, 9464, "TCP", staging],
        ["internet → operator metrics", internet, operator, 9464, "TCP", false],
        ["factory → operator metrics", factory, operator, 9464, "TCP", false],
        ["another pod here → operator metrics", stranger, operator, 9464, "TCP", false],
        ["operator → DNS (UDP)", operator, kubeDns, 53, "UDP", true],
        ["operator → DNS (TCP)", operator, kubeDns, 53, "TCP", true],
        ["operator → API server", operator, apiServer, 443, "TCP", true],
        ["operator → API server (6443)", operator, apiServer, 6443, "TCP", true],
        ["operator → factory ws", operator, factory, 8080, "TCP", false],
        ["operator → internet (80)", operator, internet, 80, "TCP", false],
        ["operator → metadata server", operator, metadata, 80, "TCP", staging],
        ["operator → GKE metadata server", operator, gkeMetadata, 988, "TCP", staging],
        ["operator → frontend", operator, frontend, 9090, "TCP", staging],
        // Anything else in the namespace: nothing in, nothing out.
        ["internet → another pod here", internet, stranger, 8080, "TCP", false],
        ["another pod here → DNS", stranger, kubeDns, 53, "UDP", false],
        ["another pod here → internet", stranger, internet, 443, "TCP", false],
      ];
      if (staging) {
        cases.push(
          ["factory → frontend", factory, frontend, 9090, "TCP", false],
          ["internet → frontend", internet, frontend, 9090, "TCP", false],
          ["frontend → DNS", frontend, kubeDns, 53, "UDP", true],
          ["frontend → metadata server", frontend, metadata, 80, "TCP", true],
          ["frontend → GKE metadata server", frontend, gkeMetadata, 988, "TCP", true],
          ["frontend → Google APIs", frontend, internet, 443, "TCP", true],
          ["frontend → factory control", frontend, factory, 8081, "TCP", false],
        );
      }
      const got = cases.map(([name, from, to, port, protocol]) => `${name}: ${reaches(policies, from, to, port, protocol)}`);
      expect(got).toEqual(cases.map(([name, , , , , want]) => `${name}: ${want}`));
    });

    if (flavour === "base") return;

    it("puts the WebSockets behind a GKE Ingress whose BackendConfig outlasts them (timeout, draining, health check)", () => {
      const service = find("Service", "chat-factory");
      expect(JSON.parse(service.metadata.annotations["cloud.google.com/backend-config"])).toEqual({ default: "chat-factory" });
      expect(JSON.parse(service.metadata.annotations["cloud.google.com/neg"])).toEqual({ ingress: true });
      const config = find("BackendConfig", "chat-factory");
      expect(config.apiVersion).toBe("cloud.google.com/v1");
      // Google's default is 30 s: a WebSocket would be cut every 30 s.
      expect(config.spec.timeoutSec).toBeGreaterThanOrEqual(3600);
      // The health check asks the factory's readiness on its metrics port, which the NetworkPolicy opens to the health checkers.
      const ports = find("Deployment", "chat-factory").spec.template.spec.containers[0].ports as Any[];
      expect(config.spec.healthCheck).toMatchObject({ type: "HTTP", requestPath: "/readyz", port: ports.find((p) => p.name === "metrics").containerPort });
      const ingress = find("Ingress", "chat-factory");
      expect(ingress.metadata.annotations["kubernetes.io/ingress.class"]).toBe("gce");
      expect(ingress.spec.defaultBackend.service).toEqual({ name: "chat-factory", port: { name: "ws" } });
    });

    it("runs Managed Prometheus's query frontend beside the operator, with its own Workload Identity, and points --prometheus at it", () => {
      const d = find("Deployment", "frontend");
      const pod = d.spec.template.spec;
      const [c] = pod.containers;
      expect(c.image).toMatch(/^gke\.gcr\.io\/prometheus-engine\/frontend:v\d+\.\d+\.\d+-gke\.\d+$/);
      expect(c.args).toEqual(["--web.listen-address=:9090", "--query.project-id=PROJECT_ID"]);
      const sa = find("ServiceAccount", pod.serviceAccountName);
      expect(sa.metadata.annotations["iam.gke.io/gcp-service-account"]).toBe("reclaim-frontend@PROJECT_ID.iam.gserviceaccount.com");
      expect(find("ServiceAccount", "reclaim-operator").metadata.annotations["iam.gke.io/gcp-service-account"]).not.toBe(sa.metadata.annotations["iam.gke.io/gcp-service-account"]);
      // Nothing grants the frontend's ServiceAccount a Role.
      for (const b of objects.filter((o): o is Any => o.kind === "RoleBinding")) expect(b.subjects.map((s: Any) => s.name)).not.toContain(sa.metadata.name);
      const service = find("Service", "frontend");
      expect(matches(service.spec.selector, d.spec.template.metadata.labels)).toBe(true);
      const port = service.spec.ports[0];
      expect(c.ports.find((p: Any) => p.name === port.targetPort).containerPort).toBe(9090);
      const operatorArgs: string[] = find("Deployment", "reclaim-operator").spec.template.spec.containers[0].args;
      expect(argValue(operatorArgs, "--prometheus")).toBe(`http://${service.metadata.name}.${NAMESPACE}.svc:${port.port}`);
    });
  });
}

describe("the schema checks themselves", () => {
  const deployment = (): K8sObject => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "x", namespace: NAMESPACE },
    spec: { selector: { matchLabels: { a: "b" } }, template: { metadata: { labels: { a: "b" } }, spec: { containers: [{ name: "c", image: "i:1", ports: [{ containerPort: 8080 }] }] } } },
  });

  it("passes a valid object and finds a wrong type, a misspelt field, a bad BackendConfig, a PodMonitoring without endpoints, and an unknown kind", () => {
    expect(schemaProblems(deployment())).toEqual([]);
    const wrongType = deployment();
    wrongType.spec.template.spec.containers[0].ports[0].containerPort = "8080";
    expect(schemaProblems(wrongType).join("\n")).toMatch(/containerPort must be integer/);
    const misspelt = deployment();
    misspelt.spec.template.spec.containers[0].startupprobe = { httpGet: { path: "/healthz", port: 8080 } };
    expect(schemaProblems(misspelt)).toEqual(["Deployment/x.spec.template.spec.containers[0].startupprobe: not a field of V1Container"]);
    const backend: K8sObject = { apiVersion: "cloud.google.com/v1", kind: "BackendConfig", metadata: { name: "b" }, spec: { timeoutSec: "1h" } };
    expect(schemaProblems(backend).join("\n")).toMatch(/timeoutSec must be integer/);
    const monitoring: K8sObject = { apiVersion: "monitoring.googleapis.com/v1", kind: "PodMonitoring", metadata: { name: "m" }, spec: { selector: { matchLabels: {} } } };
    expect(schemaProblems(monitoring)).toEqual(["PodMonitoring/m: spec.endpoints: a non-empty list"]);
    expect(schemaProblems({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } })[0]).toMatch(/no schema for example.com\/v1 Widget/);
  });

  it("evaluates NetworkPolicy peers and ports as a CNI does", () => {
    const policy = (spec: Any): Any => ({ spec: { podSelector: { matchLabels: { app: "a" } }, ...spec } });
    const a: Peer = { namespace: NAMESPACE, labels: { app: "a" } };
    const b: Peer = { namespace: NAMESPACE, labels: { app: "b" } };
    // Not selected by any policy: open.
    expect(reaches([], b, a, 80)).toBe(true);
    const onlyB = policy({ policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { app: "b" } } }], ports: [{ port: 80, protocol: "TCP" }] }] });
    expect(reaches([onlyB], b, a, 80)).toBe(true);
    expect(reaches([onlyB], b, a, 81)).toBe(false);
    expect(reaches([onlyB], b, a, 80, "UDP")).toBe(false);
    expect(reaches([onlyB], { namespace: "other", labels: { app: "b" } }, a, 80)).toBe(false);
    const cidr = policy({ policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } }] }] });
    expect(reaches([cidr], a, { ip: "10.2.3.4" }, 443)).toBe(true);
    expect(reaches([cidr], a, { ip: "10.1.3.4" }, 443)).toBe(false);
    expect(reaches([cidr], a, { ip: "11.0.0.1" }, 443)).toBe(false);
  });
});
