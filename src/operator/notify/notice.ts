/**
 * Incident records (and circuit breakers) as `Notice`s: what every receiver
 * is told (ADR 23). Pure functions; the notifier decides when to send.
 */
import { FINAL_STATUSES, NEEDS_HUMAN, type Incident } from "../incidents/model.js";
import type { Notice } from "./types.js";

/** Statuses that need a person (defined with the record, where the digest reads it too). */
export { NEEDS_HUMAN };

/** Longest description sent (receivers cut further to their own limits). */
const MAX_DESCRIPTION = 1500;

export interface NoticeOptions {
  /** The operator's external URL (`--external-url`): links go to `<url>/incidents/<id>`; null: no link. */
  externalUrl: string | null;
  /** When this notice is made (ms since the epoch). */
  now: number;
  /** Who acknowledged the incident first, if anyone. */
  acknowledged: { by: string; at: string } | null;
}

/** The link to an incident in the operator's web view, or null without an external URL. */
export function incidentLink(externalUrl: string | null, id: string): string | null {
  if (externalUrl === null) return null;
  return `${externalUrl.replace(/\/+$/, "")}/incidents/${encodeURIComponent(id)}`;
}

/** An incident as a notice. */
export function noticeOf(incident: Incident, options: NoticeOptions): Notice {
  const final = FINAL_STATUSES.has(incident.status);
  const needsHuman = NEEDS_HUMAN.has(incident.status) && !incident.dryRun;
  const firing = !final || (needsHuman && options.acknowledged === null);
  const last = incident.decisions[incident.decisions.length - 1];
  const described = incident.ruleInfo?.description ?? `Rule ${incident.rule} acted for ${incident.keyString}.`;
  const description = `${described.trim()}${last === undefined ? "" : `\nLast decision (${last.kind}): ${last.detail}`}`;
  return {
    subject: incident.id,
    kind: "incident",
    rule: incident.rule,
    userId: incident.rollup === undefined ? incident.target.userId : null,
    pod: incident.target.pod,
    namespace: incident.target.namespace ?? null,
    severity: incident.severity,
    status: incident.status,
    needsHuman: needsHuman && options.acknowledged === null,
    firing,
    acknowledged: options.acknowledged,
    summary: `${incident.title} (${incident.status}${needsHuman && options.acknowledged === null ? ", needs a human" : ""})`,
    description: description.length > MAX_DESCRIPTION ? `${description.slice(0, MAX_DESCRIPTION - 1)}…` : description,
    runbookUrl: incident.ruleInfo?.runbook ?? null,
    link: incidentLink(options.externalUrl, incident.id),
    startsAt: incident.detectedAt,
    endsAt: firing ? null : (incident.closedAt ?? new Date(options.now).toISOString()),
    at: new Date(options.now).toISOString(),
  };
}

/** What about an incident a receiver cares about: a notice is sent when this changes, not on every rung. */
export function noticeFingerprint(notice: Notice): string {
  return `${notice.status}|${notice.needsHuman}|${notice.firing}|${notice.acknowledged?.by ?? ""}`;
}

/** A rule's circuit breaker, as the term sees it change. */
export interface CircuitState {
  rule: string;
  open: boolean;
  severity: Notice["severity"];
  /** The failed or escalated incidents that opened it (newest last). */
  incidents: readonly string[];
  /** When it opened (ms), and when it closes by itself unless another failure comes (ms); null once closed. */
  openedAt: number;
  closesAt: number | null;
  description: string | null;
  runbook: string | null;
}

/** A circuit breaker opening or closing, as a notice (subject `circuit:<rule>`). */
export function circuitNotice(state: CircuitState, options: { externalUrl: string | null; now: number }): Notice {
  const at = new Date(options.now).toISOString();
  const closes = state.closesAt === null ? "" : `; automation for it resumes at ${new Date(state.closesAt).toISOString()} unless another incident fails`;
  const which = state.incidents.length === 0 ? "" : ` (${state.incidents.join(", ")})`;
  return {
    subject: `circuit:${state.rule}`,
    kind: "circuit",
    rule: state.rule,
    userId: null,
    pod: null,
    namespace: null,
    severity: state.severity,
    status: state.open ? "open" : "closed",
    needsHuman: state.open,
    firing: state.open,
    acknowledged: null,
    summary: state.open
      ? `Circuit breaker of rule ${state.rule} is open: automation for it is held back`
      : `Circuit breaker of rule ${state.rule} closed: automation for it resumed`,
    description: state.open
      ? `${state.incidents.length} incident(s) of rule ${state.rule} failed or escalated in a row${which}${closes}.`
      : `No failure of rule ${state.rule} within its openFor; triggers are acted on again.`,
    runbookUrl: state.runbook,
    link: options.externalUrl === null ? null : `${options.externalUrl.replace(/\/+$/, "")}/?rule=${encodeURIComponent(state.rule)}`,
    startsAt: new Date(state.openedAt).toISOString(),
    endsAt: state.open ? null : at,
    at,
  };
}
