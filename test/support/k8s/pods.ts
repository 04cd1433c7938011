/**
 * Pods as a test seeds them: a name, labels, a phase, readiness and an IP,
 * turned into the Pod object a kubelet would have reported.
 */
import { randomUUID } from "node:crypto";
import type { KubeObject, ObjectMeta } from "./store.js";

/** The pod phases. */
export type PodPhase = "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown";

/** The parts of a Pod the server and tests read. */
export interface PodObject extends KubeObject {
  apiVersion: "v1";
  kind: "Pod";
  metadata: ObjectMeta & { namespace: string };
  spec: { containers: { name: string; image: string }[]; nodeName?: string; [key: string]: unknown };
  status: {
    phase: PodPhase;
    podIP?: string;
    podIPs?: { ip: string }[];
    hostIP?: string;
    startTime?: string;
    conditions?: { type: string; status: "True" | "False"; lastTransitionTime: string }[];
    containerStatuses?: {
      name: string;
      ready: boolean;
      started: boolean;
      restartCount: number;
      image: string;
      state: Record<string, unknown>;
    }[];
    [key: string]: unknown;
  };
}

/** A pod to seed. */
export interface PodSeed {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Default "Running". */
  phase?: PodPhase;
  /** The Ready condition; default true when Running. */
  ready?: boolean;
  /** Default: an address the server allocates when the pod is Running. */
  podIP?: string;
  /** Container names; default ["app"]. */
  containers?: string[];
  ownerReferences?: ObjectMeta["ownerReferences"];
  nodeName?: string;
  /**
   * When the pod was created, RFC 3339 in whole seconds (`2026-11-26T11:00:00Z`);
   * default: now, set by the server as it stores the pod. For a pod that
   * existed long before the test began.
   */
  creationTimestamp?: string;
}

/** What a test may change on a seeded pod. */
export interface PodChanges {
  phase?: PodPhase;
  ready?: boolean;
  podIP?: string;
  /** Replaces all labels. */
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A Pod object for a seed: a fresh uid; the server sets creationTimestamp (unless the seed gives one) and resourceVersion. */
export function buildPod(seed: PodSeed, allocateIP: () => string): PodObject {
  const metadata: PodObject["metadata"] = {
    name: seed.name,
    namespace: seed.namespace,
    uid: randomUUID(),
    labels: { ...seed.labels },
  };
  if (seed.annotations !== undefined) metadata.annotations = { ...seed.annotations };
  if (seed.ownerReferences !== undefined) metadata.ownerReferences = structuredClone(seed.ownerReferences);
  if (seed.creationTimestamp !== undefined) metadata.creationTimestamp = seed.creationTimestamp;
  const containers = (seed.containers ?? ["app"]).map((name) => ({ name, image: `registry.example/${name}:1` }));
  const pod: PodObject = {
    apiVersion: "v1",
    kind: "Pod",
    metadata,
    spec: { containers, nodeName: seed.nodeName ?? "node-1" },
    status: { phase: "Pending" },
  };
  const changes: PodChanges = { phase: seed.phase ?? "Running" };
  if (seed.ready !== undefined) changes.ready = seed.ready;
  if (seed.podIP !== undefined) changes.podIP = seed.podIP;
  return applyPodChanges(pod, changes, allocateIP);
}

/** The pod with its status rebuilt for new phase, readiness and IP (and new labels). */
export function applyPodChanges(pod: PodObject, changes: PodChanges, allocateIP: () => string): PodObject {
  const next = structuredClone(pod);
  if (changes.labels !== undefined) next.metadata.labels = { ...changes.labels };
  if (changes.annotations !== undefined) next.metadata.annotations = { ...changes.annotations };
  const phase = changes.phase ?? next.status.phase;
  const wasReady = next.status.conditions?.find((c) => c.type === "Ready")?.status === "True";
  const ready = changes.ready ?? (changes.phase !== undefined ? phase === "Running" : wasReady);
  const now = new Date().toISOString();
  next.status.phase = phase;
  const podIP = changes.podIP ?? next.status.podIP ?? (phase === "Running" ? allocateIP() : undefined);
  if (podIP !== undefined && phase !== "Pending") {
    next.status.podIP = podIP;
    next.status.podIPs = [{ ip: podIP }];
    next.status.hostIP = "192.168.0.10";
    next.status.startTime ??= now;
  }
  const condition = (type: string, ok: boolean): { type: string; status: "True" | "False"; lastTransitionTime: string } => {
    const old = pod.status.conditions?.find((c) => c.type === type);
    const status = ok ? "True" : "False";
    return { type, status, lastTransitionTime: old?.status === status ? old.lastTransitionTime : now };
  };
  next.status.conditions = [
    condition("PodScheduled", true),
    condition("Initialized", phase !== "Pending"),
    condition("ContainersReady", ready),
    condition("Ready", ready),
  ];
  next.status.containerStatuses = next.spec.containers.map((c) => ({
    name: c.name,
    image: c.image,
    ready,
    started: phase === "Running",
    restartCount: 0,
    state:
      phase === "Pending"
        ? { waiting: { reason: "ContainerCreating" } }
        : phase === "Running"
          ? { running: { startedAt: next.status.startTime ?? now } }
          : { terminated: { exitCode: phase === "Succeeded" ? 0 : 1, reason: phase === "Succeeded" ? "Completed" : "Error" } },
  }));
  return next;
}

/** True when the object is a pod whose containers have started (logs can be read). */
export function hasStarted(pod: PodObject): boolean {
  return pod.status.phase !== "Pending";
}
