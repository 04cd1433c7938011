/**
 * What reached the receivers, recorded beside the incident records (ADR 23,
 * "In the cluster"). In Kubernetes mode the outbox lives in the pod's
 * emptyDir: a notice pending when the leader dies is gone with it, and the
 * next leader must learn from the cluster which incidents on-call has not
 * heard about in their current state. So, once every receiver a notice was
 * routed to has accepted it, the operator records the notice's fingerprint
 * (`noticeFingerprint`) on the Incident object, in the annotation
 * `NOTIFIED_ANNOTATION`; a new leader sends again every incident whose
 * fingerprint differs from it.
 *
 * In file mode there is no such record: the outbox is on disk and survives
 * restarts itself, so nothing implements this interface there.
 */
import type { Incident } from "../incidents/model.js";
import type { IncidentFilter } from "../incidents/store.js";

/** The annotation on an Incident object that holds the fingerprint of the last notice every receiver accepted. */
export const NOTIFIED_ANNOTATION = "reclaim.dev/notified";

/** An incident record and the fingerprint of what was last delivered about it (null: nothing recorded). */
export interface NotifiedIncident {
  incident: Incident;
  notified: string | null;
}

/** Where delivered notices are recorded beside the records (KubernetesIncidentStore). */
export interface NotifiedMarks {
  /**
   * The records matching `filter`, each with its recorded fingerprint; the
   * human entries (`reclaim incidents ack|note`) included. Throws when they
   * cannot be read (by the store's deadline, or when `signal` aborts).
   */
  listNotified(filter: IncidentFilter, signal?: AbortSignal): Promise<NotifiedIncident[]>;
  /**
   * Records that every receiver accepted the notice of incident `id` whose
   * fingerprint is `fingerprint`. Resolves false when there is no such
   * incident (any more). Never conflicts with the operator's own writes of
   * the record. Throws when it cannot write.
   */
  markNotified(id: string, fingerprint: string, signal?: AbortSignal): Promise<boolean>;
}
