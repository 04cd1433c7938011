/**
 * Incidents kept in more than one place (`--incidents k8s --incidents DIR`):
 * every save goes to each store, and fails if any of them fails (the operator
 * then does not act); reads come from the first.
 */
import type { Incident } from "./model.js";
import type { IncidentFilter, IncidentStore } from "./store.js";

export class TeeStore implements IncidentStore {
  constructor(private readonly stores: readonly [IncidentStore, ...IncidentStore[]]) {}

  async save(incident: Incident): Promise<void> {
    const results = await Promise.allSettled(this.stores.map((s) => s.save(incident)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  get(id: string): Promise<Incident | null> {
    return this.stores[0].get(id);
  }

  list(filter?: IncidentFilter): Promise<Incident[]> {
    return this.stores[0].list(filter);
  }
}
