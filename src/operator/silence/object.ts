/**
 * Silences as Kubernetes objects (Kubernetes mode, ADR 22): kind `Silence`
 * in `reclaim.dev/v1`, one object per silence, named by its id, the record
 * without its id in `spec`. The pause is the Silence named `pause`, with no
 * matchers. No status: a silence is what on-call wrote, nothing more.
 * Imports no client library: the CRD generator and the test server use it.
 */
import { GROUP, VERSION } from "../k8s/resources.js";
import { Silence, type SilenceSpec } from "./model.js";

/** The Silence kind's names, as its CRD declares them. */
export const SILENCE = { kind: "Silence", plural: "silences", singular: "silence", shortNames: ["rsil"] } as const;
/** `reclaim.dev/v1`. */
export const SILENCE_API_VERSION = `${GROUP}/${VERSION}`;
/** Label on Silence objects: `silence` or `pause`, so `kubectl get silences -l reclaim.dev/hold=pause` finds the pause. */
export const LABEL_HOLD = "reclaim.dev/hold";

/** A Silence object as stored in the cluster. */
export interface SilenceObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string };
  spec: SilenceSpec;
}

/** The object for a record (without resourceVersion). */
export function toSilenceObject(silence: Silence, namespace: string): SilenceObject {
  const { id, ...spec } = Silence.parse(silence);
  return {
    apiVersion: SILENCE_API_VERSION,
    kind: SILENCE.kind,
    metadata: { name: id, namespace, labels: { [LABEL_HOLD]: id === "pause" ? "pause" : "silence" } },
    spec,
  };
}

/** The record an object holds; throws a ZodError when it is not a valid one (its name included). */
export function fromSilenceObject(object: { metadata?: { name?: string }; spec?: unknown }): Silence {
  return Silence.parse({ ...(object.spec as object), id: object.metadata?.name });
}
