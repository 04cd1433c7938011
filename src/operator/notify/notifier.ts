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
 *
 * Records are also read back (`seen` at a term start in file mode,
 * `recorded` by the cluster sync in Kubernetes mode, cluster-sync.ts): that
 * is how an acknowledgement written by another process reaches the
 * receivers. A read-back can be older than a save this operator made a
 * moment before (the list raced it): it never takes the operator's part of
 * a record back to an older state.
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

/** What a read-back record did (`Notifier.recorded`). */
export type ReadBack =
  /** Sent: the notifier did not know the incident, and what was recorded as delivered differs from its state. */
  | "resent"
  /** Sent: its state changed since it was last notified (an ack written by another process). */
  | "sent"
  /** Nothing to send. */
  | "unchanged"
  /** Older than what this operator saved since: only its human entries were taken. */
  | "stale";

/** An acknowledgement, as notices carry it. */
type Ack = { by: string; at: string };

/** What the notifier remembers of one subject. */
interface Told {
  /** The fingerprint last notified (or taken as notified). */
  fingerprint: string;
  /** The status and `updatedAt` (ms) of the record it was made from; null for notices made elsewhere (circuits). */
  status: string | null;
  updatedAt: number | null;
  /**
   * The first acknowledgement seen: human entries only grow, and the records
   * the ladder saves do not carry them (people own them, human.ts), so a
   * save after an ack must not take it back.
   */
  ack: Ack | null;
}

/** Decides what the receivers are told, and when (see the module comment). */
export class Notifier {
  /** By subject, least recently touched first. */
  private readonly told = new Map<string, Told>();
  private readonly max: number;

  constructor(private readonly options: NotifierOptions) {
    this.max = options.maxRemembered ?? 10_000;
  }

  /** An incident was recorded (by this operator: the newest state): notify if what on-call sees changed. Never throws. */
  incidentChanged(incident: Incident): void {
    this.tell(this.noticeFor(incident), incident);
  }

  /** A notice made elsewhere (a circuit breaker opening or closing). Never throws. */
  notify(notice: Notice): void {
    this.tell(notice, null);
  }

  /**
   * Records read back at a start (file mode): remembered as notified, and
   * fed to the firing set, without sending them again to the receivers that
   * only take changes — unless they changed since (an ack written by the CLI
   * while the operator was down is sent). A record older than what this
   * operator saved since is not taken (see `recorded`).
   */
  seen(incident: Incident): void {
    const known = this.told.get(incident.id);
    if (known !== undefined) {
      this.recorded(incident, null);
      return;
    }
    const notice = this.noticeFor(incident);
    this.recorded(incident, noticeFingerprint(notice));
  }

  /**
   * A record read back from the cluster with the fingerprint last recorded
   * as delivered (`notified`, NotifiedMarks), at a term start or by the
   * periodic pass. An incident this notifier does not know is sent when its
   * state differs from what was delivered (the last leader died with it
   * pending), else only remembered; one it knows is sent when it changed
   * (an ack written by `reclaim incidents ack`). A record older than what
   * this operator saved since (a list that raced a save) is not taken: only
   * its acknowledgement is kept, and the next pass reads it anew. Never throws.
   */
  recorded(incident: Incident, notified: string | null): ReadBack {
    const known = this.told.get(incident.id);
    if (known !== undefined && known.updatedAt !== null) {
      const at = Date.parse(incident.updatedAt);
      // Same time, other status: the saves came in order, and the list cannot say which is newer.
      if (at < known.updatedAt || (at === known.updatedAt && incident.status !== known.status)) {
        known.ack ??= this.options.acknowledgement(incident);
        return "stale";
      }
    }
    const notice = this.noticeFor(incident);
    if (known === undefined && noticeFingerprint(notice) === notified) {
      this.options.firing?.update(notice);
      this.remember(notice, incident);
      return "unchanged";
    }
    const sent = this.tell(notice, incident);
    return !sent ? "unchanged" : known === undefined ? "resent" : "sent";
  }

  private noticeFor(incident: Incident): Notice {
    const { options } = this;
    const acknowledged = options.acknowledgement(incident) ?? this.told.get(incident.id)?.ack ?? null;
    return noticeOf(incident, { externalUrl: options.externalUrl, now: options.clock.now(), acknowledged });
  }

  /** Feeds the firing set, remembers the notice, and queues it when its fingerprint changed. Returns whether it was queued for some receiver. */
  private tell(notice: Notice, from: Incident | null): boolean {
    const before = this.told.get(notice.subject)?.fingerprint;
    this.options.firing?.update(notice);
    const fingerprint = this.remember(notice, from);
    if (before === fingerprint) return false;
    const receivers = this.options.route(notice);
    if (receivers.length === 0) return false;
    this.options.sink.enqueue(notice, receivers);
    return true;
  }

  private remember(notice: Notice, from: Incident | null): string {
    const fingerprint = noticeFingerprint(notice);
    const known = this.told.get(notice.subject);
    this.told.delete(notice.subject);
    this.told.set(notice.subject, {
      fingerprint,
      status: from?.status ?? null,
      updatedAt: from === null ? null : Date.parse(from.updatedAt),
      ack: notice.acknowledged ?? known?.ack ?? null,
    });
    if (this.told.size > this.max) this.told.delete(this.told.keys().next().value!);
    return fingerprint;
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
