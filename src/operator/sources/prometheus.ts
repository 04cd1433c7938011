/**
 * A small client for the Prometheus HTTP API's instant query,
 * `GET /api/v1/query?query=…&time=…`, as metric rules use it. Prometheus,
 * Thanos, Mimir and Google Managed Prometheus (its frontend, or
 * `https://monitoring.googleapis.com/v1/projects/PROJECT/location/global/prometheus`)
 * all serve it.
 *
 * Like the control client: every call has a timeout, every answer is
 * validated (zod), the body read is bounded, and every failure is a
 * `PrometheusError` that says whether trying again could help. Results are
 * vectors (one sample per series) or a scalar (one sample, no labels); a
 * range vector (matrix), a string, or native-histogram samples are refused
 * with a clear error: a metric rule compares one number per series.
 */
import { z } from "zod";

/** Why a query failed. */
export type PrometheusFailureKind =
  /** Connection refused, reset, DNS…: retrying may help. */
  | "network"
  /** No complete answer within the timeout: retrying may help. */
  | "timeout"
  /** A non-2xx answer that is not a Prometheus error body (a proxy's 502 page, a 401…). */
  | "http"
  /** Prometheus refused or failed the query (`status: "error"`): `errorType` says why. */
  | "query"
  /** A 2xx answer that is not the API's JSON (garbage, wrong shape, a bad sample value). */
  | "invalid_response"
  /** The body exceeded `maxResponseBytes`. */
  | "too_large"
  /** A valid answer this client does not evaluate: matrix, string, native histograms. */
  | "unsupported_result";

/** A failed query. Tests and callers branch on `code`, `kind` and `recoverable`, not on the wording. */
export class PrometheusError extends Error {
  readonly code = "ERR_RECLAIM_PROMETHEUS";
  constructor(
    message: string,
    readonly kind: PrometheusFailureKind,
    /** The HTTP status, when there was an answer. */
    readonly status: number | null,
    /** Prometheus's `errorType` (`bad_data`, `execution`, `timeout`, `canceled`, `unavailable`, `internal`…) when it sent one. */
    readonly errorType: string | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PrometheusError";
  }

  /** Could the same query succeed if tried again (later)? A bad query or an unsupported result never will. */
  get recoverable(): boolean {
    switch (this.kind) {
      case "network":
      case "timeout":
        return true;
      case "http":
        return this.status !== null && (this.status >= 500 || this.status === 429);
      case "query":
        return this.errorType !== null && RECOVERABLE_ERROR_TYPES.has(this.errorType);
      default:
        return false;
    }
  }
}

const RECOVERABLE_ERROR_TYPES = new Set(["timeout", "canceled", "unavailable", "internal"]);

/** One series of an instant query's result. */
export interface Sample {
  /** The series' labels (`__name__` included when the query keeps it). Empty for a scalar. */
  labels: Record<string, string>;
  /** The value; `NaN`, `+Inf` and `-Inf` are decoded to their JavaScript numbers. */
  value: number;
  /** The sample's evaluation time, in milliseconds since the epoch. */
  timestamp: number;
}

/** What an instant query returned, as far as metric rules are concerned. */
export interface InstantQueryResult {
  resultType: "vector" | "scalar";
  /** One per series; a scalar is one sample without labels. */
  samples: Sample[];
  /** Prometheus's `warnings` (e.g. partial data from a federated store), if any. */
  warnings: string[];
}

/** Something that answers instant queries: the client, or a stand-in in tests of code that uses it. */
export interface InstantQuerier {
  query(promql: string, options?: QueryOptions): Promise<InstantQueryResult>;
}

export interface QueryOptions {
  /** Evaluation time in milliseconds since the epoch (default: Prometheus's now). */
  time?: number;
  /** This call's timeout (default: the client's `timeoutMs`). */
  timeoutMs?: number;
}

export interface PrometheusClientOptions {
  /** Per-query timeout, also sent as the query's `timeout` (default 10000 ms). */
  timeoutMs?: number;
  /** Largest response body read (default 4 MiB). */
  maxResponseBytes?: number;
  /** Extra request headers, e.g. `Authorization` for a frontend that needs it (default none). */
  headers?: Record<string, string>;
}

const DEFAULTS: Required<PrometheusClientOptions> = { timeoutMs: 10_000, maxResponseBytes: 4 * 1024 * 1024, headers: {} };

/** `[unix seconds, "value"]`. */
const SampleValue = z.tuple([z.number(), z.string()]);

const VectorSeries = z.object({
  metric: z.record(z.string(), z.string()),
  value: SampleValue.optional(),
  /** A native histogram sample: not a number a rule can compare. */
  histogram: z.unknown().optional(),
});

/** The body of a successful `/api/v1/query`. */
export const QuerySuccess = z.object({
  status: z.literal("success"),
  data: z.discriminatedUnion("resultType", [
    z.object({ resultType: z.literal("vector"), result: z.array(VectorSeries) }),
    z.object({ resultType: z.literal("scalar"), result: SampleValue }),
    z.object({ resultType: z.literal("matrix"), result: z.array(z.unknown()) }),
    z.object({ resultType: z.literal("string"), result: z.unknown() }),
  ]),
  warnings: z.array(z.string()).optional(),
});

/** The body of a failed `/api/v1/query` (any status). */
export const QueryFailure = z.object({
  status: z.literal("error"),
  errorType: z.string(),
  error: z.string(),
});

/** A client for one Prometheus-compatible HTTP API. */
export class PrometheusClient implements InstantQuerier {
  private readonly options: Required<PrometheusClientOptions>;
  /** The API root without a trailing slash; `/api/v1/query` is appended. */
  readonly baseUrl: string;

  /**
   * @param baseUrl e.g. `http://prometheus.monitoring:9090` (a path prefix is kept)
   * @param options timeouts, body limit and headers; see PrometheusClientOptions for the defaults
   */
  constructor(baseUrl: string, options: PrometheusClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch (err) {
      throw new TypeError(`invalid Prometheus URL ${JSON.stringify(baseUrl)}`, { cause: err });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`invalid Prometheus URL ${JSON.stringify(baseUrl)}: use http or https`);
    this.options = { ...DEFAULTS, ...options };
    for (const [name, value] of [
      ["timeoutMs", this.options.timeoutMs],
      ["maxResponseBytes", this.options.maxResponseBytes],
    ] as const) {
      if (!Number.isInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer, got ${String(value)}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  /** Runs an instant query. Resolves with its samples, or rejects with a `PrometheusError`. */
  async query(promql: string, options: QueryOptions = {}): Promise<InstantQueryResult> {
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    const params = new URLSearchParams({ query: promql, timeout: `${timeoutMs / 1000}` });
    if (options.time !== undefined) params.set("time", (options.time / 1000).toFixed(3));
    const url = `${this.baseUrl}/api/v1/query?${params.toString()}`;
    const where = `Prometheus query ${JSON.stringify(short(promql))} at ${this.baseUrl}`;
    const signal = AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      res = await fetch(url, { headers: { Accept: "application/json", ...this.options.headers }, signal });
    } catch (err) {
      throw failure(err, where, timeoutMs, null);
    }
    let text: string;
    try {
      text = await readBounded(res, this.options.maxResponseBytes);
    } catch (err) {
      if (err instanceof PrometheusError) throw new PrometheusError(`${where}: ${err.message}`, err.kind, res.status, null);
      throw failure(err, where, timeoutMs, res.status);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const refused = QueryFailure.safeParse(body);
    if (refused.success) {
      const { errorType, error } = refused.data;
      throw new PrometheusError(`${where} failed (HTTP ${res.status}, ${errorType}): ${error}`, "query", res.status, errorType);
    }
    if (!res.ok) throw new PrometheusError(`${where} answered HTTP ${res.status}: ${short(text, 200)}`, "http", res.status, null);
    if (body === undefined) throw new PrometheusError(`${where} answered ${res.status} with something that is not JSON: ${short(text, 200)}`, "invalid_response", res.status, null);
    const parsed = QuerySuccess.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const at = issue === undefined ? "" : ` (${issue.path.join(".") || "body"}: ${issue.message})`;
      throw new PrometheusError(`${where} answered ${res.status} with a body that is not a query result${at}`, "invalid_response", res.status, null);
    }
    const { data } = parsed.data;
    const warnings = parsed.data.warnings ?? [];
    switch (data.resultType) {
      case "scalar":
        return { resultType: "scalar", samples: [sample({}, data.result, where, res.status)], warnings };
      case "vector":
        return {
          resultType: "vector",
          samples: data.result.map((series) => {
            if (series.value === undefined) {
              throw new PrometheusError(
                `${where} returned a native histogram sample; a metric rule compares numbers (use e.g. histogram_quantile or histogram_count)`,
                "unsupported_result",
                res.status,
                null,
              );
            }
            return sample(series.metric, series.value, where, res.status);
          }),
          warnings,
        };
      default:
        throw new PrometheusError(
          `${where} returned a ${data.resultType}; a metric rule needs an instant vector or a scalar (a range selector such as x[5m] must be aggregated, e.g. max_over_time(x[5m]))`,
          "unsupported_result",
          res.status,
          null,
        );
    }
  }
}

function sample(labels: Record<string, string>, [seconds, text]: [number, string], where: string, status: number): Sample {
  const value = sampleValue(text);
  if (value === null) throw new PrometheusError(`${where} returned a sample value that is not a number: ${JSON.stringify(short(text, 40))}`, "invalid_response", status, null);
  return { labels, value, timestamp: Math.round(seconds * 1000) };
}

/** Prometheus writes floats as strings, with `NaN`, `+Inf` and `-Inf`. */
function sampleValue(text: string): number | null {
  if (text === "NaN") return NaN;
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text.trim() === "") return null;
  const value = Number(text);
  return Number.isNaN(value) ? null : value;
}

/** The body as text, refusing more than `limit` bytes (announced or read). */
async function readBounded(res: Response, limit: number): Promise<string> {
  const announced = Number(res.headers.get("content-length"));
  if (Number.isFinite(announced) && announced > limit) {
    await res.body?.cancel().catch(() => undefined);
    throw new PrometheusError(`the answer is ${announced} bytes, more than the ${limit} allowed`, "too_large", res.status, null);
  }
  if (res.body === null) return "";
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new PrometheusError(`the answer is more than the ${limit} bytes allowed`, "too_large", res.status, null);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function failure(err: unknown, where: string, timeoutMs: number, status: number | null): PrometheusError {
  const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
  if (timedOut) return new PrometheusError(`${where} timed out after ${timeoutMs} ms`, "timeout", status, null, { cause: err });
  return new PrometheusError(`${where} failed: ${causeText(err)}`, "network", status, null, { cause: err });
}

function causeText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
  }
  return String(err);
}

function short(text: string, max = 120): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
