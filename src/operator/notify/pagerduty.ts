/**
 * A PagerDuty Events API v2 receiver. One incident is one PagerDuty alert:
 * every event carries the notice's subject as `dedup_key`, so the trigger,
 * the acknowledgement and the resolution all land on the same alert.
 *
 * - firing, not acknowledged: `trigger` (again on every update: PagerDuty
 *   adds it to the open alert's log instead of opening another)
 * - firing, acknowledged: `acknowledge`
 * - ended by an acknowledgement (an incident the automation gave up on,
 *   which a person took): `acknowledge` — the person resolves it in
 *   PagerDuty when they are done, and PagerDuty's ack timeout keeps them to it
 * - ended otherwise (resolved): `resolve`
 */
import type { Clock } from "../../contract/clock.js";
import type { IncidentStatus } from "../incidents/model.js";
import { postJson } from "./http.js";
import { NEEDS_HUMAN } from "./notice.js";
import type { Delivery, Notice, NoticeSeverity, Receiver } from "./types.js";

/** PagerDuty's Events API v2 endpoint (US service region; EU accounts use `https://events.eu.pagerduty.com/v2/enqueue`). */
export const PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue";

/** Longest `payload.summary` PagerDuty accepts. */
export const PAGERDUTY_MAX_SUMMARY = 1024;

/** The `source` of notices that name no pod (a circuit breaker). */
export const PAGERDUTY_DEFAULT_SOURCE = "reclaim-operator";

/** Incident severity to PagerDuty severity. */
export const PAGERDUTY_SEVERITY: Readonly<Record<NoticeSeverity, "critical" | "error" | "warning" | "info">> = {
  critical: "critical",
  high: "error",
  warning: "warning",
  info: "info",
};

/** An Events API v2 alert event, as sent. */
export interface PagerDutyEvent {
  routing_key: string;
  event_action: "trigger" | "acknowledge" | "resolve";
  dedup_key: string;
  /** Trigger events only. */
  payload?: {
    summary: string;
    source: string;
    severity: "critical" | "error" | "warning" | "info";
    timestamp: string;
    component: string;
    group?: string;
    class: string;
    custom_details: Record<string, unknown>;
  };
  links?: { href: string; text: string }[];
  client?: string;
  client_url?: string;
}

/** How to reach one PagerDuty service. */
export interface PagerDutyOptions {
  /** The receiver's name (the notifications file's `name`). */
  name: string;
  /** The service integration's routing key: a secret, taken from the environment. */
  routingKey: string;
  /** The Events API endpoint (default `PAGERDUTY_EVENTS_URL`). */
  url?: string;
  /** Reads `Retry-After` dates against this clock (default the system clock). */
  clock?: Clock;
}

/** Sends each notice to PagerDuty as an alert event; one attempt per `send`. */
export class PagerDutyReceiver implements Receiver {
  readonly type = "pagerduty" as const;
  readonly name: string;
  readonly #routingKey: string;
  readonly #url: string;
  readonly #clock: Clock | undefined;

  constructor(options: PagerDutyOptions) {
    this.name = options.name;
    this.#routingKey = options.routingKey;
    this.#url = options.url ?? PAGERDUTY_EVENTS_URL;
    this.#clock = options.clock;
  }

  /** One POST; never throws (see `postJson`). */
  send(notice: Notice, signal: AbortSignal): Promise<Delivery> {
    const clock = this.#clock;
    return postJson(this.#url, pagerDutyEvent(notice, this.#routingKey), { signal, ...(clock === undefined ? {} : { now: () => clock.now() }) });
  }
}

/** The event action a notice's state asks for. */
export function pagerDutyAction(notice: Notice): PagerDutyEvent["event_action"] {
  if (notice.acknowledged !== null) return notice.firing || NEEDS_HUMAN.has(notice.status as IncidentStatus) ? "acknowledge" : "resolve";
  return notice.firing ? "trigger" : "resolve";
}

/** The event for one notice (exported for tests and previews). Acknowledge and resolve carry only the key: PagerDuty reads nothing else from them. */
export function pagerDutyEvent(notice: Notice, routingKey: string): PagerDutyEvent {
  const event_action = pagerDutyAction(notice);
  const base = { routing_key: routingKey, event_action, dedup_key: notice.subject };
  if (event_action !== "trigger") return base;
  const links = [
    ...(isHttpUrl(notice.link) ? [{ href: notice.link, text: "Incident" }] : []),
    ...(isHttpUrl(notice.runbookUrl) ? [{ href: notice.runbookUrl, text: "Runbook" }] : []),
  ];
  const summary = notice.summary.replace(/\s+/g, " ").trim() || notice.subject;
  return {
    ...base,
    payload: {
      summary: cut(summary, PAGERDUTY_MAX_SUMMARY),
      source: notice.pod ?? PAGERDUTY_DEFAULT_SOURCE,
      severity: PAGERDUTY_SEVERITY[notice.severity],
      timestamp: notice.at,
      component: notice.rule,
      ...(notice.namespace === null ? {} : { group: notice.namespace }),
      class: notice.kind,
      custom_details: { ...notice },
    },
    ...(links.length > 0 ? { links } : {}),
    client: "Reclaim operator",
    ...(isHttpUrl(notice.link) ? { client_url: notice.link } : {}),
  };
}

function isHttpUrl(url: string | null): url is string {
  if (url === null) return false;
  try {
    const { protocol } = new URL(url);
    return protocol === "http:" || protocol === "https:";
  } catch {
    return false;
  }
}

/** `text` cut to `max` characters with an ellipsis, never through a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}
