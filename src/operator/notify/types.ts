/**
 * What the operator tells on-call, and the receivers it tells it to
 * (ADR 23). A `Notice` is the state of one incident (or one rule's circuit
 * breaker) at one moment, already rendered to plain values: receivers turn it
 * into their own format (an Alertmanager alert, a Slack message, a PagerDuty
 * event) and never read incident records themselves.
 *
 * Delivery is at least once and never on the remediation path: the operator
 * puts notices into the outbox (outbox.ts), which persists them and delivers
 * each to its receivers with retries; a newer notice of the same subject
 * replaces one not yet delivered (a receiver learns the latest state, not
 * every step).
 */

/** Incident severities (the rule's `spec.incident.severity`). */
export type NoticeSeverity = "critical" | "high" | "warning" | "info";

/** One subject's state, as every receiver is told it. */
export interface Notice {
  /**
   * What it is about, stable across its updates: the incident id, or
   * `circuit:<rule>` for a rule's circuit breaker. PagerDuty's `dedup_key`,
   * Alertmanager's `incident` label; the outbox coalesces on it.
   */
  subject: string;
  kind: "incident" | "circuit";
  rule: string;
  /** The user acted on (incidents), or null (circuit notices). */
  userId: string | null;
  pod: string | null;
  namespace: string | null;
  severity: NoticeSeverity;
  /** The incident's status (`open`, `remediating`, `resolved`, `escalated`, `failed`, `suppressed`, `held`, …), or `open`/`closed` for a circuit. */
  status: string;
  /**
   * True while it needs a person (failed, escalated, held while the user is
   * still refused, a circuit open) and nobody has acknowledged it: routes
   * that page match on it (label `needs_human="true"`).
   */
  needsHuman: boolean;
  /**
   * True while the alert is firing: the incident is not final, or it needs a
   * human and is not acknowledged. False ends it (Alertmanager `endsAt`,
   * PagerDuty `resolve`).
   */
  firing: boolean;
  /** Set once a person acknowledged it (`reclaim incidents ack`): PagerDuty `acknowledge`. */
  acknowledged: { by: string; at: string } | null;
  /** One line: the incident's title and status. */
  summary: string;
  /** The rule's `metadata.description` (or a generated sentence), several lines at most. */
  description: string;
  /** The rule's `spec.runbook` URL, or null. */
  runbookUrl: string | null;
  /** A link to the incident in the operator's web view (`--external-url`), or null when there is none. */
  link: string | null;
  /** When it started (the incident's detection), ISO 8601. */
  startsAt: string;
  /** When it ended (ISO 8601), or null while firing. */
  endsAt: string | null;
  /** When this state was produced (ISO 8601): a receiver keeps the newest. */
  at: string;
}

/** How one attempt to deliver a notice to a receiver ended. */
export type Delivery =
  | { ok: true }
  | {
      ok: false;
      /** Never worth retrying (a 4xx other than 408/429): dropped, counted and logged. */
      permanent: boolean;
      /** What the receiver asked for (`Retry-After`, in ms), or null. */
      retryAfterMs: number | null;
      /** What went wrong, for the log (no secrets: never the URL's path or a key). */
      detail: string;
    };

/** Somewhere notices go: an Alertmanager, a webhook, Slack, PagerDuty. */
export interface Receiver {
  /** Unique among the receivers (the notifications file's name, or `alertmanager-1`): metric label and outbox folder. */
  readonly name: string;
  readonly type: "alertmanager" | "webhook" | "slack" | "pagerduty";
  /** Delivers one notice. Never throws: every failure is a `Delivery`. Must give up when `signal` aborts (the outbox's deadline). */
  send(notice: Notice, signal: AbortSignal): Promise<Delivery>;
}

/** A receiver's name: a safe folder and label value. */
export const RECEIVER_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
