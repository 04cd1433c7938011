/**
 * The Cloud Logging client as both `gcp:PROJECT` sources use it: the
 * generated `v2.LoggingServiceV2Client` of `@google-cloud/logging` (not the
 * high-level `Logging#tailEntries()`, which sends `bufferwindow` in lower
 * case and crashes the process without a project id: FIELD-NOTES), typed
 * for what is used; its options checked; a connection awaited within a
 * deadline; one attempt per call (the sources retry themselves).
 *
 * Credentials: Application Default Credentials (Workload Identity on GKE).
 * With `endpoint` (or `RECLAIM_GCP_ENDPOINT=host:port`) the client talks
 * plaintext gRPC to that address and asks for no credentials: a local test
 * server, never production.
 */
import type { Duplex } from "node:stream";
import type { WireLogEntry } from "./decode.js";
import { CloudLoggingSourceError } from "./error.js";

/** A Google Cloud project id: 6 to 30 lower-case letters, digits and hyphens, starting with a letter, not ending with a hyphen. */
export const PROJECT_ID = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

/** The environment variable naming a plaintext endpoint (`host:port`) instead of Cloud Logging. */
export const ENDPOINT_ENV = "RECLAIM_GCP_ENDPOINT";

/** Default longest reconnect delay: 30 s (the tail's, and grpc-js's own between connection attempts). */
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
/** Default time to establish a connection before a session counts as failed: 10 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Default deadline of one ListLogEntries call: 30 s, one attempt (gax would otherwise retry for minutes). */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Entries per ListLogEntries page: 1000 (the service's maximum). */
export const DEFAULT_PAGE_SIZE = 1000;

// The client, typed for what is used (the package types `v2` as any).

/** A ListLogEntries request. */
export interface ListRequest {
  resourceNames: string[];
  filter: string;
  orderBy: "timestamp asc";
  pageSize: number;
  pageToken?: string;
}

/** Per-call options of the generated client (gax `CallOptions`, the part used). */
export interface CallOptions {
  autoPaginate?: boolean;
  timeout?: number;
  retry?: { retryCodes: number[] };
}

/** The part of `v2.LoggingServiceV2Client` used here. */
export interface LoggingClient {
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
export const ONE_ATTEMPT = { retryCodes: [] as number[] };

/** gRPC status codes used here. */
export const GRPC = { INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4 } as const;

/** The gRPC status code of an error, null when it has none. */
export function grpcCodeOf(err: unknown): number | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : null;
}

/** An error's message (any thrown value as text). */
export function messageOf(err: unknown): string {
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
export async function createClient(projectId: string, endpoint: string | null): Promise<LoggingClient> {
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

/**
 * The endpoint to use: `endpoint`, else `RECLAIM_GCP_ENDPOINT`, trimmed;
 * null (Cloud Logging) when neither is set or blank. Throws a TypeError for
 * one that is not `host:port`.
 */
export function endpointOption(endpoint: string | undefined): string | null {
  const value = endpoint ?? process.env[ENDPOINT_ENV];
  if (value === undefined || value.trim() === "") return null;
  parseEndpoint(value); // fail at construction, not at the first connection
  return value.trim();
}

/** `projectId` when it is a Google Cloud project id (PROJECT_ID), else a TypeError naming it. */
export function checkProject(projectId: unknown): string {
  if (typeof projectId !== "string" || !PROJECT_ID.test(projectId)) {
    throw new TypeError(`Cloud Logging: projectId must match ${String(PROJECT_ID)}, got ${JSON.stringify(projectId)}`);
  }
  return projectId;
}

/** `value` (default `fallback`) when it is an integer from `min` to `max`, else a TypeError naming `what`. */
export function checkMs(what: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new TypeError(`Cloud Logging: ${what} must be an integer from ${min} to ${max}, got ${String(value)}`);
  return v;
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
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
export async function waitReady(client: LoggingClient, timeoutMs: number, signal: AbortSignal): Promise<void> {
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

