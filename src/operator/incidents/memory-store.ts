/**
 * An IncidentStore in memory: for `rules replay` and `rules test`, which
 * must not write records, and for tests.
 */
import { INCIDENT_ID_PATTERN, type Incident } from "./model.js";
import type { IncidentFilter, IncidentStore } from "./store.js";

export class MemoryIncidentStore implements IncidentStore {
  private readonly records = new Map<string, Incident>();

  save(incident: Incident): Promise<void> {
    this.records.set(incident.id, structuredClone(incident));
    return Promise.resolve();
  }

  get(id: string): Promise<Incident | null> {
    if (!INCIDENT_ID_PATTERN.test(id)) return Promise.reject(new TypeError(`malformed incident id ${JSON.stringify(id)}`));
    const found = this.records.get(id);
    return Promise.resolve(found === undefined ? null : structuredClone(found));
  }

  list(filter: IncidentFilter = {}): Promise<Incident[]> {
    return Promise.resolve(
      [...this.records.values()]
        .filter((i) => filter.status === undefined || filter.status.includes(i.status))
        .filter((i) => filter.rule === undefined || i.rule === filter.rule)
        .filter((i) => filter.since === undefined || Date.parse(i.updatedAt) >= filter.since)
        .sort((a, b) => Date.parse(a.detectedAt) - Date.parse(b.detectedAt))
        .map((i) => structuredClone(i)),
    );
  }
}
