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
import { WebSocket } from "ws";
import { SUBPROTOCOL } from "../contract/client.js";
import { FactoryEvent } from "../contract/events.js";
import type { ChatApp, Opening, SessionHandlers, UpgradeInfo } from "./app.js";
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
  early: { data: Buffer; isBinary: boolean }[];
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
function relay(session: Parameters<Extract<Opening, { accept: true }>["connect"]>[0], dialled: Dialled, options: UpstreamOptions, metrics: FactoryMetrics): SessionHandlers {
  const upstream = dialled.ws;
  let upstreamPaused = true; // paused by `connectUpstream`
  let readyToRelay = false; // until then, the pause is `dial`'s, not a slow client's
  let clientPaused = false;
  let pendingToUpstream = 0;
  let ended = false;
  const held = (slow: "client" | "upstream", on: boolean): void => {
    if (on) metrics.upstreamPaused.inc({ slow });
    else metrics.upstreamPaused.dec({ slow });
  };
  const end = (by: "client" | "upstream" | "factory"): boolean => {
    if (ended) return false;
    ended = true;
    metrics.upstreamCloses.inc({ by });
    if (upstreamPaused && readyToRelay) held("client", false);
    if (clientPaused) held("upstream", false);
    return true;
  };

  const forward = (buffer: Buffer, isBinary: boolean): void => {
    if (!session.send(buffer, isBinary) && !upstreamPaused && !ended) {
      // The client is not reading fast enough: stop reading the upstream until its buffer drains.
      upstreamPaused = true;
      held("client", true);
      upstream.pause();
    }
  };
  // What came with or right after the handshake first, then the rest as it comes.
  for (const { data, isBinary } of dialled.takeEarly()) forward(data, isBinary);
  upstream.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => forward(toBuffer(data), isBinary));
  upstream.on("close", (code: number, reason: Buffer) => {
    if (!end("upstream")) return;
    if (code === 1005) session.close();
    else if (code === 1006 || code === 1015) session.close(CLOSE_BAD_GATEWAY, "upstream connection lost");
    else session.close(code, reason.toString("utf8"));
  });
  if (upstream.readyState !== WebSocket.OPEN) {
    // It closed between the dial and the handshake: its close event has already gone by.
    if (end("upstream")) session.close(CLOSE_BAD_GATEWAY, "upstream connection lost");
    return {};
  }
  upstreamPaused = false;
  readyToRelay = true;
  upstream.resume();

  return {
    message: (data, isBinary): void => {
      session.markUse();
      if (upstream.readyState !== WebSocket.OPEN) return; // it is closing: the client will be closed with its code
      pendingToUpstream += data.length;
      upstream.send(data, { binary: isBinary }, () => {
        pendingToUpstream -= data.length;
        if (clientPaused && pendingToUpstream <= options.highWaterBytes / 2 && !ended) {
          clientPaused = false;
          held("upstream", false);
          session.resumeReading();
        }
      });
      if (!clientPaused && pendingToUpstream > options.highWaterBytes) {
        // The upstream is not reading fast enough: stop reading the client (TCP pushes back on it).
        clientPaused = true;
        held("upstream", true);
        session.pauseReading();
      }
    },
    drain: (): void => {
      if (!upstreamPaused || ended) return;
      upstreamPaused = false;
      held("client", false);
      upstream.resume();
    },
    close: ({ code, reason, removal }): void => {
      if (!end(removal === null ? "client" : "factory")) return;
      if (upstream.readyState === WebSocket.CLOSED) return;
      if (removal !== null) upstream.close(1001, `client removed by reclaim (${removal})`);
      else if (code === 1005) upstream.close();
      else if (code === 1006 || code === 1015) upstream.close(1001, "client connection lost");
      else upstream.close(code, reason);
      const timer = setTimeout(() => upstream.terminate(), options.closeGraceMs);
      timer.unref();
      upstream.once("close", () => clearTimeout(timer));
    },
  };
}

/** Dials the upstream for `upgrade`; settles on open, refusal, failure, the deadline or `signal`. */
function connectUpstream(options: UpstreamOptions, base: URL, upgrade: UpgradeInfo, signal: AbortSignal): Promise<DialResult> {
  const url = upstreamUrl(base, upgrade.target);
  const headers = upstreamHeaders(upgrade, options.forwardAuthorization);
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(failed("aborted", 502, "client_gone", "the client left"));
    const ws = new WebSocket(url, [...upgrade.protocols], {
      headers,
      handshakeTimeout: options.connectTimeoutMs,
      maxPayload: options.maxPayloadBytes,
      perMessageDeflate: false,
      followRedirects: false,
      autoPong: true,
    });
    let settled = false;
    const settle = (result: DialResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      signal.removeEventListener("abort", onAbort);
      if (!result.ok) ws.terminate();
      resolve(result);
    };
    const deadline = setTimeout(
      () => settle(failed("timeout", 504, "upstream_timeout", `the upstream did not complete the handshake within ${options.connectTimeoutMs} ms`)),
      options.connectTimeoutMs,
    );
    const onAbort = (): void => settle(failed("aborted", 502, "client_gone", "the client left"));
    signal.addEventListener("abort", onAbort, { once: true });
    ws.on("error", () => undefined); // after the dial, a close follows every error; its code says what happened
    ws.once("open", () => {
      // Synchronously, before `ws` reads what came with the handshake: nothing is read, or lost, until the client is connected.
      ws.pause();
      const early: { data: Buffer; isBinary: boolean }[] = [];
      const keep = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void => void early.push({ data: toBuffer(data), isBinary });
      ws.on("message", keep);
      settle({
        ok: true,
        dialled: {
          ws,
          early,
          takeEarly: () => {
            ws.off("message", keep);
            return early.splice(0);
          },
        },
      });
    });
    ws.once("unexpected-response", (request, response) => {
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
    });
    ws.on("error", (err: Error & { code?: string }) => {
      if (settled) return;
      if (/timed out/i.test(err.message)) settle(failed("timeout", 504, "upstream_timeout", "the upstream did not complete the handshake in time"));
      else settle(failed("unreachable", 502, "upstream_unreachable", `the upstream could not be reached (${err.code ?? err.message})`));
    });
  });
}

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
