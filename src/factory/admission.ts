/**
 * Admission: may this user open one more connection? Below the normal limit,
 * yes. At it: log the original "Resource limit exceeded" line and run the
 * in-process cleanup; admit if a slot freed. Otherwise admit under an active
 * `degrade` raise; otherwise wait in the user's queue if queueing is on;
 * otherwise refuse, logging the original HARD LIMIT and UNEXPECTED FACTORY
 * ERROR lines word for word, and recording the refusal for the control API
 * (`lastRefusedAt`, `refusals`). The lines of the at-limit attempt and of the
 * refusal go through the per-user rate limit of `refusal-log.ts`: the first
 * of each per user per minute word for word, a count for the rest.
 */
import { timersOf, type Clock } from "../contract/clock.js";
import { FactoryEvent, OutageMessage, type RefusalReason } from "../contract/events.js";
import type { InProcessCleanup } from "./cleanup.js";
import type { EventLog } from "./log.js";
import type { AdmissionOutcome, FactoryMetrics } from "./metrics.js";
import type { AdmissionQueue } from "./queue.js";
import { RefusalLog } from "./refusal-log.js";
import type { RefusalTracker } from "./refusals.js";
import type { Registry } from "./registry.js";

/** What the client is told after being admitted in a constrained state. */
export interface Notice {
  mode: "degraded" | "queued";
  retryAfterMs: number;
}

/**
 * Why admission refuses. Not `shutting_down`: the server refuses that itself,
 * before asking admission, and a wait that shutdown ends is `aborted`.
 */
export type AdmissionRefusal = Exclude<RefusalReason, "shutting_down">;

/** The answer for one upgrade. An admitted decision holds a reserved slot. */
export type Decision =
  | { admitted: true; outcome: Exclude<AdmissionOutcome, "refused">; notice: Notice | null }
  | { admitted: false; reason: AdmissionRefusal | "aborted"; retryAfterSeconds: number };

export interface AdmissionOptions {
  /** How long an upgrade may wait for a slot; 0 turns queueing off (default 0). */
  queueTimeoutMs: number;
  /** Most upgrades waiting per user (default 10). */
  queueMax: number;
  /** `Retry-After` on a refusal, in seconds (default 5). */
  retryAfterSeconds: number;
}

export class AdmissionControl {
  private readonly refusalLog: RefusalLog;

  /**
   * @param refusalLog the per-user rate limit on the refusal-path lines
   *   (default: a `RefusalLog` with its defaults, on `clock` and the factory's metrics)
   */
  constructor(
    private readonly registry: Registry,
    private readonly queue: AdmissionQueue,
    private readonly cleanup: InProcessCleanup,
    private readonly clock: Clock,
    private readonly log: EventLog,
    private readonly metrics: FactoryMetrics,
    private readonly options: AdmissionOptions,
    private readonly refusals: RefusalTracker,
    refusalLog?: RefusalLog,
  ) {
    this.refusalLog = refusalLog ?? new RefusalLog(log, timersOf(clock), metrics.logLinesSuppressed);
  }

  /**
   * Writes the counts of refusal lines left out so far and stops the rate
   * limit's timer. Call when the factory closes, before its log closes.
   */
  close(): void {
    this.refusalLog.close();
  }

  /** Would a new connection for this user be admitted now, without waiting? Consumes nothing. */
  wouldAdmit(userId: string): boolean {
    return this.queue.length(userId) === 0 && this.registry.hasRoom(userId);
  }

  /** Decides one upgrade. `signal` aborts a queued wait when the client goes away. */
  async decide(userId: string, signal?: AbortSignal): Promise<Decision> {
    const { registry, queue } = this;
    const base = registry.limit;
    const freeUnder = (limit: number): boolean => queue.length(userId) === 0 && registry.hasRoom(userId, limit);
    if (freeUnder(base)) return this.admit(userId, "admitted", null);

    const atLimitLog = this.refusalLog.atLimit(userId);
    atLimitLog.warn(
      FactoryEvent.resourceLimit,
      { userId, managers: registry.occupied(userId), limit: base },
      OutageMessage.resourceLimit(userId, registry.occupied(userId), base),
    );
    await this.cleanup.run(userId, atLimitLog);
    if (signal?.aborted === true) return this.refuse(userId, "aborted");
    if (freeUnder(base)) return this.admit(userId, "after_cleanup", null);

    const raise = registry.raiseOf(userId);
    if (raise !== null && freeUnder(raise.limit)) {
      this.log.info(
        FactoryEvent.degraded,
        { userId, managers: registry.occupied(userId) + 1, limit: base, effectiveLimit: raise.limit },
        `User ${userId} admitted above the normal limit under a temporary raise (${registry.occupied(userId) + 1}/${raise.limit})`,
      );
      return this.admit(userId, "degraded", { mode: "degraded", retryAfterMs: raise.until - this.clock.now() });
    }

    const queueTimeoutMs = raise !== null ? Math.max(raise.queueTimeoutMs, this.options.queueTimeoutMs) : this.options.queueTimeoutMs;
    if (queueTimeoutMs > 0) {
      this.log.info(
        FactoryEvent.queued,
        { userId, managers: registry.occupied(userId), limit: base, effectiveLimit: registry.effectiveLimit(userId) },
        `User ${userId} at the limit: connection queued for up to ${queueTimeoutMs} ms`,
      );
      const waited = this.clock.now();
      const outcome = await queue.wait(userId, queueTimeoutMs, this.options.queueMax, signal);
      if (outcome === "admitted") {
        this.metrics.admissions.inc({ outcome: "queued" });
        this.log.info(
          FactoryEvent.dequeued,
          { userId, managers: registry.occupied(userId), limit: base },
          `User ${userId} admitted from the queue after ${this.clock.now() - waited} ms`,
        );
        return { admitted: true, outcome: "queued", notice: { mode: "queued", retryAfterMs: 0 } };
      }
      return this.refuse(userId, outcome === "full" ? "queue_full" : outcome === "timeout" ? "queue_timeout" : "aborted");
    }
    return this.refuse(userId, "limit");
  }

  private admit(userId: string, outcome: Exclude<AdmissionOutcome, "refused" | "queued">, notice: Notice | null): Decision {
    this.registry.reserve(userId);
    this.metrics.admissions.inc({ outcome });
    return { admitted: true, outcome, notice };
  }

  private refuse(userId: string, reason: AdmissionRefusal | "aborted"): Decision {
    const retryAfterSeconds = this.options.retryAfterSeconds;
    // Not a refusal: the wait ended because the client went away (closed the tab) while cleanup ran or it
    // waited in the queue, or because the factory is shutting down and ended every wait. Neither says the
    // user has no slot; recording it would let a user who merely closed a tab look locked out, and the
    // operator's sweep evicts a live tab for a user who looks locked out. A client that keeps asking is
    // refused for real (limit, queue_full, queue_timeout) and recorded then.
    if (reason === "aborted") return { admitted: false, reason, retryAfterSeconds };
    this.refusals.record(userId);
    this.metrics.admissions.inc({ outcome: "refused" });
    const log = this.refusalLog.refused(userId);
    const managers = this.registry.occupied(userId);
    const limit = this.registry.effectiveLimit(userId);
    const fields = { userId, managers, limit: this.registry.limit, effectiveLimit: limit };
    log.error(FactoryEvent.hardLimit, fields, OutageMessage.hardLimit(userId, managers, limit));
    log.error(FactoryEvent.error, fields, OutageMessage.factoryError(userId, limit));
    log.warn(
      FactoryEvent.refused,
      { userId, reason, managers: this.registry.occupied(userId), limit: this.registry.limit },
      `Connection for user ${userId} refused (${reason}), retry after ${retryAfterSeconds} s`,
    );
    return { admitted: false, reason, retryAfterSeconds };
  }
}
