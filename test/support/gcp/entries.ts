/**
 * Cloud Logging entries for tests: written as Cloud Logging's JSON (what
 * `gcloud logging read --format=json` prints, and what the source hands
 * over), and turned into the protobuf shape the fake server sends.
 */

/** A LogEntry in Cloud Logging's JSON shape (the fields the tests use). */
export interface LogEntryJson {
  insertId: string;
  /** RFC 3339 in UTC ("Z"), up to 9 fraction digits. */
  timestamp: string;
  severity?: string;
  logName?: string;
  resource?: { type: string; labels?: Record<string, string> };
  labels?: Record<string, string>;
  jsonPayload?: Record<string, unknown>;
  textPayload?: string;
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/;

/** Nanoseconds since the epoch of an RFC 3339 UTC time; null when it is not one. */
export function rfc3339Nanos(text: string): bigint | null {
  const m = RFC3339.exec(text);
  if (m === null) return null;
  return BigInt(Date.parse(`${m[1]!}Z`)) * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
}

/** The entry's timestamp in nanoseconds (throws for a malformed one: a bug in the test). */
export function entryNanos(entry: LogEntryJson): bigint {
  const ns = rfc3339Nanos(entry.timestamp);
  if (ns === null) throw new Error(`bad test timestamp ${entry.timestamp}`);
  return ns;
}

/** A JSON value as a `google.protobuf.Value`. */
function toValue(value: unknown): Record<string, unknown> {
  if (value === null || value === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value as Record<string, unknown>) };
}

/** A JSON object as a `google.protobuf.Struct`. */
export function toStruct(object: Record<string, unknown>): { fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(object)) fields[k] = toValue(v);
  return { fields };
}

/** The protobuf shape of an entry, as the server writes it (@grpc/proto-loader: camelCase, enums by name, int64 as strings). */
export function toProto(entry: LogEntryJson): Record<string, unknown> {
  const ns = entryNanos(entry);
  const proto: Record<string, unknown> = {
    insertId: entry.insertId,
    timestamp: { seconds: (ns / 1_000_000_000n).toString(), nanos: Number(ns % 1_000_000_000n) },
    severity: entry.severity ?? "DEFAULT",
    logName: entry.logName ?? "",
  };
  if (entry.resource) proto.resource = { type: entry.resource.type, labels: entry.resource.labels ?? {} };
  if (entry.labels) proto.labels = entry.labels;
  if (entry.jsonPayload) proto.jsonPayload = toStruct(entry.jsonPayload);
  else if (entry.textPayload !== undefined) proto.textPayload = entry.textPayload;
  return proto;
}

let counter = 0;

/**
 * A factory entry as it reaches Cloud Logging from GKE: `jsonPayload` is
 * the factory's JSON line minus `severity` and `time` (moved to the entry),
 * the pod is a resource label.
 */
export function factoryEntry(
  time: number | string,
  fields: { event: string; userId?: string; severity?: string; message?: string; pod?: string; insertId?: string; [key: string]: unknown },
): LogEntryJson {
  const { severity = "ERROR", pod = "factory-0", insertId = `id-${++counter}`, message = `${fields.event} ${fields.userId ?? ""}`.trim(), ...rest } = fields;
  return {
    insertId,
    timestamp: typeof time === "number" ? new Date(time).toISOString() : time,
    severity,
    logName: "projects/reclaim-test/logs/stdout",
    resource: { type: "k8s_container", labels: { project_id: "reclaim-test", namespace_name: "chat", pod_name: pod, container_name: "factory" } },
    jsonPayload: { message, ...rest },
  };
}
