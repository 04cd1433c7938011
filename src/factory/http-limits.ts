/**
 * Connection limits for the factory's two HTTP servers, the chat port and the
 * control API: how long a client may take over its request headers and over
 * its whole request, how long an idle kept-alive connection stays open, and
 * how many connections one client address may hold before their request
 * headers are complete (slowloris). Whatever is cut or refused here gets the
 * JSON error shape (`{"error":{"code","message"}}`) and `Connection: close`,
 * never a bare status line or an empty close, and is counted in
 * `reclaim_factory_http_refused_total{server,code}`.
 *
 * The per-address cap counts a connection only until its request headers are
 * complete: then the request goes to its handler, or the upgrade handler
 * takes the socket (and Node's timeouts stop applying to it). Upgraded
 * WebSockets, and upgrades waiting in the admission queue, are never
 * counted: behind a Google Cloud load balancer every WebSocket comes from a
 * few proxy addresses.
 */
import { type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIPv4, isIPv6, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { systemTimers, type Timers } from "../contract/clock.js";
import type { ControlErrorCode } from "../contract/control.js";
import { rawJsonResponse, sendJson } from "./http-util.js";
import type { FactoryMetrics } from "./metrics.js";

/** The limits one server applies. Every one has a default and bounds (`HTTP_LIMIT_BOUNDS`). */
export interface HttpLimits {
  /**
   * Most time from a connection's first byte of a request (or its accept) to
   * the end of the request headers; then 408 (default 10000 ms; Node's own is
   * 60 s). A browser or proxy sends its headers in one packet.
   */
  headersTimeoutMs: number;
  /**
   * Most time to receive a whole request, body included; then 408 (default
   * 30000 ms; at least `headersTimeoutMs`; Node's own is 300 s). Not the life
   * of a WebSocket, nor the wait of a queued upgrade: an upgraded socket
   * leaves the HTTP server's accounting.
   */
  requestTimeoutMs: number;
  /**
   * How long a kept-alive connection may sit idle between requests (default
   * 5000 ms, Node's own). Behind a Google Cloud load balancer, whose own idle
   * timeout is 600 s, set it above that for the control API if the balancer
   * fronts it.
   */
  keepAliveTimeoutMs: number;
  /**
   * Connections from one client address (one /64 for IPv6) that have not
   * completed their request headers, at most; one more is answered 503
   * `too_many_connections` and closed (default 256: a burst of reconnects
   * through one load-balancer address after an event-loop pause must fit).
   */
  maxPendingPerAddress: number;
}

/** The defaults of `HttpLimits`. */
export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxPendingPerAddress: 256,
});

/** The accepted range of each limit (integers; milliseconds for the timeouts). */
export const HTTP_LIMIT_BOUNDS: Readonly<Record<keyof HttpLimits, { min: number; max: number }>> = Object.freeze({
  headersTimeoutMs: { min: 1, max: 120_000 },
  requestTimeoutMs: { min: 1, max: 600_000 },
  keepAliveTimeoutMs: { min: 1, max: 3_600_000 },
  maxPendingPerAddress: { min: 1, max: 100_000 },
});

/** How long a connection answered with an error may stay open for the client to read the answer and close first. */
export const ERROR_LINGER_MS = 1000;

/** The error codes this module answers with (and the `code` label values of its metric). */
export type HttpRefusalCode = Extract<
  ControlErrorCode,
  "bad_request" | "request_timeout" | "headers_too_large" | "payload_too_large" | "too_many_connections" | "method_not_allowed"
>;
const REFUSAL_CODES: readonly HttpRefusalCode[] = [
  "bad_request",
  "request_timeout",
  "headers_too_large",
  "payload_too_large",
  "too_many_connections",
  "method_not_allowed",
];

/** A limit out of its bounds, or a bad combination. */
export class HttpLimitsError extends TypeError {
  readonly code = "ERR_RECLAIM_HTTP_LIMITS";
}

/** What `hardenServer` takes: any limits to override, and where to count. */
export interface HardenOptions extends Partial<HttpLimits> {
  /** Which server this is: the `server` label of the metric. */
  server: "chat" | "control" | "metrics";
  /** Where refusals are counted (none: not counted). */
  metrics?: FactoryMetrics;
  /** Timers of the linger after an error answer (default the system's). */
  timers?: Timers;
}

/** A hardened server's live view, for tests and diagnostics. */
export interface HttpGuard {
  /** The limits in force. */
  readonly limits: Readonly<HttpLimits>;
  /** Connections, from every address, that have not completed their request headers. */
  readonly pending: number;
  /** Such connections from this address (or from its /64). */
  pendingFrom(address: string): number;
}

/** Checks `input` over the defaults; throws an `HttpLimitsError` naming the first bad value. */
export function resolveHttpLimits(input: Partial<HttpLimits> = {}): HttpLimits {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS };
  for (const key of Object.keys(HTTP_LIMIT_BOUNDS) as (keyof HttpLimits)[]) {
    const value = input[key];
    if (value === undefined) continue;
    const { min, max } = HTTP_LIMIT_BOUNDS[key];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new HttpLimitsError(`${key} must be an integer from ${min} to ${max}, got ${String(value)}`);
    }
    limits[key] = value;
  }
  if (limits.requestTimeoutMs < limits.headersTimeoutMs) {
    throw new HttpLimitsError(`requestTimeoutMs (${limits.requestTimeoutMs}) must be at least headersTimeoutMs (${limits.headersTimeoutMs})`);
  }
  return limits;
}

/**
 * Applies the limits to `server` and answers Node's own refusals (parse
 * errors, timeouts, oversized headers, a missing `Host`, `CONNECT`) with
 * JSON. Call it before `listen`: Node reads the timeout check interval when
 * the server starts listening. Throws an `HttpLimitsError` on a bad limit.
 */
export function hardenServer(server: Server, options: HardenOptions): HttpGuard {
  if (server.listening) throw new HttpLimitsError("hardenServer must be called before the server listens");
  const limits = resolveHttpLimits(options);
  const timers = options.timers ?? systemTimers;
  const count = (code: HttpRefusalCode): void => options.metrics?.httpRefused.inc({ server: options.server, code });
  for (const code of REFUSAL_CODES) options.metrics?.httpRefused.inc({ server: options.server, code }, 0);

  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  const internals = server as Server & { connectionsCheckingInterval: number; requireHostHeader: boolean };
  // Node checks both timeouts only on this interval (default 30 s, so a 10 s timeout could take 40 s).
  internals.connectionsCheckingInterval = Math.max(1, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4)));
  // Node answers a missing Host itself with a bare 400; checked below instead, to answer it with JSON.
  internals.requireHostHeader = false;

  /** Each connection that has not completed its request headers: its address key, and its close listener. */
  const pendingSockets = new Map<Duplex, { key: string; onClose: () => void }>();
  const pendingByAddress = new Map<string, number>();
  /** Connections answered with an error here: whatever they still send is dropped. */
  const answered = new WeakSet<Duplex>();

  const settle = (socket: Duplex): void => {
    const entry = pendingSockets.get(socket);
    if (entry === undefined) return;
    pendingSockets.delete(socket);
    // Nothing of this accounting stays attached to a connection that goes on (a WebSocket may live for hours).
    socket.off("close", entry.onClose);
    const { key } = entry;
    const n = (pendingByAddress.get(key) ?? 1) - 1;
    if (n <= 0) pendingByAddress.delete(key);
    else pendingByAddress.set(key, n);
  };

  /** Answers with a JSON error and closes, once the client has closed too or after `ERROR_LINGER_MS`. */
  const refuse = (socket: Duplex, status: number, code: HttpRefusalCode, message: string, headers: Record<string, string> = {}): void => {
    if (answered.has(socket)) return;
    answered.add(socket);
    settle(socket);
    count(code);
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // Not destroyed at once: closing a socket with unread bytes sends a reset, which can make the client drop the answer.
    const cancel = timers.after(ERROR_LINGER_MS, () => socket.destroy());
    socket.once("close", cancel);
    socket.end(rawJsonResponse(status, { error: { code, message } }, headers));
  };

  /** The response in flight on each connection: once it has begun, an error has no room for another answer. */
  const responding = new WeakMap<Duplex, ServerResponse>();

  server.on("connection", (socket: Socket) => {
    const key = addressKey(socket.remoteAddress);
    const n = pendingByAddress.get(key) ?? 0;
    if (n >= limits.maxPendingPerAddress) {
      return refuse(socket, 503, "too_many_connections", "too many connections from this address are still sending their request", {
        "Retry-After": "1",
      });
    }
    pendingByAddress.set(key, n + 1);
    const onClose = (): void => settle(socket);
    pendingSockets.set(socket, { key, onClose });
    socket.once("close", onClose);
  });

  server.on("clientError", (err: Error & { code?: string }, socket: Duplex) => {
    if (answered.has(socket)) return;
    const answer = clientErrorAnswer(err.code);
    const res = responding.get(socket);
    if (answer === null || (res !== undefined && res.headersSent && !res.writableEnded)) {
      settle(socket);
      socket.destroy();
      return;
    }
    refuse(socket, answer.status, answer.code, answer.message);
  });

  server.on("connect", (_req: IncomingMessage, socket: Duplex) => {
    refuse(socket, 405, "method_not_allowed", "CONNECT is not supported", { Allow: options.server === "chat" ? "GET" : "GET, POST" });
  });

  // A request, or an upgrade, is where a connection stops being "pending". Node emits both on the
  // server itself, and no listener can keep the others from running, so `emit` is wrapped: it is also
  // the one place that can drop what a connection already refused still sends.
  const emit: (event: string, ...args: unknown[]) => boolean = server.emit.bind(server);
  server.emit = function (event: string, ...args: unknown[]): boolean {
    if (event === "request" || event === "upgrade") {
      const req = args[0] as IncomingMessage;
      const socket = req.socket;
      if (answered.has(socket)) return true;
      settle(socket);
      if (req.httpVersion === "1.1" && req.headers.host === undefined) {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
        const message = "an HTTP/1.1 request needs a Host header";
        if (event === "upgrade") {
          refuse(socket, 400, "bad_request", message);
          return true;
        }
        answered.add(socket);
        count("bad_request");
        sendJson(args[1] as ServerResponse, 400, { error: { code: "bad_request", message } }, { Connection: "close" });
        return true;
      }
      if (event === "request") responding.set(socket, args[1] as ServerResponse);
    }
    return emit(event, ...args);
  } as Server["emit"];

  return {
    limits,
    get pending() {
      return pendingSockets.size;
    },
    pendingFrom: (address) => pendingByAddress.get(addressKey(address)) ?? 0,
  };
}

/** How Node's parser and timeout errors are answered; null: not answerable (the connection broke), just close. */
function clientErrorAnswer(code: string | undefined): { status: number; code: HttpRefusalCode; message: string } | null {
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") return { status: 408, code: "request_timeout", message: "the request took too long to arrive" };
  if (code === "HPE_HEADER_OVERFLOW") return { status: 431, code: "headers_too_large", message: "the request line and headers are too large" };
  if (code === "HPE_CHUNK_EXTENSIONS_OVERFLOW") return { status: 413, code: "payload_too_large", message: "chunk extensions too large" };
  if (code?.startsWith("HPE_") === true) return { status: 400, code: "bad_request", message: "the request is not valid HTTP/1.1" };
  return null;
}

/**
 * The key a client address is counted under: an IPv4 address as it is
 * (also when IPv4-mapped), an IPv6 address by its /64, the block one host
 * usually holds whole; "unknown" when the socket has no address (already
 * closed).
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === "") return "unknown";
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped !== null) return mapped[1]!;
  if (isIPv4(address)) return address;
  const bare = address.split("%")[0]!;
  if (!isIPv6(bare)) return address;
  // An embedded IPv4 tail (a.b.c.d) takes the place of two groups; only the first four groups matter here.
  const groups = (part: string): string[] => (part === "" ? [] : part.split(":").flatMap((g) => (g.includes(".") ? ["0", "0"] : [g])));
  const [head = "", tail] = bare.split("::");
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill("0"), ...back];
  return `${all
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}
