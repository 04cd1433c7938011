/**
 * Which factory to act on for a trigger. With `--control URL` it is always
 * that one factory (StaticTarget). In Kubernetes mode (`--target pod`) it is
 * the pod named in the log entry, resolved through the API (k8s/pod-target.ts),
 * which can also be restarted.
 */
import type { ControlClient } from "./control-client.js";

/** What a `restartPod` rung did. */
export interface RestartOutcome {
  /** The pod was deleted (or was already gone). */
  deleted: boolean;
  /** The Ready replacement, when one appeared in time. */
  replacement: Target | null;
  detail: string;
}

export interface Target {
  control: ControlClient;
  /** The pod the entry came from, when known. */
  pod: string | null;
  namespace: string | null;
  /** Kubernetes only: delete the pod, wait for a Ready replacement. */
  restart?: (options: { waitReadyMs: number; signal?: AbortSignal }) => Promise<RestartOutcome>;
}

/** Where a trigger came from, for choosing its target. */
export interface TargetQuery {
  userId: string;
  pod: string | null;
  namespace: string | null;
  /** Whoever waits for the answer (the leadership term): a lookup it no longer needs is abandoned. */
  signal?: AbortSignal;
}

export interface TargetResolver {
  /** The factory to act on, or null when there is none (recorded, not acted on). */
  resolve(query: TargetQuery): Promise<Target | null>;
}

/** Always the one factory of `--control URL`. */
export class StaticTarget implements TargetResolver {
  constructor(private readonly control: ControlClient) {}

  resolve(query: TargetQuery): Promise<Target> {
    return Promise.resolve({ control: this.control, pod: query.pod, namespace: query.namespace });
  }
}
