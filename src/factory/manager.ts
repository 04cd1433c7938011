/**
 * A manager: the factory's record of one accepted chat connection.
 *
 * It keeps two notions of activity on purpose:
 * - `lastReceivedAt` — when the client last sent us anything (data or pong).
 *   This is the truth the ladder uses: a server that keeps writing to a socket
 *   that never answers is looking at a zombie.
 * - `lastActivityAt` — the original factory's notion, also bumped by the
 *   server's own sends (even failed ones) and by reading stats. Only the legacy
 *   cleanup reads it; it is how `--cleanup legacy` reproduces the outage.
 */
import { randomUUID } from "node:crypto";
import { WebSocket } from "ws";
import type { Clock } from "../contract/clock.js";
import type { ManagerInfo, SocketState } from "../contract/control.js";

const SOCKET_STATES: readonly SocketState[] = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];

export class Manager {
  readonly id: string = randomUUID();
  readonly createdAt: number;
  /** Last time anything arrived from the client (a message or a pong): liveness. Null until something does. */
  lastReceivedAt: number | null = null;
  /** Last time the client sent a message (not a pong): use. `force` evicts the least recently used first. */
  lastMessageAt: number | null = null;
  /** The original factory's "last activity": bumped by receives, sends and stats reads. */
  lastActivityAt: number;
  /** The original factory's "active" flag: cleared on socket error or close. */
  active = true;
  /** The original factory's connection count (0 or 1 here) and since when it is 0. */
  connections = 1;
  connectionlessSince: number | null = null;
  messagesReceived = 0;
  messagesSent = 0;
  sendFailures = 0;
  /** Heartbeat: a ping went out and no pong has come back since. */
  awaitingPong = false;
  /** Set once the registry has let go of this manager. */
  removed = false;

  constructor(
    readonly userId: string,
    readonly socket: WebSocket,
    private readonly clock: Clock,
  ) {
    this.createdAt = clock.now();
    this.lastActivityAt = this.createdAt;
  }

  /** Records a pong: the client is alive. */
  markPong(): void {
    const now = this.clock.now();
    this.lastReceivedAt = now;
    this.lastActivityAt = now;
    this.awaitingPong = false;
  }

  /** Records a message from the client: it is alive and in use. */
  markMessage(): void {
    this.markPong();
    this.lastMessageAt = this.lastReceivedAt;
    this.messagesReceived++;
  }

  /** Records that the socket closed (the original's close handler). */
  markClosed(): void {
    this.active = false;
    this.connections = 0;
    this.connectionlessSince = this.clock.now();
  }

  /**
   * Sends a text frame. Returns false when the socket is not open. Like the
   * original, a send — even a failed one — bumps `lastActivityAt`.
   */
  send(data: string): boolean {
    this.lastActivityAt = this.clock.now();
    if (this.socket.readyState !== WebSocket.OPEN) {
      this.sendFailures++;
      return false;
    }
    this.socket.send(data, (err) => {
      if (err) this.sendFailures++;
    });
    this.messagesSent++;
    return true;
  }

  /** The socket's state as `ws` names it. */
  get socketState(): SocketState {
    return SOCKET_STATES[this.socket.readyState] ?? "CLOSED";
  }

  /** Whether the socket is OPEN. */
  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  /** What the control API shows. Reading it changes nothing. */
  snapshot(): ManagerInfo {
    return {
      id: this.id,
      createdAt: new Date(this.createdAt).toISOString(),
      lastReceivedAt: iso(this.lastReceivedAt),
      lastMessageAt: iso(this.lastMessageAt),
      socketState: this.socketState,
      bufferedBytes: this.socket.bufferedAmount,
      messagesReceived: this.messagesReceived,
      messagesSent: this.messagesSent,
      sendFailures: this.sendFailures,
    };
  }

  /**
   * The original factory's stats read: it refreshed `lastActivity` as a side
   * effect, which is one of the reasons zombies looked active. Legacy only.
   */
  legacyStats(): ManagerInfo {
    this.lastActivityAt = this.clock.now();
    return this.snapshot();
  }
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
