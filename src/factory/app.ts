/**
 * What an application plugs into the factory (ADR 26). The factory owns the
 * connection's life: authentication, admission and limits, the ladder,
 * activity accounting, heartbeats, backpressure towards the client, the
 * control API and metrics. The application owns what the messages mean.
 *
 * - A Node chat backend hands `startFactory` a `ConnectHandler`: it gets a
 *   `Session` per admitted connection and returns what to do with its
 *   messages (examples/chat-room shows one).
 * - The proxy (src/factory/proxy.ts) is a `ChatApp` with an `open` step: it
 *   dials the upstream after admission and before the client's handshake
 *   completes, so an upstream that refuses can still refuse the client.
 * - The demo's echo (src/factory/echo.ts) is the default.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { RemovalReason } from "../contract/events.js";

/** One admitted client connection, as the application sees it. */
export interface Session {
  /** The verified user (the token's subject): never anything the client typed. */
  readonly userId: string;
  /** The manager's id, as the control API, logs and metrics name it. */
  readonly managerId: string;
  /** How it got its slot: `admitted`, `after_cleanup`, `degraded` (over a temporarily raised limit) or `queued`. */
  readonly admission: "admitted" | "after_cleanup" | "degraded" | "queued";
  /** Set when the user is under a resource constraint (degraded or queued): the client may want to know. */
  readonly notice: { mode: "degraded" | "queued"; retryAfterMs: number } | null;
  /** The subprotocol the handshake selected ("" for none). */
  readonly protocol: string;
  /** The user's effective limit and managers now. */
  readonly limit: number;
  readonly active: number;
  /**
   * Sends a text frame (binary with `binary`). Returns false when it was not
   * sent (the connection is not open) or when the client's send buffer is now
   * above the high-water mark: then wait for the handler's `drain` before
   * sending more, as with a Node stream. A client that does not read for
   * `slowReaderTimeoutMs`, or lets `sendMaxBufferedBytes` pile up, is closed
   * with 1008 by the factory.
   */
  send(data: string | Buffer, binary?: boolean): boolean;
  /** Says the last message was use of the tab (chat), not a keepalive: `force` evicts the least recently used tab first. */
  markUse(): void;
  /** Stops reading from the client (TCP pushes back on it) until `resumeReading`. */
  pauseReading(): void;
  resumeReading(): void;
  /** Closes with `code` and `reason` (none: no status code); the socket is destroyed if the client does not finish closing within the close grace. */
  close(code?: number, reason?: string): void;
}

/** Why and how a connection ended. */
export interface SessionEnd {
  /** The close code the connection ended with (1005: none was sent; 1006: it was dropped). */
  code: number;
  reason: string;
  /** Set when the factory took the connection away (`evicted`, `no_pong`, `slow_reader`, ...); null when the client closed or the server shut down. */
  removal: RemovalReason | null;
}

/** What the application does with one session's events. All optional. */
export interface SessionHandlers {
  /** A data frame from the client. The factory has counted it as received, not as use: call `session.markUse()` for chat. */
  message?(data: Buffer, isBinary: boolean): void;
  /** The client's send buffer drained after `send` returned false. */
  drain?(): void;
  /** The connection ended (once). */
  close?(end: SessionEnd): void;
}

/** The simple form: called once per admitted connection. */
export type ConnectHandler = (session: Session) => SessionHandlers;

/** An upgrade that was admitted, before its handshake completes. */
export interface UpgradeInfo {
  readonly userId: string;
  readonly managerId: string;
  readonly admission: Session["admission"];
  /** The request's path and query, without a `token` parameter. */
  readonly target: string;
  /** Subprotocols the client offered, without the token carrier. */
  readonly protocols: readonly string[];
  /** The request's headers. `authorization` and `sec-websocket-protocol` can carry the token: forward them only on purpose. */
  readonly headers: IncomingHttpHeaders;
  /** The token the client presented (already verified). */
  readonly token: string;
  readonly remoteAddress: string | undefined;
}

/** The outcome of `ChatApp.open`. */
export type Opening =
  | {
      accept: true;
      /** The subprotocol to answer with (one the client offered); false: none; undefined: the factory's own choice. */
      protocol?: string | false | undefined;
      connect: ConnectHandler;
    }
  | {
      accept: false;
      /** HTTP status for a client that can read one (502, 503, 504, ...). */
      status: number;
      /** A browser (it sent `Origin`) gets the upgrade and this close code instead (1014 Bad Gateway, 1013 Try Again Later, ...). */
      closeCode: number;
      code: string;
      message: string;
      /** Seconds, sent as `Retry-After`. */
      retryAfterSeconds?: number | undefined;
    };

/** The general form: an `open` step between admission and the handshake. */
export interface ChatApp {
  /**
   * Runs after admission, while the user's slot is reserved; `signal` aborts
   * when the client leaves or the factory shuts down. Must settle: the
   * factory does not time it out (give your own deadline). A throw refuses
   * the client with 500.
   */
  open(upgrade: UpgradeInfo, signal: AbortSignal): Opening | Promise<Opening>;
}
