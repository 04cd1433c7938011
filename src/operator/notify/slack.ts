/**
 * A Slack incoming-webhook receiver: one message per notice, a plain one-line
 * `text` (what notifications and screen readers show) and Block Kit `blocks`
 * (what the channel shows).
 *
 * Everything that came from a record is hostile: a user id or a log line may
 * hold `<!channel>` or `<http://evil|click>`, which Slack would turn into a
 * mention of everyone or a disguised link. Every such value is escaped
 * (`&` `<` `>` become entities, the only characters Slack parses), and each
 * text is cut to its Block Kit limit, since Slack refuses the whole message
 * (`invalid_blocks`) when one block is too long.
 */
import type { Clock } from "../../contract/clock.js";
import { postJson } from "./http.js";
import type { Delivery, Notice, Receiver } from "./types.js";

/** Block Kit limits, in characters as sent (after escaping). */
export const SLACK_LIMITS = {
  headerText: 150,
  sectionText: 3000,
  fieldText: 2000,
  fields: 10,
  /** A context element's text (a text object's own limit). */
  contextText: 3000,
  /** The top-level `text`: Slack cuts longer ones; this one is a single line anyway. */
  text: 3000,
} as const;

/** A Block Kit text object. */
export interface SlackText {
  type: "plain_text" | "mrkdwn";
  text: string;
}

/** The blocks this receiver sends. */
export type SlackBlock =
  | { type: "header"; text: SlackText }
  | { type: "section"; text?: SlackText; fields?: SlackText[] }
  | { type: "context"; elements: SlackText[] };

/** An incoming-webhook message. */
export interface SlackMessage {
  text: string;
  blocks: SlackBlock[];
}

/** How to reach one Slack incoming webhook. */
export interface SlackOptions {
  /** The receiver's name (the notifications file's `name`). */
  name: string;
  /** The incoming webhook's URL: a secret (its path is the credential), taken from the environment. */
  webhookUrl: string;
  /** Reads `Retry-After` dates against this clock (default the system clock). */
  clock?: Clock;
}

/** Posts each notice to a Slack incoming webhook; one attempt per `send`. */
export class SlackReceiver implements Receiver {
  readonly type = "slack" as const;
  readonly name: string;
  readonly #url: string;
  readonly #clock: Clock | undefined;

  constructor(options: SlackOptions) {
    this.name = options.name;
    this.#url = options.webhookUrl;
    this.#clock = options.clock;
  }

  /** One POST; never throws (see `postJson`). */
  send(notice: Notice, signal: AbortSignal): Promise<Delivery> {
    const clock = this.#clock;
    return postJson(this.#url, slackMessage(notice), { signal, ...(clock === undefined ? {} : { now: () => clock.now() }) });
  }
}

/** Slack's escaping: `&`, `<` and `>` as entities, so that no value can open a mention, a link or a command. */
export function escapeSlack(value: string): string {
  return value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * `escaped` cut to `max` characters with an ellipsis, never through an entity
 * (`&amp;` half sent would show as text) nor through a surrogate pair.
 */
export function truncateEscaped(escaped: string, max: number): string {
  if (escaped.length <= max) return escaped;
  let cut = max - 1; // room for the ellipsis
  // Every `&` in escaped text starts an entity: step back to it when the cut would split it.
  const amp = escaped.lastIndexOf("&", cut - 1);
  if (amp >= 0 && escaped.indexOf(";", amp) >= cut) cut = amp;
  const last = escaped.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut--;
  return `${escaped.slice(0, cut)}…`;
}

/** `value` escaped, on one line, cut to `max`. */
function line(value: string, max: number): string {
  return truncateEscaped(escapeSlack(value.replace(/\s+/g, " ").trim()), max);
}

/** A mrkdwn link to an http(s) URL, or null for anything else (a `javascript:` runbook, a typo). */
function link(url: string | null, label: string): string | null {
  if (url === null) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  // `|` ends the URL part of `<url|label>`; `&` `<` `>` are Slack's control characters.
  const href = escapeSlack(parsed.href.replace(/\|/g, "%7C"));
  const text = `<${href}|${label}>`;
  return text.length <= SLACK_LIMITS.contextText ? text : null;
}

/** The message for one notice (exported for tests and previews). */
export function slackMessage(notice: Notice): SlackMessage {
  const state = notice.acknowledged === null ? notice.status : `${notice.status}, acknowledged by ${notice.acknowledged.by}`;
  const field = (label: string, value: string | null): SlackText => ({
    type: "mrkdwn",
    text: truncateEscaped(`*${label}*\n${escapeSlack(value ?? "—")}`, SLACK_LIMITS.fieldText),
  });
  const fields = [
    field("Rule", notice.rule),
    field("User", notice.userId),
    field("Pod", notice.pod === null ? null : notice.namespace === null ? notice.pod : `${notice.namespace}/${notice.pod}`),
    field("Severity", notice.severity),
    field("Status", state),
  ].slice(0, SLACK_LIMITS.fields);
  const summary = notice.summary.trim() === "" ? notice.subject : notice.summary;
  const blocks: SlackBlock[] = [
    { type: "header", text: { type: "plain_text", text: line(summary, SLACK_LIMITS.headerText) } },
    { type: "section", fields },
  ];
  const description = notice.description.trim();
  if (description !== "") {
    blocks.push({ type: "section", text: { type: "mrkdwn", text: truncateEscaped(escapeSlack(description), SLACK_LIMITS.sectionText) } });
  }
  const links = [link(notice.link, "Incident"), link(notice.runbookUrl, "Runbook")].filter((l): l is string => l !== null);
  if (links.length > 0) blocks.push({ type: "context", elements: links.map((text) => ({ type: "mrkdwn", text })) });
  return {
    // The summary already names the status; only an acknowledgement is added.
    text: line(`[${notice.severity.toUpperCase()}] ${summary}${notice.acknowledged === null ? "" : ` (acknowledged by ${notice.acknowledged.by})`}`, SLACK_LIMITS.text),
    blocks,
  };
}
