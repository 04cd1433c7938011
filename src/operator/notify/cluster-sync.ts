/**
 * Kubernetes mode: the leader reads the Incident objects back for its
 * notifications (ADR 23, "In the cluster"), for two reasons.
 *
 * - At a term start: the outbox of the last leader died with its pod. Every
 *   open incident, every one that needs a human, and every one closed within
 *   `recentMs` whose state differs from what was recorded as delivered
 *   (notified.ts) is sent again; the others are only remembered (and fed to
 *   Alertmanager's firing set).
 * - While leading, every `intervalMs`: people write acknowledgements into
 *   the objects' `status.human` from another process (`reclaim incidents
 *   ack`), which nothing else tells the operator. Each pass lists the open
 *   and needs-a-human incidents and hands them to the notifier, so an ack
 *   reaches PagerDuty and Alertmanager within one interval.
 *
 * One pass at a time: the next starts `intervalMs` after the last ended, and
 * each list call runs under `listTimeoutMs`. A pass that fails is logged and
 * counted; the next one tries again (a failed first pass is tried again as a
 * first pass). `stop()` (the term ended) aborts the call in flight, and
 * nothing read after it is acted on.
 */
import { Counter, type Registry } from "prom-client";
import { deadline, systemTimers, type Timers } from "../../contract/clock.js";
import { FINAL_STATUSES, IncidentStatus } from "../incidents/model.js";
import { errorText, OperatorEvent, type OperatorLog } from "../log.js";
import type { MarkWriter } from "./mark-writer.js";
import { NEEDS_HUMAN } from "./notice.js";
import type { Notifier } from "./notifier.js";
import type { NotifiedMarks } from "./notified.js";

/** Default time between two passes: an ack written by another process reaches the receivers within it. */
export const DEFAULT_SYNC_INTERVAL_MS = 15_000;
/** Default deadline of one pass's list call. */
export const DEFAULT_SYNC_LIST_TIMEOUT_MS = 10_000;
/** Default: at a term start, incidents updated this recently are checked even when closed (their last notice may be lost). */
export const DEFAULT_SYNC_RECENT_MS = 3_600_000;
/** A failing pass is logged at its first failure and then at most this often. */
const LOG_EVERY_MS = 60_000;

/** The statuses every pass reads: not final yet, or needing a human (what can still fire, and what an ack changes). */
export function watchedStatuses(): IncidentStatus[] {
  return IncidentStatus.options.filter((s) => !FINAL_STATUSES.has(s) || NEEDS_HUMAN.has(s));
}

/** What a `ClusterSync` needs. */
export interface ClusterSyncOptions {
  marks: NotifiedMarks;
  notifier: Notifier;
  /** Told what the cluster holds, so that it does not write the same mark again. */
  writer: MarkWriter;
  log: OperatorLog;
  /** Where its metrics go (reused if registered before). */
  registry: Registry;
  /** Default `systemTimers`. */
  timers?: Timers;
  /** Time from the end of one pass to the start of the next. Default 15 s. */
  intervalMs?: number;
  /** Deadline of one pass's list call. Default 10 s. */
  listTimeoutMs?: number;
  /** At a term start, closed incidents updated this recently are checked too. Default 1 h. */
  recentMs?: number;
}

interface SyncMetrics {
  passes: Counter<"result">;
  resent: Counter;
}

/** One term's passes over the Incident objects; see the module comment. Options and defaults on `ClusterSyncOptions`. */
export class ClusterSync {
  private readonly timers: Timers;
  private readonly intervalMs: number;
  private readonly listTimeoutMs: number;
  private readonly recentMs: number;
  private readonly stopped = new AbortController();
  private readonly m: SyncMetrics;
  private started = false;
  private firstDone = false;
  private lastLog = -Infinity;
  private failures = 0;

  constructor(private readonly options: ClusterSyncOptions) {
    this.timers = options.timers ?? systemTimers;
    this.intervalMs = positive("intervalMs", options.intervalMs ?? DEFAULT_SYNC_INTERVAL_MS);
    this.listTimeoutMs = positive("listTimeoutMs", options.listTimeoutMs ?? DEFAULT_SYNC_LIST_TIMEOUT_MS);
    this.recentMs = positive("recentMs", options.recentMs ?? DEFAULT_SYNC_RECENT_MS);
    this.m = createMetrics(options.registry);
  }

  /** Runs the first pass now and the others every `intervalMs` after it until `stop()`; resolves when the first pass ended (it never rejects). */
  start(): Promise<void> {
    if (this.started) throw new Error("ClusterSync: start() was called twice");
    this.started = true;
    const { signal } = this.stopped;
    const first = this.pass();
    void first.then(async () => {
      while (!signal.aborted) {
        await this.timers.sleep(this.intervalMs, signal);
        if (signal.aborted) return;
        await this.pass();
      }
    });
    return first;
  }

  /** The term ended: no pass starts, the list in flight is abandoned, and nothing read is acted on. */
  stop(): void {
    this.stopped.abort();
  }

  /** One pass; never throws. */
  private async pass(): Promise<void> {
    const { signal } = this.stopped;
    if (signal.aborted) return;
    const first = !this.firstDone;
    const { marks, notifier, writer, log } = this.options;
    const call = deadline(this.timers, this.listTimeoutMs, signal);
    let listed;
    try {
      // The first pass reads every record (closed ones too); the others only what can still fire or be acknowledged.
      listed = await marks.listNotified(first ? {} : { status: watchedStatuses() }, call.signal);
    } catch (err) {
      if (signal.aborted) return;
      this.failed(call.timedOut ? `no answer within ${this.listTimeoutMs} ms` : errorText(err));
      return;
    } finally {
      call.release();
    }
    if (signal.aborted) return;
    const watched = new Set<string>(watchedStatuses());
    const since = this.timers.now() - this.recentMs;
    let read = 0;
    let resent = 0;
    for (const { incident, notified } of listed) {
      if (!watched.has(incident.status) && Date.parse(incident.updatedAt) < since) continue;
      read++;
      writer.known(incident.id, notified);
      if (notifier.recorded(incident, notified) === "resent") resent++;
    }
    this.m.passes.inc({ result: "ok" });
    this.m.resent.inc(resent);
    if (this.failures > 0) {
      log.info(OperatorEvent.notifyRecovered, { failures: this.failures }, `Notifications: the Incident objects are read again, after ${this.failures} failed pass(es)`);
      this.failures = 0;
      this.lastLog = -Infinity;
    }
    if (first) {
      this.firstDone = true;
      log.info(
        OperatorEvent.termStarted,
        { notificationsRead: read, notificationsResent: resent },
        `Notifications: ${read} incident(s) read back from the cluster; ${resent} sent again (what was last delivered about them is not their state now)`,
      );
    }
  }

  private failed(why: string): void {
    this.m.passes.inc({ result: "failed" });
    this.failures++;
    const now = this.timers.now();
    if (now - this.lastLog < LOG_EVERY_MS) return;
    this.lastLog = now;
    this.options.log.warn(
      OperatorEvent.storeError,
      { failures: this.failures },
      `Notifications: could not read the Incident objects (${why}); acknowledgements written since${this.firstDone ? "" : ", and notices the last leader had not delivered,"} wait for the next pass in ${this.intervalMs} ms`,
    );
  }
}

function createMetrics(registry: Registry): SyncMetrics {
  const reuse = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [registry];
  const passes = reuse(
    "reclaim_operator_notification_sync_total",
    () =>
      new Counter({
        name: "reclaim_operator_notification_sync_total",
        help: "Passes of the leader over the Incident objects for its notifications (acks written by other processes, notices a previous leader did not deliver), by result: ok, failed.",
        labelNames: ["result"],
        registers,
      }),
  );
  passes.inc({ result: "ok" }, 0);
  passes.inc({ result: "failed" }, 0);
  const resent = reuse(
    "reclaim_operator_notifications_resent_total",
    () =>
      new Counter({
        name: "reclaim_operator_notifications_resent_total",
        help: "Incidents the leader did not know that were notified again when read back from the cluster (mostly at a term start), because what was last recorded as delivered about them is not their state now.",
        registers,
      }),
  );
  return { passes, resent };
}

function positive(what: string, value: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw new TypeError(`ClusterSync: ${what} must be a positive number, got ${String(value)}`);
  return value;
}
