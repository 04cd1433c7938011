/**
 * Where incidents are kept. The operator persists an incident before its
 * first rung and after every rung; if a write fails it must not act.
 * Implementations: the file store (file-store.ts); Kubernetes objects later.
 */
import type { Incident, IncidentStatus } from "./model.js";

export interface IncidentFilter {
  status?: readonly IncidentStatus[];
  rule?: string;
  /** Only incidents updated at or after this time (ms since the epoch). */
  since?: number;
}

export interface IncidentStore {
  /** Writes a new or changed incident atomically. Throws when it cannot: the caller must then not act. */
  save(incident: Incident): Promise<void>;
  /** One incident, or null when there is none with that id. Throws on a malformed id. */
  get(id: string): Promise<Incident | null>;
  /** Incidents matching `filter`, oldest first. Unreadable records are skipped and counted, not fatal. */
  list(filter?: IncidentFilter): Promise<Incident[]>;
}
