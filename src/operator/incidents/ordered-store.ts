/**
 * Saves of the same incident, in the order they were asked for. The ladder
 * and suppression counting may both save one incident; without this, two
 * overlapping writes could land out of order and an older state win.
 */
import type { Incident } from "./model.js";
import type { IncidentFilter, IncidentStore } from "./store.js";

export class OrderedStore implements IncidentStore {
  private readonly tails = new Map<string, Promise<void>>();

  constructor(private readonly inner: IncidentStore) {}

  save(incident: Incident): Promise<void> {
    const previous = this.tails.get(incident.id) ?? Promise.resolve();
    // Serialize now: the record as it is when the save was asked for.
    const snapshot = structuredClone(incident);
    const next = previous.catch(() => undefined).then(() => this.inner.save(snapshot));
    const tail = next.catch(() => undefined);
    this.tails.set(incident.id, tail);
    void tail.then(() => {
      if (this.tails.get(incident.id) === tail) this.tails.delete(incident.id);
    });
    return next;
  }

  get(id: string): Promise<Incident | null> {
    return this.inner.get(id);
  }

  list(filter?: IncidentFilter): Promise<Incident[]> {
    return this.inner.list(filter);
  }
}
