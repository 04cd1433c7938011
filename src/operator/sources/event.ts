/**
 * `LogEvent`: one log entry, whatever its source. Raw factory JSON lines and
 * Cloud Logging `LogEntry` JSON both normalize to it, so rules, the detector
 * and replay never care where an entry came from.
 */
import { Severity } from "../../contract/events.js";
import { setOwn } from "./own.js";

/** Cloud Logging severities including `DEFAULT` (no severity), lowest first. */
export const SEVERITY_ORDER = ["DEFAULT", ...Severity.options] as const;
export type EventSeverity = (typeof SEVERITY_ORDER)[number];

/** Rank of a severity for `minSeverity` comparisons. */
export function severityRank(severity: EventSeverity): number {
  return SEVERITY_ORDER.indexOf(severity);
}

export interface LogEvent {
  /** The entry's own time (event time), ms since the epoch. */
  time: number;
  severity: EventSeverity;
  /** `message` of a structured entry, or `textPayload`. */
  message: string;
  /** `event` field, if any (the factory always writes one). */
  event: string | null;
  /**
   * Structured fields written by the factory's logger (`jsonPayload` minus
   * `severity`, `message`, `time`). `pod` is filled from
   * `resource.labels.pod_name` when the payload has none.
   */
  fields: Record<string, unknown>;
  /** Monitored resource labels (`pod_name`, `namespace_name`, …), empty for raw lines. */
  resource: Record<string, string>;
  /** Cloud Logging's `insertId`, when the entry has one: the identity for de-duplication. */
  insertId: string | null;
  /** Where the line is in a file (path and byte offset), when the source knows: evidence links back to it. */
  origin?: { path: string; offset: number };
}

const STRUCTURED_KEYS = new Set(["severity", "message", "time", "timestamp", "msg", "level"]);

/** Accepts any casing of a severity name, or a pino numeric level; anything else is DEFAULT. */
function toSeverity(value: unknown): EventSeverity {
  if (typeof value === "string") {
    const upper = value.toUpperCase();
    if ((SEVERITY_ORDER as readonly string[]).includes(upper)) return upper as EventSeverity;
    if (upper === "WARN") return "WARNING";
    if (upper === "FATAL") return "CRITICAL";
    if (upper === "TRACE") return "DEBUG";
    return "DEFAULT";
  }
  if (typeof value === "number") {
    if (value >= 60) return "CRITICAL";
    if (value >= 50) return "ERROR";
    if (value >= 40) return "WARNING";
    if (value >= 30) return "INFO";
    return "DEBUG";
  }
  return "DEFAULT";
}

/**
 * Event times an entry may carry: the years 0000 to 9999, what RFC 3339 (and
 * the incident record) can write. Anything else is a broken clock or a broken
 * line, not a time to act on: no usable time (fault matrix, row 6).
 */
const MIN_TIME = Date.parse("0000-01-01T00:00:00.000Z");
const MAX_TIME = Date.parse("9999-12-31T23:59:59.999Z");

function toTime(value: unknown): number | null {
  const t = rawTime(value);
  return t !== null && t >= MIN_TIME && t <= MAX_TIME ? t : null;
}

function rawTime(value: unknown): number | null {
  if (typeof value === "string") {
    const t = Date.parse(value);
    return Number.isNaN(t) ? null : t;
  }
  if (typeof value === "number" && Number.isFinite(value)) return value;
  // Cloud Logging's protobuf Timestamp as JSON: { seconds, nanos }.
  if (typeof value === "object" && value !== null && "seconds" in value) {
    const { seconds, nanos } = value as { seconds: unknown; nanos?: unknown };
    const s = Number(seconds);
    if (!Number.isFinite(s)) return null;
    return s * 1000 + Math.floor(Number(nanos ?? 0) / 1e6);
  }
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringLabels(value: unknown): Record<string, string> {
  if (!isRecord(value)) return {};
  const out: Record<string, string> = {};
  for (const k of Object.keys(value)) {
    const v = value[k];
    if (typeof v === "string") setOwn(out, k, v);
  }
  return out;
}

/**
 * Deepest nesting of objects and arrays an entry may have (the entry itself is
 * level 0). Factory lines are flat and Cloud Logging entries a few levels deep;
 * a line nested thousands deep would parse, then overflow the stack of every
 * recursive step after it (de-duplication digests, the incident record), so it
 * is refused here, as malformed.
 */
export const MAX_ENTRY_DEPTH = 32;

/**
 * Whether `value` nests objects or arrays deeper than `max` levels. Iterative
 * (no recursion to overflow); a flat entry allocates nothing.
 */
function deeperThan(value: object, max: number): boolean {
  let pending: [object, number][] | null = null;
  let node: object | undefined = value;
  let depth = 0;
  while (node !== undefined) {
    if (depth > max) return true;
    if (Array.isArray(node)) {
      for (const child of node as unknown[]) if (typeof child === "object" && child !== null) (pending ??= []).push([child, depth + 1]);
    } else {
      for (const key in node) {
        const child = (node as Record<string, unknown>)[key];
        if (typeof child === "object" && child !== null) (pending ??= []).push([child, depth + 1]);
      }
    }
    const next: [object, number] | undefined = pending?.pop();
    node = next?.[0];
    depth = next?.[1] ?? 0;
  }
  return false;
}

/**
 * Normalizes a parsed JSON line: a Cloud Logging `LogEntry` (it has
 * `jsonPayload` or `textPayload`) or a raw structured line such as the
 * factory writes. Returns null when it is neither, has no usable time, or
 * nests deeper than MAX_ENTRY_DEPTH.
 */
export function normalize(entry: unknown): LogEvent | null {
  if (!isRecord(entry) || deeperThan(entry, MAX_ENTRY_DEPTH)) return null;
  const isLogEntry = "jsonPayload" in entry || "textPayload" in entry || "protoPayload" in entry;
  if (isLogEntry) {
    const payload = isRecord(entry.jsonPayload) ? entry.jsonPayload : {};
    const time = toTime(entry.timestamp) ?? toTime(payload.time) ?? toTime(entry.receiveTimestamp);
    if (time === null) return null;
    const resource = stringLabels(isRecord(entry.resource) ? entry.resource.labels : undefined);
    const fields = payloadFields(payload);
    if (fields.pod === undefined && resource.pod_name !== undefined) fields.pod = resource.pod_name;
    const message =
      typeof payload.message === "string" ? payload.message : typeof entry.textPayload === "string" ? entry.textPayload : "";
    return {
      time,
      severity: toSeverity(entry.severity ?? payload.severity),
      message,
      event: typeof payload.event === "string" ? payload.event : null,
      fields,
      resource,
      insertId: typeof entry.insertId === "string" ? entry.insertId : null,
    };
  }
  const time = toTime(entry.time) ?? toTime(entry.timestamp);
  if (time === null) return null;
  const message = typeof entry.message === "string" ? entry.message : typeof entry.msg === "string" ? entry.msg : "";
  return {
    time,
    severity: toSeverity(entry.severity ?? entry.level),
    message,
    event: typeof entry.event === "string" ? entry.event : null,
    fields: payloadFields(entry),
    resource: {},
    insertId: null,
  };
}

function payloadFields(payload: Record<string, unknown>): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const k of Object.keys(payload)) if (!STRUCTURED_KEYS.has(k)) setOwn(fields, k, payload[k]);
  return fields;
}
