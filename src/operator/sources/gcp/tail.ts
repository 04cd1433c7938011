/**
 * The live `gcp:PROJECT` source (`CloudLoggingSource`): tail and catch-up.
 *
 * A `TailLogEntries` session streams entries as Cloud Logging receives
 * them. Sessions end (after about an hour) or fail at any time; the source
 * then opens a new one, after a jittered exponential backoff. A tail only
 * sees what arrives while it is open, so every session first catches up
 * through `ListLogEntries` from the newest entry handed over, minus an
 * overlap, before it reads the tail (whose entries wait, under gRPC flow
 * control, meanwhile). What the catch-up and the tail both return, and what
 * the overlap repeats, is dropped by `insertId` (with the timestamp: Cloud
 * Logging's own identity of an entry) against a bounded ring of the ids
 * recently handled (dedupe.ts; an entry joins it only once the batch
 * handler resolved for it). So a broken session leaves neither a gap nor a
 * duplicate; `commit()` persists the position (position.ts: the newest time
 * and the ids within the overlap) so that a restart does not either.
 *
 * Limits of that promise: an entry that reaches Cloud Logging later than the
 * overlap after newer ones were handed over can be missed across a
 * reconnect, and so can one received just before a session opened that
 * `ListLogEntries` does not show yet (Cloud Logging indexes within seconds).
 * A position older than `maxCatchUpMs` is caught up from that far back
 * only, with a warning.
 */
import { join, resolve } from "node:path";
import type { Duplex } from "node:stream";
import { andFilters, timestampAtLeast, timestampBefore } from "../gcp-filter.js";
import { newSourceStats, type LineBatch, type LogSource, type SourceStats } from "../source.js";
import {
  checkMs,
  checkProject,
  createClient,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PAGE_SIZE,
  endpointOption,
  GRPC,
  grpcCodeOf,
  messageOf,
  ONE_ATTEMPT,
  sleep,
  waitReady,
  type ListRequest,
  type LoggingClient,
} from "./client.js";
import { entryNanos, logEntryToJson, nanosToRfc3339, NS_PER_MS, type WireLogEntry } from "./decode.js";
import { DEFAULT_DEDUP_CAPACITY, entryKey, keyNanos, RecentEntries } from "./dedupe.js";
import { CloudLoggingSourceError } from "./error.js";
import { MAX_SAVED_IDS, readPosition, writePosition, type Position } from "./position.js";

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
/** Default: a session open this long (or that delivered anything) was healthy and resets the backoff: 30 s. */
export const DEFAULT_HEALTHY_AFTER_MS = 30_000;

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

/** A TailLogEntries response as the generated client decodes it. */
interface WireTailResponse {
  entries?: WireLogEntry[] | null;
  suppressionInfo?: { reason?: string | number | null; suppressedCount?: number | null }[] | null;
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

// ---------------------------------------------------------------------------
// The live source.

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
      await writePosition(file, this.name, this.projectId, position);
      this.savedBatch = seq;
    };
    const saved = this.saving.then(save);
    this.saving = saved.catch(() => undefined);
    return saved;
  }

  private async loadCheckpoint(): Promise<Position | null> {
    const file = this.checkpointFile;
    if (file === null) return null;
    return readPosition(file, this.name, this.projectId);
  }
}

