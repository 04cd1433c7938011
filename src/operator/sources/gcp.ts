/**
 * `gcp:PROJECT`: log entries from Google Cloud Logging, through the
 * generated `v2.LoggingServiceV2Client` of `@google-cloud/logging` (not the
 * high-level `Logging#tailEntries()`, which sends `bufferwindow` in lower
 * case and crashes the process without a project id: FIELD-NOTES).
 *
 * Each LogEntry is handed over as one line of Cloud Logging's JSON (the
 * shape `gcloud logging read --format=json` prints: `jsonPayload` as plain
 * JSON, `timestamp` as RFC 3339, `severity` by name), so the scanner and
 * `normalize()` read it exactly as they read an exported log file.
 *
 * Live tailing (`CloudLoggingSource`): a `TailLogEntries` session streams
 * entries as Cloud Logging receives them. Sessions end (after about an hour)
 * or fail at any time; the source then opens a new one, after a jittered
 * exponential backoff. A tail only sees what arrives while it is open, so
 * every session first catches up through `ListLogEntries` from the newest
 * entry handed over, minus an overlap, before it reads the tail (whose
 * entries wait, under gRPC flow control, meanwhile). What the catch-up and
 * the tail both return, and what the overlap repeats, is dropped by
 * `insertId` (with the timestamp: Cloud Logging's own identity of an entry)
 * against a bounded ring of the ids recently handled (an entry joins it only
 * once the batch handler resolved for it). So a broken session leaves neither a
 * gap nor a duplicate; `commit()` persists the position (the newest time and
 * the ids within the overlap) so that a restart does not either.
 *
 * Limits of that promise: an entry that reaches Cloud Logging later than the
 * overlap after newer ones were handed over can be missed across a
 * reconnect, and so can one received just before a session opened that
 * `ListLogEntries` does not show yet (Cloud Logging indexes within seconds).
 * A position older than `maxCatchUpMs` is caught up from that far back
 * only, with a warning.
 *
 * History (`CloudLoggingHistorySource`, for `reclaim rules replay`): a
 * finite source that pages through `ListLogEntries` oldest first.
 *
 * Credentials: Application Default Credentials (Workload Identity on GKE).
 * With `endpoint` (or `RECLAIM_GCP_ENDPOINT=host:port`) the client talks
 * plaintext gRPC to that address and asks for no credentials: a local test
 * server, never production.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Duplex } from "node:stream";
import { z } from "zod";
import { andFilters, timestampAtLeast, timestampBefore } from "./gcp-filter.js";
import { newSourceStats, type LineBatch, type LogSource, type SourceStats } from "./source.js";
import { writeFileAtomic } from "../atomic-file.js";

/** A Google Cloud project id: 6 to 30 lower-case letters, digits and hyphens, starting with a letter, not ending with a hyphen. */
export const PROJECT_ID = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

/** The environment variable naming a plaintext endpoint (`host:port`) instead of Cloud Logging. */
export const ENDPOINT_ENV = "RECLAIM_GCP_ENDPOINT";

/** Default server-side buffer of a tail session: 2 s (Cloud Logging's own default; 0–60 s allowed). */
export const DEFAULT_BUFFER_WINDOW_MS = 2000;
/** Default overlap when catching up after a break: 5 s. */
export const DEFAULT_OVERLAP_MS = 5000;
/** Default look-back at the very first start (no saved position): 60 s, as the pod-log source, so a failover loses nothing. */
export const DEFAULT_LOOKBACK_MS = 60_000;
/** How far ahead of this process's clock the position may go: 2 s of clock difference between writer and reader. */
const MAX_AHEAD_MS = 2000;
/** Default limit of a catch-up: 1 h back at most. */
export const DEFAULT_MAX_CATCH_UP_MS = 3_600_000;
/** Default first reconnect delay: 500 ms (jittered, doubling). */
export const DEFAULT_BACKOFF_INITIAL_MS = 500;
/** Default longest reconnect delay: 30 s. */
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
/** Default: a session open this long (or that delivered anything) was healthy and resets the backoff: 30 s. */
export const DEFAULT_HEALTHY_AFTER_MS = 30_000;
/** Default time to establish a connection before a session counts as failed: 10 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Default deadline of one ListLogEntries call: 30 s, one attempt (gax would otherwise retry for minutes). */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Default ids remembered to drop duplicates: 100,000. */
export const DEFAULT_DEDUP_CAPACITY = 100_000;
/** Most ids a saved position holds (those within the overlap of its newest time): 10,000. */
export const MAX_SAVED_IDS = 10_000;
/** Entries per ListLogEntries page: 1000 (the service's maximum). */
export const DEFAULT_PAGE_SIZE = 1000;

/** Why Cloud Logging left entries out of a tail (`TailLogEntriesResponse.SuppressionInfo.Reason`). */
export type SuppressionReason = "RATE_LIMIT" | "NOT_CONSUMED" | "REASON_UNSPECIFIED";
const SUPPRESSION_REASONS: readonly SuppressionReason[] = ["REASON_UNSPECIFIED", "RATE_LIMIT", "NOT_CONSUMED"];

/** Counters of the Cloud Logging source (the operator exports them as metrics). */
export interface CloudLoggingStats extends SourceStats {
  /** Always 0: Cloud Logging caps entries at 256 KB itself. */
  skippedLongLines: number;
  /** Entries not handed over because the same entry (timestamp and insertId) already was. */
  duplicates: number;
  /** Tail sessions opened. */
  sessions: number;
  /** Times the source connected again after a session ended or failed, or after a failed connection attempt. */
  reconnects: number;
  /** Sessions (or connection attempts) that failed with an error rather than ending normally. */
  failures: number;
  /** Entries handed over from ListLogEntries catch-ups (not from the tail). */
  caughtUp: number;
  /** Entries Cloud Logging left out of the tail, by reason (`RATE_LIMIT`: over the tail quota; `NOT_CONSUMED`: read too slowly). */
  suppressed: Record<SuppressionReason, number>;
  /** Time of the newest entry handed over (ms since the epoch), for a lag gauge; null before the first. */
  newestEntryTime: number | null;
  /** Whether a tail session is open now. */
  connected: boolean;
}

/** Something the source wants an operator to know; `kind` is a closed set (a log event or metric label). */
export interface CloudLoggingWarning {
  kind: "suppressed" | "session_failed" | "gap";
  message: string;
  details: Record<string, unknown>;
}

/** Options of the tail; every limit has a default (the DEFAULT_* constants). */
export interface CloudLoggingSourceOptions {
  /** The project to read (`projects/PROJECT`); always passed to the client. */
  projectId: string;
  /** The Cloud Logging filter (gcp-filter.ts `buildFilter()`); "" streams every entry of the project. Default "". */
  filter?: string;
  /** `host:port` of a plaintext gRPC endpoint (tests); default `RECLAIM_GCP_ENDPOINT`, else Cloud Logging with ADC. */
  endpoint?: string;
  /** Folder for the saved position (file `gcp-PROJECT.json`); default none: the position lives in memory only. */
  stateDir?: string;
  /** Server-side buffer that orders late entries (default 2000 ms, 0–60000). */
  bufferWindowMs?: number;
  /** How far before the newest entry a catch-up starts (default 5000 ms, 0–600000). */
  overlapMs?: number;
  /** Look-back of the very first start, without a saved position (default 60000 ms; 0: only new entries). */
  lookbackMs?: number;
  /** Catch up at most this far back (default 1 h). */
  maxCatchUpMs?: number;
  /** First reconnect delay (default 500 ms); doubles per failure, jittered between half and all of it. */
  backoffInitialMs?: number;
  /** Longest reconnect delay (default 30000 ms). */
  backoffMaxMs?: number;
  /** A session that lasted this long or delivered anything resets the backoff (default 30000 ms). */
  healthyAfterMs?: number;
  /** Time to establish a connection (default 10000 ms); a dead endpoint fails after it and is retried. */
  connectTimeoutMs?: number;
  /** Deadline of each ListLogEntries call (default 30000 ms). */
  callTimeoutMs?: number;
  /** Recent ids kept to drop duplicates (default 100000). */
  dedupCapacity?: number;
  /** Entries per catch-up page (default 1000, at most 1000). */
  pageSize?: number;
  /** Told about suppressed entries, failed sessions and gaps. Default: nothing. */
  onWarning?: (warning: CloudLoggingWarning) => void;
  /** The clock (ms since the epoch); default Date.now. */
  now?: () => number;
  /** Random numbers in [0, 1) for the jitter; default Math.random. */
  random?: () => number;
}

/** Stable codes of the Cloud Logging sources' faults. */
export type CloudLoggingErrorCode =
  | "ERR_RECLAIM_SOURCE_BUSY"
  | "ERR_RECLAIM_GCP_REQUEST"
  | "ERR_RECLAIM_GCP_READ"
  | "ERR_RECLAIM_GCP_CONNECT"
  | "ERR_RECLAIM_CHECKPOINT";

/** A fault of a Cloud Logging source; `code` says which, `grpcCode` the gRPC status when there was one. */
export class CloudLoggingSourceError extends Error {
  constructor(
    readonly code: CloudLoggingErrorCode,
    message: string,
    options?: ErrorOptions & { grpcCode?: number },
  ) {
    super(message, options);
    this.name = "CloudLoggingSourceError";
    this.grpcCode = options?.grpcCode ?? null;
  }

  readonly grpcCode: number | null;
}

// ---------------------------------------------------------------------------
// The client, typed for what is used (the package types `v2` as any).

/** A protobuf Timestamp or Duration as the client decodes it (int64 as a string; numbers and Longs tolerated). */
interface WireTime {
  seconds?: string | number | { toString(): string } | null;
  nanos?: number | null;
}

/** A `google.protobuf.Value`. */
interface WireValue {
  kind?: string | null;
  nullValue?: unknown;
  numberValue?: number | null;
  stringValue?: string | null;
  boolValue?: boolean | null;
  structValue?: WireStruct | null;
  listValue?: { values?: WireValue[] | null } | null;
}

/** A `google.protobuf.Struct`. */
interface WireStruct {
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

interface WireTailResponse {
  entries?: WireLogEntry[] | null;
  suppressionInfo?: { reason?: string | number | null; suppressedCount?: number | null }[] | null;
}

interface ListRequest {
  resourceNames: string[];
  filter: string;
  orderBy: "timestamp asc";
  pageSize: number;
  pageToken?: string;
}

interface CallOptions {
  autoPaginate?: boolean;
  timeout?: number;
  retry?: { retryCodes: number[] };
}

/** The part of `v2.LoggingServiceV2Client` used here. */
interface LoggingClient {
  initialize(): Promise<unknown>;
  readonly loggingServiceV2Stub?: Promise<unknown>;
  tailLogEntries(options?: CallOptions): Duplex & { cancel(): void };
  listLogEntries(
    request: ListRequest,
    options: CallOptions,
  ): Promise<[WireLogEntry[], ListRequest | null, { nextPageToken?: string | null } | undefined]>;
  close(): Promise<void>;
}

/** A stub with grpc-js `Client#waitForReady` (the gRPC transport's stub is one). */
interface ReadyStub {
  getChannel(): {
    getConnectivityState(tryToConnect: boolean): number;
    watchConnectivityState(current: number, deadline: number, callback: (err?: Error) => void): void;
  };
}

/** grpc-js `connectivityState` values. */
const CHANNEL = { READY: 2, TRANSIENT_FAILURE: 3, SHUTDOWN: 4 } as const;

/** One attempt per call: the sources retry themselves, with their own backoff (gax alone would retry for ~73 s). */
const ONE_ATTEMPT = { retryCodes: [] as number[] };

/** gRPC status codes used here. */
const GRPC = { INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4 } as const;

function grpcCodeOf(err: unknown): number | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : null;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Splits `host:port` (`[v6]:port` too). Throws a TypeError naming the value. */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(endpoint.trim());
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || !(port >= 1 && port <= 65535)) {
    throw new TypeError(`Cloud Logging endpoint must be host:port, got ${JSON.stringify(endpoint)}`);
  }
  return { host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

/**
 * A generated LoggingServiceV2Client for `projectId`: plaintext to
 * `endpoint` when given, else Cloud Logging with ADC. Keepalive pings every
 * 5 minutes (what Google's frontends accept) notice a connection that died
 * silently under a quiet tail.
 */
async function createClient(projectId: string, endpoint: string | null): Promise<LoggingClient> {
  const [logging, grpc] = await Promise.all([import("@google-cloud/logging"), import("@grpc/grpc-js")]);
  const options: Record<string, unknown> = {
    projectId,
    "grpc.keepalive_time_ms": 300_000,
    "grpc.keepalive_timeout_ms": 20_000,
    // grpc-js would otherwise wait up to 120 s between connection attempts after a long outage.
    "grpc.max_reconnect_backoff_ms": DEFAULT_BACKOFF_MAX_MS,
  };
  if (endpoint !== null) {
    const { host, port } = parseEndpoint(endpoint);
    // Not in the options' TS type, hence the untyped object (FIELD-NOTES).
    Object.assign(options, { apiEndpoint: host, port, sslCreds: grpc.credentials.createInsecure() });
  }
  const Client = (logging.v2 as { LoggingServiceV2Client: new (options: Record<string, unknown>) => LoggingClient }).LoggingServiceV2Client;
  return new Client(options);
}

function endpointOption(endpoint: string | undefined): string | null {
  const value = endpoint ?? process.env[ENDPOINT_ENV];
  if (value === undefined || value.trim() === "") return null;
  parseEndpoint(value); // fail at construction, not at the first connection
  return value.trim();
}

function checkProject(projectId: unknown): string {
  if (typeof projectId !== "string" || !PROJECT_ID.test(projectId)) {
    throw new TypeError(`Cloud Logging: projectId must match ${String(PROJECT_ID)}, got ${JSON.stringify(projectId)}`);
  }
  return projectId;
}

function checkMs(what: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new TypeError(`Cloud Logging: ${what} must be an integer from ${min} to ${max}, got ${String(value)}`);
  return v;
}

// ---------------------------------------------------------------------------
// LogEntry → Cloud Logging JSON.

const NS_PER_S = 1_000_000_000n;
const NS_PER_MS = 1_000_000n;

/** A Timestamp as nanoseconds since the epoch; null when it is missing or not a number. */
function wireNanos(time: WireTime | null | undefined): bigint | null {
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

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/;

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
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = valueToJson(value);
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
      if (plain !== undefined) out[k] = plain;
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
function entryNanos(entry: WireLogEntry): bigint | null {
  return wireNanos(entry.timestamp) ?? wireNanos(entry.receiveTimestamp);
}

/**
 * The identity Cloud Logging de-duplicates by: timestamp and insertId
 * (`NANOS/ID`). An entry without an insertId (Cloud Logging assigns one to
 * every entry it stores, so only a stray one) is identified by a hash of
 * its JSON instead (`NANOS#SHA1`).
 */
function entryKey(ns: bigint | null, entry: WireLogEntry, line: string): string {
  const t = (ns ?? 0n).toString();
  return entry.insertId ? `${t}/${entry.insertId}` : `${t}#${createHash("sha1").update(line).digest("base64")}`;
}

function keyNanos(key: string): bigint {
  const m = /^(-?\d+)[/#]/.exec(key);
  return m === null ? 0n : BigInt(m[1]!);
}

// ---------------------------------------------------------------------------
// De-duplication.

/**
 * The ids of the last `capacity` entries handed over, in arrival order (a
 * ring: the oldest is forgotten first), each with its time and the batch it
 * came in.
 */
class RecentEntries {
  private readonly keys: string[] = [];
  private readonly times: bigint[] = [];
  private readonly batches: number[] = [];
  private readonly index = new Set<string>();
  private head = 0;

  constructor(private readonly capacity: number) {}

  has(key: string): boolean {
    return this.index.has(key);
  }

  add(key: string, ns: bigint, batch: number): void {
    if (this.keys.length < this.capacity) {
      this.keys.push(key);
      this.times.push(ns);
      this.batches.push(batch);
    } else {
      this.index.delete(this.keys[this.head]!);
      this.keys[this.head] = key;
      this.times[this.head] = ns;
      this.batches[this.head] = batch;
      this.head = (this.head + 1) % this.capacity;
    }
    this.index.add(key);
  }

  clear(): void {
    this.keys.length = 0;
    this.times.length = 0;
    this.batches.length = 0;
    this.index.clear();
    this.head = 0;
  }

  /** Keys of entries from batches up to `batch` with a time at or after `since`, looking back over at most `max` arrivals, oldest first. */
  since(since: bigint, batch: number, max: number): string[] {
    const out: string[] = [];
    const n = this.keys.length;
    for (let k = 0; k < Math.min(n, max); k++) {
      const i = (this.head - 1 - k + 2 * n) % n;
      if (this.batches[i]! <= batch && this.times[i]! >= since) out.push(this.keys[i]!);
    }
    return out.reverse();
  }
}

// ---------------------------------------------------------------------------
// Reading a tail stream one response at a time.

/**
 * Pulls responses from a tail stream one at a time (`read()`), so that the
 * stream buffers and gRPC flow control holds the server back while a batch
 * is being processed. Listens for errors from the moment it is made: a
 * stream that fails while the source is still catching up must not throw an
 * unhandled 'error'.
 */
class Pull {
  private error: unknown = null;
  private ended = false;
  private wake: (() => void) | null = null;

  constructor(private readonly stream: Duplex) {
    const notify = (): void => {
      const wake = this.wake;
      this.wake = null;
      wake?.();
    };
    stream.on("readable", notify);
    stream.on("error", (err: unknown) => {
      this.error ??= err;
      notify();
    });
    stream.on("end", () => {
      this.ended = true;
      notify();
    });
    stream.on("close", () => {
      this.ended = true;
      notify();
    });
  }

  /** Fails as soon as the stream has (before its buffered responses: they are caught up again). */
  get failed(): unknown {
    return this.error;
  }

  /** The next response, null at the end; throws the stream's error. Resolves early when `signal` aborts (null). */
  async next(signal: AbortSignal): Promise<WireTailResponse | null> {
    for (;;) {
      if (signal.aborted) return null;
      const item = this.stream.read() as WireTailResponse | null;
      if (item !== null) return item;
      if (this.error !== null) throw this.error as Error;
      if (this.ended) return null;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Resolves when the client's channel is connected. Rejects with
 * `ERR_RECLAIM_GCP_CONNECT` as soon as a connection attempt failed (refused,
 * unreachable, TLS) or after `timeoutMs` (an endpoint that accepts and never
 * answers), instead of the minutes gax would retry. Resolves at once when
 * the stub cannot tell (not the gRPC transport): the call itself will fail.
 */
async function waitReady(client: LoggingClient, timeoutMs: number, signal: AbortSignal): Promise<void> {
  await client.initialize();
  const stub = (await client.loggingServiceV2Stub) as Partial<ReadyStub> | undefined;
  if (typeof stub?.getChannel !== "function") return;
  const channel = stub.getChannel();
  const deadline = Date.now() + timeoutMs;
  const fail = (why: string, cause?: Error): CloudLoggingSourceError =>
    new CloudLoggingSourceError("ERR_RECLAIM_GCP_CONNECT", `no connection to Cloud Logging: ${why}`, cause === undefined ? {} : { cause });
  let state = channel.getConnectivityState(true);
  while (state !== CHANNEL.READY && !signal.aborted) {
    if (state === CHANNEL.TRANSIENT_FAILURE) throw fail("the connection attempt failed");
    if (state === CHANNEL.SHUTDOWN) throw fail("the client is closed");
    const current = state;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => resolve();
      signal.addEventListener("abort", onAbort, { once: true });
      channel.watchConnectivityState(current, deadline, (err) => {
        signal.removeEventListener("abort", onAbort);
        if (err === undefined || err === null) resolve();
        else reject(fail(`none within ${timeoutMs} ms`, err));
      });
    });
    state = channel.getConnectivityState(true);
  }
}

// ---------------------------------------------------------------------------
// The live source.

/** The saved position, as written to the state directory. */
const Checkpoint = z
  .object({
    version: z.literal(1),
    project: z.string(),
    /** The newest entry time handed over and processed. */
    lastSeen: z.string().regex(RFC3339),
    /** Ids (`NANOS/INSERT_ID`) of the processed entries within the overlap of `lastSeen`. */
    recent: z.array(z.string().regex(/^-?\d+[/#]/)).max(MAX_SAVED_IDS),
  })
  .strict();
type Checkpoint = z.infer<typeof Checkpoint>;

/** A position: the newest entry time, and the ids to skip when catching up from before it. */
interface Position {
  lastSeen: bigint;
  recent: string[];
}

/** An entry handed over: its identity (entryKey) and time. */
interface HandedOver {
  key: string;
  ns: bigint;
}

/** A batch handed over: the position after it, its entries, and whether they are marked handled yet (in the ring). */
interface PendingBatch {
  seq: number;
  lastSeen: bigint;
  keys: readonly HandedOver[];
  marked: boolean;
}

/**
 * The batch handler's own rejection, kept apart from the session's faults
 * (which are retried): it ends `run()` with the handler's error, `cause`.
 */
class HandlerFailure extends Error {
  constructor(cause: unknown) {
    super("the batch handler failed", { cause });
    this.name = "HandlerFailure";
  }
}

/** How a session ended. */
interface SessionEnd {
  /** It lasted or delivered: the backoff starts over. */
  healthy: boolean;
  /** `restart`: the filter changed, reconnect at once. */
  kind: "ended" | "failed" | "restart" | "aborted";
}

/**
 * The `gcp:PROJECT` source: tails Cloud Logging for entries that match
 * `filter`, reconnecting for ever (a dead endpoint is retried, never
 * fatal), without gaps or duplicates across reconnects and (with
 * `stateDir`) restarts. Options and defaults: `CloudLoggingSourceOptions`.
 * Only an INVALID_ARGUMENT answer (a filter Cloud Logging refuses), an
 * unreadable saved position or a rejection of the batch handler ends
 * `run()` with an error. An entry counts as handed over (de-duplicated from
 * then on, the position past it) only once its batch's handler resolved.
 * One `run` at a time; a later `run` (a new leadership term) continues from
 * the last committed position.
 */
export class CloudLoggingSource implements LogSource {
  readonly name: string;
  readonly stats: CloudLoggingStats = {
    ...newSourceStats(),
    duplicates: 0,
    sessions: 0,
    reconnects: 0,
    failures: 0,
    caughtUp: 0,
    suppressed: { RATE_LIMIT: 0, NOT_CONSUMED: 0, REASON_UNSPECIFIED: 0 },
    newestEntryTime: null,
    connected: false,
  };
  readonly projectId: string;
  /** The plaintext endpoint used instead of Cloud Logging, or null. */
  readonly endpoint: string | null;
  /** Where the position is kept, or null without `stateDir`. */
  readonly checkpointFile: string | null;
  private filterText: string;
  private readonly bufferWindowMs: number;
  private readonly overlapNs: bigint;
  private readonly lookbackMs: number;
  private readonly maxCatchUpMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly healthyAfterMs: number;
  private readonly connectTimeoutMs: number;
  private readonly callTimeoutMs: number;
  private readonly pageSize: number;
  private readonly onWarning: (warning: CloudLoggingWarning) => void;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly recent: RecentEntries;
  private running = false;
  /** Newest entry time handled in this run (ns: the position of the batches whose handler resolved), or null before any position. */
  private lastSeen: bigint | null = null;
  /** The last committed position; a new run starts from it. */
  private committed: Position | null = null;
  private loaded = false;
  private batches = 0;
  private savedBatch = 0;
  private saving: Promise<void> = Promise.resolve();
  /** Aborts the current session only (a changed filter). */
  private session: AbortController | null = null;

  constructor(options: CloudLoggingSourceOptions) {
    this.projectId = checkProject(options.projectId);
    this.name = `gcp:${this.projectId}`;
    this.filterText = options.filter ?? "";
    this.endpoint = endpointOption(options.endpoint);
    if (options.stateDir !== undefined && (options.stateDir === "" || options.stateDir.includes("\0"))) {
      throw new TypeError(`Cloud Logging: stateDir must be a non-empty path without NUL bytes, got ${JSON.stringify(options.stateDir)}`);
    }
    this.checkpointFile = options.stateDir === undefined ? null : join(resolve(options.stateDir), `gcp-${this.projectId}.json`);
    this.bufferWindowMs = checkMs("bufferWindowMs", options.bufferWindowMs, DEFAULT_BUFFER_WINDOW_MS, 0, 60_000);
    this.overlapNs = BigInt(checkMs("overlapMs", options.overlapMs, DEFAULT_OVERLAP_MS, 0, 600_000)) * NS_PER_MS;
    this.lookbackMs = checkMs("lookbackMs", options.lookbackMs, DEFAULT_LOOKBACK_MS, 0, 86_400_000);
    this.maxCatchUpMs = checkMs("maxCatchUpMs", options.maxCatchUpMs, DEFAULT_MAX_CATCH_UP_MS, 1000, 7 * 86_400_000);
    this.backoffInitialMs = checkMs("backoffInitialMs", options.backoffInitialMs, DEFAULT_BACKOFF_INITIAL_MS, 1, 600_000);
    this.backoffMaxMs = checkMs("backoffMaxMs", options.backoffMaxMs, DEFAULT_BACKOFF_MAX_MS, this.backoffInitialMs, 3_600_000);
    this.healthyAfterMs = checkMs("healthyAfterMs", options.healthyAfterMs, DEFAULT_HEALTHY_AFTER_MS, 1, 3_600_000);
    this.connectTimeoutMs = checkMs("connectTimeoutMs", options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1, 600_000);
    this.callTimeoutMs = checkMs("callTimeoutMs", options.callTimeoutMs, DEFAULT_CALL_TIMEOUT_MS, 1, 600_000);
    this.pageSize = checkMs("pageSize", options.pageSize, DEFAULT_PAGE_SIZE, 1, 1000);
    this.recent = new RecentEntries(checkMs("dedupCapacity", options.dedupCapacity, DEFAULT_DEDUP_CAPACITY, 1, 10_000_000));
    const onWarning = options.onWarning ?? (() => undefined);
    // A failing warning callback is the caller's bug; it must not stop the tail.
    this.onWarning = (warning) => {
      try {
        onWarning(warning);
      } catch {
        // ignored
      }
    };
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  /** The Cloud Logging filter in force. */
  get filter(): string {
    return this.filterText;
  }

  /**
   * Replaces the filter (rules reloaded). A running source ends its session
   * and opens a new one at once, catching up from its position with the new
   * filter; entries only the new filter matches are fetched from the
   * overlap before the newest entry on, not further back.
   */
  setFilter(filter: string): void {
    if (filter === this.filterText) return;
    this.filterText = filter;
    this.session?.abort();
  }

  /**
   * Tails until `signal` aborts (then resolves). Rejects with a
   * CloudLoggingSourceError: `ERR_RECLAIM_SOURCE_BUSY` (already running),
   * `ERR_RECLAIM_CHECKPOINT` (unreadable saved position),
   * `ERR_RECLAIM_GCP_REQUEST` (Cloud Logging refused the request as
   * invalid, e.g. the filter); or with `onBatch`'s own error when it
   * rejects: nothing of that batch counts as handled, so the next run hands
   * it over again (and nothing handled before it). Everything else is
   * retried.
   */
  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    if (this.running) throw new CloudLoggingSourceError("ERR_RECLAIM_SOURCE_BUSY", `${this.name}: already running`);
    this.running = true;
    let client: LoggingClient | null = null;
    try {
      await this.start();
      client = await createClient(this.projectId, this.endpoint);
      let failures = 0;
      while (!signal.aborted) {
        const end = await this.runSession(client, onBatch, signal);
        if (end.kind === "aborted" || signal.aborted) return;
        if (end.healthy) failures = 0;
        this.stats.reconnects++;
        if (end.kind === "restart") continue;
        const ceiling = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** Math.min(failures, 30));
        if (end.kind === "failed") failures++;
        // Equal jitter: between half and all of the ceiling, so that many operators do not reconnect in step.
        await sleep(Math.round(ceiling / 2 + (this.random() * ceiling) / 2), signal);
      }
    } finally {
      this.stats.connected = false;
      this.session = null;
      this.running = false;
      await client?.close().catch(() => undefined);
    }
  }

  /** Sets the run's starting position: the last committed one, else the saved one, else now minus the look-back. */
  private async start(): Promise<void> {
    if (!this.loaded) {
      this.committed = await this.loadCheckpoint();
      this.loaded = true;
    }
    this.recent.clear();
    if (this.committed === null) {
      this.lastSeen = BigInt(this.now() - this.lookbackMs) * NS_PER_MS + this.overlapNs;
      return;
    }
    this.lastSeen = this.committed.lastSeen;
    for (const key of this.committed.recent) this.recent.add(key, keyNanos(key), 0);
  }

  /** One session: connect, open the tail, catch up, then read the tail until it ends, fails or is aborted. */
  private async runSession(client: LoggingClient, onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<SessionEnd> {
    const session = new AbortController();
    this.session = session;
    const abort = (): void => session.abort();
    signal.addEventListener("abort", abort, { once: true });
    const started = this.now();
    let delivered = false;
    let stream: (Duplex & { cancel(): void }) | null = null;
    const healthy = (): boolean => delivered || this.now() - started >= this.healthyAfterMs;
    try {
      await waitReady(client, this.connectTimeoutMs, session.signal);
      if (session.signal.aborted) return this.aborted(signal, healthy());
      stream = client.tailLogEntries();
      const pull = new Pull(stream);
      stream.write({
        resourceNames: [`projects/${this.projectId}`],
        filter: this.filterText,
        bufferWindow: { seconds: Math.floor(this.bufferWindowMs / 1000), nanos: (this.bufferWindowMs % 1000) * 1_000_000 },
      });
      this.stats.sessions++;
      this.stats.connected = true;
      delivered = (await this.catchUp(client, onBatch, session.signal, () => pull.failed)) || delivered;
      for (;;) {
        const response = await pull.next(session.signal);
        if (response === null) break;
        delivered = true;
        await this.handleResponse(response, onBatch);
      }
      if (session.signal.aborted) return this.aborted(signal, healthy());
      return { healthy: healthy(), kind: "ended" };
    } catch (err) {
      // Not a session fault: the entries are fine, their handling failed. Reconnecting would not help the
      // handler; the caller decides whether to run again, and that run hands the batch over again.
      if (err instanceof HandlerFailure && !signal.aborted) throw err.cause;
      if (session.signal.aborted) return this.aborted(signal, healthy());
      const code = grpcCodeOf(err);
      if (code === GRPC.INVALID_ARGUMENT) {
        throw new CloudLoggingSourceError("ERR_RECLAIM_GCP_REQUEST", `${this.name}: Cloud Logging refused the request: ${messageOf(err)}`, {
          cause: err,
          grpcCode: code,
        });
      }
      // A deadline reached by a long session is its normal end (the client's own 1 h deadline).
      if (code === GRPC.DEADLINE_EXCEEDED && healthy()) return { healthy: true, kind: "ended" };
      this.stats.failures++;
      this.onWarning({
        kind: "session_failed",
        message: `${this.name}: tail session failed (${messageOf(err)}); reconnecting`,
        details: { source: this.name, grpcCode: code, connected: stream !== null },
      });
      return { healthy: healthy(), kind: "failed" };
    } finally {
      signal.removeEventListener("abort", abort);
      this.stats.connected = false;
      if (this.session === session) this.session = null;
      stream?.cancel();
      // A cancelled call still emits 'error' (CANCELLED): keep it handled after the Pull is gone.
      stream?.on("error", () => undefined);
    }
  }

  private aborted(signal: AbortSignal, healthy: boolean): SessionEnd {
    return { healthy, kind: signal.aborted ? "aborted" : "restart" };
  }

  /**
   * Lists what arrived since the position (minus the overlap, at most
   * `maxCatchUpMs` back), oldest first, and hands it over. Stops early when
   * the tail has failed meanwhile (the next session catches up again).
   * Returns whether anything was listed.
   */
  private async catchUp(
    client: LoggingClient,
    onBatch: (batch: LineBatch) => Promise<void>,
    signal: AbortSignal,
    tailFailed: () => unknown,
  ): Promise<boolean> {
    if (this.lastSeen === null) return false;
    let from = this.lastSeen - this.overlapNs;
    const limit = BigInt(this.now() - this.maxCatchUpMs) * NS_PER_MS;
    if (from < limit) {
      // Only a warning when something is skipped: a narrow filter on a quiet project matches nothing for hours.
      const skipped: ListRequest = {
        resourceNames: [`projects/${this.projectId}`],
        filter: andFilters(this.filterText, timestampAtLeast(nanosToRfc3339(from)), timestampBefore(nanosToRfc3339(limit))),
        orderBy: "timestamp asc",
        pageSize: 1,
      };
      const [some] = await client.listLogEntries(skipped, { autoPaginate: false, timeout: this.callTimeoutMs, retry: ONE_ATTEMPT });
      if (some.length > 0) {
        this.onWarning({
          kind: "gap",
          message: `${this.name}: the last position (${nanosToRfc3339(this.lastSeen)}) is older than ${this.maxCatchUpMs} ms; entries before ${nanosToRfc3339(limit)} are skipped`,
          details: { source: this.name, lastSeen: nanosToRfc3339(this.lastSeen), from: nanosToRfc3339(limit) },
        });
      }
      from = limit;
    }
    const request: ListRequest = {
      resourceNames: [`projects/${this.projectId}`],
      filter: andFilters(this.filterText, timestampAtLeast(nanosToRfc3339(from))),
      orderBy: "timestamp asc",
      pageSize: this.pageSize,
    };
    let listed = false;
    for (;;) {
      const [entries, , response] = await client.listLogEntries(request, { autoPaginate: false, timeout: this.callTimeoutMs, retry: ONE_ATTEMPT });
      if (signal.aborted) return listed;
      listed ||= entries.length > 0;
      this.stats.caughtUp += await this.deliver(entries, onBatch);
      const failed = tailFailed();
      if (failed !== null) throw failed as Error;
      const token = response?.nextPageToken;
      if (!token || signal.aborted) return listed;
      request.pageToken = token;
    }
  }

  private async handleResponse(response: WireTailResponse, onBatch: (batch: LineBatch) => Promise<void>): Promise<void> {
    for (const info of response.suppressionInfo ?? []) {
      const count = Number(info.suppressedCount ?? 0);
      if (!(count > 0)) continue;
      const reason =
        typeof info.reason === "number"
          ? (SUPPRESSION_REASONS[info.reason] ?? "REASON_UNSPECIFIED")
          : SUPPRESSION_REASONS.find((r) => r === info.reason) ?? "REASON_UNSPECIFIED";
      this.stats.suppressed[reason] += count;
      this.onWarning({
        kind: "suppressed",
        message:
          reason === "RATE_LIMIT"
            ? `${this.name}: Cloud Logging left ${count} entries out of the tail (over the tail quota of 60,000 entries a minute; narrow --filter)`
            : reason === "NOT_CONSUMED"
              ? `${this.name}: Cloud Logging left ${count} entries out of the tail (the operator read too slowly)`
              : `${this.name}: Cloud Logging left ${count} entries out of the tail`,
        details: { source: this.name, reason, count },
      });
    }
    await this.deliver(response.entries ?? [], onBatch);
  }

  /**
   * Hands over the entries not handled before as one batch; returns how
   * many. They count as handled (the ring drops them from then on, the
   * position moves past them) only once `onBatch` resolves: when it rejects,
   * nothing of the batch is marked, so the next run hands it over again
   * (rejects with a HandlerFailure).
   */
  private async deliver(entries: readonly WireLogEntry[], onBatch: (batch: LineBatch) => Promise<void>): Promise<number> {
    if (entries.length === 0) return 0;
    const lines: string[] = [];
    const keys: HandedOver[] = [];
    // The same entry twice in one response is one entry; the ring only knows entries of earlier batches.
    const inBatch = new Set<string>();
    let newest: bigint | null = null;
    for (const entry of entries) {
      const line = JSON.stringify(logEntryToJson(entry));
      const ns = entryNanos(entry);
      const key = entryKey(ns, entry, line);
      if (this.recent.has(key) || inBatch.has(key)) {
        this.stats.duplicates++;
        continue;
      }
      inBatch.add(key);
      keys.push({ key, ns: ns ?? 0n });
      if (ns !== null && (newest === null || ns > newest)) newest = ns;
      lines.push(line);
    }
    if (lines.length === 0) return 0;
    const seq = ++this.batches;
    let lastSeen = this.lastSeen;
    if (newest !== null) {
      const ms = Number(newest / NS_PER_MS);
      if (this.stats.newestEntryTime === null || ms > this.stats.newestEntryTime) this.stats.newestEntryTime = ms;
      // The position never passes now (give or take MAX_AHEAD_MS of clock difference): an entry stamped ahead (a
      // writer's clock running ahead; Cloud Logging takes up to a day) would make the next catch-up start after
      // entries that arrive later but are stamped on time (fault matrix, row 6).
      const ceiling = BigInt(this.now() + MAX_AHEAD_MS) * NS_PER_MS;
      const position = newest > ceiling ? ceiling : newest;
      if (lastSeen === null || position > lastSeen) lastSeen = position;
    }
    const data = Buffer.from(`${lines.join("\n")}\n`, "utf8");
    this.stats.linesRead += lines.length;
    this.stats.bytesRead += data.length;
    const batch: PendingBatch = { seq, lastSeen: lastSeen ?? 0n, keys, marked: false };
    try {
      await onBatch({ data, lines: lines.length, commit: () => this.commit(batch) });
    } catch (err) {
      throw new HandlerFailure(err);
    }
    for (const { key, ns } of keys) this.recent.add(key, ns, seq);
    batch.marked = true;
    if (lastSeen !== null && (this.lastSeen === null || lastSeen > this.lastSeen)) this.lastSeen = lastSeen;
    return lines.length;
  }

  /**
   * Records a batch's position (the run after this one starts from it) and
   * saves it with `stateDir`. Saves run one at a time; one older than the
   * last saved is dropped, so the position never goes back.
   */
  private commit(batch: PendingBatch): Promise<void> {
    const { seq, lastSeen } = batch;
    if (seq <= this.savedBatch) return Promise.resolve();
    const from = lastSeen - this.overlapNs;
    // Committed from within onBatch, as the operator does, the batch is not in the ring yet: its own ids go last
    // (they arrived last), and the ring is looked back over for the rest of MAX_SAVED_IDS.
    const own = batch.marked ? [] : batch.keys.filter((k) => k.ns >= from).map((k) => k.key).slice(-MAX_SAVED_IDS);
    const recent = [...this.recent.since(from, seq, MAX_SAVED_IDS - own.length), ...own];
    const position: Position = { lastSeen, recent };
    if (this.committed === null || position.lastSeen >= this.committed.lastSeen) this.committed = position;
    const file = this.checkpointFile;
    if (file === null) {
      this.savedBatch = seq;
      return Promise.resolve();
    }
    const save = async (): Promise<void> => {
      if (seq <= this.savedBatch) return;
      const checkpoint: Checkpoint = { version: 1, project: this.projectId, lastSeen: nanosToRfc3339(position.lastSeen), recent: position.recent };
      try {
        await writeFileAtomic(file, `${JSON.stringify(checkpoint)}\n`);
      } catch (err) {
        throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: could not save its position to ${file}`, { cause: err });
      }
      this.savedBatch = seq;
    };
    const saved = this.saving.then(save);
    this.saving = saved.catch(() => undefined);
    return saved;
  }

  private async loadCheckpoint(): Promise<Position | null> {
    const file = this.checkpointFile;
    if (file === null) return null;
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: could not read its position from ${file}`, { cause: err });
    }
    let saved: Checkpoint;
    try {
      saved = Checkpoint.parse(JSON.parse(text));
    } catch (err) {
      throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: unreadable position in ${file} (delete it to start over)`, { cause: err });
    }
    if (saved.project !== this.projectId) {
      throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${this.name}: ${file} holds the position of project ${saved.project}`);
    }
    return { lastSeen: rfc3339ToNanos(saved.lastSeen)!, recent: saved.recent };
  }
}

// ---------------------------------------------------------------------------
// History, for replay.

/** Options of a history read. */
export interface CloudLoggingHistoryOptions {
  projectId: string;
  /** The Cloud Logging filter (gcp-filter.ts); AND-ed with the time range. Default "". */
  filter?: string;
  /** Entries at or after this time (ms since the epoch). */
  since: number;
  /** Entries before this time (ms since the epoch); default: no end. */
  until?: number;
  /** `host:port` of a plaintext endpoint; default `RECLAIM_GCP_ENDPOINT`, else Cloud Logging with ADC. */
  endpoint?: string;
  /** Entries per page (default 1000, at most 1000). */
  pageSize?: number;
  /** Deadline of each page's call (default 30000 ms). */
  callTimeoutMs?: number;
  /** Time to establish the connection before giving up (default 10000 ms). */
  connectTimeoutMs?: number;
  /** Attempts per page on UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL or RESOURCE_EXHAUSTED (default 3), 1 s, 2 s, … apart. */
  attempts?: number;
}

const RETRYABLE = new Set([4, 8, 13, 14]);

/**
 * A finite source over Cloud Logging history: `ListLogEntries` with
 * `orderBy: "timestamp asc"` and `filter AND timestamp>="since"` (always a
 * time bound, so the service adds none of its own), one batch per page,
 * until the last page. `stats.pages` counts pages read. Rejects with a
 * CloudLoggingSourceError: `ERR_RECLAIM_GCP_CONNECT` when there is no
 * connection (within `connectTimeoutMs`, or a refused one at once),
 * `ERR_RECLAIM_GCP_READ` when a page cannot be read.
 */
export class CloudLoggingHistorySource implements LogSource {
  readonly name: string;
  readonly stats: SourceStats & { skippedLongLines: number; pages: number } = { ...newSourceStats(), pages: 0 };
  /** The filter sent, time range included. */
  readonly filter: string;
  private readonly projectId: string;
  private readonly endpoint: string | null;
  private readonly pageSize: number;
  private readonly callTimeoutMs: number;
  private readonly attempts: number;
  private readonly connectTimeoutMs: number;

  constructor(options: CloudLoggingHistoryOptions) {
    this.projectId = checkProject(options.projectId);
    this.name = `gcp:${this.projectId}`;
    this.endpoint = endpointOption(options.endpoint);
    if (!Number.isFinite(options.since)) throw new TypeError(`Cloud Logging history: since must be a time, got ${String(options.since)}`);
    if (options.until !== undefined && !(options.until > options.since)) {
      throw new TypeError(`Cloud Logging history: until (${String(options.until)}) must be after since (${String(options.since)})`);
    }
    const range = [timestampAtLeast(nanosToRfc3339(BigInt(Math.floor(options.since)) * NS_PER_MS))];
    if (options.until !== undefined) range.push(timestampBefore(nanosToRfc3339(BigInt(Math.floor(options.until)) * NS_PER_MS)));
    this.filter = andFilters(options.filter, ...range);
    this.pageSize = checkMs("pageSize", options.pageSize, DEFAULT_PAGE_SIZE, 1, 1000);
    this.callTimeoutMs = checkMs("callTimeoutMs", options.callTimeoutMs, DEFAULT_CALL_TIMEOUT_MS, 1, 600_000);
    this.attempts = checkMs("attempts", options.attempts, 3, 1, 10);
    this.connectTimeoutMs = checkMs("connectTimeoutMs", options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1, 600_000);
  }

  /** Hands over every page, oldest entries first; resolves after the last (or on abort). */
  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    const client = await createClient(this.projectId, this.endpoint);
    try {
      try {
        await waitReady(client, this.connectTimeoutMs, signal);
      } catch (err) {
        throw new CloudLoggingSourceError("ERR_RECLAIM_GCP_CONNECT", `${this.name}: ${messageOf(err)}`, { cause: err });
      }
      const request: ListRequest = { resourceNames: [`projects/${this.projectId}`], filter: this.filter, orderBy: "timestamp asc", pageSize: this.pageSize };
      while (!signal.aborted) {
        const [entries, , response] = await this.page(client, request, signal);
        this.stats.pages++;
        if (entries.length > 0) {
          const data = Buffer.from(`${entries.map((e) => JSON.stringify(logEntryToJson(e))).join("\n")}\n`, "utf8");
          this.stats.linesRead += entries.length;
          this.stats.bytesRead += data.length;
          await onBatch({ data, lines: entries.length, commit: () => Promise.resolve() });
        }
        const token = response?.nextPageToken;
        if (!token) return;
        request.pageToken = token;
      }
    } finally {
      await client.close().catch(() => undefined);
    }
  }

  private async page(client: LoggingClient, request: ListRequest, signal: AbortSignal): ReturnType<LoggingClient["listLogEntries"]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await client.listLogEntries(request, { autoPaginate: false, timeout: this.callTimeoutMs, retry: ONE_ATTEMPT });
      } catch (err) {
        const code = grpcCodeOf(err);
        if (attempt >= this.attempts || code === null || !RETRYABLE.has(code) || signal.aborted) {
          throw new CloudLoggingSourceError("ERR_RECLAIM_GCP_READ", `${this.name}: could not list entries: ${messageOf(err)}`, {
            cause: err,
            ...(code === null ? {} : { grpcCode: code }),
          });
        }
        await sleep(1000 * 2 ** (attempt - 1), signal);
      }
    }
  }
}
