/**
 * The chat endpoint: `GET /ws` upgrades to a WebSocket once the handshake is
 * valid, the origin allowed, the token good, admission says yes and the
 * application accepts (its `open` step: the proxy dials its upstream there) —
 * in that order, so nothing is cleaned up (no tab evicted) for a request that
 * could never connect. One manager per accepted connection; the application
 * (src/factory/app.ts, ADR 26) gets its messages. Chat text is never logged.
 *
 * The endpoint listens on its own port, or is attached to an application's
 * `http.Server` (then it answers only upgrades to its path, and leaves other
 * requests and upgrades to the application).
 *
 * A refused upgrade is told in a way the client can read (ADR 21): a client
 * that sends `Origin` (a browser, which cannot read an HTTP status on an
 * upgrade) gets the upgrade, (with the built-in protocol) one `refused`
 * message, and close 1013 with a reason; any other client gets HTTP 503 with
 * `Retry-After`.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { CLOSE_GOING_AWAY, CLOSE_REFUSED, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, type ServerMessage } from "../contract/client.js";
import { systemTimers, type Clock, type Timers } from "../contract/clock.js";
import { FactoryEvent, type RefusalReason } from "../contract/events.js";
import { randomUUID } from "node:crypto";
import type { AdmissionControl, Decision } from "./admission.js";
import type { ChatApp, ConnectHandler, Opening, Session, SessionHandlers, UpgradeInfo } from "./app.js";
import { tokenOf, type TokenAuth } from "./auth.js";
import type { Evictor } from "./evict.js";
import type { RttTail } from "./rtt.js";
import { handshakeProblem } from "./handshake.js";
import { hardenServer, type HttpLimits } from "./http-limits.js";
import { listen, pathOf, rejectUpgrade, sendJson } from "./http-util.js";
import type { EventLog } from "./log.js";
import { Manager, type Backpressure } from "./manager.js";
import type { FactoryMetrics, MessageRejection } from "./metrics.js";
import type { AdmissionQueue } from "./queue.js";
import type { Registry } from "./registry.js";

/** The WebSocket path (the default of an attached endpoint's `path`). */
export const WS_PATH = "/ws";

/** Close reason sent with 1001 when the factory shuts down. */
export const SHUTDOWN_CLOSE_REASON = "server shutting down";

export interface ChatServerDeps {
  /** What the messages mean: a handler per connection (the demo's echo, an application's), or a `ChatApp` with an `open` step (the proxy). */
  app: ChatApp | ConnectHandler;
  /** Send a refused browser the built-in protocol's `refused` message before close 1013 (only the echo speaks it). */
  refusedMessage: boolean;
  /** An application's server to attach to instead of a port of our own. */
  server?: Server;
  /** The WebSocket path (default `/ws`). */
  path?: string;
  auth: TokenAuth;
  admission: AdmissionControl;
  registry: Registry;
  queue: AdmissionQueue;
  evictor: Evictor;
  /** Where pongs' round trips are pooled for the probe's deadlines (ADR 38); none: not pooled. */
  rttTail?: RttTail;
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
  /** Attached to an application's server: it owns the server, its other requests and its life. */
  readonly attached: boolean;
  readonly path: string;
  private readonly wss: WebSocketServer;
  private shuttingDown = false;
  /** Upgrades in their application's `open` step: aborted on shutdown. */
  private readonly opening = new Set<AbortController>();
  /** The subprotocol the application chose for an upgrade in flight (read by `handleProtocols`). */
  private readonly chosenProtocol = new WeakMap<IncomingMessage, string | false>();
  private readonly onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Open connections and what their listeners need; one entry each, so that the listeners can be shared. */
  private readonly sockets = new Map<WebSocket, Connection>();
  /** The listeners of every connection's socket, shared: ws calls each with `this` = the socket. */
  private readonly socketListeners: SocketListeners;
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
      handleProtocols: (offered, req) => {
        const chosen = this.chosenProtocol.get(req);
        return chosen === undefined ? selectProtocol(offered) : chosen;
      },
    });
    this.path = deps.path ?? WS_PATH;
    this.attached = deps.server !== undefined;
    if (deps.server !== undefined) {
      this.http = deps.server;
    } else {
      this.http = createServer((req, res) => {
        const status = pathOf(req.url) === this.path ? 426 : 404;
        sendJson(res, status, {
          error: status === 426 ? { code: "upgrade_required", message: "connect with a WebSocket client" } : { code: "not_found", message: "not found" },
        });
      });
      hardenServer(this.http, { ...deps.httpLimits, server: "chat", metrics: deps.metrics, timers: this.timers });
    }
    this.onUpgrade = (req, socket, head): void => {
      // Attached: an upgrade to another path is the application's, if it listens for upgrades too.
      if (this.attached && pathOf(req.url) !== this.path && this.http.listenerCount("upgrade") > 1) return;
      this.handleUpgrade(req, socket, head).catch((err: unknown) => {
        this.deps.log.error(FactoryEvent.error, {}, `upgrade failed: ${String(err)}`);
        rejectUpgrade(socket, 500, { error: { code: "internal", message: "internal error" } });
      });
    };
    this.http.on("upgrade", this.onUpgrade);
    this.socketListeners = socketListeners(this.sockets, deps);
  }

  /** WebSocket connections whose socket is open. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Starts listening on a port of its own; resolves with the bound port. */
  listen(port: number, host: string): Promise<number> {
    if (this.attached) throw new Error("an attached chat endpoint listens on its application's server");
    return listen(this.http, port, host);
  }

  private async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { deps } = this;
    // Closure-free, so it pins nothing of this upgrade for the life of the connection (ws adds its own later).
    socket.on("error", destroyOnError);
    if (pathOf(req.url) !== this.path) {
      return rejectUpgrade(socket, 404, { error: { code: "not_found", message: `WebSocket path is ${this.path}` } });
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
    const token = tokenOf(req);
    const auth = deps.auth.verify(token);
    if (!auth.ok) {
      deps.metrics.authFailures.inc({ reason: auth.reason });
      // No user id here: an unverified token names nobody.
      deps.log.info(FactoryEvent.authFailed, { reason: auth.reason }, `Upgrade refused: token ${auth.reason}`);
      return rejectUpgrade(socket, 401, { error: { code: "unauthorized", message: `token ${auth.reason}` } }, { "WWW-Authenticate": "Bearer" });
    }
    const userId = auth.userId;
    const held = hold(socket as Socket);
    const decision = await deps.admission.decide(userId, held.gone);
    if (!decision.admitted) {
      const rest = withEarly(head, held.release());
      if (held.gone.aborted) return void socket.destroy(); // the client left while it waited
      if (this.shuttingDown) return this.refuse(req, socket, rest, "shutting_down", 1);
      if (decision.reason === "aborted") return void socket.destroy();
      return this.refuse(req, socket, rest, decision.reason, decision.retryAfterSeconds);
    }
    // The slot is reserved from here: every way out below either commits a manager or gives it back.
    const app = deps.app;
    if (typeof app === "function") return void this.accept(req, socket, userId, decision, head, held, app, undefined);
    // Aborts when the client leaves, the factory shuts down, or the upgrade is given up before a manager exists.
    // (Not AbortSignal.any over a long-lived shutdown signal: on Node 20 each call leaves a WeakRef on it.)
    const abandon = new AbortController();
    const onGone = (): void => abandon.abort();
    held.gone.addEventListener("abort", onGone, { once: true });
    this.opening.add(abandon);
    let opening: Opening;
    try {
      opening = await this.open(app, req, token ?? "", userId, randomUUID(), decision.outcome, abandon.signal);
    } catch (err) {
      held.gone.removeEventListener("abort", onGone);
      this.opening.delete(abandon);
      deps.registry.release(userId);
      throw err;
    }
    held.gone.removeEventListener("abort", onGone);
    this.opening.delete(abandon);
    if (!opening.accept) {
      deps.registry.release(userId);
      abandon.abort();
      const rest = withEarly(head, held.release());
      if (socket.destroyed || held.gone.aborted || this.shuttingDown) {
        socket.off("error", destroyOnError);
        return this.shuttingDown ? this.refuse(req, socket, rest, "shutting_down", 1) : void socket.destroy();
      }
      socket.off("error", destroyOnError);
      return this.refuseForApp(req, socket, rest, opening);
    }
    if (!this.accept(req, socket, userId, decision, head, held, opening.connect, opening)) abandon.abort();
  }

  /**
   * Completes an admitted upgrade whose application accepted it: a manager
   * for it, then the application's `connect`. Returns whether the manager
   * was committed; if not, the user's slot has been given back.
   */
  private accept(
    req: IncomingMessage,
    socket: Duplex,
    userId: string,
    decision: Decision & { admitted: true },
    head: Buffer,
    held: Held,
    connect: ConnectHandler,
    opening: (Opening & { accept: true }) | undefined,
  ): boolean {
    const { deps } = this;
    let committed = false;
    try {
      const rest = withEarly(head, held.release());
      if (socket.destroyed || held.gone.aborted || this.shuttingDown) {
        if (this.shuttingDown) this.refuse(req, socket, rest, "shutting_down", 1);
        else socket.destroy();
        return false;
      }
      if (opening?.protocol !== undefined) this.chosenProtocol.set(req, opening.protocol);
      this.wss.handleUpgrade(req, socket, rest, (ws) => {
        const manager = new Manager(userId, ws, deps.clock, socket as Socket, this.backpressure, opening === undefined ? undefined : openingIds.get(opening));
        deps.registry.commit(manager);
        committed = true;
        this.onConnection(ws, manager, decision, connect);
      });
    } finally {
      socket.off("error", destroyOnError);
      // Whatever happened between admission and commit (ws refused the handshake, something threw): give the slot back.
      if (!committed) deps.registry.release(userId);
    }
    return committed;
  }

  /** The application's `open` step; a throw is a refusal with 500. */
  private async open(app: ChatApp, req: IncomingMessage, token: string, userId: string, managerId: string, admission: UpgradeInfo["admission"], signal: AbortSignal): Promise<Opening> {
    // `target` and `protocols` are worked out only if the application reads them (the echo does not).
    const info: UpgradeInfo = {
      userId,
      managerId,
      admission,
      get target(): string {
        const url = new URL(req.url ?? "/", "http://localhost");
        url.searchParams.delete("token");
        return url.pathname + url.search;
      },
      get protocols(): readonly string[] {
        return offeredProtocols(req);
      },
      headers: req.headers,
      token,
      remoteAddress: req.socket.remoteAddress,
    };
    try {
      const opening = await app.open(info, signal);
      if (opening.accept) openingIds.set(opening, managerId);
      return opening;
    } catch (err) {
      this.deps.log.error(FactoryEvent.error, { userId, managerId }, `the application's open step failed: ${String(err)}`);
      return { accept: false, status: 500, closeCode: 1011, code: "internal", message: "internal error" };
    }
  }

  /** The application refused an admitted upgrade (the proxy's upstream did): its status to a client that reads one, its close code to a browser. */
  private refuseForApp(req: IncomingMessage, socket: Duplex, head: Buffer, opening: Opening & { accept: false }): void {
    const headers: Record<string, string> = opening.retryAfterSeconds === undefined ? {} : { "Retry-After": String(opening.retryAfterSeconds) };
    if (req.headers.origin === undefined || socket.destroyed) {
      return rejectUpgrade(socket, opening.status, { error: { code: opening.code, message: opening.message } }, headers);
    }
    this.closeAfterUpgrade(req, socket, head, opening.closeCode, opening.message, null);
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
    const refused: ServerMessage = { type: "refused", reason, retryAfterMs: retryAfterSeconds * 1000 };
    this.closeAfterUpgrade(req, socket, head, CLOSE_REFUSED, `${message}; retry after ${retryAfterSeconds} s`, this.deps.refusedMessage ? refused : null);
  }

  /** Completes the handshake only to send `first` (if any) and close with `code` and `reason` (a browser reads both); destroys the socket after the close grace. */
  private closeAfterUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, code: number, reason: string, first: ServerMessage | null): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (first !== null) ws.send(JSON.stringify(first));
      ws.close(code, truncateReason(reason));
      const cancel = this.timers.after(this.deps.closeGraceMs, () => ws.terminate());
      ws.once("close", cancel);
    });
    socket.off("error", destroyOnError);
  }

  private onConnection(ws: WebSocket, manager: Manager, decision: Decision & { admitted: true }, connect: ConnectHandler): void {
    const { deps } = this;
    const userId = manager.userId;
    const connection: Connection = { manager, handlers: {} };
    this.sockets.set(ws, connection);
    const session = this.session(manager, decision, ws.protocol);
    try {
      connection.handlers = connect(session);
    } catch (err) {
      deps.log.error(FactoryEvent.error, { userId, managerId: manager.id }, `the application's connect handler failed: ${String(err)}`);
      ws.close(1011, "internal error");
    }
    const { handlers } = connection;
    if (handlers.drain !== undefined) manager.onDrain = (): void => handlers.drain?.();
    const on = this.socketListeners;
    ws.on("message", on.message);
    ws.on("pong", on.pong);
    ws.on("error", on.error);
    ws.on("close", on.close);
    if (deps.log.debugEnabled) {
      deps.log.debug(
        FactoryEvent.connectionOpened,
        { userId, managerId: manager.id, managers: deps.registry.active(userId), limit: deps.registry.limit },
        `Connection opened for user ${userId} (${decision.outcome})`,
      );
    }
  }

  /** The application's view of a manager. */
  private session(manager: Manager, decision: Decision & { admitted: true }, protocol: string): Session {
    return new ManagedSession(manager, decision.outcome, decision.notice, protocol, this.deps.registry, this.timers, this.deps.closeGraceMs);
  }

  /**
   * Stops accepting and ends queued upgrades; then closes every connection
   * with 1001, each at a random moment within `drainMs` so that clients do
   * not all reconnect at once, and destroys whatever has not finished closing
   * `graceMs` after its close frame.
   */
  async close(drainMs: number, graceMs: number): Promise<void> {
    this.shuttingDown = true;
    for (const upgrade of this.opening) upgrade.abort();
    this.deps.queue.abortAll();
    // Attached: the application's server is the application's to close; only our part of it stops.
    if (this.attached) this.http.off("upgrade", this.onUpgrade);
    const closed = this.attached ? Promise.resolve() : new Promise<void>((resolve) => this.http.close(() => resolve()));
    const random = this.deps.random ?? Math.random;
    const sockets = [...this.sockets.keys()];
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
    if (!this.attached) this.http.closeAllConnections();
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

/** The manager id chosen before an application's `open` step, for the manager made once it accepts. */
const openingIds = new WeakMap<Opening, string>();

/** A `Session` over a manager: methods on the prototype, so that a connection costs one small object, not a closure per method. */
class ManagedSession implements Session {
  constructor(
    private readonly manager: Manager,
    readonly admission: Session["admission"],
    readonly notice: Session["notice"],
    readonly protocol: string,
    private readonly registry: Registry,
    private readonly timers: Timers,
    private readonly closeGraceMs: number,
  ) {}

  get userId(): string {
    return this.manager.userId;
  }

  get managerId(): string {
    return this.manager.id;
  }

  get limit(): number {
    return this.registry.effectiveLimit(this.manager.userId);
  }

  get active(): number {
    return this.registry.active(this.manager.userId);
  }

  send(data: string | Buffer, binary = false): boolean {
    return this.manager.send(data, binary) && !this.manager.paused;
  }

  markUse(): void {
    this.manager.markUse();
  }

  pauseReading(): void {
    this.manager.pauseReading();
  }

  resumeReading(): void {
    this.manager.resumeReading();
  }

  close(code?: number, reason?: string): void {
    const ws = this.manager.socket;
    if (ws.readyState === ws.CLOSED) return;
    if (ws.readyState === ws.OPEN) ws.close(code, reason === undefined ? undefined : truncateReason(reason));
    const cancel = this.timers.after(this.closeGraceMs, () => ws.terminate());
    ws.once("close", cancel);
  }
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

/** One open connection, as its socket's shared listeners see it. */
interface Connection {
  manager: Manager;
  /** What the application's connect handler returned. */
  handlers: SessionHandlers;
}

/** The listeners of a connection's socket; ws calls each with `this` = the socket. */
interface SocketListeners {
  message: (this: WebSocket, data: RawData, isBinary: boolean) => void;
  pong: (this: WebSocket, data: Buffer) => void;
  error: (this: WebSocket, err: Error & { code?: string }) => void;
  close: (this: WebSocket, code: number, reason: Buffer) => void;
}

/**
 * The listeners every connection of one server shares, each finding its
 * connection in `sockets`: four closures and their context for each
 * connection were about 0.25 KB of heap per connection (ADR 41).
 */
function socketListeners(sockets: Map<WebSocket, Connection>, deps: ChatServerDeps): SocketListeners {
  return {
    message(data, isBinary) {
      const c = sockets.get(this);
      if (c === undefined) return;
      c.manager.markMessage(false);
      c.handlers.message?.(rawToBuffer(data), isBinary);
    },
    pong(data) {
      sockets.get(this)?.manager.markPong(data, deps.rttTail);
    },
    error(err) {
      const c = sockets.get(this);
      if (c !== undefined) c.manager.active = false;
      // A frame ws refused (it closes the connection itself): count it, by a closed set of reasons.
      const rejected = rejectionOf(err.code);
      if (rejected !== null) deps.metrics.messagesRejected.inc({ reason: rejected });
    },
    close(code, reason) {
      const c = sockets.get(this);
      if (c === undefined) return;
      sockets.delete(this);
      const { manager, handlers } = c;
      const userId = manager.userId;
      if (deps.log.debugEnabled) {
        deps.log.debug(FactoryEvent.connectionClosed, { userId, managerId: manager.id, reason: String(code) }, `Connection closed for user ${userId} (code ${code})`);
      }
      manager.onDrain = null;
      try {
        handlers.close?.({ code, reason: reason.toString("utf8"), removal: manager.removal });
      } catch (err) {
        deps.log.error(FactoryEvent.error, { userId, managerId: manager.id }, `the application's close handler failed: ${String(err)}`);
      }
      if (deps.leakOnClose) return; // the injected fault: the manager outlives its socket
      manager.markClosed();
      deps.registry.remove(manager);
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

function rawToBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return data;
}

/** The head of an upgrade with the bytes that arrived while it was held. */
function withEarly(head: Buffer, early: Buffer[]): Buffer {
  return early.length === 0 ? head : Buffer.concat([head, ...early]);
}

/** Subprotocols a client offered, without the token carrier. */
function offeredProtocols(req: IncomingMessage): string[] {
  const header = req.headers["sec-websocket-protocol"];
  if (header === undefined) return [];
  return header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "" && !p.startsWith(TOKEN_SUBPROTOCOL_PREFIX));
}

/** A close reason cut to the 123 bytes a close frame carries (at a character boundary). */
export function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let cut = reason.slice(0, 123);
  while (Buffer.byteLength(cut) > 123) cut = cut.slice(0, -1);
  return cut;
}
