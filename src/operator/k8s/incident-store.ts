/**
 * `--incidents k8s`: one Incident custom resource per incident. It is
 * created (with its spec) before the first rung; its progress is written
 * through the status subresource after each step. A 409 Conflict (someone
 * else wrote since we read) is retried with the current resourceVersion — the
 * leader is the only writer, so the newest state is always ours.
 */
import * as k8s from "@kubernetes/client-node";
import { FINAL_STATUSES, INCIDENT_ID_PATTERN, type Incident } from "../incidents/model.js";
import { IncidentStoreError, IncidentStoreErrorCode, type IncidentFilter, type IncidentStore } from "../incidents/store.js";
import { systemTimers, type Timers } from "../../contract/clock.js";
import { statusOf, withDeadline } from "./client.js";
import {
  GROUP,
  INCIDENT,
  LABEL_RULE,
  LABEL_STATUS,
  VERSION,
  fromIncidentObject,
  incidentObjectName,
  toIncidentObject,
  type IncidentObject,
} from "./resources.js";

/** Most attempts at a status write that keeps meeting 409 Conflict. */
const CONFLICT_RETRIES = 5;

/** Where the store's calls keep time, and how long each may take (default 10 s). */
export interface KubernetesIncidentStoreOptions {
  timers?: Timers;
  callTimeoutMs?: number;
}

export class KubernetesIncidentStore implements IncidentStore {
  /** Objects that exist, by name, with the labels and spec last written (as JSON). */
  private readonly known = new Map<string, { labels: string; spec: string }>();
  /** How many objects the last `list` skipped as invalid. */
  lastListSkipped = 0;

  private readonly timers: Timers;
  private readonly callTimeoutMs: number;

  constructor(
    private readonly api: k8s.CustomObjectsApi,
    readonly namespace: string,
    options: KubernetesIncidentStoreOptions = {},
  ) {
    this.timers = options.timers ?? systemTimers;
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
  }

  /** One API call under its deadline: a hung API server fails the write (and the operator holds) instead of hanging it. */
  private call<T>(what: string, call: (options: k8s.ConfigurationOptions) => Promise<T>): Promise<T> {
    return withDeadline(call, { timers: this.timers, ms: this.callTimeoutMs, what });
  }

  async save(incident: Incident): Promise<void> {
    const object = toIncidentObject(incident, this.namespace);
    const { name } = object.metadata;
    const base = { group: GROUP, version: VERSION, namespace: this.namespace, plural: INCIDENT.plural };
    try {
      const labels = JSON.stringify(object.metadata.labels);
      const spec = JSON.stringify(object.spec);
      if (!this.known.has(name)) {
        try {
          await this.call(`creating Incident ${name}`, (o) => this.api.createNamespacedCustomObject({ ...base, body: { ...object, status: undefined } }, o));
          this.known.set(name, { labels, spec });
        } catch (err) {
          if (statusOf(err) !== 409) throw err; // 409: it exists (a previous leader created it)
          this.known.set(name, { labels: "", spec: "" }); // unknown content: write both below
        }
      }
      const written = this.known.get(name)!;
      // The spec changes rarely (a restartPod moves the target to the replacement pod); labels with the status.
      if (written.labels !== labels || written.spec !== spec) {
        await this.call(`patching Incident ${name}`, (o) =>
          this.api.patchNamespacedCustomObject(
            { ...base, name, body: { metadata: { labels: object.metadata.labels }, ...(written.spec === spec ? {} : { spec: object.spec }) } },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch, o),
          ),
        );
        this.known.set(name, { labels, spec });
      }
      await this.writeStatus(name, object);
    } catch (err) {
      throw new Error(`could not write Incident ${this.namespace}/${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private async writeStatus(name: string, object: IncidentObject): Promise<void> {
    const base = { group: GROUP, version: VERSION, namespace: this.namespace, plural: INCIDENT.plural, name };
    for (let attempt = 1; ; attempt++) {
      const current = (await this.call(`reading Incident ${name}`, (o) => this.api.getNamespacedCustomObject(base, o))) as { metadata?: { resourceVersion?: string } };
      try {
        await this.call(`writing the status of Incident ${name}`, (o) =>
          this.api.replaceNamespacedCustomObjectStatus({ ...base, body: { ...object, metadata: { ...object.metadata, resourceVersion: current.metadata?.resourceVersion } } }, o),
        );
        return;
      } catch (err) {
        if (statusOf(err) !== 409 || attempt >= CONFLICT_RETRIES) throw err;
      }
    }
  }

  async get(id: string): Promise<Incident | null> {
    if (!INCIDENT_ID_PATTERN.test(id)) throw new TypeError(`malformed incident id ${JSON.stringify(id)}`);
    try {
      const object = (await this.call(`reading Incident ${incidentObjectName(id)}`, (o) =>
        this.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: this.namespace, plural: INCIDENT.plural, name: incidentObjectName(id) }, o),
      )) as IncidentObject;
      try {
        return fromIncidentObject(object);
      } catch (invalid) {
        // The object is there but is not an incident this operator can read: corrupt, as a damaged file would be.
        throw new IncidentStoreError(IncidentStoreErrorCode.corrupt, `Incident ${this.namespace}/${incidentObjectName(id)} is not a valid record`, incidentObjectName(id), {
          cause: invalid,
        });
      }
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async list(filter: IncidentFilter = {}): Promise<Incident[]> {
    const selectors: string[] = [];
    if (filter.rule !== undefined) selectors.push(`${LABEL_RULE}=${filter.rule}`);
    if (filter.status !== undefined && filter.status.length > 0) selectors.push(`${LABEL_STATUS} in (${filter.status.join(",")})`);
    const response = (await this.call("listing Incidents", (o) =>
      this.api.listNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace: this.namespace, plural: INCIDENT.plural, ...(selectors.length > 0 ? { labelSelector: selectors.join(",") } : {}) },
        o,
      ),
    )) as { items?: IncidentObject[] };
    const incidents: Incident[] = [];
    let skipped = 0;
    for (const item of response.items ?? []) {
      try {
        const incident = fromIncidentObject(item);
        this.known.set(item.metadata.name, { labels: JSON.stringify(item.metadata.labels ?? {}), spec: JSON.stringify(item.spec) });
        if (filter.since !== undefined && Date.parse(incident.updatedAt) < filter.since) continue;
        if (filter.status !== undefined && !filter.status.includes(incident.status)) continue;
        incidents.push(incident);
      } catch {
        skipped++;
      }
    }
    this.lastListSkipped = skipped;
    return incidents.sort((a, b) => Date.parse(a.detectedAt) - Date.parse(b.detectedAt) || a.id.localeCompare(b.id));
  }
}

/** Does an incident in this status still need the ladder? */
export function isOpen(incident: Incident): boolean {
  return !FINAL_STATUSES.has(incident.status);
}
