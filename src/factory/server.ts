/**
 * The chat endpoint: `GET /ws` upgrades to a WebSocket once the handshake is
 * valid, the origin allowed, the token good and admission says yes — in that
 * order, so nothing is cleaned up (no tab evicted) for a request that could
 * never connect. One manager per accepted connection; chat messages get a
 * stand-in reply. Chat text is never logged.
 *
 * A refused upgrade is told in a way the client can read (ADR 21): a client
 * that sends `Origin` (a browser, which cannot read an HTTP status on an
 * upgrade) gets the upgrade, one `refused` message and close 1013; any other
 * client gets HTTP 503 with `Retry-After`.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { CLOSE_GOING_AWAY, CLOSE_REFUSED, ClientMessage, countsAsUse, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, type ServerMessage } from "../contract/client.js";
import { systemTimers, type Clock, type Timers } from "../contract/clock.js";
import { FactoryEvent, type RefusalReason } from "../contract/events.js";
import type { AdmissionControl, Decision } from "./admission.js";
import { tokenOf, type TokenAuth } from "./auth.js";
import type { Evictor } from "./evict.js";
import { handshakeProblem } from "./handshake.js";
import { hardenServer, type HttpLimits } from "./http-limits.js";
import { listen, pathOf, rejectUpgrade, sendJson } from "./http-util.js";
import type { EventLog } from "./log.js";
import { Manager, type Backpressure } from "./manager.js";
import type { FactoryMetrics, MessageRejection } from "./metrics.js";
import type { AdmissionQueue } from "./queue.js";
import type { Registry } from "./registry.js";

/** The WebSocket path. */
export const WS_PATH = "/ws";

/** Close reason sent with 1001 when the factory shuts down. */
export const SHUTDOWN_CLOSE_REASON = "server shutting down";

export interface ChatServerDeps {
  auth: TokenAuth;
  admission: AdmissionControl;
  registry: Registry;
  queue: AdmissionQueue;
  evictor: Evictor;
  /** Managers' timestamps. */
  clock: Clock;
  /** The drain's and refusals' timers (default the system's). */
  timers?: Timers;
  log: EventLog;
  metrics: FactoryMetrics;
  /** `leak-on-close`: do not unregister a manager when its socket closes. */
  leakOnClose: boolean;
  maxPayloadBytes: number;
  /** Send-buffer bounds per connection (ADR 21). */
  sendHighWaterBytes: number;
  sendMaxBufferedBytes: number;
  slowReaderTimeoutMs: number;
  /** Origins a browser may connect from; empty: any. */
  allowedOrigins: readonly string[];
  /** Grace for a refused browser to finish the close handshake before its socket is destroyed. */
  closeGraceMs: number;
  /** Jitter of the drain on shutdown (default Math.random). */
  random?: () => number;
  /** Slow-header and per-address limits of the HTTP server (defaults: `DEFAULT_HTTP_LIMITS`). */
  httpLimits?: Partial<HttpLimits>;
}

export class ChatServer {
  readonly http: Server;
  private readonly wss: WebSocketServer;
  private shuttingDown = false;
  private readonly sockets = new Set<WebSocket>();
  private readonly timers: Timers;
  private readonly allowedOrigins: ReadonlySet<string>;
  private readonly backpressure: Backpressure;

  constructor(private readonly deps: ChatServerDeps) {
    this.timers = deps.timers ?? systemTimers;
    this.allowedOrigins = new Set(deps.allowedOrigins);
    this.backpressure = {
      highWaterBytes: deps.sendHighWaterBytes,
      maxBufferedBytes: deps.sendMaxBufferedBytes,
      slowReaderTimeoutMs: deps.slowReaderTimeoutMs,
      onSlowReader: (manager) => void deps.evictor.evict(manager, "slow_reader", "backpressure"),
    };
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: deps.maxPayloadBytes,
      handleProtocols: selectProtocol,
    });
    this.http = createServer((req, res) => {
      const status = pathOf(req.url) === WS_PATH ? 426 : 404;
      sendJson(res, status, {
        error: status === 426 ? { code: "upgrade_required", message: "connect with a WebSocket client" } : { code: "not_found", message: "not found" },
      });
    });
    hardenServer(this.http, { ...deps.httpLimits, server: "chat", metrics: deps.metrics, timers: this.timers });
    this.http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.handleUpgrade(req, socket, head).catch((err: unknown) => {
        this.deps.log.error(FactoryEvent.error, {}, `upgrade failed: ${String(err)}`);
        rejectUpgrade(socket, 500, { error: { code: "internal", message: "internal error" } });
      });
    });
  }

  /** WebSocket connections whose socket is open. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Starts listening; resolves with the bound port. */
  listen(port: number, host: string): Promise<number> {
    return listen(this.http, port, host);
  }

  private async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { deps } = this;
    // Closure-free, so it pins nothing of this upgrade for the life of the connection (ws adds its own later).
    socket.on("error", destroyOnError);
    if (pathOf(req.url) !== WS_PATH) {
      return rejectUpgrade(socket, 404, { error: { code: "not_found", message: `WebSocket path is ${WS_PATH}` } });
    }
    // Before anything else: a request that cannot become a WebSocket must not cost anyone a tab.
    const problem = handshakeProblem(req);
    if (problem !== null) {
      deps.metrics.upgradesRejected.inc({ reason: "bad_handshake" });
      return rejectUpgrade(socket, 400, { error: { code: "bad_handshake", message: problem } });
    }
    const origin = req.headers.origin;
    if (origin !== undefined && this.allowedOrigins.size > 0 && !this.allowedOrigins.has(origin)) {
      deps.metrics.upgradesRejected.inc({ reason: "origin" });
      // The origin is client text: logged only as "not allowed", never copied into the line.
      deps.log.info(FactoryEvent.originRefused, { reason: "origin" }, "Upgrade refused: its Origin is not in --allowed-origins");
      return rejectUpgrade(socket, 403, { error: { code: "origin_not_allowed", message: "this origin may not connect" } });
    }
    if (this.shuttingDown) return this.refuse(req, socket, head, "shutting_down", 1);
    const auth = deps.auth.verify(tokenOf(req));
    if (!auth.ok) {
      deps.metrics.authFailures.inc({ reason: auth.reason });
      // No user id here: an unverified token names nobody.
      deps.log.info(FactoryEvent.authFailed, { reason: auth.reason }, `Upgrade refused: token ${auth.reason}`);
      return rejectUpgrade(socket, 401, { error: { code: "unauthorized", message: `token ${auth.reason}` } }, { "WWW-Authenticate": "Bearer" });
    }
    const userId = auth.userId;
    const held = hold(socket as Socket);
    const decision = await deps.admission.decide(userId, held.gone);
    const early = held.release();
    const rest = early.length === 0 ? head : Buffer.concat([head, ...early]);
    if (!decision.admitted) {
      if (held.gone.aborted) return void socket.destroy(); // the client left while it waited
      if (this.shuttingDown) return this.refuse(req, socket, rest, "shutting_down", 1);
      if (decision.reason === "aborted") return void socket.destroy();
      return this.refuse(req, socket, rest, decision.reason, decision.retryAfterSeconds);
    }
    if (socket.destroyed || held.gone.aborted || this.shuttingDown) {
      deps.registry.release(userId);
      return this.shuttingDown ? this.refuse(req, socket, rest, "shutting_down", 1) : void socket.destroy();
    }
    let committed = false;
    try {
      this.wss.handleUpgrade(req, socket, rest, (ws) => {
        const manager = new Manager(userId, ws, deps.clock, socket as Socket, this.backpressure);
        deps.registry.commit(manager);
        committed = true;
        this.onConnection(ws, manager, decision);
      });
    } finally {
      socket.off("error", destroyOnError);
      // Whatever happened between admission and commit (ws refused the handshake, something threw): give the slot back.
      if (!committed) deps.registry.release(userId);
    }
  }

  /**
   * Refuses an upgrade so that the client can tell why: a browser (it sent
   * `Origin`) gets the upgrade, one `refused` message and close 1013 with a
   * reason; any other client gets HTTP 503 with `Retry-After`.
   */
  private refuse(req: IncomingMessage, socket: Duplex, head: Buffer, reason: RefusalReason, retryAfterSeconds: number): void {
    const message =
      reason === "shutting_down" ? "the server is shutting down" : reason === "limit" ? "too many connections for this user" : `no slot for this user (${reason})`;
    if (req.headers.origin === undefined || socket.destroyed) {
      return rejectUpgrade(
        socket,
        503,
        { error: { code: reason === "shutting_down" ? "shutting_down" : "resource_limit", message, reason } },
        { "Retry-After": String(retryAfterSeconds) },
      );
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const refused: ServerMessage = { type: "refused", reason, retryAfterMs: retryAfterSeconds * 1000 };
      ws.send(JSON.stringify(refused));
      ws.close(CLOSE_REFUSED, `${message}; retry after ${retryAfterSeconds} s`.slice(0, 123));
      const cancel = this.timers.after(this.deps.closeGraceMs, () => ws.terminate());
      ws.once("close", cancel);
    });
    socket.off("error", destroyOnError);
  }

  private onConnection(ws: WebSocket, manager: Manager, decision: Decision & { admitted: true }): void {
    const { deps } = this;
    const userId = manager.userId;
    this.sockets.add(ws);
    ws.on("message", (data, isBinary) => this.onMessage(manager, data, isBinary));
    ws.on("pong", () => manager.markPong());
    ws.on("error", (err: Error & { code?: string }) => {
      manager.active = false;
      // A frame ws refused (it closes the connection itself): count it, by a closed set of reasons.
      const rejected = rejectionOf(err.code);
      if (rejected !== null) deps.metrics.messagesRejected.inc({ reason: rejected });
    });
    ws.on("close", (code) => {
      this.sockets.delete(ws);
      if (deps.log.debugEnabled) {
        deps.log.debug(
          FactoryEvent.connectionClosed,
          { userId, managerId: manager.id, reason: String(code) },
          `Connection closed for user ${userId} (code ${code})`,
        );
      }
      if (deps.leakOnClose) return; // the injected fault: the manager outlives its socket
      manager.markClosed();
      deps.registry.remove(manager);
    });
    this.send(manager, { type: "welcome", managerId: manager.id, limit: deps.registry.effectiveLimit(userId), active: deps.registry.active(userId) });
    if (decision.notice !== null) this.send(manager, { type: "notice", code: "resource_constraint", ...decision.notice });
    if (deps.log.debugEnabled) {
      deps.log.debug(
        FactoryEvent.connectionOpened,
        { userId, managerId: manager.id, managers: deps.registry.active(userId), limit: deps.registry.limit },
        `Connection opened for user ${userId} (${decision.outcome})`,
      );
    }
  }

  private onMessage(manager: Manager, data: RawData, isBinary: boolean): void {
    const { metrics } = this.deps;
    if (isBinary) {
      manager.markMessage(false);
      metrics.messagesRejected.inc({ reason: "binary" });
      return this.send(manager, { type: "error", code: "binary_not_supported", message: "send JSON text frames" });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawToString(data));
    } catch {
      manager.markMessage(false);
      metrics.messagesRejected.inc({ reason: "invalid_json" });
      return this.send(manager, { type: "error", code: "invalid_json", message: "messages are JSON objects" });
    }
    const message = ClientMessage.safeParse(parsed);
    if (!message.success) {
      manager.markMessage(false);
      metrics.messagesRejected.inc({ reason: "invalid_message" });
      return this.send(manager, { type: "error", code: "invalid_message", message: "expected {\"type\":\"chat\",\"text\":\"…\"}" });
    }
    manager.markMessage(countsAsUse(message.data));
    if (message.data.type === "ping") return this.send(manager, { type: "pong" });
    // Stand-in for the AI response. The text goes back to its author and nowhere else (never to a log).
    const { id, text } = message.data;
    this.send(manager, { type: "reply", ...(id === undefined ? {} : { id }), text: `echo: ${text}` });
  }

  private send(manager: Manager, message: ServerMessage): void {
    manager.send(JSON.stringify(message));
  }

  /**
   * Stops accepting and ends queued upgrades; then closes every connection
   * with 1001, each at a random moment within `drainMs` so that clients do
   * not all reconnect at once, and destroys whatever has not finished closing
   * `graceMs` after its close frame.
   */
  async close(drainMs: number, graceMs: number): Promise<void> {
    this.shuttingDown = true;
    this.deps.queue.abortAll();
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    const random = this.deps.random ?? Math.random;
    const sockets = [...this.sockets];
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            let cancelGrace = (): void => undefined;
            const cancelClose = this.timers.after(Math.floor(random() * drainMs), () => {
              cancelGrace = this.timers.after(graceMs, () => ws.terminate());
              ws.close(CLOSE_GOING_AWAY, SHUTDOWN_CLOSE_REASON);
            });
            ws.once("close", () => {
              cancelClose();
              cancelGrace();
              resolve();
            });
          }),
      ),
    );
    this.http.closeAllConnections();
    await closed;
  }
}

/**
 * The subprotocol to answer with: `reclaim.v1` when offered; else, as before
 * it existed, the first one offered — but never a token carrier, which would
 * echo the token into the response (and into whatever logs responses).
 */
export function selectProtocol(offered: Set<string>): string | false {
  if (offered.has(SUBPROTOCOL)) return SUBPROTOCOL;
  for (const protocol of offered) if (!protocol.startsWith(TOKEN_SUBPROTOCOL_PREFIX)) return protocol;
  return false;
}

/** The socket of an upgrade while it waits for admission: kept reading, so that a client that leaves (FIN) is seen. */
interface Held {
  /** Aborts when the client closed or ended its side. */
  gone: AbortSignal;
  /** Stops reading; returns what arrived meanwhile (to hand to `ws` with the head). */
  release(): Buffer[];
}

function hold(socket: Socket): Held {
  const controller = new AbortController();
  const early: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer): void => {
    // A client must wait for the 101 before it sends frames; a few bytes early are kept, a flood is not.
    size += chunk.length;
    if (size > 64 * 1024) socket.destroy();
    else early.push(chunk);
  };
  const onGone = (): void => controller.abort();
  socket.on("data", onData);
  socket.once("end", onGone);
  socket.once("close", onGone);
  return {
    gone: controller.signal,
    release: () => {
      socket.off("data", onData);
      socket.off("end", onGone);
      socket.off("close", onGone);
      // Not paused: `ws` takes the socket over synchronously after this and relies on adding its 'data' listener to read.
      return early;
    },
  };
}

/** The rejection a `ws` receiver error stands for; null for errors that are not about a frame (a reset socket). */
function rejectionOf(code: string | undefined): MessageRejection | null {
  if (code === undefined || !code.startsWith("WS_ERR_")) return null;
  if (code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH" || code === "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH") return "too_large";
  if (code === "WS_ERR_INVALID_UTF8") return "invalid_utf8";
  return "protocol_error";
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

function rawToString(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("utf8");
  return data.toString("utf8");
}
