/**
 * The control API: what the operator (or a person with the token) uses to look
 * at a user's managers and to run a rung of the ladder from outside.
 *
 * Routes (all JSON; `/v1/*` needs `Authorization: Bearer $RECLAIM_CONTROL_TOKEN`):
 *   GET  /v1/users[?atLimit=true]          users (at or over their limit), with `asOf`
 *   GET  /v1/users/{userId}                limit, effective limit, managers
 *   GET  /v1/users/{userId}/admission      would a new connection be admitted now?
 *     (the three user views also say `atLimitSince`, `lastRefusedAt`, `refusals`: busy, or refused?)
 *   POST /v1/users/{userId}/rungs/{rung}   run conservative | probe | force | degrade
 *                                          (once per `Idempotency-Key`, ADR 13);
 *                                          degrade for a user with no connection
 *                                          (no manager, no upgrade in its handshake):
 *                                          409 no_connections, nothing changed
 *   GET  /metrics, /healthz, /readyz       unauthenticated: no user data, no actions
 * Errors: `{"error":{"code","message"}}` with 400, 401, 404, 405, 408, 409, 413, 415, 431, 503.
 * A request target that does not parse (a bad absolute URL, a path that is not
 * valid percent-encoding) is 400 bad_request, never 500; under `/v1/` only
 * after the token is checked, and a user id segment that does not decode is
 * 400 invalid_user_id. Slow, malformed and per-address excess connections are
 * answered by http-limits.ts (400, 408, 431, 503 too_many_connections).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { ZodError } from "zod";
import type { Clock, Timers } from "../contract/clock.js";
import {
  CONTROL_API_PREFIX,
  CONTROL_MAX_BODY_BYTES,
  type Admission,
  type ControlErrorCode,
  type LimitPressure,
  type RungResult,
  type UserList,
  type UserState,
} from "../contract/control.js";
import { FactoryRung } from "../contract/events.js";
import { isUserId } from "../contract/ids.js";
import type { AdmissionControl } from "./admission.js";
import { hardenServer, type HttpGuard, type HttpLimits } from "./http-limits.js";
import { closeServer, listen, sendJson } from "./http-util.js";
import type { FactoryMetrics } from "./metrics.js";
import type { AdmissionQueue } from "./queue.js";
import type { RefusalTracker } from "./refusals.js";
import type { Registry } from "./registry.js";
import { IDEMPOTENCY_KEY_PATTERN, IdempotencyCache, IdempotencyKeyReused, REPLAYED_HEADER } from "./idempotency.js";
import { NoConnectionsError, RungParamError } from "./rungs/degrade.js";
import type { RungRunner } from "./rungs/runner.js";

/** Most users one `GET /v1/users` returns. */
export const USER_LIST_MAX = 1000;

export interface ControlDeps {
  token: string;
  registry: Registry;
  queue: AdmissionQueue;
  admission: AdmissionControl;
  runner: RungRunner;
  metrics: FactoryMetrics;
  /** Refused upgrades per user, for `lastRefusedAt` and `refusals`. */
  refusals: RefusalTracker;
  /** The factory's clock: `asOf` of a user list. */
  clock: Clock;
  /** Ready to serve traffic (listening, not shutting down)? */
  ready(): boolean;
  /** Timeouts and the per-address cap of the control port (default `DEFAULT_HTTP_LIMITS` of http-limits.ts). */
  httpLimits?: Partial<HttpLimits>;
  /** Timers of the HTTP limits (default the system's). */
  timers?: Timers;
}

/** An expected failure of a request, answered as a JSON error. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ControlErrorCode,
    message: string,
    readonly issues?: string[],
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A path parameter: the decoded segment, or null when it is not valid percent-encoding. */
type Param = string | null;
type Handler = (req: IncomingMessage, res: ServerResponse, params: Param[], url: URL) => Promise<void> | void;
interface Route {
  method: "GET" | "POST";
  /** Path segments after `/v1`; `:user` and `:rung` are parameters. */
  pattern: string[];
  name: string;
  handler: Handler;
}

export class ControlApi {
  readonly http: Server;
  /** The HTTP limits in force and the connections they count. */
  readonly guard: HttpGuard;
  private readonly tokenDigest: Buffer;
  private readonly routes: Route[];
  /** Results of rung calls that carried an `Idempotency-Key` (ADR 13). */
  private readonly idempotency = new IdempotencyCache<RungResult>();

  constructor(private readonly deps: ControlDeps) {
    this.tokenDigest = digest(deps.token);
    this.routes = [
      { method: "GET", pattern: ["users"], name: "users", handler: (_q, res, _p, url) => this.listUsers(res, url) },
      { method: "GET", pattern: ["users", ":user"], name: "user", handler: (_q, res, [u]) => this.getUser(res, u!) },
      { method: "GET", pattern: ["users", ":user", "admission"], name: "admission", handler: (_q, res, [u]) => this.getAdmission(res, u!) },
      {
        method: "POST",
        pattern: ["users", ":user", "rungs", ":rung"],
        name: "rung",
        handler: (req, res, [u, r]) => this.runRung(req, res, u!, r!),
      },
    ];
    this.http = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, "internal", err));
    });
    this.guard = hardenServer(this.http, {
      ...deps.httpLimits,
      server: "control",
      metrics: deps.metrics,
      ...(deps.timers === undefined ? {} : { timers: deps.timers }),
    });
  }

  /** Starts listening; resolves with the bound port. */
  listen(port: number, host: string): Promise<number> {
    return listen(this.http, port, host);
  }

  close(): Promise<void> {
    return closeServer(this.http);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let route = "unknown";
    try {
      const url = parseTarget(req.url ?? "/");
      if (url === null) throw new HttpError(400, "bad_request", "the request target is neither a path nor a valid http URL");
      if (url.pathname === "/healthz") return this.ok(res, (route = "healthz"), 200, { status: "ok" });
      if (url.pathname === "/readyz") {
        route = "readyz";
        const ready = this.deps.ready();
        return this.ok(res, route, ready ? 200 : 503, { status: ready ? "ready" : "not_ready" });
      }
      if (url.pathname === "/metrics") {
        route = "metrics";
        const body = await this.deps.metrics.registry.metrics();
        res.writeHead(200, { "Content-Type": this.deps.metrics.registry.contentType });
        res.end(body);
        return this.count(route, 200);
      }
      const segments = splitPath(url.pathname);
      if (segments === null) {
        if (!decodes(url.pathname)) throw new HttpError(400, "bad_request", "the path is not valid percent-encoding");
        throw new HttpError(404, "not_found", `no route ${url.pathname}`);
      }
      const matched = this.match(segments);
      if (matched === null) {
        if (segments.includes(null)) {
          // Under /v1/ a caller without the token learns nothing, not even that the path is malformed.
          this.authorize(req);
          throw new HttpError(400, "bad_request", "the path is not valid percent-encoding");
        }
        throw new HttpError(404, "not_found", `no route ${url.pathname}`);
      }
      route = matched.routes[0]!.name;
      const byMethod = matched.routes.find((r) => r.method === req.method);
      if (byMethod === undefined) {
        const allow = matched.routes.map((r) => r.method).join(", ");
        throw new HttpError(405, "method_not_allowed", `use ${allow}`, undefined, { Allow: allow });
      }
      this.authorize(req);
      await byMethod.handler(req, res, matched.params, url);
      this.count(route, res.statusCode);
    } catch (err) {
      if (err instanceof HttpError) {
        // A request body we refused to read must not be left half-sent on a keep-alive connection:
        // the connection is closed after the answer, and the client told so, so that it does not reuse it.
        const unread = !req.complete;
        sendJson(
          res,
          err.status,
          { error: { code: err.code, message: err.message, ...(err.issues ? { issues: err.issues } : {}) } },
          { ...(err.status === 401 ? { "WWW-Authenticate": "Bearer" } : {}), ...err.headers, ...(unread ? { Connection: "close" } : {}) },
        );
        if (unread) res.once("finish", () => req.destroy());
        this.count(route, err.status);
        return;
      }
      throw err;
    }
  }

  private match(segments: Param[]): { routes: Route[]; params: Param[] } | null {
    let params: Param[] = [];
    const routes = this.routes.filter((route) => {
      if (route.pattern.length !== segments.length) return false;
      const found: Param[] = [];
      const ok = route.pattern.every((part, i) => {
        if (part.startsWith(":")) return found.push(segments[i]!) > 0;
        // A segment that does not decode matches a parameter only, never a literal.
        return part === segments[i];
      });
      if (ok) params = found;
      return ok;
    });
    return routes.length === 0 ? null : { routes, params };
  }

  private authorize(req: IncomingMessage): void {
    const header = req.headers.authorization ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    // Compare digests so the comparison takes the same time whatever the length of the guess.
    if (match === null || !timingSafeEqual(digest(match[1]!), this.tokenDigest)) {
      throw new HttpError(401, "unauthorized", "a valid bearer token is required");
    }
  }

  private listUsers(res: ServerResponse, url: URL): void {
    const atLimit = url.searchParams.get("atLimit");
    if (atLimit !== null && atLimit !== "true" && atLimit !== "false") {
      throw new HttpError(400, "invalid_params", "atLimit must be true or false");
    }
    const users = this.deps.registry
      .summaries({
        atLimit: atLimit === "true",
        queued: (u) => this.deps.queue.length(u),
        max: USER_LIST_MAX,
      })
      .map((user) => ({ ...user, ...this.refusalsOf(user.userId) }));
    const body: UserList = { users, asOf: new Date(this.deps.clock.now()).toISOString() };
    sendJson(res, 200, body);
  }

  private getUser(res: ServerResponse, rawUser: Param): void {
    const userId = checkUserId(rawUser);
    const { registry, queue } = this.deps;
    const raise = registry.raiseOf(userId);
    const body: UserState = {
      userId,
      limit: registry.limit,
      effectiveLimit: registry.effectiveLimit(userId),
      degradedUntil: raise === null ? null : new Date(raise.until).toISOString(),
      active: registry.active(userId),
      queued: queue.length(userId),
      managers: registry.managersOf(userId).map((m) => m.snapshot()),
      ...this.pressureOf(userId),
    };
    sendJson(res, 200, body);
  }

  private getAdmission(res: ServerResponse, rawUser: Param): void {
    const userId = checkUserId(rawUser);
    const { registry, queue, admission } = this.deps;
    const body: Admission = {
      userId,
      admit: admission.wouldAdmit(userId),
      active: registry.active(userId),
      effectiveLimit: registry.effectiveLimit(userId),
      queued: queue.length(userId),
      ...this.pressureOf(userId),
    };
    sendJson(res, 200, body);
  }

  /** At the limit since when, and refused when and how often: what tells a locked-out user from a busy one. */
  private pressureOf(userId: string): Required<LimitPressure> {
    const since = this.deps.registry.atLimitSince(userId);
    return { atLimitSince: since === null ? null : new Date(since).toISOString(), ...this.refusalsOf(userId) };
  }

  private refusalsOf(userId: string): Required<Pick<LimitPressure, "lastRefusedAt" | "refusals">> {
    const record = this.deps.refusals.of(userId);
    return record === null ? { lastRefusedAt: null, refusals: 0 } : { lastRefusedAt: new Date(record.lastRefusedAt).toISOString(), refusals: record.refusals };
  }

  private async runRung(req: IncomingMessage, res: ServerResponse, rawUser: Param, rawRung: Param): Promise<void> {
    if (rawRung === null) throw new HttpError(400, "bad_request", "the rung segment is not valid percent-encoding");
    const rung = FactoryRung.safeParse(rawRung);
    if (!rung.success) throw new HttpError(404, "not_found", `no rung ${JSON.stringify(rawRung)}: use ${FactoryRung.options.join(", ")}`);
    const userId = checkUserId(rawUser);
    const key = req.headers["idempotency-key"];
    if (key !== undefined && (typeof key !== "string" || !IDEMPOTENCY_KEY_PATTERN.test(key))) {
      throw new HttpError(400, "invalid_params", "Idempotency-Key must be 1 to 200 characters of letters, digits and ._:@/-");
    }
    const params = await readJsonBody(req);
    try {
      const run = (): Promise<RungResult> => this.deps.runner.run(rung.data, userId, params, "control");
      if (key === undefined) return sendJson(res, 200, await run());
      // The same key again (a retry, or a restarted operator): the first run's result, without running the rung again.
      const { value, replayed } = await this.idempotency.run(key, JSON.stringify([userId, rung.data, params]), run);
      sendJson(res, 200, value, replayed ? { [REPLAYED_HEADER]: "true" } : {});
    } catch (err) {
      if (err instanceof IdempotencyKeyReused) throw new HttpError(400, "invalid_params", err.message);
      if (err instanceof ZodError) {
        const issues = err.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`);
        throw new HttpError(400, "invalid_params", `invalid ${rung.data} parameters`, issues);
      }
      if (err instanceof RungParamError) throw new HttpError(400, "invalid_params", err.message);
      if (err instanceof NoConnectionsError) throw new HttpError(409, "no_connections", err.message);
      throw err;
    }
  }

  private ok(res: ServerResponse, route: string, status: number, body: unknown): void {
    sendJson(res, status, body);
    this.count(route, status);
  }

  private count(route: string, status: number): void {
    this.deps.metrics.controlRequests.inc({ route, status: String(status) });
  }

  private fail(res: ServerResponse, code: ControlErrorCode, err: unknown): void {
    if (!res.headersSent) sendJson(res, 500, { error: { code, message: err instanceof Error ? err.message : "internal error" } });
    else res.destroy();
  }
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/**
 * The request target as a URL, or null when it does not parse. Origin-form
 * (`/path?query`) is read under a fixed origin by prefixing, not resolved
 * against a base, so `//x` stays a path instead of naming a host. The
 * absolute-form (`http://host/path`), which a server must accept (RFC 9112
 * §3.2.2), counts by its path and query only. Anything else (`*`, garbage)
 * is not a target this API serves.
 */
function parseTarget(target: string): URL | null {
  const text = target.startsWith("/") ? `http://control${target}` : /^https?:\/\//i.test(target) ? target : null;
  if (text === null) return null;
  try {
    return new URL(text);
  } catch {
    return null;
  }
}

/** `/v1/a/b` → `["a","b"]`, a segment that does not percent-decode as null; null when not under `/v1`. */
function splitPath(pathname: string): Param[] | null {
  if (!pathname.startsWith(`${CONTROL_API_PREFIX}/`)) return null;
  return pathname
    .slice(CONTROL_API_PREFIX.length + 1)
    .split("/")
    .map(decodeSegment);
}

function decodeSegment(segment: string): Param {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

function decodes(pathname: string): boolean {
  return pathname.split("/").every((s) => decodeSegment(s) !== null);
}

function checkUserId(raw: Param): string {
  if (raw === null) throw new HttpError(400, "invalid_user_id", "the user id segment is not valid percent-encoding");
  if (!isUserId(raw)) throw new HttpError(400, "invalid_user_id", "user id must match ^[A-Za-z0-9._:@-]{1,128}$ and not be . or ..");
  return raw;
}

/** Reads a JSON body of at most `CONTROL_MAX_BODY_BYTES`; an empty body is `{}`. */
async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > CONTROL_MAX_BODY_BYTES) throw new HttpError(413, "payload_too_large", `body over ${CONTROL_MAX_BODY_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > CONTROL_MAX_BODY_BYTES) throw new HttpError(413, "payload_too_large", `body over ${CONTROL_MAX_BODY_BYTES} bytes`);
    chunks.push(buf);
  }
  if (size === 0) return {};
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw new HttpError(415, "unsupported_media_type", "send application/json");
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  } catch {
    throw new HttpError(400, "invalid_json", "the body is not valid JSON");
  }
}
