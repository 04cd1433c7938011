/**
 * `--target pod`: act on the pod that logged the entry. The pod's name comes
 * from the entry (`resource.labels.pod_name`, or the factory's own `pod`
 * field, which it writes from POD_NAME); its IP from the API (or a URL from a
 * DNS template); the control API is called there. An entry whose pod no longer
 * exists has no target: it is recorded, not acted on.
 */
import type * as k8s from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { ControlClient } from "../act/control-client.js";
import type { RestartOutcome, Target, TargetQuery, TargetResolver } from "../act/target.js";
import { statusOf } from "./client.js";

/** Pod and namespace names are DNS labels/subdomains: checked before they go into a URL or an API path. */
const DNS_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export interface PodTargetOptions {
  /** Namespace when the entry names none (default: the operator's). */
  namespace: string;
  /** The factory's control port (default 8081). */
  controlPort?: number;
  /** `RECLAIM_CONTROL_TOKEN`. */
  token: string;
  /** Instead of the pod IP: a URL template with `{pod}` and `{namespace}`, e.g. `http://{pod}.chat-factory.{namespace}.svc:8081`. */
  urlTemplate?: string;
  /** How often to look for a replacement pod after a restart (default 500 ms). */
  pollMs?: number;
}

function isReady(pod: k8s.V1Pod): boolean {
  return pod.status?.phase === "Running" && (pod.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

export class PodTargetResolver implements TargetResolver {
  private readonly clients = new Map<string, ControlClient>();

  constructor(
    private readonly core: k8s.CoreV1Api,
    private readonly options: PodTargetOptions,
  ) {}

  async resolve(query: TargetQuery): Promise<Target | null> {
    const namespace = query.namespace ?? this.options.namespace;
    if (query.pod === null || !DNS_NAME.test(query.pod) || !DNS_NAME.test(namespace)) return null;
    let pod: k8s.V1Pod;
    try {
      pod = await this.core.readNamespacedPod({ name: query.pod, namespace });
    } catch (err) {
      if (statusOf(err) === 404) return null; // the pod is gone: nothing to act on
      throw err;
    }
    return this.targetFor(pod, namespace);
  }

  private targetFor(pod: k8s.V1Pod, namespace: string): Target | null {
    const name = pod.metadata?.name;
    if (name === undefined) return null;
    let url: string;
    if (this.options.urlTemplate !== undefined) {
      url = this.options.urlTemplate.replaceAll("{pod}", name).replaceAll("{namespace}", namespace);
    } else {
      const ip = pod.status?.podIP;
      if (ip === undefined || ip === "") return null;
      url = `http://${ip.includes(":") ? `[${ip}]` : ip}:${this.options.controlPort ?? 8081}`;
    }
    let control = this.clients.get(url);
    if (control === undefined) {
      control = new ControlClient(url, this.options.token);
      this.clients.set(url, control);
    }
    return { control, pod: name, namespace, restart: (o) => this.restart(pod, namespace, o) };
  }

  /** Deletes the pod, then waits for a Ready pod of the same owner (or the same labels) with another name. */
  private async restart(pod: k8s.V1Pod, namespace: string, options: { waitReadyMs: number; signal?: AbortSignal }): Promise<RestartOutcome> {
    const name = pod.metadata!.name!;
    let deleted = false;
    try {
      await this.core.deleteNamespacedPod({ name, namespace });
      deleted = true;
    } catch (err) {
      if (statusOf(err) !== 404) return { deleted: false, replacement: null, detail: `could not delete pod ${namespace}/${name}: ${String(err)}` };
      deleted = true; // already gone
    }
    const owner = pod.metadata?.ownerReferences?.find((o) => o.controller === true)?.uid;
    const labels = Object.entries(pod.metadata?.labels ?? {}).filter(([k]) => k !== "pod-template-hash");
    const selector = labels.map(([k, v]) => `${k}=${v}`).join(",");
    const deadline = Date.now() + options.waitReadyMs;
    while (Date.now() < deadline && options.signal?.aborted !== true) {
      const list = await this.core.listNamespacedPod({ namespace, ...(selector === "" ? {} : { labelSelector: selector }) });
      const replacement = list.items.find(
        (p) =>
          p.metadata?.name !== name &&
          p.metadata?.deletionTimestamp === undefined &&
          (owner === undefined || p.metadata?.ownerReferences?.some((o) => o.uid === owner) === true) &&
          isReady(p),
      );
      if (replacement !== undefined) {
        const target = this.targetFor(replacement, namespace);
        if (target !== null) return { deleted, replacement: target, detail: `pod ${name} deleted; ${target.pod} is Ready` };
      }
      await sleep(this.options.pollMs ?? 500, undefined, { signal: options.signal }).catch(() => undefined);
    }
    return { deleted, replacement: null, detail: `pod ${name} deleted, but no Ready replacement within ${options.waitReadyMs} ms` };
  }
}
