/**
 * `--target pod`: act on the pod that logged the entry. The pod's name comes
 * from the entry (`resource.labels.pod_name`, or the factory's own `pod`
 * field, which it writes from POD_NAME); its IP from the API (or a URL from a
 * DNS template); the control API is called there. An entry whose pod no longer
 * exists has no target: it is recorded, not acted on.
 *
 * Every API call here has a deadline (`callTimeoutMs`), and every wait runs
 * on the injected timers.
 */
import * as k8s from "@kubernetes/client-node";
import { systemTimers, type Timers } from "../../contract/clock.js";
import { ControlClient } from "../act/control-client.js";
import type { RestartOutcome, Target, TargetQuery, TargetResolver } from "../act/target.js";
import { KubeCallError, statusOf, withDeadline } from "./client.js";

/** Pod and namespace names are DNS labels/subdomains: checked before they go into a URL or an API path. */
const DNS_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * How much earlier than the deletion (by the API server's clock) a
 * replacement's `creationTimestamp` may read: both it and the HTTP `Date`
 * header have whole seconds, and a ReplicaSet can create the replacement
 * before the server has written the delete's answer.
 */
const CLOCK_GRANULARITY_MS = 1000;

/** Where pods are and how to reach their control API, and the limits of restarts and of the per-pod client cache. */
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
  /** Polling, the wait for a replacement, call deadlines and client ages (default `systemTimers`). */
  timers?: Timers;
  /** The deadline of each Kubernetes API call (default 10 000 ms). */
  callTimeoutMs?: number;
  /** At most this many per-pod control clients are kept; the least recently used go first (default 1000). */
  maxClients?: number;
  /** A per-pod control client not used for this long is dropped (default 3 600 000 ms: an hour). */
  clientIdleMs?: number;
}

/** A `TargetQuery` that may also carry the signal of whoever waits for the answer (e.g. the leadership term). */
export interface PodTargetQuery extends TargetQuery {
  /** Aborting it abandons the pod lookup. */
  signal?: AbortSignal;
}

function isReady(pod: k8s.V1Pod): boolean {
  return pod.status?.phase === "Running" && (pod.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Milliseconds of an HTTP `Date` header, or null when absent or unreadable. */
function httpDate(headers: Record<string, string> | undefined): number | null {
  const text = headers?.date;
  if (text === undefined) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

/** Resolves log entries' pods to control API clients, and restarts pods (see the module comment). */
export class PodTargetResolver implements TargetResolver {
  /** Per control URL, in order of last use (oldest first): a Map keeps insertion order, and a use re-inserts. */
  private readonly clients = new Map<string, { control: ControlClient; usedAt: number }>();
  private readonly timers: Timers;
  private readonly callMs: number;
  private readonly maxClients: number;
  private readonly clientIdleMs: number;

  constructor(
    private readonly core: k8s.CoreV1Api,
    private readonly options: PodTargetOptions,
  ) {
    this.timers = options.timers ?? systemTimers;
    this.callMs = options.callTimeoutMs ?? 10_000;
    this.maxClients = options.maxClients ?? 1000;
    this.clientIdleMs = options.clientIdleMs ?? 3_600_000;
    if (!(this.callMs > 0)) throw new TypeError(`callTimeoutMs must be positive (got ${this.callMs})`);
    if (!(Number.isInteger(this.maxClients) && this.maxClients >= 1)) throw new TypeError(`maxClients must be a positive integer (got ${this.maxClients})`);
    if (!(this.clientIdleMs > 0)) throw new TypeError(`clientIdleMs must be positive (got ${this.clientIdleMs})`);
  }

  /** How many per-pod control clients are kept now (at most `maxClients`). */
  get clientCount(): number {
    return this.clients.size;
  }

  async resolve(query: PodTargetQuery): Promise<Target | null> {
    const namespace = query.namespace ?? this.options.namespace;
    const name = query.pod;
    if (name === null || !DNS_NAME.test(name) || !DNS_NAME.test(namespace)) return null;
    let pod: k8s.V1Pod;
    try {
      pod = await withDeadline((o) => this.core.readNamespacedPod({ name, namespace }, o), {
        timers: this.timers,
        ms: this.callMs,
        ...(query.signal === undefined ? {} : { signal: query.signal }),
        what: `reading pod ${namespace}/${name}`,
      });
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
    return { control: this.clientFor(url), pod: name, namespace, restart: (o) => this.restart(pod, namespace, o) };
  }

  /**
   * The client for a URL, kept for reuse. Pod IPs come and go, so the cache
   * is bounded: at most `maxClients` (least recently used dropped first),
   * and none unused for `clientIdleMs`. A client is stateless, so one
   * dropped while a target still holds it keeps working.
   */
  private clientFor(url: string): ControlClient {
    const now = this.timers.now();
    const found = this.clients.get(url);
    if (found !== undefined) this.clients.delete(url);
    const control = found?.control ?? new ControlClient(url, this.options.token, this.timers);
    this.clients.set(url, { control, usedAt: now });
    for (const [key, entry] of this.clients) {
      if (this.clients.size <= this.maxClients && now - entry.usedAt < this.clientIdleMs) break; // the rest were used later
      this.clients.delete(key);
    }
    return control;
  }

  private call<T>(what: string, ms: number, signal: AbortSignal | undefined, call: (options: k8s.ConfigurationOptions) => Promise<T>): Promise<T> {
    return withDeadline(call, { timers: this.timers, ms, ...(signal === undefined ? {} : { signal }), what });
  }

  /**
   * Deletes the pod, then waits for its replacement: a pod that did not
   * exist before the deletion (its uid was not listed just before it),
   * created at or after the deletion by the API server's clock, of the same
   * controller (or, without one, with the same labels but
   * `pod-template-hash`), not being deleted, and Ready. An old sibling that
   * was Ready all along is not a replacement. Gives up after `waitReadyMs`
   * or when `signal` aborts, and says why.
   */
  private async restart(pod: k8s.V1Pod, namespace: string, options: { waitReadyMs: number; signal?: AbortSignal }): Promise<RestartOutcome> {
    const name = pod.metadata?.name ?? "";
    const uid = pod.metadata?.uid;
    const where = `pod ${namespace}/${name}`;
    const { signal } = options;
    const stopped = (): boolean => signal?.aborted === true;
    const notDeleted = (detail: string): RestartOutcome => ({ deleted: false, replacement: null, detail });
    if (stopped()) return notDeleted(`did not delete ${where}: the rung was stopped first`);

    const owner = pod.metadata?.ownerReferences?.find((o) => o.controller === true)?.uid;
    const labels = Object.entries(pod.metadata?.labels ?? {}).filter(([k]) => k !== "pod-template-hash");
    if (owner === undefined && labels.length === 0) {
      return notDeleted(`did not delete ${where}: it has no controller and no labels, so no replacement could be told from other pods`);
    }
    const selector = labels.map(([k, v]) => `${k}=${v}`).join(",");
    const list = (ms: number): Promise<k8s.V1PodList> =>
      this.call(`listing the pods like ${where}`, ms, signal, (o) =>
        this.core.listNamespacedPod({ namespace, ...(selector === "" ? {} : { labelSelector: selector }) }, o),
      );

    // The surest test of "new": the uids that existed before the deletion.
    const before = new Set<string>(uid === undefined ? [] : [uid]);
    try {
      for (const p of (await list(this.callMs)).items) if (p.metadata?.uid !== undefined) before.add(p.metadata.uid);
    } catch (err) {
      return notDeleted(`did not delete ${where}: could not list its siblings first, so its replacement could not be told from them: ${message(err)}`);
    }

    // The API server's clock at the deletion; null when it did not say (then the uids alone decide).
    let deletedAt: number | null;
    let gone = "";
    try {
      const answer = await this.call(`deleting ${where}`, this.callMs, signal, (o) =>
        this.core.deleteNamespacedPodWithHttpInfo({ name, namespace, ...(uid === undefined ? {} : { body: { preconditions: { uid } } }) }, o),
      );
      deletedAt = httpDate(answer.headers);
    } catch (err) {
      const status = statusOf(err);
      // 404: already gone; 409 on the uid precondition: the name now belongs to another pod, so ours is gone.
      if (status !== 404 && status !== 409) {
        if (err instanceof KubeCallError) {
          return notDeleted(`the delete of ${where} did not complete (${err.message}): it may or may not have happened; not waiting for a replacement`);
        }
        return notDeleted(`could not delete ${where}: ${message(err)}`);
      }
      deletedAt = err instanceof k8s.ApiException ? httpDate(err.headers) : null;
      gone = " (it was already gone)";
    }

    const isReplacement = (p: k8s.V1Pod): boolean => {
      const meta = p.metadata;
      if (meta?.uid === undefined || before.has(meta.uid) || meta.deletionTimestamp !== undefined) return false;
      if (owner !== undefined && meta.ownerReferences?.some((o) => o.controller === true && o.uid === owner) !== true) return false;
      if (deletedAt !== null) {
        const created = meta.creationTimestamp === undefined ? NaN : new Date(meta.creationTimestamp).getTime();
        if (!(created >= deletedAt - CLOCK_GRANULARITY_MS)) return false;
      }
      return true;
    };
    const end = this.timers.now() + options.waitReadyMs;
    const pollMs = this.options.pollMs ?? 500;
    let waiting: string[] = [];
    let lastError: unknown = null;
    for (;;) {
      if (stopped()) {
        return { deleted: true, replacement: null, detail: `pod ${name} deleted${gone}; stopped waiting for its replacement: the rung was stopped` };
      }
      const left = end - this.timers.now();
      if (left <= 0) break;
      try {
        const replacements = (await list(Math.min(this.callMs, left))).items.filter(isReplacement);
        for (const p of replacements.filter(isReady)) {
          const target = this.targetFor(p, namespace);
          if (target !== null) return { deleted: true, replacement: target, detail: `pod ${name} deleted${gone}; its replacement ${target.pod} is Ready` };
        }
        waiting = replacements.map((p) => p.metadata?.name ?? "?");
        lastError = null;
      } catch (err) {
        lastError = err;
      }
      const pause = Math.min(pollMs, end - this.timers.now());
      if (pause > 0) await this.timers.sleep(pause, signal);
    }
    const notReady = waiting.length === 0 ? "" : `; new but not Ready (or without an address): ${waiting.join(", ")}`;
    const failed = lastError === null ? "" : `; the last look failed: ${message(lastError)}`;
    return {
      deleted: true,
      replacement: null,
      detail: `pod ${name} deleted${gone}, but no new Ready pod of the same ${owner === undefined ? "labels" : "controller"} within ${options.waitReadyMs} ms${notReady}${failed}`,
    };
  }
}
