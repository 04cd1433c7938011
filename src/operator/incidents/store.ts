/**
 * Where incidents are kept. The operator persists an incident before its
 * first rung and after every rung; if a write fails it must not act.
 * Implementations: the file store (file-store.ts), Incident objects in the
 * cluster (../k8s/incident-store.ts), one in memory (memory-store.ts), and
 * the wrappers that write to several (tee-store.ts) in order (ordered-store.ts).
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

/** Stable codes of the errors the stores throw. Callers and tests branch on these, not on wording. */
export const IncidentStoreErrorCode = {
  /** The id is not an incident id (INCIDENT_ID_PATTERN); no path was built from it. A TypeError. */
  invalidId: "ERR_RECLAIM_INCIDENT_ID",
  /** The incident does not satisfy the schema (or would not read back once written as JSON). A TypeError. */
  invalidRecord: "ERR_RECLAIM_INCIDENT_INVALID",
  /** A file or the folder could not be written. */
  write: "ERR_RECLAIM_INCIDENT_WRITE",
  /** A file or the folder could not be read. */
  read: "ERR_RECLAIM_INCIDENT_READ",
  /** A record exists but is not valid JSON, not a valid Incident, or holds another id. */
  corrupt: "ERR_RECLAIM_INCIDENT_CORRUPT",
} as const;
export type IncidentStoreErrorCode = (typeof IncidentStoreErrorCode)[keyof typeof IncidentStoreErrorCode];

/** A malformed incident id, refused before any path is built from it. */
export class IncidentIdError extends TypeError {
  readonly code = IncidentStoreErrorCode.invalidId;
  constructor(readonly id: unknown) {
    super(
      `invalid incident id ${typeof id === "string" ? JSON.stringify(id.length > 100 ? `${id.slice(0, 100)}…` : id) : typeof id}: ` +
        "expected one such as 20261126T120000Z-factory-hard-limit-1a2b3c4d",
    );
    this.name = "IncidentIdError";
  }
}

/** An incident that does not satisfy the schema; nothing was written. */
export class IncidentRecordError extends TypeError {
  readonly code = IncidentStoreErrorCode.invalidRecord;
  constructor(
    message: string,
    readonly issues: readonly string[],
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "IncidentRecordError";
  }
}

/** A read or write fault of the store; `cause` holds the underlying error, `file` the path involved. */
export class IncidentStoreError extends Error {
  constructor(
    readonly code: typeof IncidentStoreErrorCode.write | typeof IncidentStoreErrorCode.read | typeof IncidentStoreErrorCode.corrupt,
    message: string,
    readonly file: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "IncidentStoreError";
  }
}
