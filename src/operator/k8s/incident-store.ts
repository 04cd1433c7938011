/**
 * `--incidents k8s`: one Incident custom resource per incident. It is
 * created (with its spec) before the first rung; its progress is written
 * through the status subresource after each step. A 409 Conflict (someone
 * else wrote since we read) is retried with the current resourceVersion — the
 * leader is the only writer of everything but `status.human`, so the newest
 * state is always ours. `status.human` is people's (`reclaim incidents
 * ack|note`, `appendHuman`): every status write carries over the entries it
 * read, under that read's resourceVersion, so an entry added in between makes
 * the write fail with 409 and the next attempt keeps it (human.ts).
 *
 * Notifications record on each object what every receiver accepted, in the
 * annotation `reclaim.dev/notified` (NotifiedMarks, ../notify/notified.ts):
 * a JSON merge patch of that one annotation, without a resourceVersion, so it
 * never fails on a conflict; a status write that raced it meets 409 and is
 * retried as above.
 */
import * as k8s from "@kubernetes/client-node";
import { addHumanEntry, humanPartOf, type HumanAppend, type HumanTimelineStore } from "../incidents/human.js";
import { NOTIFIED_ANNOTATION, type NotifiedIncident, type NotifiedMarks } from "../notify/notified.js";
import { FINAL_STATUSES, INCIDENT_ID_PATTERN, type HumanEntry, type Incident } from "../incidents/model.js";
import { IncidentIdError, IncidentStoreError, IncidentStoreErrorCode, type IncidentFilter, type IncidentStore } from "../incidents/store.js";
import { systemTimers, type Timers } from "../../contract/clock.js";
import { statusOf, withDeadline } from "./client.js";
import {
  GROUP,
  INCIDENT,
  LABEL_RULE,
  LABEL_STATUS,
  VERSION,
  fromIncidentObject,
  incidentConditions,
  incidentObjectName,
  rungSummary,
  toIncidentObject,
  type IncidentObject,
} from "./resources.js";

/** Most attempts at a status write that keeps meeting 409 Conflict. */
const CONFLICT_RETRIES = 5;
/** Most attempts at adding a human entry that keeps meeting 409 Conflict (the operator may be writing the same incident). */
const HUMAN_CONFLICT_RETRIES = 8;

/** Where the store's calls keep time, and how long each may take (default 10 s). */
export interface KubernetesIncidentStoreOptions {
  timers?: Timers;
  callTimeoutMs?: number;
}

export class KubernetesIncidentStore implements IncidentStore, HumanTimelineStore, NotifiedMarks {
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

  /** One API call under its deadline (and `signal`): a hung API server fails the write (and the operator holds) instead of hanging it. */
  private call<T>(what: string, call: (options: k8s.ConfigurationOptions) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withDeadline(call, { timers: this.timers, ms: this.callTimeoutMs, what, ...(signal === undefined ? {} : { signal }) });
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
      await this.writeStatus(name, object, incident);
    } catch (err) {
      throw new Error(`could not write Incident ${this.namespace}/${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private async writeStatus(name: string, object: IncidentObject, incident: Incident): Promise<void> {
    const base = { group: GROUP, version: VERSION, namespace: this.namespace, plural: INCIDENT.plural, name };
    for (let attempt = 1; ; attempt++) {
      const current = (await this.call(`reading Incident ${name}`, (o) => this.api.getNamespacedCustomObject(base, o))) as {
        metadata?: { resourceVersion?: string; generation?: number };
        status?: { conditions?: unknown };
      };
      // People's entries, as read: what the operator holds may be stale (or none), and they are not its to change.
      const status: Record<string, unknown> = { ...object.status };
      delete status.human;
      delete status.humanDropped;
      const human = humanPartOf(current.status);
      Object.assign(status, human);
      // For `kubectl get` and `kubectl wait`: the conditions (Acknowledged from the entries as read) and the rungs as one string.
      status.conditions = incidentConditions({ ...incident, ...human }, current.status?.conditions, current.metadata?.generation);
      status.rungSummary = rungSummary(incident);
      try {
        await this.call(`writing the status of Incident ${name}`, (o) =>
          this.api.replaceNamespacedCustomObjectStatus(
            { ...base, body: { ...object, status, metadata: { ...object.metadata, resourceVersion: current.metadata?.resourceVersion } } },
            o,
          ),
        );
        return;
      } catch (err) {
        if (statusOf(err) !== 409 || attempt >= CONFLICT_RETRIES) throw err;
      }
    }
  }

  /**
   * Adds a human entry to `status.human` (HumanTimelineStore): reads the
   * object, adds the entry to what it read, and replaces the status under
   * that read's resourceVersion; on 409 Conflict (the operator or someone
   * else wrote in between) it starts again from a fresh read, up to 8
   * attempts. Only `human` changes: the rest of the status is written back as
   * read. An ack by someone who has acknowledged the incident already writes
   * nothing (`recorded: false`). Resolves null when there is no such
   * incident; throws IncidentIdError on a malformed id, before any call.
   */
  async appendHuman(id: string, entry: HumanEntry): Promise<HumanAppend | null> {
    if (!INCIDENT_ID_PATTERN.test(id)) throw new IncidentIdError(id);
    const name = incidentObjectName(id);
    const base = { group: GROUP, version: VERSION, namespace: this.namespace, plural: INCIDENT.plural, name };
    const where = `Incident ${this.namespace}/${name}`;
    for (let attempt = 1; ; attempt++) {
      let current: IncidentObject;
      try {
        current = (await this.call(`reading ${where}`, (o) => this.api.getNamespacedCustomObject(base, o))) as IncidentObject;
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw new Error(`could not read ${where}: ${describe(err)}`, { cause: err });
      }
      if (current.status === undefined) {
        // Between the operator's create and its first status write: there is nothing to add to yet.
        throw new IncidentStoreError(IncidentStoreErrorCode.read, `${where} has no status yet (the operator is writing it); try again`, name);
      }
      let incident: Incident;
      try {
        incident = fromIncidentObject(current);
      } catch (invalid) {
        throw new IncidentStoreError(IncidentStoreErrorCode.corrupt, `${where} is not a valid record`, name, { cause: invalid });
      }
      if (!addHumanEntry(incident, entry)) return { incident, recorded: false };
      const status = {
        ...current.status,
        human: incident.human,
        humanDropped: incident.humanDropped,
        // An ack changes Acknowledged: the conditions are rewritten with it.
        conditions: incidentConditions(incident, (current.status as { conditions?: unknown }).conditions, current.metadata.generation),
      };
      try {
        await this.call(`adding to ${where}`, (o) => this.api.replaceNamespacedCustomObjectStatus({ ...base, body: { ...current, status } }, o));
        return { incident, recorded: true };
      } catch (err) {
        if (statusOf(err) !== 409 || attempt >= HUMAN_CONFLICT_RETRIES) {
          throw new Error(`could not add to ${where}${statusOf(err) === 409 ? ` (${attempt} conflicting writes in a row)` : ""}: ${describe(err)}`, { cause: err });
        }
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
    return (await this.listNotified(filter)).map((n) => n.incident);
  }

  /**
   * `list`, each incident with the fingerprint in its `reclaim.dev/notified`
   * annotation (NotifiedMarks); `signal` abandons the call.
   */
  async listNotified(filter: IncidentFilter = {}, signal?: AbortSignal): Promise<NotifiedIncident[]> {
    const selectors: string[] = [];
    if (filter.rule !== undefined) selectors.push(`${LABEL_RULE}=${filter.rule}`);
    if (filter.status !== undefined && filter.status.length > 0) selectors.push(`${LABEL_STATUS} in (${filter.status.join(",")})`);
    const response = (await this.call(
      "listing Incidents",
      (o) =>
        this.api.listNamespacedCustomObject(
          { group: GROUP, version: VERSION, namespace: this.namespace, plural: INCIDENT.plural, ...(selectors.length > 0 ? { labelSelector: selectors.join(",") } : {}) },
          o,
        ),
      signal,
    )) as { items?: (IncidentObject & { metadata: { annotations?: Record<string, string> } })[] };
    const incidents: NotifiedIncident[] = [];
    let skipped = 0;
    for (const item of response.items ?? []) {
      try {
        const incident = fromIncidentObject(item);
        this.known.set(item.metadata.name, { labels: JSON.stringify(item.metadata.labels ?? {}), spec: JSON.stringify(item.spec) });
        if (filter.since !== undefined && Date.parse(incident.updatedAt) < filter.since) continue;
        if (filter.status !== undefined && !filter.status.includes(incident.status)) continue;
        const notified = item.metadata.annotations?.[NOTIFIED_ANNOTATION];
        incidents.push({ incident, notified: typeof notified === "string" ? notified : null });
      } catch {
        skipped++;
      }
    }
    this.lastListSkipped = skipped;
    return incidents.sort((a, b) => Date.parse(a.incident.detectedAt) - Date.parse(b.incident.detectedAt) || a.incident.id.localeCompare(b.incident.id));
  }

  /**
   * Records `fingerprint` in incident `id`'s `reclaim.dev/notified`
   * annotation (NotifiedMarks): a merge patch of metadata only, without a
   * resourceVersion. Resolves false when there is no such object. Throws
   * IncidentIdError on a malformed id, and an IncidentStoreError
   * (`ERR_RECLAIM_INCIDENT_WRITE`, the API's error as its cause) otherwise.
   */
  async markNotified(id: string, fingerprint: string, signal?: AbortSignal): Promise<boolean> {
    if (!INCIDENT_ID_PATTERN.test(id)) throw new IncidentIdError(id);
    const name = incidentObjectName(id);
    const where = `Incident ${this.namespace}/${name}`;
    try {
      await this.call(
        `recording what was notified on ${where}`,
        (o) =>
          this.api.patchNamespacedCustomObject(
            {
              group: GROUP,
              version: VERSION,
              namespace: this.namespace,
              plural: INCIDENT.plural,
              name,
              body: { metadata: { annotations: { [NOTIFIED_ANNOTATION]: fingerprint } } },
            },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch, o),
          ),
        signal,
      );
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw new IncidentStoreError(IncidentStoreErrorCode.write, `could not annotate ${where}: ${describe(err)}`, name, { cause: err });
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Does an incident in this status still need the ladder? */
export function isOpen(incident: Incident): boolean {
  return !FINAL_STATUSES.has(incident.status);
}
