/**
 * The chat endpoint: `GET /ws` upgrades to a WebSocket once the token is good
 * and admission says yes. One manager per accepted connection; chat messages
 * get a stand-in reply. Chat text is never logged.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { CLOSE_GOING_AWAY, ClientMessage, type ServerMessage } from "../contract/client.js";
import type { Clock } from "../contract/clock.js";
import { FactoryEvent } from "../contract/events.js";
import type { AdmissionControl, Decision } from "./admission.js";
import { tokenOf, type TokenAuth } from "./auth.js";
import { listen, pathOf, rejectUpgrade, sendJson } from "./http-util.js";
import type { EventLog } from "./log.js";
import { Manager } from "./manager.js";
import type { FactoryMetrics, MessageRejection } from "./metrics.js";
import type { AdmissionQueue } from "./queue.js";
import type { Registry } from "./registry.js";

/** The WebSocket path. */
export const WS_PATH = "/ws";

export interface ChatServerDeps {
  auth: TokenAuth;
  admission: AdmissionControl;
  registry: Registry;
  queue: AdmissionQueue;
  clock: Clock;
  log: EventLog;
  metrics: FactoryMetrics;
  /** `leak-on-close`: do not unregister a manager when its socket closes. */
  leakOnClose: boolean;
  maxPayloadBytes: number;
}

export class ChatServer {
  readonly http: Server;
  private readonly wss: WebSocketServer;
  private shuttingDown = false;
  private readonly sockets = new Set<WebSocket>();

  constructor(private readonly deps: ChatServerDeps) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: deps.maxPayloadBytes,
    });
    this.http = createServer((req, res) => {
      const status = pathOf(req.url) === WS_PATH ? 426 : 404;
      sendJson(res, status, {
        error: status === 426 ? { code: "upgrade_required", message: "connect with a WebSocket client" } : { code: "not_found", message: "not found" },
      });
    });
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
    if (this.shuttingDown) return this.refuseShuttingDown(socket);
    const auth = deps.auth.verify(tokenOf(req));
    if (!auth.ok) {
      deps.metrics.authFailures.inc({ reason: auth.reason });
      // No user id here: an unverified token names nobody.
      deps.log.info(FactoryEvent.authFailed, { reason: auth.reason }, `Upgrade refused: token ${auth.reason}`);
      return rejectUpgrade(socket, 401, { error: { code: "unauthorized", message: `token ${auth.reason}` } }, { "WWW-Authenticate": "Bearer" });
    }
    const userId = auth.userId;
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    socket.once("close", onClose);
    const decision = await deps.admission.decide(userId, gone.signal);
    socket.off("close", onClose);
    if (!decision.admitted) {
      if (this.shuttingDown) return this.refuseShuttingDown(socket);
      if (decision.reason === "aborted") return void socket.destroy();
      return rejectUpgrade(
        socket,
        503,
        { error: { code: "resource_limit", message: "too many connections for this user", reason: decision.reason } },
        { "Retry-After": String(decision.retryAfterSeconds) },
      );
    }
    if (socket.destroyed || this.shuttingDown) {
      deps.registry.release(userId);
      return this.shuttingDown ? this.refuseShuttingDown(socket) : undefined;
    }
    let completed = false;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      completed = true;
      this.onConnection(ws, userId, decision);
    });
    socket.off("error", destroyOnError);
    // ws answers a malformed handshake itself (400) without calling back: give the slot back.
    if (!completed) deps.registry.release(userId);
  }

  private refuseShuttingDown(socket: Duplex): void {
    rejectUpgrade(socket, 503, { error: { code: "shutting_down", message: "the server is shutting down" } }, { "Retry-After": "1" });
  }

  private onConnection(ws: WebSocket, userId: string, decision: Decision & { admitted: true }): void {
    const { deps } = this;
    const manager = new Manager(userId, ws, deps.clock);
    deps.registry.commit(manager);
    this.sockets.add(ws);
    ws.on("message", (data, isBinary) => {
      manager.markMessage();
      this.onMessage(manager, data, isBinary);
    });
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
      metrics.messagesRejected.inc({ reason: "binary" });
      return this.send(manager, { type: "error", code: "binary_not_supported", message: "send JSON text frames" });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawToString(data));
    } catch {
      metrics.messagesRejected.inc({ reason: "invalid_json" });
      return this.send(manager, { type: "error", code: "invalid_json", message: "messages are JSON objects" });
    }
    const message = ClientMessage.safeParse(parsed);
    if (!message.success) {
      metrics.messagesRejected.inc({ reason: "invalid_message" });
      return this.send(manager, { type: "error", code: "invalid_message", message: "expected {\"type\":\"chat\",\"text\":\"…\"}" });
    }
    if (message.data.type === "ping") return this.send(manager, { type: "pong" });
    // Stand-in for the AI response. The text goes back to its author and nowhere else (never to a log).
    const { id, text } = message.data;
    this.send(manager, { type: "reply", ...(id === undefined ? {} : { id }), text: `echo: ${text}` });
  }

  private send(manager: Manager, message: ServerMessage): void {
    manager.send(JSON.stringify(message));
  }

  /**
   * Stops accepting, ends queued upgrades with 503, closes every connection
   * with 1001, and destroys whatever has not closed after `graceMs`.
   */
  async close(graceMs: number): Promise<void> {
    this.shuttingDown = true;
    this.deps.queue.abortAll();
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    const sockets = [...this.sockets];
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              ws.terminate();
              resolve();
            }, graceMs);
            ws.once("close", () => {
              clearTimeout(timer);
              resolve();
            });
            ws.close(CLOSE_GOING_AWAY, "server shutting down");
          }),
      ),
    );
    this.http.closeAllConnections();
    await closed;
  }
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
