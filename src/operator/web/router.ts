/**
 * The web view's router (ADR 24), mounted into the operator's HTTP server
 * (the one with `/metrics`): read-only pages for on-call and the same data
 * as JSON.
 *
 *   GET /                         incidents, newest first (filters, counts, pages)
 *   GET /incidents/{id}           one incident
 *   GET /digest                   the daily digest over the last 24 h
 *   GET /api/v1/incidents         the list as JSON: { items, next, total, counts }
 *   GET /api/v1/incidents/{id}    the record as JSON (its own schema)
 *
 * GET and HEAD only (405 with `Allow` otherwise). Input is validated before
 * the store sees it: an id that is not an incident id is a 400 and no store
 * call is made; a bad query value is a 400 naming the parameter. Every store
 * call has a deadline (a Kubernetes API server may hang) and at most a few
 * run at once; a call that runs out of time, or one more than that, is a
 * 503 with `Retry-After`, never a hung page. Every answer carries the
 * headers of layout.ts (strict CSP, nosniff, no referrer, no framing).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { deadline, systemTimers, type Timers } from "../../contract/clock.js";
import { DEFAULT_DIGEST_WINDOW_MS, summarizeDigest } from "../jobs/digest.js";
import { INCIDENT_ID_PATTERN } from "../incidents/model.js";
import type { IncidentStore } from "../incidents/store.js";
import { html } from "./html.js";
import { renderDigestPage } from "./digest-page.js";
import { renderIncidentPage } from "./incident-page.js";
import { page, SECURITY_HEADERS } from "./layout.js";
import { renderListPage } from "./list-page.js";
import { pageOf, parseListQuery, QueryError } from "./query.js";

/** How long one store call of the web view may take by default (ms). */
export const DEFAULT_STORE_TIMEOUT_MS = 5000;
/** Most store calls of the web view running at once by default; beyond, requests get 503 at once. */
export const DEFAULT_MAX_STORE_CALLS = 4;
/** Longest request target read (characters); a longer one is a 414. */
const MAX_TARGET = 4096;

/** Stable codes of the web view's error answers (the `code` of a JSON error, and of `WebError`). */
export const WebErrorCode = {
  badRequest: "bad_request",
  badId: "invalid_incident_id",
  notFound: "not_found",
  method: "method_not_allowed",
  tooLong: "uri_too_long",
  timeout: "store_timeout",
  busy: "store_busy",
  unavailable: "store_unavailable",
  corrupt: "record_corrupt",
} as const;
export type WebErrorCode = (typeof WebErrorCode)[keyof typeof WebErrorCode];

/** An answer other than 200: its HTTP status, a stable code and a message for people. */
export class WebError extends Error {
  constructor(
    readonly status: number,
    readonly code: WebErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "WebError";
  }
}

/** What the web view reads and how it bounds that; only `store` is required. */
export interface WebViewOptions {
  /** Where the incidents are (the operator's store: file or Kubernetes mode). Only `get` and `list` are called. */
  store: Pick<IncidentStore, "get" | "list">;
  /** Time for deadlines and for the digest's "now" (default the system's). */
  timers?: Timers;
  /** Deadline of one store call in ms (default 5000). */
  storeTimeoutMs?: number;
  /** Most store calls at once (default 4); a call counts until the store answers, even after its deadline passed. */
  maxStoreCalls?: number;
  /** Alertmanager's base URL, linked from each incident (its alerts); null or absent: no link. */
  alertmanagerUrl?: string | null;
  /** The period `/digest` covers, ending now (default 24 h, as the daily digest). */
  digestWindowMs?: number;
  /** Told about store failures and timeouts (the operator logs them); must not throw. */
  onError?: (err: Error) => void;
}

/** The router: `handle` answers one request of the web view's paths. */
export interface WebView {
  /** Answers `req` (any path not served by the operator itself). Never throws; the answer is always ended. */
  handle(req: IncomingMessage, res: ServerResponse): void;
}

/** Builds the web view over `options.store`. */
export function createWebView(options: WebViewOptions): WebView {
  const timers = options.timers ?? systemTimers;
  const timeoutMs = options.storeTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  const maxCalls = options.maxStoreCalls ?? DEFAULT_MAX_STORE_CALLS;
  const digestWindowMs = options.digestWindowMs ?? DEFAULT_DIGEST_WINDOW_MS;
  const alertmanagerUrl = options.alertmanagerUrl ?? null;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError(`createWebView: storeTimeoutMs must be a positive number of ms, got ${String(options.storeTimeoutMs)}`);
  if (!Number.isInteger(maxCalls) || maxCalls < 1) throw new TypeError(`createWebView: maxStoreCalls must be a positive whole number, got ${String(options.maxStoreCalls)}`);
  let running = 0;

  /** One store call under the deadline and the bound on calls at once. */
  const call = <T>(what: string, work: () => Promise<T>): Promise<T> => {
    if (running >= maxCalls) {
      return Promise.reject(new WebError(503, WebErrorCode.busy, `The incident store is busy (${running} reads running, some may be hanging); try again shortly.`));
    }
    running++;
    const limit = deadline(timers, timeoutMs);
    let settled: Promise<T>;
    try {
      settled = work();
    } catch (err) {
      settled = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    // The slot is given back when the store answers, not at the deadline: a hanging store fills the slots and later requests are told at once.
    settled.then(
      () => running--,
      () => running--,
    );
    return new Promise<T>((resolve, reject) => {
      const onTimeout = (): void => reject(new WebError(503, WebErrorCode.timeout, `The incident store did not answer within ${timeoutMs} ms (${what}); try again shortly.`));
      limit.signal.addEventListener("abort", onTimeout, { once: true });
      settled.then(
        (value) => {
          limit.signal.removeEventListener("abort", onTimeout);
          limit.release();
          resolve(value);
        },
        (err: unknown) => {
          limit.signal.removeEventListener("abort", onTimeout);
          limit.release();
          reject(storeError(err, what));
        },
      );
    });
  };

  const route = async (path: string, params: URLSearchParams): Promise<Answer> => {
    const api = path === "/api/v1/incidents" || path.startsWith("/api/v1/incidents/");
    if (path === "/" || path === "/api/v1/incidents") {
      const query = parseListQuery(params);
      const incidents = await call("listing incidents", () => options.store.list(query.rule === null ? {} : { rule: query.rule }));
      const result = pageOf(incidents, query);
      return api ? json(200, result) : htmlAnswer(200, renderListPage(query, result));
    }
    const id = idIn(path, api ? "/api/v1/incidents/" : "/incidents/");
    if (id !== null) {
      const incident = await call(`reading incident ${id}`, () => options.store.get(id));
      if (incident === null) throw new WebError(404, WebErrorCode.notFound, `There is no incident ${id}.`);
      return api ? json(200, incident) : htmlAnswer(200, renderIncidentPage(incident, { alertmanagerUrl }));
    }
    if (path === "/digest") {
      const to = timers.now();
      const from = to - digestWindowMs;
      const incidents = await call("listing incidents for the digest", () => options.store.list({ since: from }));
      return htmlAnswer(200, renderDigestPage(summarizeDigest(incidents, { from, to })));
    }
    throw new WebError(404, WebErrorCode.notFound, "Nothing here: the pages are /, /incidents/ID and /digest; the JSON is under /api/v1/incidents.");
  };

  const storeError = (err: unknown, what: string): WebError => {
    if (err instanceof WebError) return err;
    const code = (err as { code?: unknown } | null)?.code;
    const message = err instanceof Error ? err.message : String(err);
    const failure =
      code === "ERR_RECLAIM_INCIDENT_ID"
        ? new WebError(400, WebErrorCode.badId, message, { cause: err })
        : code === "ERR_RECLAIM_INCIDENT_CORRUPT"
          ? new WebError(500, WebErrorCode.corrupt, `The record is on file but cannot be read (${what}): ${message}`, { cause: err })
          : new WebError(503, WebErrorCode.unavailable, `The incident store failed (${what}): ${message}`, { cause: err });
    return failure;
  };

  return {
    handle(req, res) {
      const target = req.url ?? "/";
      const q = target.indexOf("?");
      const path = q < 0 ? target : target.slice(0, q);
      const api = path === "/api" || path.startsWith("/api/");
      const answer = (a: Answer): void => send(req, res, a);
      const fail = (err: WebError): void => {
        if (err.status >= 500) options.onError?.(err);
        answer(errorAnswer(err, api, path));
      };
      if (req.method !== "GET" && req.method !== "HEAD") {
        fail(new WebError(405, WebErrorCode.method, `${String(req.method)} is not allowed: the web view is read-only (GET and HEAD).`));
        return;
      }
      if (target.length > MAX_TARGET) {
        fail(new WebError(414, WebErrorCode.tooLong, `The request target is longer than ${MAX_TARGET} characters.`));
        return;
      }
      route(path, new URLSearchParams(q < 0 ? "" : target.slice(q + 1))).then(answer, (err: unknown) => {
        if (err instanceof WebError) fail(err);
        else if (err instanceof QueryError) fail(new WebError(400, WebErrorCode.badRequest, err.message, { cause: err }));
        else fail(new WebError(500, WebErrorCode.unavailable, `Unexpected: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      });
    },
  };
}

/**
 * The incident id in `path` after `prefix`, checked against
 * INCIDENT_ID_PATTERN before anything is read with it; null when `path` is
 * not under `prefix`. Throws WebError 400 for a malformed id (or escape).
 */
function idIn(path: string, prefix: string): string | null {
  if (!path.startsWith(prefix)) return null;
  const segment = path.slice(prefix.length);
  let id: string;
  try {
    id = decodeURIComponent(segment);
  } catch {
    throw new WebError(400, WebErrorCode.badId, "The incident id is not valid percent-encoding.");
  }
  if (!INCIDENT_ID_PATTERN.test(id)) {
    const shown = id.length > 100 ? `${id.slice(0, 100)}…` : id;
    throw new WebError(400, WebErrorCode.badId, `${JSON.stringify(shown)} is not an incident id; one looks like 20261126T120000Z-factory-hard-limit-1a2b3c4d.`);
  }
  return id;
}

/** A response to send. */
interface Answer {
  status: number;
  type: string;
  body: string;
  headers?: Record<string, string>;
}

function json(status: number, value: unknown, headers?: Record<string, string>): Answer {
  return { status, type: "application/json; charset=utf-8", body: `${JSON.stringify(value)}\n`, ...(headers === undefined ? {} : { headers }) };
}

function htmlAnswer(status: number, body: string, headers?: Record<string, string>): Answer {
  return { status, type: "text/html; charset=utf-8", body, ...(headers === undefined ? {} : { headers }) };
}

/** An error as JSON (`{ error: { code, message } }`, as `/healthz` answers) under /api, else as a page. */
function errorAnswer(err: WebError, api: boolean, path: string): Answer {
  const headers: Record<string, string> = {};
  if (err.status === 405) headers.Allow = "GET, HEAD";
  if (err.status === 503) headers["Retry-After"] = "5";
  if (api) return json(err.status, { error: { code: err.code, message: err.message } }, headers);
  // Relative links, so the page works behind a path prefix: one "../" per folder level of the path.
  const depth = Math.max(0, path.split("/").length - 2);
  const root = depth === 0 ? "./" : "../".repeat(depth);
  const title = err.status === 503 ? "Incident store unavailable" : err.status === 404 ? "Not found" : err.status === 400 ? "Bad request" : `Error ${err.status}`;
  const body = html`<h1>${title}</h1><p class="error">${err.message}</p><p><a href="${root}">All incidents</a></p>`;
  return htmlAnswer(err.status, page({ title, root, body }), headers);
}

function send(req: IncomingMessage, res: ServerResponse, answer: Answer): void {
  if (res.headersSent || res.writableEnded) return;
  const body = Buffer.from(answer.body, "utf8");
  res.writeHead(answer.status, {
    ...SECURITY_HEADERS,
    ...answer.headers,
    "Content-Type": answer.type,
    "Content-Length": String(body.length),
  });
  // HEAD: the same headers, no body.
  res.end(req.method === "HEAD" ? undefined : body);
}
