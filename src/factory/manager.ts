/**
 * A manager: the factory's record of one accepted chat connection.
 *
 * It keeps separate notions of activity on purpose (ADR 1, ADR 21):
 * - `lastReceivedAt` — when the client last sent us anything (any frame or a
 *   pong): it writes. The `conservative` idle cutoff reads it.
 * - `awaitingPong` — cleared by a pong only: a pong proves the client also
 *   READS. A client whose reading side is dead can keep writing keepalives.
 * - `lastUsedAt` — the last chat message (`countsAsUse` in
 *   src/contract/client.ts): the tab is in use. Keepalives, invalid JSON and
 *   binary frames are not use. `force` evicts the least recently used first.
 * - `lastActivityAt` — the original factory's notion, also bumped by the
 *   server's own sends (even failed ones) and by reading stats. Only the legacy
 *   cleanup reads it; it is how `--cleanup legacy` reproduces the outage.
 *
 * It also applies backpressure to its client (ADR 21): above the high-water
 * mark of bytes waiting to be sent it stops reading from the client until the
 * socket drains, and reports a client that stays above it too long, or goes
 * over the hard cap, through `onSlowReader`.
 */
import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import { WebSocket } from "ws";
import type { Clock } from "../contract/clock.js";
import type { ManagerInfo, SocketState } from "../contract/control.js";
import type { RemovalReason } from "../contract/events.js";
import { RttEstimator, type RttTail } from "./rtt.js";

/** What a connection with no round trip yet reports: never written to. */
const NO_HISTORY = new RttEstimator();


const SOCKET_STATES: readonly SocketState[] = ["CONNECTING", "OPEN", "CLOSING", "CLOSED"];

export class Manager {
  readonly createdAt: number;
  /** Last time anything arrived from the client (a message or a pong): liveness. Null until something does. */
  lastReceivedAt: number | null = null;
  /** Last time the client sent a message of any kind (not a pong). */
  lastMessageAt: number | null = null;
  /** Last time the client sent a chat message: use. `force` evicts the least recently used first. */
  lastUsedAt: number | null = null;
  /** The original factory's "last activity": bumped by receives, sends and stats reads. */
  lastActivityAt: number;
  /** The original factory's "active" flag: cleared on socket error or close. */
  active = true;
  messagesReceived = 0;
  messagesSent = 0;
  sendFailures = 0;
  /** Heartbeat: a ping went out and no pong has come back since. */
  awaitingPong = false;
  /** Set once the registry has let go of this manager. */
  removed = false;
  /** Round trips this client has shown (ping → its pong), from the first pong on: the probe's per-connection wait (ADR 28). */
  private estimator: RttEstimator | null = null;
  /** The last ping's sequence number and when it went out (clock ms); a pong to an older one gives no round trip. */
  private pingSeq = 0;
  private pingSentAt = -1;

  /** Why the factory took this manager away (set by the evictor before it closes the socket); null: the client closed. */
  removal: RemovalReason | null = null;

  /** Reading from the client is paused: its send buffer is above the high-water mark. */
  paused = false;
  /** The application asked to stop reading from the client (its own backpressure, e.g. a proxy's upstream is full). */
  private appPaused = false;
  /** Called when the send buffer has drained after `send` returned false (`Session.send`'s contract). */
  onDrain: (() => void) | null = null;
  private slowTimer: NodeJS.Timeout | null = null;

  /**
   * @param raw the TCP socket under `socket` (its `bytesWritten` shows whether the client reads)
   * @param backpressure the send-buffer bounds; none (tests of other parts) means no backpressure
   */
  constructor(
    readonly userId: string,
    readonly socket: WebSocket,
    private readonly clock: Clock,
    readonly raw: Socket | null = null,
    private readonly backpressure: Backpressure | null = null,
    /** Chosen before the handshake when the application needs it early (a proxy names it to its upstream). */
    readonly id: string = randomUUID(),
  ) {
    this.createdAt = clock.now();
    this.lastActivityAt = this.createdAt;
    if (raw !== null && backpressure !== null) raw.on("drain", () => this.drained());
  }

  /** The round trips so far (an empty estimator, which gives the ceiling, before the first pong). */
  get rtt(): RttEstimator {
    return this.estimator ?? NO_HISTORY;
  }

  /**
   * Sends a ping carrying a sequence number, so that its pong gives a round
   * trip. Throws when the socket is not open (as `ws` does).
   */
  ping(): void {
    const seq = (this.pingSeq + 1) >>> 0;
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(seq);
    this.socket.ping(payload);
    this.pingSeq = seq;
    this.pingSentAt = this.clock.now();
  }

  /**
   * Records a pong: the client is alive and reads. A pong to one of our
   * pings also gives a round trip, recorded in `tail` too (the factory's,
   * ADR 38) once the connection has history.
   */
  markPong(data?: Buffer, tail?: RttTail): void {
    const now = this.clock.now();
    this.lastReceivedAt = now;
    this.lastActivityAt = now;
    this.awaitingPong = false;
    // Only the answer to the last ping, once: not a pong we did not ask for, nor one to an older ping.
    if (data === undefined || data.length !== 4 || this.pingSentAt < 0 || data.readUInt32BE(0) !== this.pingSeq) return;
    (this.estimator ??= new RttEstimator()).add(now - this.pingSentAt, tail);
    this.pingSentAt = -1;
  }

  /**
   * Records a message from the client: it writes (which is not proof that it
   * reads: `awaitingPong` stays). `use` says whether the message is use of the
   * tab (a chat message), which `force` orders by.
   */
  markMessage(use: boolean): void {
    const now = this.clock.now();
    this.lastReceivedAt = now;
    this.lastActivityAt = now;
    this.lastMessageAt = now;
    if (use) this.lastUsedAt = now;
    this.messagesReceived++;
  }

  /** Records use of the tab (an application says a message was chat, not a keepalive). */
  markUse(): void {
    this.lastUsedAt = this.clock.now();
  }

  /** Records that the socket closed (the original's close handler). */
  markClosed(): void {
    this.active = false;
    this.clearSlowTimer();
  }

  /**
   * Sends a text frame (a binary one with `binary`). Returns false when the
   * socket is not open. Like the original, a send — even a failed one — bumps
   * `lastActivityAt`.
   */
  send(data: string | Buffer, binary = false): boolean {
    this.lastActivityAt = this.clock.now();
    if (this.socket.readyState !== WebSocket.OPEN) {
      this.sendFailures++;
      return false;
    }
    this.socket.send(data, { binary }, (err) => {
      if (err) this.sendFailures++;
    });
    this.messagesSent++;
    this.checkBuffer();
    return true;
  }

  /** Bytes waiting to be sent to the client (in `ws` and in the socket). */
  get bufferedBytes(): number {
    return this.socket.bufferedAmount;
  }

  /**
   * Bytes of whole writes the kernel has taken from the TCP socket so far.
   * (`net.Socket.bytesWritten` alone also counts what is still buffered.)
   * Alone it misses a client reading through one large write: see `sendProgress`.
   */
  get bytesSent(): number {
    return this.raw === null ? 0 : this.raw.bytesWritten - this.raw.writableLength;
  }

  /**
   * Where the backlog to the client stands now: what waits (`buffered`),
   * the bytes of whole writes the kernel has taken (`completed`), and what
   * the write under way still holds back from the kernel (`queued`, libuv's
   * write queue). Node hands all that waits behind a write under way to the
   * kernel as one batched write, which may be tens of MiB and complete only
   * when the client has read nearly all of it; while it is under way, the
   * client's reads show only as `queued` shrinking. (Node's own socket
   * timeout watches the same queue to tell a slow write from an idle socket.)
   */
  sendProgress(): SendProgress {
    return { buffered: this.bufferedBytes, completed: this.bytesSent, queued: writeQueueSize(this.raw) };
  }

  /**
   * Did the client read some of a backlog that was waiting at `since`? The
   * kernel took bytes: a write completed, or the write under way gave the
   * kernel more of itself (while no write completes, no new one starts, so
   * its queue only shrinks). Then the client is alive, pong or not.
   */
  drainedSince(since: SendProgress): boolean {
    if (since.buffered <= 0) return false;
    const completed = this.bytesSent;
    return completed > since.completed || (completed === since.completed && writeQueueSize(this.raw) < since.queued);
  }

  private mark: SendProgress | null = null;

  /** Remembers where the backlog stood (at a heartbeat ping). */
  markProgress(): void {
    this.mark = this.sendProgress();
  }

  /** Did the client read some of a backlog that was waiting at `markProgress`? Then it is alive, pong or not. */
  drainedSinceMark(): boolean {
    return this.mark !== null && this.drainedSince(this.mark);
  }

  /** Applies the send-buffer bounds after a send. */
  private checkBuffer(): void {
    const bp = this.backpressure;
    if (bp === null) return;
    const buffered = this.socket.bufferedAmount;
    if (buffered > bp.maxBufferedBytes) {
      this.clearSlowTimer();
      bp.onSlowReader(this, "over_max");
      return;
    }
    if (buffered > bp.highWaterBytes && !this.paused) {
      // Stop reading: a client that does not read our replies gets no more of them until it does.
      this.paused = true;
      this.socket.pause();
      this.slowTimer = setTimeout(() => {
        this.slowTimer = null;
        if (this.paused && !this.removed) bp.onSlowReader(this, "stalled");
      }, bp.slowReaderTimeoutMs);
      this.slowTimer.unref();
    }
  }

  /** The socket wrote out everything it held: read from the client again (unless the application holds it), tell the application. */
  private drained(): void {
    if (!this.paused) return;
    this.paused = false;
    this.clearSlowTimer();
    if (this.socket.readyState === WebSocket.OPEN && !this.appPaused) this.socket.resume();
    this.onDrain?.();
  }

  /** The application stops reading from the client (its own backpressure); the send-buffer pause is separate. */
  pauseReading(): void {
    if (this.appPaused) return;
    this.appPaused = true;
    if (this.socket.readyState === WebSocket.OPEN) this.socket.pause();
  }

  /** The application reads from the client again; still paused while the send buffer is above the high-water mark. */
  resumeReading(): void {
    if (!this.appPaused) return;
    this.appPaused = false;
    if (this.socket.readyState === WebSocket.OPEN && !this.paused) this.socket.resume();
  }

  /**
   * The application holds this client back (a proxy whose upstream does not
   * read): its pongs wait unread behind its own frames, so a missing pong
   * says nothing about it. The heartbeat and the probe do not call it a
   * zombie for that (ADR 26).
   */
  get heldByApp(): boolean {
    return this.appPaused;
  }

  /** Reading from the client is paused, for either reason. */
  get readingPaused(): boolean {
    return this.paused || this.appPaused;
  }

  private clearSlowTimer(): void {
    if (this.slowTimer !== null) clearTimeout(this.slowTimer);
    this.slowTimer = null;
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
      lastUsedAt: iso(this.lastUsedAt),
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

/** Why a client is closed for not reading: over the hard cap, or above the high-water mark too long. */
/** A connection's backlog at one moment (`Manager.sendProgress`). */
export interface SendProgress {
  readonly buffered: number;
  readonly completed: number;
  readonly queued: number;
}

/**
 * Bytes a TCP socket's write under way has not yet handed to the kernel:
 * libuv's write queue, which Node exposes on the socket's handle (its
 * `writeQueueSize`, live as the kernel takes bytes) and reads itself in
 * `net.Socket`'s timeout. 0 without a socket or a handle.
 */
function writeQueueSize(raw: Socket | null): number {
  const handle = (raw as { _handle?: { writeQueueSize?: unknown } | null } | null)?._handle;
  const size = handle?.writeQueueSize;
  return typeof size === "number" ? size : 0;
}

export type SlowReader = "over_max" | "stalled";

/** The send-buffer bounds of one connection (ADR 21), from the factory config. */
export interface Backpressure {
  /** Above this many buffered bytes, stop reading from the client until the socket drains. */
  highWaterBytes: number;
  /** Above this many, the client is closed at once. */
  maxBufferedBytes: number;
  /** A client paused this long without draining is closed. */
  slowReaderTimeoutMs: number;
  /** Closes the client (the factory's evictor, with close 1008). */
  onSlowReader(manager: Manager, why: SlowReader): void;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
