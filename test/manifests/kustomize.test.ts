/**
 * manifests/: both kustomizations render with `kubectl kustomize` (client
 * only, offline), and what they render is what a cluster should get:
 * complete objects, hardened containers with probes and resources, selectors
 * that select, exactly the RBAC the operator's code needs, and operator flags
 * that exist. What a GKE platform review adds (PDBs, pinned images, drain
 * timing, spreading, NetworkPolicy reachability, the load balancer, schemas)
 * is in platform-review.test.ts.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { beforeAll, expect, it } from "vitest";
import { reclaimCrds } from "../../src/operator/k8s/crds.js";
import { runCli } from "../support/cli.js";
import { describeNeeding } from "../support/needs.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NAMESPACE = "reclaim";
const OPERATOR_LABELS = { "app.kubernetes.io/name": "reclaim-operator" };
const FACTORY_LABELS = { "app.kubernetes.io/name": "chat-factory" };
/** The release: the image tag both Deployments run. */
const VERSION = (JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { version: string }).version;
/** The image Reclaim's Deployments run in each flavour (the frontend is Google's). */
const RECLAIM_IMAGE = { base: `reclaim:${VERSION}`, staging: `REGION-docker.pkg.dev/PROJECT_ID/reclaim/reclaim:${VERSION}` } as const;

/**
 * Operator flags that `reclaim operator --help` does not document yet but a
 * change in flight adds. ADDED BY THE KUBERNETES ISSUE: `--leader-elect`,
 * `--target`, `--watch-rules`, `--incidents k8s` and `--source k8s:…` were
 * listed here until the operator's help documented them; it does now, so the
 * list is empty. Add a flag here only with the change that adds it, and remove
 * it when that change lands.
 */
const NOT_YET_DOCUMENTED = new Set<string>([]);

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

// The rendered objects' deeper shapes, read loosely: the assertions check them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

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

const CLUSTER_SCOPED = new Set(["Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"]);

/** `apiGroup/resource[names]: verb` for every permission a Role grants, sorted (`[names]` only where resourceNames limits it). */
function grants(role: Any): string[] {
  const out: string[] = [];
  for (const rule of role.rules as Any[]) {
    const names = rule.resourceNames === undefined ? "" : `[${(rule.resourceNames as string[]).join(",")}]`;
    for (const group of rule.apiGroups) for (const resource of rule.resources) for (const verb of rule.verbs) out.push(`${group || "core"}/${resource}${names}: ${verb}`);
  }
  return out.sort();
}

/**
 * What the operator's code calls, and nothing else (test/operator/k8s/cluster.test.ts runs the operator with the
 * Role and compares what it called). A change here is a change to what the operator may do in a cluster.
 */
const OPERATOR_GRANTS = [
  // Its one Lease (--lease-name's default); `create` cannot be limited by name.
  "coordination.k8s.io/leases[reclaim-operator]: get",
  "coordination.k8s.io/leases: create",
  "coordination.k8s.io/leases[reclaim-operator]: update",
  "events.k8s.io/events: create",
  "reclaim.dev/incidents: get",
  "reclaim.dev/incidents: list",
  "reclaim.dev/incidents: create",
  "reclaim.dev/incidents: patch",
  "reclaim.dev/incidents/status: update",
  "core/pods: get",
  "core/pods: list",
  "core/pods: watch",
  "core/pods/log: get",
  "reclaim.dev/remediationrules: list",
  "reclaim.dev/remediationrules: watch",
  "reclaim.dev/remediationrules/status: update",
  "reclaim.dev/silences: list",
  "reclaim.dev/silences: watch",
].sort();

for (const [dir, flavour] of [
  ["manifests/base", "base"],
  ["manifests/overlays/staging", "staging"],
] as const) {
  describeNeeding(KUBECTL_MISSING, `kubectl kustomize ${dir}`, () => {
    let objects: K8sObject[] = [];
    const find = (kind: string, name: string): Any => {
      const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
      expect(found, `${kind}/${name}`).toBeDefined();
      return found;
    };
    const deployments = (): Any[] => objects.filter((o) => o.kind === "Deployment");
    const podLabels = (deployment: Any): Record<string, string> => deployment.spec.template.metadata.labels;

    beforeAll(() => {
      objects = render(dir);
    });

    it("renders the objects a cluster needs", () => {
      const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
      expect(names).toEqual(expect.arrayContaining([
        "Namespace/reclaim",
        "NetworkPolicy/default-deny",
        "ServiceAccount/reclaim-operator",
        "Role/reclaim-operator",
        "RoleBinding/reclaim-operator",
        "Role/reclaim-oncall",
        "ConfigMap/reclaim-rules",
        "Deployment/reclaim-operator",
        "PodDisruptionBudget/reclaim-operator",
        "NetworkPolicy/reclaim-operator",
        "ServiceAccount/chat-factory",
        "Deployment/chat-factory",
        "PodDisruptionBudget/chat-factory",
        "Service/chat-factory",
        "NetworkPolicy/chat-factory",
      ]));
      expect(new Set(names).size, "no object twice").toBe(names.length);
      expect(objects.filter((o) => o.kind === "Secret"), "no Secret: the installer creates reclaim-secrets").toEqual([]);
    });

    it("gives every object apiVersion, kind, a name, and the namespace where namespaced", () => {
      for (const o of objects) {
        const what = `${o.kind}/${o.metadata?.name}`;
        expect(o.apiVersion, what).toMatch(/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/);
        expect(o.kind, what).toMatch(/^[A-Z][A-Za-z]+$/);
        expect(o.metadata.name, what).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
        if (CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace, what).toBeUndefined();
        else expect(o.metadata.namespace, what).toBe(NAMESPACE);
        expect(o.metadata.labels?.["app.kubernetes.io/part-of"], `${what} is labelled part-of reclaim`).toBe("reclaim");
      }
    });

    it("leaves the CRDs to manifests/crds (installing them needs more rights than the app)", () => {
      expect(objects.filter((o) => o.kind === "CustomResourceDefinition")).toEqual([]);
      expect(reclaimCrds().length).toBeGreaterThan(0);
    });

    it("selects each Deployment's pods with labels its pod template has", () => {
      // Staging adds Managed Prometheus's query frontend.
      expect(deployments().map((d) => d.metadata.name).sort()).toEqual(flavour === "base" ? ["chat-factory", "reclaim-operator"] : ["chat-factory", "frontend", "reclaim-operator"]);
      for (const d of deployments()) {
        const selector = d.spec.selector.matchLabels;
        expect(Object.keys(selector).length, d.metadata.name).toBeGreaterThan(0);
        expect(d.spec.selector.matchExpressions, d.metadata.name).toBeUndefined();
        expect(matches(selector, podLabels(d)), `${d.metadata.name}: ${JSON.stringify(selector)}`).toBe(true);
      }
      // No workload's selector selects another's pods.
      for (const a of deployments()) {
        for (const b of deployments()) if (a !== b) expect(matches(a.spec.selector.matchLabels, podLabels(b)), `${a.metadata.name} selects ${b.metadata.name}`).toBe(false);
      }
    });

    it("hardens every container: image, resources, probes, non-root, read-only, no privilege, no capabilities", () => {
      for (const d of deployments()) {
        const pod = d.spec.template.spec;
        expect(pod.hostNetwork ?? false).toBe(false);
        expect(pod.hostPID ?? false).toBe(false);
        expect(pod.securityContext?.runAsUser, `${d.metadata.name}: pod runAsUser`).not.toBe(0);
        expect([...(pod.initContainers ?? []), ...pod.containers].length).toBeGreaterThan(0);
        // Reclaim's own image (the frontend is Google's: its probes and user are its own).
        const ours = d.metadata.name !== "frontend";
        for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
          const what = `${d.metadata.name}/${c.name}`;
          expect(c.image, what).toMatch(/\S/);
          expect(c.image === RECLAIM_IMAGE[flavour], `${what} runs ${c.image}`).toBe(ours);
          for (const kind of ["requests", "limits"]) {
            expect(c.resources?.[kind]?.cpu, `${what} ${kind}.cpu`).toBeDefined();
            expect(c.resources?.[kind]?.memory, `${what} ${kind}.memory`).toBeDefined();
          }
          const ports = new Map<string | number, number>((c.ports ?? []).flatMap((p: Any) => [[p.name, p.containerPort], [p.containerPort, p.containerPort]]));
          for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
            expect(c[probe]?.httpGet?.path, `${what} ${probe}`).toMatch(ours ? /^\/(healthz|readyz)$/ : /^\/-\/(healthy|ready)$/);
            expect(ports.has(c[probe].httpGet.port), `${what} ${probe} port ${c[probe].httpGet.port} is a container port`).toBe(true);
          }
          expect(c.livenessProbe.httpGet.path).toBe(ours ? "/healthz" : "/-/healthy");
          expect(c.readinessProbe.httpGet.path).toBe(ours ? "/readyz" : "/-/ready");
          // Starting up is "alive", not "ready": the startup probe asks what the liveness probe asks.
          expect(c.startupProbe.httpGet).toEqual(c.livenessProbe.httpGet);
          const sc = { ...pod.securityContext, ...c.securityContext };
          expect(sc.runAsNonRoot, `${what} runAsNonRoot`).toBe(true);
          expect(sc.runAsUser, `${what} runAsUser`).toBe(ours ? 10001 : 1000);
          expect(c.securityContext?.readOnlyRootFilesystem, `${what} readOnlyRootFilesystem`).toBe(true);
          expect(c.securityContext?.allowPrivilegeEscalation, `${what} allowPrivilegeEscalation`).toBe(false);
          expect(c.securityContext?.privileged ?? false, `${what} privileged`).toBe(false);
          expect(c.securityContext?.capabilities?.drop, `${what} drops ALL`).toEqual(["ALL"]);
          expect(c.securityContext?.capabilities?.add, `${what} adds nothing`).toBeUndefined();
          expect(sc.seccompProfile?.type, `${what} seccomp`).toBe("RuntimeDefault");
          // A read-only root needs somewhere to write (the frontend writes nothing).
          if (ours) {
            const tmp = (c.volumeMounts ?? []).find((m: Any) => m.mountPath === "/tmp");
            expect(tmp, `${what} mounts /tmp`).toBeDefined();
            expect(pod.volumes.find((v: Any) => v.name === tmp.name)?.emptyDir, `${what} /tmp is an emptyDir`).toBeDefined();
          }
          // Secrets only by reference.
          for (const env of c.env ?? []) {
            if (/TOKEN|SECRET|PASSWORD|KEY/.test(env.name)) {
              expect(env.value, `${what} ${env.name} has no literal value`).toBeUndefined();
              expect(env.valueFrom?.secretKeyRef?.name, `${what} ${env.name}`).toBe("reclaim-secrets");
            }
          }
        }
      }
    });

    it("runs the operator: 2 replicas, leader election, the rules ConfigMap, the token from the Secret", () => {
      const d = find("Deployment", "reclaim-operator");
      expect(d.spec.replicas).toBe(2);
      expect(matches(OPERATOR_LABELS, podLabels(d))).toBe(true);
      const pod = d.spec.template.spec;
      expect(pod.serviceAccountName).toBe("reclaim-operator");
      const [c] = pod.containers;
      expect(pod.containers).toHaveLength(1);
      expect(c.image).toBe(RECLAIM_IMAGE[flavour]);
      // The base follows the factory pods' logs; staging reads Cloud Logging and Managed Prometheus (through the frontend beside it).
      const sources =
        flavour === "base"
          ? ["--source", "k8s:reclaim/app.kubernetes.io/name=chat-factory"]
          : [
              "--source",
              "gcp:PROJECT_ID",
              "--filter",
              'resource.labels.cluster_name="CLUSTER_NAME" AND resource.labels.namespace_name="reclaim"',
              "--prometheus",
              "http://frontend.reclaim.svc:9090",
            ];
      expect(c.args).toEqual([
        "operator",
        "--leader-elect",
        "--incidents",
        "k8s",
        "--target",
        "pod",
        ...sources,
        "--rules",
        "/etc/reclaim/rules",
        "--watch-rules",
        "--metrics-host",
        "0.0.0.0",
      ]);
      const env = Object.fromEntries((c.env as Any[]).map((e) => [e.name, e.valueFrom ?? e.value]));
      expect(env.POD_NAME).toEqual({ fieldRef: { fieldPath: "metadata.name" } });
      expect(env.POD_NAMESPACE).toEqual({ fieldRef: { fieldPath: "metadata.namespace" } });
      expect(env.RECLAIM_CONTROL_TOKEN).toEqual({ secretKeyRef: { name: "reclaim-secrets", key: "control-token" } });
      // V8's heap is capped well inside the container's memory limit (the flood benchmark runs with this value).
      const heapMiB = Number(/--max-old-space-size=(\d+)/.exec(String(env.NODE_OPTIONS))?.[1]);
      const limit = /^(\d+)Mi$/.exec(String(c.resources.limits.memory));
      expect(limit, "the operator's memory limit, in Mi").not.toBeNull();
      expect(heapMiB).toBeGreaterThanOrEqual(64);
      expect(heapMiB).toBeLessThanOrEqual(Number(limit![1]) * 0.6);
      expect(c.ports).toEqual([{ name: "metrics", containerPort: 9464, protocol: "TCP" }]);
      const rules = (c.volumeMounts as Any[]).find((m) => m.mountPath === "/etc/reclaim/rules");
      expect(rules.readOnly).toBe(true);
      expect(pod.volumes.find((v: Any) => v.name === rules.name).configMap.name).toBe("reclaim-rules");
      find("ConfigMap", "reclaim-rules");
      // The namespace the operator reads is the one the objects are in.
      if (flavour === "base") expect(c.args[c.args.indexOf("--source") + 1]).toBe(`k8s:${NAMESPACE}/app.kubernetes.io/name=chat-factory`);
      else expect(c.args[c.args.indexOf("--filter") + 1]).toContain(`resource.labels.namespace_name="${NAMESPACE}"`);
    });

    it("runs the factory: its three ports, both secrets, probes on the control port", () => {
      const d = find("Deployment", "chat-factory");
      expect(podLabels(d)["app.kubernetes.io/name"]).toBe("chat-factory");
      const pod = d.spec.template.spec;
      expect(pod.automountServiceAccountToken).toBe(false);
      const [c] = pod.containers;
      // /metrics on its own port, so that Prometheus never needs the control port.
      expect(c.args).toEqual(["factory", "--control-host", "0.0.0.0", "--metrics-host", "0.0.0.0", "--metrics-port", "9465"]);
      expect(c.ports).toEqual([
        { name: "ws", containerPort: 8080, protocol: "TCP" },
        { name: "control", containerPort: 8081, protocol: "TCP" },
        { name: "metrics", containerPort: 9465, protocol: "TCP" },
      ]);
      expect(c.livenessProbe.httpGet.port).toBe("control");
      expect(c.readinessProbe.httpGet.port).toBe("control");
      const env = Object.fromEntries((c.env as Any[]).map((e) => [e.name, e.valueFrom ?? e.value]));
      expect(env.POD_NAME).toEqual({ fieldRef: { fieldPath: "metadata.name" } });
      expect(env.RECLAIM_AUTH_SECRET).toEqual({ secretKeyRef: { name: "reclaim-secrets", key: "auth-secret" } });
      expect(env.RECLAIM_CONTROL_TOKEN).toEqual({ secretKeyRef: { name: "reclaim-secrets", key: "control-token" } });
    });

    it("exposes only the WebSocket port through the Service, to the factory pods", () => {
      const service = find("Service", "chat-factory");
      expect(service.spec.type ?? "ClusterIP").toBe("ClusterIP");
      expect(service.spec.ports).toEqual([{ name: "ws", port: 8080, targetPort: "ws", protocol: "TCP" }]);
      expect(service.spec.selector).toEqual(FACTORY_LABELS);
      expect(matches(service.spec.selector, podLabels(find("Deployment", "chat-factory")))).toBe(true);
      // No Service reaches the control port; staging's other Service is the query frontend's.
      const services = objects.filter((o): o is Any => o.kind === "Service");
      expect(services.map((o) => o.metadata.name).sort()).toEqual(flavour === "base" ? ["chat-factory"] : ["chat-factory", "frontend"]);
      for (const other of services) {
        for (const port of other.spec.ports) expect([port.port, port.targetPort], other.metadata.name).not.toContain(8081);
      }
    });

    it("grants the operator exactly what its code calls, in its namespace only", () => {
      expect(grants(find("Role", "reclaim-operator"))).toEqual(OPERATOR_GRANTS);
      const binding = find("RoleBinding", "reclaim-operator");
      expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "reclaim-operator" });
      expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "reclaim-operator", namespace: NAMESPACE }]);
      expect(objects.filter((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding")).toEqual([]);
      // Deleting pods (the restartPod rung) is the overlay's choice, granted on its own.
      const restart = objects.filter((o) => o.kind === "Role" && o.metadata.name === "reclaim-operator-restart-pod");
      if (flavour === "base") {
        expect(restart).toEqual([]);
      } else {
        expect(grants(restart[0])).toEqual(["core/pods: delete"]);
        const b = find("RoleBinding", "reclaim-operator-restart-pod");
        expect(b.roleRef.name).toBe("reclaim-operator-restart-pod");
        expect(b.subjects).toEqual([{ kind: "ServiceAccount", name: "reclaim-operator", namespace: NAMESPACE }]);
      }
      // Nothing grants Secrets or wildcards.
      for (const role of objects.filter((o): o is Any => o.kind === "Role")) {
        for (const rule of role.rules) {
          expect(rule.resources).not.toContain("secrets");
          expect([...rule.resources, ...rule.verbs, ...rule.apiGroups]).not.toContain("*");
        }
      }
    });

    it("passes the operator only flags that `reclaim operator --help` documents, with values it names", async () => {
      const { code, stdout } = await runCli(["operator", "--help"]);
      expect(code).toBe(0);
      const documented = new Set(stdout.match(/--[a-z][a-z-]*/g));
      const args: string[] = find("Deployment", "reclaim-operator").spec.template.spec.containers[0].args;
      expect(args[0]).toBe("operator");
      args.forEach((arg, i) => {
        if (!arg.startsWith("--")) return;
        expect(documented.has(arg) || NOT_YET_DOCUMENTED.has(arg), `${arg} is not documented by reclaim operator --help`).toBe(true);
        // A Kubernetes-mode value (`--incidents k8s`, `--source k8s:NS/SELECTOR`) is one the flag's help names.
        const value = args[i + 1];
        if (value?.startsWith("k8s") === true) {
          const help = stdout.slice(stdout.indexOf(`${arg} `)).split(/\n {2}-/)[0];
          expect(help, `${arg} ${value}`).toContain("k8s");
        }
      });
      // The factory's flags exist today.
      const factoryHelp = await runCli(["factory", "--help"]);
      const factoryFlags = new Set(factoryHelp.stdout.match(/--[a-z][a-z-]*/g));
      for (const arg of find("Deployment", "chat-factory").spec.template.spec.containers[0].args as string[]) {
        if (arg.startsWith("--")) expect(factoryFlags.has(arg), arg).toBe(true);
      }
    });

    it(flavour === "staging" ? "adds Workload Identity, Managed Prometheus scraping, and the pushed image" : "is cloud-neutral: no Workload Identity, no PodMonitoring, the local image", () => {
      const sa = find("ServiceAccount", "reclaim-operator");
      if (flavour === "base") {
        expect(sa.metadata.annotations?.["iam.gke.io/gcp-service-account"]).toBeUndefined();
        expect(objects.filter((o) => o.kind === "PodMonitoring")).toEqual([]);
        for (const d of deployments()) {
          for (const c of d.spec.template.spec.containers) expect(c.image).toBe(RECLAIM_IMAGE.base);
        }
        return;
      }
      expect(sa.metadata.annotations["iam.gke.io/gcp-service-account"]).toBe("reclaim-operator@PROJECT_ID.iam.gserviceaccount.com");
      const monitors = objects.filter((o): o is Any => o.kind === "PodMonitoring");
      expect(monitors.map((m) => m.apiVersion)).toEqual(["monitoring.googleapis.com/v1", "monitoring.googleapis.com/v1"]);
      const scraped = monitors.map((m) => {
        const d = deployments().find((dep) => matches(m.spec.selector.matchLabels, podLabels(dep)));
        expect(d, m.metadata.name).toBeDefined();
        const ports = d.spec.template.spec.containers.flatMap((c: Any) => c.ports);
        return m.spec.endpoints.map((e: Any) => `${d.metadata.name}:${ports.find((p: Any) => p.name === e.port)?.containerPort}${e.path}`);
      });
      // The factory's metrics port, never its control port.
      expect(scraped.flat().sort()).toEqual(["chat-factory:9465/metrics", "reclaim-operator:9464/metrics"]);
      for (const d of deployments()) {
        for (const c of d.spec.template.spec.containers) expect(c.image).not.toBe(RECLAIM_IMAGE.base);
      }
    });
  });
}
