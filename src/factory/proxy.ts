/**
 * `reclaim factory --upstream ws://HOST:PORT/PATH` (ADR 26): the factory in
 * front of a chat backend in any language. Every admitted client gets its own
 * connection to the upstream, dialled after admission and before the
 * client's handshake completes, so that an upstream that refuses refuses the
 * client too (HTTP 502/503/504, or close 1014 for a browser).
 *
 * - Frames pass both ways unchanged, text as text and binary as binary.
 * - The upstream learns the user from `X-Reclaim-User` (the token's subject;
 *   never client text), the manager from `X-Reclaim-Manager` and the way it
 *   was admitted from `X-Reclaim-Admission`. Credentials (`Authorization`,
 *   `Cookie`) are forwarded only with `forwardAuthorization`; the token is
 *   then sent as `Authorization: Bearer`, whichever way the client sent it.
 * - Close codes are carried both ways. A client the factory removes (the
 *   ladder, the heartbeat, a slow reader) closes its upstream with 1001 and a
 *   reason naming why; an upstream that drops the connection closes the
 *   client with 1014.
 * - Backpressure holds both ways: a client that does not read pauses its
 *   upstream (and is closed by the factory's slow-reader rule); an upstream
 *   that does not read pauses its client.
 * - The heartbeat and the probe run on the client side; the upstream's pings
 *   are answered (`ws` does it).
 */
import type { ClientRequest, IncomingMessage } from "node:http";
import { WebSocket } from "ws";
import { SUBPROTOCOL } from "../contract/client.js";
import { FactoryEvent } from "../contract/events.js";
import type { ChatApp, Opening, Session, SessionEnd, SessionHandlers, UpgradeInfo } from "./app.js";
import type { EventLog } from "./log.js";
import type { FactoryMetrics } from "./metrics.js";

/** Close code to a client whose upstream failed ("Bad Gateway", RFC 6455 registry). */
export const CLOSE_BAD_GATEWAY = 1014;

export interface UpstreamOptions {
  /** `ws://` or `wss://` URL of the backend's WebSocket endpoint; the client's query parameters (without `token`) are added to it. */
  url: string;
  /** Forward `Authorization` (the client's token, as a bearer) and `Cookie` to the upstream. */
  forwardAuthorization: boolean;
  /** Most time for the upstream's handshake. */
  connectTimeoutMs: number;
  /** Largest message accepted from the upstream. */
  maxPayloadBytes: number;
  /** Above this many bytes not yet written to the upstream, stop reading from the client. */
  highWaterBytes: number;
  /** Grace for the upstream to finish a close handshake before its socket is destroyed. */
  closeGraceMs: number;
}

/** Request headers passed on as they are (never credentials, never hop-by-hop ones). */
const PASSED_HEADERS = ["origin", "user-agent", "accept-language"] as const;

/** The proxy as a `ChatApp`. */
export function proxyApp(options: UpstreamOptions, metrics: FactoryMetrics, log: EventLog): ChatApp {
  const base = new URL(options.url);
  return {
    open: (upgrade, signal) => dial(options, base, upgrade, signal, metrics, log),
  };
}

/** An upstream connection, open, and what it sent before its client was connected. */
interface Dialled {
  ws: WebSocket;
  /** What came before the client was connected; the keeping stops. */
  takeEarly(): { data: Buffer; isBinary: boolean }[];
}

type DialResult = { ok: true; dialled: Dialled } | { ok: false; result: "refused" | "unreachable" | "timeout" | "aborted"; opening: Opening & { accept: false } };

async function dial(options: UpstreamOptions, base: URL, upgrade: UpgradeInfo, signal: AbortSignal, metrics: FactoryMetrics, log: EventLog): Promise<Opening> {
  const dialled = await connectUpstream(options, base, upgrade, signal);
  if (!dialled.ok) {
    metrics.upstreamConnects.inc({ result: dialled.result });
    if (dialled.result !== "aborted") {
      log.warn(
        FactoryEvent.upstreamFailed,
        { userId: upgrade.userId, managerId: upgrade.managerId, reason: dialled.result },
        `Upstream ${dialled.result} for user ${upgrade.userId}: ${dialled.opening.message}`,
      );
    }
    return dialled.opening;
  }
  metrics.upstreamConnects.inc({ result: "ok" });
  const upstream = dialled.dialled.ws;
  const abandon = (): void => upstream.terminate();
  signal.addEventListener("abort", abandon, { once: true });
  const protocol = upstream.protocol !== "" ? upstream.protocol : upgrade.protocols.includes(SUBPROTOCOL) ? SUBPROTOCOL : false;
  return {
    accept: true,
    protocol,
    connect: (session): SessionHandlers => {
      signal.removeEventListener("abort", abandon);
      return relay(session, dialled.dialled, options, metrics);
    },
  };
}

/** Joins an admitted client's session to its upstream connection. */
function relay(session: Session, dialled: Dialled, options: UpstreamOptions, metrics: FactoryMetrics): SessionHandlers {
  const joined = new Relay(session, dialled.ws, options, metrics);
  // What came with or right after the handshake first, then the rest as it comes.
  for (const { data, isBinary } of dialled.takeEarly()) joined.forward(data, isBinary);
  return joined.start();
}

/**
 * One proxied connection: the client's session and its upstream socket.
 * A class (methods on the prototype, state in fields) rather than closures:
 * it lives as long as the connection, once per connection (BENCHMARKS.md, proxy).
 */
class Relay implements SessionHandlers {
  /** Not read: paused by the dial until `start`, then while the client does not read. */
  private upstreamPaused = true;
  private started = false;
  /** The client is not read: the upstream does not take what it sends. */
  private clientPaused = false;
  private pendingToUpstream = 0;
  private ended = false;

  constructor(
    private readonly session: Session,
    private readonly upstream: WebSocket,
    private readonly options: UpstreamOptions,
    private readonly metrics: FactoryMetrics,
  ) {}

  /** Starts relaying; an upstream that already closed closes the client. */
  start(): SessionHandlers {
    this.upstream.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => this.forward(toBuffer(data), isBinary));
    this.upstream.on("close", (code: number, reason: Buffer) => this.upstreamClosed(code, reason));
    if (this.upstream.readyState !== WebSocket.OPEN) {
      // It closed between the dial and the handshake: its close event has already gone by.
      if (this.end("upstream")) this.session.close(CLOSE_BAD_GATEWAY, "upstream connection lost");
      return {};
    }
    this.upstreamPaused = false;
    this.started = true;
    this.upstream.resume();
    return this;
  }

  /** Upstream → client. */
  forward(buffer: Buffer, isBinary: boolean): void {
    if (!this.session.send(buffer, isBinary) && !this.upstreamPaused && !this.ended) {
      // The client is not reading fast enough: stop reading the upstream until its buffer drains.
      this.upstreamPaused = true;
      this.held("client", true);
      this.upstream.pause();
    }
  }

  /** Client → upstream. */
  message(data: Buffer, isBinary: boolean): void {
    this.session.markUse();
    if (this.upstream.readyState !== WebSocket.OPEN) return; // it is closing: the client will be closed with its code
    this.pendingToUpstream += data.length;
    this.upstream.send(data, { binary: isBinary }, () => this.written(data.length));
    if (!this.clientPaused && this.pendingToUpstream > this.options.highWaterBytes) {
      // The upstream is not reading fast enough: stop reading the client (TCP pushes back on it).
      this.clientPaused = true;
      this.held("upstream", true);
      this.session.pauseReading();
    }
  }

  /** The client's buffer drained: read the upstream again. */
  drain(): void {
    if (!this.upstreamPaused || this.ended) return;
    this.upstreamPaused = false;
    this.held("client", false);
    this.upstream.resume();
  }

  /** The client's connection ended: end the upstream's, saying why. */
  close({ code, reason, removal }: SessionEnd): void {
    if (!this.end(removal === null ? "client" : "factory")) return;
    const upstream = this.upstream;
    if (upstream.readyState === WebSocket.CLOSED) return;
    if (removal !== null) upstream.close(1001, `client removed by reclaim (${removal})`);
    else if (code === 1005) upstream.close();
    else if (code === 1006 || code === 1015) upstream.close(1001, "client connection lost");
    else upstream.close(code, reason);
    const timer = setTimeout(() => upstream.terminate(), this.options.closeGraceMs);
    timer.unref();
    upstream.once("close", () => clearTimeout(timer));
  }

  private written(bytes: number): void {
    this.pendingToUpstream -= bytes;
    if (this.clientPaused && this.pendingToUpstream <= this.options.highWaterBytes / 2 && !this.ended) {
      this.clientPaused = false;
      this.held("upstream", false);
      this.session.resumeReading();
    }
  }

  private upstreamClosed(code: number, reason: Buffer): void {
    if (!this.end("upstream")) return;
    if (code === 1005) this.session.close();
    else if (code === 1006 || code === 1015) this.session.close(CLOSE_BAD_GATEWAY, "upstream connection lost");
    else this.session.close(code, reason.toString("utf8"));
  }

  private held(slow: "client" | "upstream", on: boolean): void {
    if (on) this.metrics.upstreamPaused.inc({ slow });
    else this.metrics.upstreamPaused.dec({ slow });
  }

  /** Marks the end once, counted by the side that ended it; lets go of the paused gauges. */
  private end(by: "client" | "upstream" | "factory"): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.metrics.upstreamCloses.inc({ by });
    if (this.upstreamPaused && this.started) this.held("client", false);
    if (this.clientPaused) this.held("upstream", false);
    return true;
  }
}

/** Dials the upstream for `upgrade`; settles on open, refusal, failure, the deadline or `signal`. */
function connectUpstream(options: UpstreamOptions, base: URL, upgrade: UpgradeInfo, signal: AbortSignal): Promise<DialResult> {
  if (signal.aborted) return Promise.resolve(failed("aborted", 502, "client_gone", "the client left"));
  // Built here, outside the closures below: a proxied connection lives long, and nothing of its upgrade
  // request (headers, token) may stay reachable from the listeners of its upstream socket.
  const ws = new WebSocket(upstreamUrl(base, upgrade.target), [...upgrade.protocols], {
    headers: upstreamHeaders(upgrade, options.forwardAuthorization),
    handshakeTimeout: options.connectTimeoutMs,
    maxPayload: options.maxPayloadBytes,
    perMessageDeflate: false,
    followRedirects: false,
    autoPong: true,
  });
  // After the dial, a close follows every error; its code says what happened.
  ws.on("error", ignore);
  return awaitDial(ws, options.connectTimeoutMs, signal);
}

/** Waits for `ws`'s handshake; every listener and timer of the wait is removed when it settles. */
function awaitDial(ws: WebSocket, timeoutMs: number, signal: AbortSignal): Promise<DialResult> {
  return new Promise((resolve) => {
    const settle = (result: DialResult): void => {
      clearTimeout(deadline);
      signal.removeEventListener("abort", onAbort);
      ws.off("open", onOpen);
      ws.off("unexpected-response", onUnexpected);
      ws.off("error", onError);
      if (!result.ok) ws.terminate();
      resolve(result);
    };
    const onTimeout = (): void => settle(failed("timeout", 504, "upstream_timeout", `the upstream did not complete the handshake within ${timeoutMs} ms`));
    const onAbort = (): void => settle(failed("aborted", 502, "client_gone", "the client left"));
    const onOpen = (): void => {
      // Synchronously, before `ws` reads what came with the handshake: nothing is read, or lost, until the client is connected.
      ws.pause();
      settle({ ok: true, dialled: keepEarly(ws) });
    };
    const onUnexpected = (request: ClientRequest, response: IncomingMessage): void => {
      const status = response.statusCode ?? 0;
      const retryAfter = Number(response.headers["retry-after"]);
      response.resume();
      request.destroy();
      // A backend that says it is overloaded (503) is passed on as such, with its Retry-After; anything else is a bad gateway.
      settle(
        failed(
          "refused",
          status === 503 ? 503 : 502,
          "upstream_refused",
          `the upstream refused the WebSocket handshake with HTTP ${status}`,
          Number.isInteger(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
        ),
      );
    };
    const onError = (err: Error & { code?: string }): void => {
      if (/timed out/i.test(err.message)) settle(failed("timeout", 504, "upstream_timeout", "the upstream did not complete the handshake in time"));
      else settle(failed("unreachable", 502, "upstream_unreachable", `the upstream could not be reached (${err.code ?? err.message})`));
    };
    const deadline = setTimeout(onTimeout, timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    ws.once("open", onOpen);
    ws.once("unexpected-response", onUnexpected);
    ws.once("error", onError);
  });
}

/** Keeps what the upstream sends until the client is connected (the socket is paused; this is the rest of a read already done). */
function keepEarly(ws: WebSocket): Dialled {
  const early: { data: Buffer; isBinary: boolean }[] = [];
  const keep = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void => void early.push({ data: toBuffer(data), isBinary });
  ws.on("message", keep);
  return {
    ws,
    takeEarly: () => {
      ws.off("message", keep);
      return early.splice(0);
    },
  };
}

function ignore(): void {}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
}

function failed(result: "refused" | "unreachable" | "timeout" | "aborted", status: number, code: string, message: string, retryAfterSeconds?: number): DialResult {
  return { ok: false, result, opening: { accept: false, status, closeCode: CLOSE_BAD_GATEWAY, code, message, retryAfterSeconds } };
}

/** The upstream URL: its own path and query, then the client's query parameters (the path is never the client's). */
export function upstreamUrl(base: URL, target: string): string {
  const url = new URL(base.href);
  const client = new URL(target, "http://localhost");
  for (const [key, value] of client.searchParams) if (key !== "token") url.searchParams.append(key, value);
  return url.href;
}

/** The headers the upstream gets: who (from the verified token), how admitted, and what the client sent that a backend may want. */
export function upstreamHeaders(upgrade: UpgradeInfo, forwardAuthorization: boolean): Record<string, string> {
  const headers: Record<string, string> = {
    "X-Reclaim-User": upgrade.userId,
    "X-Reclaim-Manager": upgrade.managerId,
    "X-Reclaim-Admission": upgrade.admission,
  };
  for (const name of PASSED_HEADERS) {
    const value = upgrade.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  const forwardedFor = upgrade.headers["x-forwarded-for"];
  const chain = [typeof forwardedFor === "string" ? forwardedFor : undefined, upgrade.remoteAddress].filter((v): v is string => v !== undefined && v !== "");
  if (chain.length > 0) headers["X-Forwarded-For"] = chain.join(", ");
  if (forwardAuthorization) {
    headers.Authorization = `Bearer ${upgrade.token}`;
    const cookie = upgrade.headers.cookie;
    if (cookie !== undefined) headers.Cookie = cookie;
  }
  return headers;
}
