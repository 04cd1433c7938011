/**
 * Loading the Kubernetes client configuration (in a pod, the service
 * account; elsewhere `--kubeconfig`, `KUBECONFIG` or `~/.kube/config`), and
 * the deadline every API call of the operator runs under (`withDeadline`).
 */
import * as k8s from "@kubernetes/client-node";
import { readFileSync, existsSync } from "node:fs";
import { deadline as clockDeadline, type Timers } from "../../contract/clock.js";

/** The namespace the operator runs in: `POD_NAMESPACE`, the service account's, or the kubeconfig context's. */
export function currentNamespace(kc: k8s.KubeConfig): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  const saFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
  if (existsSync(saFile)) return readFileSync(saFile, "utf8").trim();
  const context = kc.getContextObject(kc.getCurrentContext());
  return context?.namespace ?? "default";
}

/** A KubeConfig from a file, else the cluster's service account, else the default locations. */
export function loadKubeConfig(file?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (file !== undefined) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

/** The HTTP status of a failed client call, or null when it was not an HTTP answer. */
export function statusOf(err: unknown): number | null {
  if (err instanceof k8s.ApiException) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : null;
}

/** Why a Kubernetes API call was given up: it passed its deadline, or its caller stopped waiting. */
export class KubeCallError extends Error {
  constructor(
    message: string,
    readonly code: "ERR_RECLAIM_K8S_DEADLINE" | "ERR_RECLAIM_K8S_ABORTED",
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "KubeCallError";
  }
}

/**
 * Options for one call of a generated client method (its last argument)
 * that make the request use `signal`: when it aborts, the HTTP request is
 * cancelled. The library's own fetch honours `RequestContext.setSignal`;
 * other middleware of the client is kept (appended to).
 */
export function callOptions(signal: AbortSignal): k8s.ConfigurationOptions {
  const middleware: k8s.ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(signal);
      return new k8s.Observable(Promise.resolve(context));
    },
    post: (response) => new k8s.Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}

/** How long one Kubernetes API call may take, on which timers, and what else ends it. */
export interface KubeCallDeadline {
  /** Where the deadline runs (`systemTimers` in production, a `ManualClock` in tests). */
  timers: Timers;
  /** The deadline, from when the call starts. */
  ms: number;
  /** Ends the call early (a term ended, the operator stops). */
  signal?: AbortSignal;
  /** Names the call in the error, e.g. "reading Lease reclaim/reclaim-operator". */
  what?: string;
}

/**
 * Runs one call of the generated Kubernetes client under a deadline:
 * `call` receives the options to pass as the method's last argument, and
 * the request is cancelled when `deadline.ms` pass on `deadline.timers` or
 * `deadline.signal` aborts. The returned promise settles by then at the
 * latest, even if some part of the client does not honour the signal (an
 * auth plugin, say): it rejects with a `KubeCallError` whose code says which
 * (`ERR_RECLAIM_K8S_DEADLINE` or `ERR_RECLAIM_K8S_ABORTED`). Other failures
 * (an `ApiException` for an HTTP error) pass through unchanged. A request
 * given up on may still have reached the server and taken effect.
 *
 * ```ts
 * const pod = await withDeadline((o) => core.readNamespacedPod({ name, namespace }, o), { timers, ms: 10_000, signal });
 * ```
 */
export async function withDeadline<T>(call: (options: k8s.ConfigurationOptions) => Promise<T>, deadline: KubeCallDeadline): Promise<T> {
  const what = deadline.what ?? "a Kubernetes API call";
  const caller = deadline.signal;
  if (caller?.aborted === true) throw abandoned(what, caller);
  if (!(deadline.ms > 0)) throw new KubeCallError(`${what} was not sent: no time was left before its deadline`, "ERR_RECLAIM_K8S_DEADLINE");
  // The contract's deadline(), not AbortSignal.any: on Node 20 a signal made from a long-lived one (a term's,
  // the elector's) stays in that one's set of dependants until it aborts, one per call.
  const limit = clockDeadline(deadline.timers, deadline.ms, caller);
  const gaveUp = new Promise<never>((_, reject) =>
    limit.signal.addEventListener(
      "abort",
      () => reject(limit.timedOut ? new KubeCallError(`${what} did not answer within ${deadline.ms} ms`, "ERR_RECLAIM_K8S_DEADLINE", { cause: limit.signal.reason }) : abandoned(what, caller!)),
      { once: true },
    ),
  );
  gaveUp.catch(() => undefined); // settled by the race below, or never looked at once the call answered
  try {
    return await Promise.race([call(callOptions(limit.signal)), gaveUp]);
  } finally {
    limit.release();
  }
}

function abandoned(what: string, signal: AbortSignal): KubeCallError {
  return new KubeCallError(`${what} was abandoned: its caller stopped waiting`, "ERR_RECLAIM_K8S_ABORTED", { cause: signal.reason });
}
