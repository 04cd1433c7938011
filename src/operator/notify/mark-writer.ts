/**
 * Writes the "notified" marks (notified.ts) once the outbox says every
 * receiver of a notice accepted it: one write at a time, each under its
 * deadline, newest fingerprint per incident, never on the remediation path
 * and never waited for by it. A mark that cannot be written is logged and
 * counted, not retried: the cost is that the next leader sends that
 * incident's state once more (delivery is at least once).
 */
import { Counter, type Registry } from "prom-client";
import { deadline, systemTimers, type Timers } from "../../contract/clock.js";
import { INCIDENT_ID_PATTERN } from "../incidents/model.js";
import { errorText, OperatorEvent, type OperatorLog } from "../log.js";
import { noticeFingerprint } from "./notice.js";
import type { NotifiedMarks } from "./notified.js";
import type { Notice } from "./types.js";

/** A failure is logged at its first occurrence and then at most this often, with the count since. */
const LOG_EVERY_MS = 60_000;

/** What a `MarkWriter` needs. */
export interface MarkWriterOptions {
  marks: NotifiedMarks;
  log: OperatorLog;
  /** Where its metric `reclaim_operator_notification_marks_total` goes (reused if registered before). */
  registry: Registry;
  /** Default `systemTimers`. */
  timers?: Timers;
  /** Deadline of one write, and of `stop()`'s flush of what waits. Default 10 s. */
  callTimeoutMs?: number;
  /** Most marks waiting, and most incidents whose written mark is remembered. Default 10,000. */
  max?: number;
}

type MarkResult = "written" | "absent" | "failed" | "dropped";

/** Records, after delivery, what reached every receiver of each incident. Options and defaults on `MarkWriterOptions`. */
export class MarkWriter {
  private readonly timers: Timers;
  private readonly callTimeoutMs: number;
  private readonly max: number;
  /** Marks to write, by incident id, oldest first. */
  private readonly queue = new Map<string, string>();
  /** What the cluster holds (written here, or read by a sync pass), by incident id. */
  private readonly held = new Map<string, string>();
  private readonly total: Counter<"result">;
  private readonly stopping = new AbortController();
  private draining: Promise<void> | null = null;
  private closed = false;
  private lastLog = -Infinity;
  private unlogged = 0;

  constructor(private readonly options: MarkWriterOptions) {
    this.timers = options.timers ?? systemTimers;
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.max = options.max ?? 10_000;
    if (!(this.callTimeoutMs > 0)) throw new TypeError(`MarkWriter: callTimeoutMs must be positive, got ${String(options.callTimeoutMs)}`);
    if (!Number.isInteger(this.max) || this.max < 1) throw new TypeError(`MarkWriter: max must be a positive integer, got ${String(options.max)}`);
    const name = "reclaim_operator_notification_marks_total";
    this.total =
      (options.registry.getSingleMetric(name) as Counter<"result"> | undefined) ??
      new Counter({
        name,
        help: "Records on Incident objects of what every receiver accepted, by result: written, absent (no such incident), failed, dropped (too many waiting, or stopped).",
        labelNames: ["result"],
        registers: [options.registry],
      });
    for (const result of ["written", "absent", "failed", "dropped"] as const) this.total.inc({ result }, 0);
  }

  /** The cluster holds `fingerprint` (or nothing) for incident `id`, as a sync pass read it: the same is not written again. */
  known(id: string, fingerprint: string | null): void {
    if (fingerprint === null) this.held.delete(id);
    else this.remember(id, fingerprint);
  }

  /** Every receiver routed `notice` accepted it: its fingerprint is recorded on the incident, later. Never throws, never waits. */
  delivered(notice: Notice): void {
    if (this.closed || notice.kind !== "incident" || !INCIDENT_ID_PATTERN.test(notice.subject)) return;
    const id = notice.subject;
    const fingerprint = noticeFingerprint(notice);
    this.queue.delete(id);
    // The same state re-posted (Alertmanager's firing alerts, every minute) costs no call.
    if (this.held.get(id) === fingerprint) return;
    this.queue.set(id, fingerprint);
    if (this.queue.size > this.max) {
      this.queue.delete(this.queue.keys().next().value!);
      this.failed("dropped", `more than ${this.max} marks wait to be written`);
    }
    this.drain();
  }

  /** Writes what waits (within one `callTimeoutMs` in all), then stops; what is left is dropped and logged. */
  async stop(): Promise<void> {
    this.closed = true;
    const flush = deadline(this.timers, this.callTimeoutMs);
    flush.signal.addEventListener("abort", () => this.stopping.abort(flush.signal.reason), { once: true });
    try {
      while (this.draining !== null) await this.draining;
    } finally {
      flush.release();
    }
    if (this.queue.size > 0) {
      this.total.inc({ result: "dropped" }, this.queue.size);
      this.options.log.warn(
        OperatorEvent.notifyDropped,
        { marks: this.queue.size },
        `Stopped with ${this.queue.size} delivered notice(s) not recorded on their Incident objects; the next leader sends them once more`,
      );
      this.queue.clear();
    }
  }

  /** Resolves when nothing waits or is being written (tests). */
  async idle(): Promise<void> {
    while (this.draining !== null) await this.draining;
  }

  private drain(): void {
    if (this.draining !== null) return;
    this.draining = (async () => {
      for (let next = this.take(); next !== null && !this.stopping.signal.aborted; next = this.take()) await this.write(...next);
    })().finally(() => {
      this.draining = null;
    });
  }

  private take(): [string, string] | null {
    const first = this.queue.entries().next();
    if (first.done === true) return null;
    this.queue.delete(first.value[0]);
    return first.value;
  }

  private async write(id: string, fingerprint: string): Promise<void> {
    if (this.held.get(id) === fingerprint) return;
    const call = deadline(this.timers, this.callTimeoutMs, this.stopping.signal);
    try {
      const found = await this.options.marks.markNotified(id, fingerprint, call.signal);
      if (found) {
        this.remember(id, fingerprint);
        this.total.inc({ result: "written" });
      } else this.total.inc({ result: "absent" });
    } catch (err) {
      this.failed("failed", `could not record on incident ${id} what its receivers accepted (the next leader sends it once more): ${errorText(err)}`);
    } finally {
      call.release();
    }
  }

  private remember(id: string, fingerprint: string): void {
    this.held.delete(id);
    this.held.set(id, fingerprint);
    if (this.held.size > this.max) this.held.delete(this.held.keys().next().value!);
  }

  private failed(result: MarkResult, message: string): void {
    this.total.inc({ result });
    this.unlogged++;
    const now = this.timers.now();
    if (now - this.lastLog < LOG_EVERY_MS) return;
    const n = this.unlogged;
    this.unlogged = 0;
    this.lastLog = now;
    this.options.log.warn(OperatorEvent.notifyDropped, { marks: n }, n === 1 ? `Notifications: ${message}` : `Notifications: ${message} (${n} such failures since the last line)`);
  }
}
