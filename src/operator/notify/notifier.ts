/**
 * The notifier (ADR 23): it sees every incident the operator records and
 * tells the receivers about the changes that matter to on-call — opened,
 * closed, needs a human, acknowledged — not about every rung. It never
 * waits: a notice goes into the outbox (persisted, delivered with retries by
 * outbox.ts) and, for Alertmanager, into the set of firing alerts that is
 * re-posted while they fire.
 *
 * `ObservedStore` wraps the incident store, so whatever writes a record
 * (the engine, the ladder, a restart closing an interrupted incident, the
 * sweep) is seen without any of them knowing about notifications.
 */
import type { Clock } from "../../contract/clock.js";
import type { Incident } from "../incidents/model.js";
import type { IncidentFilter, IncidentStore } from "../incidents/store.js";
import { noticeFingerprint, noticeOf } from "./notice.js";
import type { Notice } from "./types.js";

/** Where notices are put for delivery (the outbox). */
export interface NoticeSink {
  /** Synchronous and never throws: persisting and delivering happen later. */
  enqueue(notice: Notice, receivers: readonly string[]): void;
}

/** Alertmanager's firing alerts, re-posted while they fire. */
export interface FiringNotices {
  update(notice: Notice): void;
}

export interface NotifierOptions {
  sink: NoticeSink;
  /** The receivers a notice goes to (the notifications file's routes, plus every Alertmanager). */
  route: (notice: Notice) => readonly string[];
  /** Alertmanager's firing set, when `--alertmanager` is given. */
  firing?: FiringNotices;
  externalUrl: string | null;
  clock: Clock;
  /** Who acknowledged an incident first (its human entries), or null. */
  acknowledgement: (incident: Incident) => { by: string; at: string } | null;
  /** Most incidents whose last notice is remembered (default 10,000); one forgotten is notified again at its next change. */
  maxRemembered?: number;
}

export class Notifier {
  /** The fingerprint last notified, by subject, least recently changed first. */
  private readonly sent = new Map<string, string>();
  private readonly max: number;

  constructor(private readonly options: NotifierOptions) {
    this.max = options.maxRemembered ?? 10_000;
  }

  /** An incident was recorded: notify if what on-call sees changed. Never throws. */
  incidentChanged(incident: Incident): void {
    const { options } = this;
    const notice = noticeOf(incident, { externalUrl: options.externalUrl, now: options.clock.now(), acknowledged: options.acknowledgement(incident) });
    this.notify(notice);
  }

  /** A notice made elsewhere (a circuit breaker opening or closing). Never throws. */
  notify(notice: Notice): void {
    const fingerprint = noticeFingerprint(notice);
    this.options.firing?.update(notice);
    if (this.sent.get(notice.subject) === fingerprint) return;
    this.sent.delete(notice.subject);
    this.sent.set(notice.subject, fingerprint);
    if (this.sent.size > this.max) this.sent.delete(this.sent.keys().next().value!);
    const receivers = this.options.route(notice);
    if (receivers.length > 0) this.options.sink.enqueue(notice, receivers);
  }

  /**
   * Records read back at a start (or a periodic check): remembered as
   * notified, and fed to the firing set, without sending them again to the
   * receivers that only take changes — unless they changed since (an ack
   * written by the CLI while the operator was down is sent).
   */
  seen(incident: Incident): void {
    const { options } = this;
    const notice = noticeOf(incident, { externalUrl: options.externalUrl, now: options.clock.now(), acknowledged: options.acknowledgement(incident) });
    options.firing?.update(notice);
    const known = this.sent.get(notice.subject);
    if (known === undefined) {
      this.sent.set(notice.subject, noticeFingerprint(notice));
      if (this.sent.size > this.max) this.sent.delete(this.sent.keys().next().value!);
      return;
    }
    this.notify(notice);
  }
}

/** An incident store that tells `onSaved` (the notifier, `reclaim up`'s printer) about every record it wrote. */
export class ObservedStore implements IncidentStore {
  constructor(
    private readonly inner: IncidentStore,
    private readonly onSaved: (incident: Incident) => void,
  ) {}

  async save(incident: Incident): Promise<void> {
    await this.inner.save(incident);
    try {
      this.onSaved(incident);
    } catch {
      // A notification must never fail a write the ladder depends on.
    }
  }

  get(id: string): Promise<Incident | null> {
    return this.inner.get(id);
  }

  list(filter?: IncidentFilter): Promise<Incident[]> {
    return this.inner.list(filter);
  }
}
