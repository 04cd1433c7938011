/**
 * Decoding for the `gcp:PROJECT` sources: a LogEntry as the generated
 * client decodes it (protobuf Struct, Value, Timestamp, enums by name or
 * number) turned into one line of Cloud Logging's JSON, the shape
 * `gcloud logging read --format=json` prints (`jsonPayload` as plain JSON,
 * `timestamp` as RFC 3339, `severity` by name), so the scanner and
 * `normalize()` read it exactly as they read an exported log file. Also the
 * nanosecond times that the tail's position and de-duplication work in.
 */
import { setOwn } from "../own.js";

/** A protobuf Timestamp or Duration as the client decodes it (int64 as a string; numbers and Longs tolerated). */
export interface WireTime {
  seconds?: string | number | { toString(): string } | null;
  nanos?: number | null;
}

/** A `google.protobuf.Value`. */
export interface WireValue {
  kind?: string | null;
  nullValue?: unknown;
  numberValue?: number | null;
  stringValue?: string | null;
  boolValue?: boolean | null;
  structValue?: WireStruct | null;
  listValue?: { values?: WireValue[] | null } | null;
}

/** A `google.protobuf.Struct`. */
export interface WireStruct {
  fields?: Record<string, WireValue> | null;
}

/** A LogEntry as the generated client decodes it (enums by name; numbers tolerated). */
export interface WireLogEntry {
  logName?: string | null;
  resource?: { type?: string | null; labels?: Record<string, string> | null } | null;
  timestamp?: WireTime | null;
  receiveTimestamp?: WireTime | null;
  severity?: string | number | null;
  insertId?: string | null;
  labels?: Record<string, string> | null;
  jsonPayload?: WireStruct | null;
  textPayload?: string | null;
  protoPayload?: { typeUrl?: string | null; type_url?: string | null } | null;
  trace?: string | null;
  spanId?: string | null;
  traceSampled?: boolean | null;
  httpRequest?: Record<string, unknown> | null;
  operation?: Record<string, unknown> | null;
  sourceLocation?: Record<string, unknown> | null;
  split?: Record<string, unknown> | null;
}

/** Nanoseconds in a second. */
export const NS_PER_S = 1_000_000_000n;
/** Nanoseconds in a millisecond. */
export const NS_PER_MS = 1_000_000n;

/** A Timestamp as nanoseconds since the epoch; null when it is missing or not a number. */
export function wireNanos(time: WireTime | null | undefined): bigint | null {
  if (time === null || time === undefined) return null;
  const seconds = time.seconds ?? 0;
  let s: bigint;
  try {
    s = BigInt(typeof seconds === "number" ? Math.trunc(seconds) : seconds.toString());
  } catch {
    return null;
  }
  const nanos = time.nanos ?? 0;
  if (!Number.isInteger(nanos) || nanos < 0 || nanos >= 1e9) return null;
  if (s === 0n && nanos === 0 && time.seconds === undefined) return null;
  return s * NS_PER_S + BigInt(nanos);
}

/** Nanoseconds since the epoch as RFC 3339 in UTC, with 0, 3, 6 or 9 fraction digits (as proto3 JSON writes a Timestamp). */
export function nanosToRfc3339(ns: bigint): string {
  let seconds = ns / NS_PER_S;
  let nanos = ns % NS_PER_S;
  if (nanos < 0n) {
    nanos += NS_PER_S;
    seconds -= 1n;
  }
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  if (nanos === 0n) return `${base}Z`;
  const digits = nanos.toString().padStart(9, "0");
  const fraction = nanos % 1_000_000n === 0n ? digits.slice(0, 3) : nanos % 1000n === 0n ? digits.slice(0, 6) : digits;
  return `${base}.${fraction}Z`;
}

/** RFC 3339 in UTC ("Z") with up to 9 fraction digits: what `nanosToRfc3339` writes. */
export const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/;

/** Parses what `nanosToRfc3339` writes (UTC, "Z"); null for anything else. */
export function rfc3339ToNanos(text: string): bigint | null {
  const m = RFC3339.exec(text);
  if (m === null) return null;
  const ms = Date.parse(`${m[1]!}Z`);
  if (Number.isNaN(ms)) return null;
  return BigInt(ms) * NS_PER_MS + BigInt((m[2] ?? "").padEnd(9, "0"));
}

const SEVERITY_BY_NUMBER: Record<number, string> = {
  0: "DEFAULT",
  100: "DEBUG",
  200: "INFO",
  300: "NOTICE",
  400: "WARNING",
  500: "ERROR",
  600: "CRITICAL",
  700: "ALERT",
  800: "EMERGENCY",
};

function severityName(severity: string | number | null | undefined): string | undefined {
  if (severity === null || severity === undefined) return undefined;
  return typeof severity === "number" ? (SEVERITY_BY_NUMBER[severity] ?? "DEFAULT") : severity;
}

/** A protobuf Value as plain JSON (a non-finite number becomes null, as JSON has none). */
function valueToJson(value: WireValue | null | undefined): unknown {
  if (value === null || value === undefined) return null;
  const kind = value.kind ?? (["stringValue", "numberValue", "boolValue", "structValue", "listValue"] as const).find((k) => value[k] !== undefined && value[k] !== null);
  switch (kind) {
    case "stringValue":
      return value.stringValue ?? "";
    case "numberValue":
      return Number.isFinite(value.numberValue) ? value.numberValue : null;
    case "boolValue":
      return value.boolValue ?? false;
    case "structValue":
      return structToJson(value.structValue);
    case "listValue":
      return (value.listValue?.values ?? []).map(valueToJson);
    default:
      return null;
  }
}

/** A protobuf Struct as a plain JSON object. */
export function structToJson(struct: WireStruct | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) setOwn(out, key, valueToJson(value));
  return out;
}

/** A nested message as JSON: empty strings, nulls and empty objects left out, int64s (Longs) as strings, bytes as base64. */
function plainMessage(value: unknown): unknown {
  if (value === null || value === undefined || value === "") return undefined;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (Array.isArray(value)) return value.map(plainMessage);
  if (typeof value === "object") {
    if ("low" in value && "high" in value) return (value as { toString(): string }).toString(); // a Long
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const plain = plainMessage(v);
      if (plain !== undefined) setOwn(out, k, plain);
    }
    return Object.keys(out).length === 0 ? undefined : out;
  }
  return value;
}

function durationText(time: unknown): string | undefined {
  const ns = wireNanos(time as WireTime);
  if (ns === null) return undefined;
  return `${(Number(ns) / 1e9).toString()}s`;
}

/**
 * A LogEntry as Cloud Logging's JSON: `logName`, `resource`, `timestamp`
 * and `receiveTimestamp` (RFC 3339), `severity` (a name; left out when
 * DEFAULT, as proto3 JSON does), `insertId`, `labels`, one of `jsonPayload`
 * (plain JSON), `textPayload` or `protoPayload` (only its `@type`: the
 * message itself is not decoded), then trace fields, `httpRequest`,
 * `operation`, `sourceLocation` and `split` when set.
 */
export function logEntryToJson(entry: WireLogEntry): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (entry.logName) out.logName = entry.logName;
  if (entry.resource) {
    out.resource = { type: entry.resource.type ?? "", labels: { ...(entry.resource.labels ?? {}) } };
  }
  const timestamp = wireNanos(entry.timestamp);
  if (timestamp !== null) out.timestamp = nanosToRfc3339(timestamp);
  const received = wireNanos(entry.receiveTimestamp);
  if (received !== null) out.receiveTimestamp = nanosToRfc3339(received);
  const severity = severityName(entry.severity);
  if (severity !== undefined && severity !== "DEFAULT") out.severity = severity;
  if (entry.insertId) out.insertId = entry.insertId;
  if (entry.labels && Object.keys(entry.labels).length > 0) out.labels = { ...entry.labels };
  if (entry.jsonPayload) out.jsonPayload = structToJson(entry.jsonPayload);
  else if (typeof entry.textPayload === "string") out.textPayload = entry.textPayload;
  else if (entry.protoPayload) out.protoPayload = { "@type": entry.protoPayload.typeUrl ?? entry.protoPayload.type_url ?? "" };
  if (entry.trace) out.trace = entry.trace;
  if (entry.spanId) out.spanId = entry.spanId;
  if (entry.traceSampled === true) out.traceSampled = true;
  if (entry.httpRequest) {
    const { latency, ...rest } = entry.httpRequest;
    const http = (plainMessage(rest) ?? {}) as Record<string, unknown>;
    const text = latency === null || latency === undefined ? undefined : durationText(latency);
    if (text !== undefined) http.latency = text;
    if (Object.keys(http).length > 0) out.httpRequest = http;
  }
  for (const key of ["operation", "sourceLocation", "split"] as const) {
    const plain = plainMessage(entry[key]);
    if (plain !== undefined) out[key] = plain;
  }
  return out;
}

/** The entry's time: its timestamp, else when Cloud Logging received it; null without either. */
export function entryNanos(entry: WireLogEntry): bigint | null {
  return wireNanos(entry.timestamp) ?? wireNanos(entry.receiveTimestamp);
}
