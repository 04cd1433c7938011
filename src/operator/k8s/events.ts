/**
 * Kubernetes Events on the target pod for each rung and outcome, so that
 * `kubectl describe pod` shows what Reclaim did to it. An IncidentStore
 * decorator: after each save it emits an Event for every new decision of
 * interest. A failed Event is logged, never fatal — the record is the
 * Incident object.
 */
import { systemTimers, type Timers } from "../../contract/clock.js";
import { withDeadline } from "./client.js";
import * as k8s from "@kubernetes/client-node";
import type { Decision, Incident } from "../incidents/model.js";
import type { IncidentFilter, IncidentStore } from "../incidents/store.js";

const EMITTED: ReadonlySet<Decision["kind"]> = new Set(["rung_finished", "verified", "not_verified", "resolved", "escalated", "failed", "interrupted", "held"]);
const WARNING: ReadonlySet<Decision["kind"]> = new Set(["not_verified", "escalated", "failed", "interrupted", "held"]);

/** Event reasons are CamelCase from a closed set. */
function reasonOf(kind: Decision["kind"]): string {
  return `Reclaim${kind.replace(/(^|_)([a-z])/g, (_m, _s: string, c: string) => c.toUpperCase())}`;
}

export class EventingStore implements IncidentStore {
  /** Decisions already turned into Events, per incident. */
  private readonly emitted = new Map<string, number>();

  constructor(
    private readonly inner: IncidentStore,
    private readonly events: k8s.EventsV1Api,
    private readonly options: { namespace: string; instance: string; onError: (err: unknown) => void; timers?: Timers; callTimeoutMs?: number },
  ) {}

  async save(incident: Incident): Promise<void> {
    await this.inner.save(incident);
    const done = this.emitted.get(incident.id) ?? incident.decisions.length - 1;
    const fresh = incident.decisions.slice(Math.max(0, done)).filter((d) => EMITTED.has(d.kind));
    this.emitted.set(incident.id, incident.decisions.length);
    // A rollup record (ADR 12) is about many users on any pods: no Event on the first one's pod.
    if (incident.target.pod === null || incident.rollup !== undefined) return;
    for (const decision of fresh) await this.emit(incident, decision);
  }

  get(id: string): Promise<Incident | null> {
    return this.inner.get(id);
  }

  list(filter?: IncidentFilter): Promise<Incident[]> {
    return this.inner.list(filter);
  }

  private async emit(incident: Incident, decision: Decision): Promise<void> {
    // MicroTime: six fractional digits, as the API server's parser requires.
    const now = new k8s.V1MicroTime(Date.now());
    try {
      // An Event is worth a few seconds at most: the incident's own write (done above) must not wait on a hung one.
      await withDeadline((o) => this.events.createNamespacedEvent({
        namespace: this.options.namespace,
        body: {
          metadata: { generateName: "reclaim-", namespace: this.options.namespace },
          eventTime: now,
          reason: reasonOf(decision.kind),
          action: decision.kind,
          note: `${incident.id}: ${decision.detail}`.slice(0, 1024),
          type: WARNING.has(decision.kind) ? "Warning" : "Normal",
          reportingController: "reclaim.dev/operator",
          reportingInstance: this.options.instance,
          regarding: { kind: "Pod", apiVersion: "v1", namespace: this.options.namespace, name: incident.target.pod! },
          related: { kind: "Incident", apiVersion: "reclaim.dev/v1", namespace: this.options.namespace, name: incident.id.toLowerCase() },
        },
      }, o), { timers: this.options.timers ?? systemTimers, ms: this.options.callTimeoutMs ?? 5000, what: `creating an Event for ${incident.id}` });
    } catch (err) {
      this.options.onError(err);
    }
  }
}
