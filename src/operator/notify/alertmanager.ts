/**
 * Notices as Alertmanager alerts (v2 API, `POST /api/v2/alerts`), the way
 * Prometheus sends them: every firing alert carries an `endsAt` a few
 * minutes ahead and is re-posted while it fires (`FiringSet`), so an
 * operator that dies leaves no alert firing forever (the "operator down"
 * alert covers that case); an alert that ends is posted once more with
 * `endsAt` set, and Alertmanager sends its resolution.
 *
 * Alertmanager tells alerts apart by their label set, and `status` and
 * `needs_human` are labels (routes page on `needs_human="true"`): a notice
 * whose labels differ from what was posted before for its subject is a new
 * alert. As Prometheus does when an alert's labels change, the receiver ends
 * the label sets it posted before for that subject in the same request, so
 * "remediating" does not go on firing beside "resolved". It remembers them
 * in memory only: after a restart an old label set ends when its `endsAt`
 * passes (at most `firingTtlMs`).
 */
import { systemTimers, type Timers } from "../../contract/clock.js";
import { postJson, safeHost } from "./http.js";
import { RECEIVER_NAME_PATTERN, type Delivery, type Notice, type Receiver } from "./types.js";

/** How long a posted firing alert lives in Alertmanager unless it is posted again: 4 re-posts, as Prometheus does. */
export const DEFAULT_FIRING_TTL_MS = 4 * 60_000;
/** How often `FiringSet` re-posts what fires. */
export const DEFAULT_REPOST_MS = 60_000;
/** Most subjects `FiringSet` (and a receiver's memory of posted label sets) keeps. */
export const DEFAULT_MAX_SUBJECTS = 10_000;
/** Longest label value sent, in UTF-16 units: ids, names and statuses are far shorter. */
export const MAX_LABEL_LENGTH = 256;
/** Longest annotation value sent (summary, description, links). */
export const MAX_ANNOTATION_LENGTH = 4096;
/** Most label sets remembered per subject (statuses × needs_human is far fewer). */
const MAX_LABEL_SETS_PER_SUBJECT = 16;

/** One element of the body of `POST /api/v2/alerts` (the spec's `postableAlert`). */
export interface PostableAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL?: string;
}

/**
 * The alert for `notice` at time `now` (ms). Labels: `alertname`
 * (`ReclaimIncident` or `ReclaimCircuitOpen`), `incident`, `rule`, `user`,
 * `pod`, `namespace`, `severity`, `status`, `needs_human`; null or empty
 * values are left out. A firing alert ends at `now + firingTtlMs`, an ended
 * one at the notice's `endsAt` (or `at`); never before it starts, which
 * Alertmanager refuses. Throws a `TypeError` when `startsAt` is not a date.
 */
export function alertFor(notice: Notice, now: number, firingTtlMs = DEFAULT_FIRING_TTL_MS): PostableAlert {
  const startsAt = Date.parse(notice.startsAt);
  if (Number.isNaN(startsAt)) throw new TypeError(`notice ${JSON.stringify(notice.subject)}: startsAt is not a date: ${JSON.stringify(notice.startsAt)}`);
  let endsAt = notice.firing ? now + firingTtlMs : Date.parse(notice.endsAt ?? notice.at);
  // An unreadable end of an ended notice: end it now rather than leave it firing.
  if (Number.isNaN(endsAt)) endsAt = now;
  const link = httpUrl(notice.link);
  return {
    labels: pick(
      {
        alertname: notice.kind === "circuit" ? "ReclaimCircuitOpen" : "ReclaimIncident",
        incident: notice.subject,
        rule: notice.rule,
        user: notice.userId,
        pod: notice.pod,
        namespace: notice.namespace,
        severity: notice.severity,
        status: notice.status,
        needs_human: String(notice.needsHuman),
      },
      MAX_LABEL_LENGTH,
    ),
    annotations: pick(
      { summary: notice.summary, description: notice.description, runbook_url: notice.runbookUrl, incident_url: notice.link },
      MAX_ANNOTATION_LENGTH,
    ),
    startsAt: new Date(startsAt).toISOString(),
    endsAt: new Date(Math.max(startsAt, endsAt)).toISOString(),
    ...(link === null ? {} : { generatorURL: link }),
  };
}

/** Options of an `AlertmanagerReceiver`. */
export interface AlertmanagerReceiverOptions {
  /** The receiver's name (`alertmanager-1`): metric label and outbox folder. */
  name: string;
  /** Alertmanager's base URL, with any path prefix (`http://alertmanager:9093/alertmanager`). */
  url: string;
  /** Whose `now` stamps `endsAt` (default `systemTimers`). */
  timers?: Timers;
  /** How long a firing alert lives unless re-posted (default `DEFAULT_FIRING_TTL_MS`, 4 min). */
  firingTtlMs?: number;
}

/** What was posted for one subject. */
interface Posted {
  /** The newest `notice.at` sent: an older notice is stale. */
  at: number;
  /** Label sets that may still fire in Alertmanager, by `key()`. */
  live: Map<string, PostableAlert>;
}

/** Posts notices to one Alertmanager's v2 API; an HA pair is two receivers (Alertmanager's own advice: send to every member). */
export class AlertmanagerReceiver implements Receiver {
  readonly type = "alertmanager";
  readonly name: string;
  private readonly endpoint: string;
  private readonly timers: Timers;
  private readonly firingTtlMs: number;
  private readonly posted = new Map<string, Posted>();

  constructor(options: AlertmanagerReceiverOptions) {
    if (!RECEIVER_NAME_PATTERN.test(options.name)) throw new TypeError(`AlertmanagerReceiver: name must match ${RECEIVER_NAME_PATTERN.source}, got ${JSON.stringify(options.name)}`);
    this.name = options.name;
    this.endpoint = `${baseUrl(options.name, options.url)}/api/v2/alerts`;
    this.timers = options.timers ?? systemTimers;
    this.firingTtlMs = options.firingTtlMs ?? DEFAULT_FIRING_TTL_MS;
    if (!Number.isInteger(this.firingTtlMs) || this.firingTtlMs < 1000) {
      throw new TypeError(`AlertmanagerReceiver ${options.name}: firingTtlMs must be a whole number of ms, at least 1000, got ${String(options.firingTtlMs)}`);
    }
  }

  /** Posts the notice's alert, and ends the subject's other label sets. Never throws. */
  async send(notice: Notice, signal: AbortSignal): Promise<Delivery> {
    const now = this.timers.now();
    let alert: PostableAlert;
    try {
      alert = alertFor(notice, now, this.firingTtlMs);
    } catch (err) {
      // Alertmanager would answer 400: say why here instead.
      return { ok: false, permanent: true, retryAfterMs: null, detail: `${safeHost(this.endpoint)}: ${(err as Error).message}` };
    }
    const at = Date.parse(notice.at);
    const posted = this.posted.get(notice.subject) ?? { at: Number.NEGATIVE_INFINITY, live: new Map<string, PostableAlert>() };
    // A receiver keeps the newest state: an older notice (a late retry) would re-fire what has moved on.
    if (at < posted.at) return { ok: true };
    posted.at = Number.isNaN(at) ? posted.at : at;
    const current = key(alert.labels);
    const ended = [...posted.live].filter(([k]) => k !== current);
    const body = [...ended.map(([, old]) => ({ ...old, endsAt: new Date(Math.max(now, Date.parse(old.startsAt))).toISOString() })), alert];
    // Before the POST: one that times out may still have landed.
    posted.live.delete(current);
    posted.live.set(current, alert);
    trim(posted.live, MAX_LABEL_SETS_PER_SUBJECT);
    this.posted.delete(notice.subject);
    this.posted.set(notice.subject, posted);
    trim(this.posted, DEFAULT_MAX_SUBJECTS);

    const delivery = await postJson(this.endpoint, body, { signal, now: () => this.timers.now() });
    if (delivery.ok) {
      for (const [k] of ended) posted.live.delete(k);
      if (!notice.firing) posted.live.delete(current);
      // Nothing of it fires any more: forget it (bounded memory; a late stale notice would fire only until its endsAt).
      if (posted.live.size === 0 && this.posted.get(notice.subject) === posted) this.posted.delete(notice.subject);
    }
    return delivery;
  }
}

/**
 * The latest notice of every subject that fires, re-posted every interval so
 * that Alertmanager keeps it firing (each post pushes `endsAt` on). Bounded:
 * beyond `max` subjects the one that started first is dropped, and counted
 * in `dropped`.
 */
export class FiringSet {
  private readonly notices = new Map<string, Notice>();
  private cancel: (() => void) | null = null;
  private droppedCount = 0;

  /**
   * @param options.timers whose `every` re-posts (default `systemTimers`)
   * @param options.max most subjects kept (default `DEFAULT_MAX_SUBJECTS`, 10,000)
   */
  constructor(private readonly options: { timers?: Timers; max?: number } = {}) {
    const max = options.max ?? DEFAULT_MAX_SUBJECTS;
    if (!Number.isInteger(max) || max < 1) throw new TypeError(`FiringSet: max must be a positive integer, got ${String(options.max)}`);
  }

  /** Keeps `notice` as its subject's latest when it fires; forgets the subject when it does not. */
  update(notice: Notice): void {
    if (!notice.firing) {
      this.notices.delete(notice.subject);
      return;
    }
    this.notices.set(notice.subject, notice);
    if (this.notices.size > (this.options.max ?? DEFAULT_MAX_SUBJECTS)) {
      // A scan, not an index: it runs only while the set overflows, and stays O(max).
      let oldest: { subject: string; t: number } | null = null;
      for (const n of this.notices.values()) {
        const t = Date.parse(n.startsAt);
        // An unreadable start cannot be posted anyway: it goes first.
        const started = Number.isNaN(t) ? Number.NEGATIVE_INFINITY : t;
        if (oldest === null || started < oldest.t) oldest = { subject: n.subject, t: started };
      }
      if (oldest !== null) this.notices.delete(oldest.subject);
      this.droppedCount++;
    }
  }

  /** The notices that fire now. */
  firing(): Notice[] {
    return [...this.notices.values()];
  }

  /** Subjects dropped because the set was full (they go on firing until their `endsAt` passes). */
  get dropped(): number {
    return this.droppedCount;
  }

  /**
   * Calls `resend` with every firing notice each `every` ms (use
   * `DEFAULT_REPOST_MS`, 1 min, well inside the firing TTL) until `stop()`;
   * not when nothing fires. Starting again replaces the schedule. `resend`
   * must not throw: it runs on a timer.
   */
  start(every: number, resend: (notices: Notice[]) => void): void {
    this.stop();
    this.cancel = (this.options.timers ?? systemTimers).every(every, () => {
      if (this.notices.size > 0) resend(this.firing());
    });
  }

  /** Stops re-posting; the notices are kept. */
  stop(): void {
    this.cancel?.();
    this.cancel = null;
  }
}

/** `url` without trailing slashes, checked: http(s), no credentials, query or fragment (fetch refuses credentials; the API path goes last). */
function baseUrl(name: string, url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new TypeError(`AlertmanagerReceiver ${name}: url is not a URL`, { cause: err });
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new TypeError(`AlertmanagerReceiver ${name}: url must be http or https, got ${u.protocol}`);
  if (u.username !== "" || u.password !== "" || u.search !== "" || u.hash !== "") {
    throw new TypeError(`AlertmanagerReceiver ${name}: url of ${u.host} must have no credentials, query or fragment`);
  }
  return `${u.origin}${u.pathname.replace(/\/+$/, "")}`;
}

/** `link` normalised when it is an absolute http(s) URL (Alertmanager checks `generatorURL`), else null. */
function httpUrl(link: string | null): string | null {
  if (link === null) return null;
  try {
    const u = new URL(link);
    return (u.protocol === "http:" || u.protocol === "https:") && u.href.length <= MAX_ANNOTATION_LENGTH ? u.href : null;
  } catch {
    return null;
  }
}

/** The non-empty values, well-formed and cut to `max`. */
function pick(values: Record<string, string | null>, max: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) {
    if (value === null || value === "") continue;
    out[name] = wellFormed(value.length > max ? value.slice(0, max) : value);
  }
  return out;
}

/** Lone surrogates (e.g. a pair cut in half) as U+FFFD: label values must be valid UTF-8. */
function wellFormed(value: string): string {
  return value.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

/** A label set's identity, as Alertmanager's fingerprint sees it (order does not matter). */
function key(labels: Record<string, string>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Drops the oldest-inserted entries beyond `max`. */
function trim<K, V>(map: Map<K, V>, max: number): void {
  for (const k of map.keys()) {
    if (map.size <= max) return;
    map.delete(k);
  }
}
