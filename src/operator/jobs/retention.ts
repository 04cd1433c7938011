/**
 * Retention: removes incident records (`<id>.json` and `<id>.md`) that have
 * been closed for longer than N days, so the incidents folder does not grow
 * without end. Only final incidents are removed, and only once they have not
 * changed for N days (the later of `closedAt` and `updatedAt`): an `open` or
 * `remediating` incident is never removed, however old, because a restart
 * resumes it. N is at least 1 day: guards rebuild their daily attempt counts
 * from the records at start, so younger records must stay.
 */
import type { Clock } from "../../contract/clock.js";
import type { Incident } from "../incidents/model.js";
import type { Job } from "./scheduler.js";

/** Days a closed record is kept when none is configured. */
export const DEFAULT_RETENTION_DAYS = 30;
/** Retention's schedule when none is configured: 03:30 every day. */
export const DEFAULT_RETENTION_SCHEDULE = "30 3 * * *";

const DAY_MS = 86_400_000;

/** What retention needs of a store: FileIncidentStore has both. */
export interface RetentionStore {
  /** Final incidents that last changed before `cutoff` (ms since the epoch). */
  listOlderThan(cutoff: number): Promise<Incident[]>;
  /** One incident as it is now, or null. */
  get(id: string): Promise<Incident | null>;
  /** Removes both files of an incident; whether a record was there. */
  remove(id: string): Promise<boolean>;
}

/** What retention needs; every dependency is injected. */
export interface RetentionDeps {
  store: RetentionStore;
  clock: Clock;
  /** Keep closed records this many days (an integer, at least 1; default 30). */
  days?: number;
  /** Default `30 3 * * *`. */
  schedule?: string;
}

/** What one run removed. */
export interface RetentionResult {
  cutoff: string;
  removed: string[];
  /** Listed as old, but changed (or gone) by the time they were to be removed: kept. */
  kept: string[];
  failed: { id: string; error: string }[];
}

/** Retention as a scheduled job (`name: "retention"`). */
export class RetentionJob implements Job {
  readonly name = "retention";
  readonly schedule: string;
  readonly days: number;

  constructor(private readonly deps: RetentionDeps) {
    this.schedule = deps.schedule ?? DEFAULT_RETENTION_SCHEDULE;
    this.days = deps.days ?? DEFAULT_RETENTION_DAYS;
    if (!Number.isInteger(this.days) || this.days < 1) {
      throw new TypeError(`RetentionJob: days must be a whole number of days, at least 1, got ${String(deps.days)}`);
    }
  }

  async run(signal?: AbortSignal): Promise<string> {
    const r = await this.prune(signal);
    const line = `removed ${r.removed.length} ${plural(r.removed.length, "record", "records")} older than ${this.days} ${plural(this.days, "day", "days")}`;
    if (r.failed.length > 0) {
      // A failed removal fails the run, so that it shows in metrics and logs; the others were still removed.
      const first = r.failed[0]!;
      throw new Error(`${line}; ${r.failed.length} could not be removed (${first.id}: ${first.error}${r.failed.length > 1 ? ", …" : ""})`);
    }
    return line;
  }

  /** One pass: removes what is old enough, and says what it did. Never throws for one record. */
  async prune(signal?: AbortSignal): Promise<RetentionResult> {
    const cutoff = this.deps.clock.now() - this.days * DAY_MS;
    const result: RetentionResult = { cutoff: new Date(cutoff).toISOString(), removed: [], kept: [], failed: [] };
    for (const old of await this.deps.store.listOlderThan(cutoff)) {
      if (signal?.aborted) break;
      try {
        // Read again just before removing: a suppressed trigger may have been counted on it since the listing.
        const now = await this.deps.store.get(old.id);
        if (now === null || now.updatedAt !== old.updatedAt || now.status !== old.status) {
          result.kept.push(old.id);
          continue;
        }
        if (await this.deps.store.remove(old.id)) result.removed.push(old.id);
      } catch (err) {
        result.failed.push({ id: old.id, error: err instanceof Error ? err.message : String(err) });
      }
    }
    return result;
  }
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : many;
}
