/**
 * The list's query string (`GET /?status=…&rule=…&user=…&from=…&to=…&limit=…&before=…`,
 * and the same on `GET /api/v1/incidents`), validated before anything is
 * read: a bad value is refused with a message that names the parameter and
 * says what it accepts, never passed on to a store (the Kubernetes store
 * builds a label selector from the rule name). Then the filter, the order
 * (newest first) and the pages, as pure functions of the records.
 */
import { USER_ID_PATTERN } from "../../contract/ids.js";
import { INCIDENT_ID_PATTERN, IncidentStatus, type Incident } from "../incidents/model.js";

/** Rows per page when `limit` is not given. */
export const DEFAULT_PAGE_SIZE = 50;
/** Most rows per page (`limit` above it is refused). */
export const MAX_PAGE_SIZE = 200;
/** Rule names are DNS labels (the rule schema's `metadata.name`). */
const RULE_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** `from`/`to`: a full ISO 8601 time with a zone, or what an `<input type="datetime-local">` sends (read as UTC). */
const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/;
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
/** Longest value of any parameter read; the rest of a long query is not looked at. */
const MAX_VALUE = 256;

/** The list's filters and page, as validated. */
export interface ListQuery {
  /** Only these statuses (empty: all). */
  status: IncidentStatus[];
  rule: string | null;
  /** The incident's user, or a user a rollup record lists. */
  user: string | null;
  /** Detected at or after (ms), and before (ms). */
  from: number | null;
  to: number | null;
  limit: number;
  /** Rows after this position in the newest-first order (the `next` of the page before). */
  before: Cursor | null;
}

/** A position in the newest-first order: an incident's `detectedAt` (ms) and id. */
export interface Cursor {
  detectedAt: number;
  id: string;
}

/** A query parameter with a value the list does not accept; `parameter` names it. */
export class QueryError extends TypeError {
  readonly code = "ERR_RECLAIM_WEB_QUERY";
  constructor(
    readonly parameter: string,
    message: string,
  ) {
    super(`${parameter}: ${message}`);
    this.name = "QueryError";
  }
}

/**
 * Reads the list's parameters from `params`. Parameters it does not know are
 * ignored; an empty value is the same as none (what a form sends for an empty
 * field). Throws QueryError on a value it does not accept.
 */
export function parseListQuery(params: URLSearchParams): ListQuery {
  const one = (name: string): string | null => {
    const values = params.getAll(name).filter((v) => v !== "");
    if (values.length > 1) throw new QueryError(name, "give it once");
    const value = values[0] ?? null;
    if (value !== null && value.length > MAX_VALUE) throw new QueryError(name, `at most ${MAX_VALUE} characters`);
    return value;
  };

  // Repeated (`status=a&status=b`, what a group of checkboxes sends) or comma-separated.
  const status: IncidentStatus[] = [];
  for (const value of params.getAll("status")) {
    if (value.length > MAX_VALUE) throw new QueryError("status", `at most ${MAX_VALUE} characters`);
    for (const s of value.split(",")) {
      if (s === "") continue;
      const parsed = IncidentStatus.safeParse(s);
      if (!parsed.success) throw new QueryError("status", `unknown status ${JSON.stringify(s)}; one of ${IncidentStatus.options.join(", ")}`);
      if (!status.includes(parsed.data)) status.push(parsed.data);
    }
  }

  const rule = one("rule");
  if (rule !== null && (rule.length > 63 || !RULE_NAME_PATTERN.test(rule))) {
    throw new QueryError("rule", "a rule name: lower-case letters, digits and -, at most 63 characters");
  }
  const user = one("user");
  if (user !== null && !USER_ID_PATTERN.test(user)) throw new QueryError("user", "a user id: letters, digits and ._:@-, 1 to 128 characters");

  const from = time("from", one("from"));
  const to = time("to", one("to"));
  if (from !== null && to !== null && from >= to) throw new QueryError("to", "must be after from");

  const limitText = one("limit");
  let limit = DEFAULT_PAGE_SIZE;
  if (limitText !== null) {
    if (!/^\d{1,4}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > MAX_PAGE_SIZE) {
      throw new QueryError("limit", `a whole number from 1 to ${MAX_PAGE_SIZE}`);
    }
    limit = Number(limitText);
  }

  const beforeText = one("before");
  const before = beforeText === null ? null : parseCursor(beforeText);
  return { status, rule, user, from, to, limit, before };
}

function time(name: string, value: string | null): number | null {
  if (value === null) return null;
  let text = value;
  if (DATE_ONLY.test(text)) text = `${text}T00:00Z`;
  else if (LOCAL_TIME.test(text)) text = `${text}Z`;
  else if (!ISO_WITH_ZONE.test(text)) throw new QueryError(name, "a time such as 2026-11-26T03:14Z, 2026-11-26T03:14 (UTC) or 2026-11-26");
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new QueryError(name, `not a valid time: ${JSON.stringify(value)}`);
  return ms;
}

/** The `before` value that continues after `incident`: its detection time in ms, a dot, its id. */
export function cursorOf(incident: Pick<Incident, "detectedAt" | "id">): string {
  return `${Date.parse(incident.detectedAt)}.${incident.id}`;
}

/** The position a `before` value names; throws QueryError when it is not one `cursorOf` made. */
export function parseCursor(text: string): Cursor {
  const match = /^(\d{1,15})\.(.+)$/.exec(text);
  if (match === null || !INCIDENT_ID_PATTERN.test(match[2]!)) {
    throw new QueryError("before", "the `next` value of a previous page (milliseconds, a dot, an incident id)");
  }
  return { detectedAt: Number(match[1]), id: match[2]! };
}

/** Newest first: by `detectedAt` (latest first), then by id (last first), so the order never depends on the store's. */
export function newestFirst(a: Pick<Incident, "detectedAt" | "id">, b: Pick<Incident, "detectedAt" | "id">): number {
  const d = detected(b) - detected(a);
  if (d !== 0) return d;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

function detected(i: Pick<Incident, "detectedAt">): number {
  const t = Date.parse(i.detectedAt);
  return Number.isNaN(t) ? Number.NEGATIVE_INFINITY : t;
}

/** Does `incident` belong to `user`: its own, or a rollup record that lists them (as `reclaim incidents list --user` reads it)? */
function concerns(incident: Incident, user: string): boolean {
  return incident.rollup === undefined ? incident.target.userId === user : incident.rollup.keys.some((k) => k.userId === user);
}

/** One page of the list, and what the page shows about the rest. */
export interface ListPage {
  /** The page's incidents, newest first. */
  items: Incident[];
  /** `before` for the next page, or null on the last page. */
  next: string | null;
  /** Incidents matching every filter (all pages). */
  total: number;
  /** Incidents matching every filter but `status`, by status: every status of the schema, zeros included. */
  counts: Record<IncidentStatus, number>;
}

/**
 * Filters `incidents` (as a store listed them, any order) by `query`, sorts
 * them newest first and cuts the page. Counts by status are over the
 * incidents that match the other filters, so that each status's count is
 * what choosing it would show. Pure.
 */
export function pageOf(incidents: readonly Incident[], query: ListQuery): ListPage {
  const counts = Object.fromEntries(IncidentStatus.options.map((s) => [s, 0])) as Record<IncidentStatus, number>;
  const matching: Incident[] = [];
  for (const incident of incidents) {
    if (query.rule !== null && incident.rule !== query.rule) continue;
    if (query.user !== null && !concerns(incident, query.user)) continue;
    const at = Date.parse(incident.detectedAt);
    if (query.from !== null && !(at >= query.from)) continue;
    if (query.to !== null && !(at < query.to)) continue;
    if (incident.status in counts) counts[incident.status]++;
    if (query.status.length > 0 && !query.status.includes(incident.status)) continue;
    matching.push(incident);
  }
  matching.sort(newestFirst);
  const cursor = query.before;
  const start = cursor === null ? 0 : matching.findIndex((i) => newestFirst({ detectedAt: new Date(cursor.detectedAt).toISOString(), id: cursor.id }, i) < 0);
  const rest = start < 0 ? [] : matching.slice(start);
  const items = rest.slice(0, query.limit);
  const next = rest.length > query.limit ? cursorOf(items[items.length - 1]!) : null;
  return { items, next, total: matching.length, counts };
}

/** The query string for `query` with `changes` applied (page links, status links); `before` is dropped unless given. */
export function queryString(query: ListQuery, changes: Partial<ListQuery> = {}): string {
  const q = { ...query, before: null, ...changes };
  const params = new URLSearchParams();
  for (const s of q.status) params.append("status", s);
  if (q.rule !== null) params.set("rule", q.rule);
  if (q.user !== null) params.set("user", q.user);
  if (q.from !== null) params.set("from", new Date(q.from).toISOString());
  if (q.to !== null) params.set("to", new Date(q.to).toISOString());
  if (q.limit !== DEFAULT_PAGE_SIZE) params.set("limit", String(q.limit));
  if (q.before !== null) params.set("before", `${q.before.detectedAt}.${q.before.id}`);
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}
