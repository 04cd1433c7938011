/**
 * The server-side Cloud Logging filter for the loaded rules: Cloud Logging
 * sends only the entries a log rule could match, instead of every entry of
 * the project (tailing has a quota of 60,000 entries a minute per project,
 * and every entry sent costs bytes and a parse).
 *
 * The filter is deliberately coarse, a superset of what the rules match:
 * the union of the rules' events and the lowest `minSeverity` among them.
 * `where` conditions and patterns stay with the matcher (compile.ts), which
 * sees every entry the filter lets through.
 *
 * ```text
 * (jsonPayload.event="factory.hard_limit" OR jsonPayload.event="factory.error") AND severity>=ERROR AND (USER FILTER)
 * ```
 */
import { SEVERITY_ORDER, severityRank, type EventSeverity } from "./event.js";
import type { CompiledRule } from "../rules/compile.js";

/** Longest filter Cloud Logging accepts: 20,000 characters. */
export const MAX_FILTER_LENGTH = 20_000;

/** A filter that cannot be built; `code` says why. */
export class GcpFilterError extends TypeError {
  constructor(
    readonly code: "ERR_RECLAIM_GCP_FILTER_VALUE" | "ERR_RECLAIM_GCP_FILTER_TOO_LONG",
    message: string,
  ) {
    super(message);
    this.name = "GcpFilterError";
  }
}

/**
 * A string literal of the Logging query language: in double quotes, with
 * `\` and `"` escaped by a backslash (backslash first). Control characters
 * are refused (GcpFilterError `ERR_RECLAIM_GCP_FILTER_VALUE`): no rule
 * names an event with one, and how the service reads them is not specified.
 */
export function quoteFilterValue(value: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new GcpFilterError("ERR_RECLAIM_GCP_FILTER_VALUE", `a filter value must not contain control characters: ${JSON.stringify(value)}`);
  }
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * Joins filters with AND, each in parentheses when it has more than one
 * term; empty ones are left out. `andFilters()` is "" (every entry).
 */
export function andFilters(...filters: readonly (string | undefined)[]): string {
  const parts = filters.map((f) => f?.trim() ?? "").filter((f) => f !== "");
  if (parts.length <= 1) return parts[0] ?? "";
  return parts.map((f) => (isConjunction(f) ? f : `(${f})`)).join(" AND ");
}

/** Whether the filter is terms and parenthesized groups joined by AND only: AND-ing more to it needs no parentheses. */
function isConjunction(filter: string): boolean {
  return splitTopLevelAnd(filter).every((part) => isSingleTerm(part) || isEnclosed(part));
}

/** The filter cut at each " AND " outside quotes and parentheses. */
function splitTopLevelAnd(filter: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < filter.length; i++) {
    const c = filter[i];
    if (quoted) {
      if (c === "\\") i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (depth === 0 && filter.startsWith(" AND ", i)) {
      parts.push(filter.slice(start, i));
      start = i + " AND ".length;
      i = start - 1;
    }
  }
  parts.push(filter.slice(start));
  return parts;
}

/** Whether the whole filter is one parenthesized group: its first "(" closes at its last character (quotes respected). */
function isEnclosed(filter: string): boolean {
  if (!filter.startsWith("(")) return false;
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < filter.length; i++) {
    const c = filter[i];
    if (quoted) {
      if (c === "\\") i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i === filter.length - 1;
  }
  return false;
}

/** A comparison such as `severity>=ERROR` or `jsonPayload.event="x"`: no spaces outside quotes, no parentheses. */
function isSingleTerm(filter: string): boolean {
  return /^[A-Za-z_][\w.]*(=|!=|>=|<=|>|<|:)("([^"\\]|\\.)*"|[\w.:-]+)$/.test(filter);
}

/** `timestamp>="RFC3339"`: entries at or after the given time (an RFC 3339 string, kept as given so that nanoseconds survive). */
export function timestampAtLeast(rfc3339: string): string {
  return `timestamp>=${quoteFilterValue(rfc3339)}`;
}

/** `timestamp<"RFC3339"`: entries before the given time. */
export function timestampBefore(rfc3339: string): string {
  return `timestamp<${quoteFilterValue(rfc3339)}`;
}

/** What the rules ask of the server, before it is written as a filter. */
export interface RuleSelection {
  /** Event names any log rule matches (sorted), or null when one log rule matches entries without naming events. */
  events: string[] | null;
  /** The lowest `minSeverity` of the log rules, or null when one of them has none (or it is DEFAULT). */
  minSeverity: EventSeverity | null;
  /** How many log rules there are (metric rules are left out). */
  logRules: number;
}

/** The events and the lowest severity the log rules can match; metric rules contribute nothing. */
export function ruleSelection(rules: readonly CompiledRule[]): RuleSelection {
  const events = new Set<string>();
  let anyEvent = false;
  let lowest: number | null = null;
  let anySeverity = false;
  let logRules = 0;
  for (const compiled of rules) {
    const trigger = compiled.rule.spec.trigger.log;
    if (trigger === undefined) continue;
    logRules++;
    if (trigger.event === undefined) anyEvent = true;
    else for (const e of Array.isArray(trigger.event) ? trigger.event : [trigger.event]) events.add(e);
    if (trigger.minSeverity === undefined) anySeverity = true;
    else lowest = Math.min(lowest ?? Number.POSITIVE_INFINITY, severityRank(trigger.minSeverity));
  }
  const minSeverity = anySeverity || lowest === null || lowest === 0 ? null : SEVERITY_ORDER[lowest]!;
  return { events: anyEvent ? null : [...events].sort(), minSeverity, logRules };
}

/**
 * The Cloud Logging filter for `rules`, AND-ed with the user's `extra`
 * filter (`--filter`, passed through as written, in parentheses):
 *
 * - `jsonPayload.event="…"` for each event a log rule names, OR-ed;
 * - `severity>=…` for the lowest `minSeverity` among the log rules;
 * - metric rules (no `trigger.log`) contribute nothing.
 *
 * A log rule without an event list (a `where` or `pattern` trigger only)
 * lifts the event restriction for all: every entry at or above the lowest
 * severity is then streamed (more of the tail quota of 60,000 entries a
 * minute, and the scanner parses every line). Likewise one log rule without
 * `minSeverity` lifts the severity restriction. With no log rule at all the
 * filter is `extra` alone ("" when none: every entry of the project) — give
 * a `--filter` then, or use no Cloud Logging source.
 *
 * Throws a GcpFilterError: `ERR_RECLAIM_GCP_FILTER_VALUE` for an event name
 * with a control character, `ERR_RECLAIM_GCP_FILTER_TOO_LONG` beyond
 * MAX_FILTER_LENGTH.
 */
export function buildFilter(rules: readonly CompiledRule[], extra?: string): string {
  const selection = ruleSelection(rules);
  const parts: string[] = [];
  if (selection.logRules > 0 && selection.events !== null) {
    const terms = selection.events.map((e) => `jsonPayload.event=${quoteFilterValue(e)}`);
    parts.push(terms.length === 1 ? terms[0]! : `(${terms.join(" OR ")})`);
  }
  if (selection.logRules > 0 && selection.minSeverity !== null) parts.push(`severity>=${selection.minSeverity}`);
  const filter = andFilters(...parts, extra);
  if (filter.length > MAX_FILTER_LENGTH) {
    throw new GcpFilterError(
      "ERR_RECLAIM_GCP_FILTER_TOO_LONG",
      `the Cloud Logging filter for these rules is ${filter.length} characters; the service accepts at most ${MAX_FILTER_LENGTH}`,
    );
  }
  return filter;
}
