/**
 * The `gcp:PROJECT` history source (`CloudLoggingHistorySource`), for
 * `reclaim rules replay`: a finite source that pages through
 * `ListLogEntries` oldest first, within a time range, each page one batch
 * of Cloud Logging JSON lines (decode.ts).
 */
import { andFilters, timestampAtLeast, timestampBefore } from "../gcp-filter.js";
import { newSourceStats, type LineBatch, type LogSource, type SourceStats } from "../source.js";
import {
  checkMs,
  checkProject,
  createClient,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PAGE_SIZE,
  endpointOption,
  grpcCodeOf,
  messageOf,
  ONE_ATTEMPT,
  sleep,
  waitReady,
  type ListRequest,
  type LoggingClient,
} from "./client.js";
import { logEntryToJson, nanosToRfc3339, NS_PER_MS } from "./decode.js";
import { CloudLoggingSourceError } from "./error.js";

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

/** gRPC codes worth another attempt: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE. */
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
