/**
 * Real chat clients, well-behaved and not: the demo, the tests and the
 * benchmarks all use these to put the factory into the outage's state.
 *
 * - `live`: answers pings, reads everything.
 * - `no-pong`: never answers a ping (`autoPong: false`) but is otherwise
 *   connected — a tab frozen by the browser, a stuck proxy.
 * - `paused`: stops reading its socket after the handshake — a reader that
 *   hung; the server's pings sit unread in its buffer.
 */
import { WebSocket } from "ws";
import { ServerMessage } from "../contract/client.js";

export type ClientKind = "live" | "no-pong" | "paused";

/** How an attempt to connect ended when it did not upgrade. */
export interface Refusal {
  status: number;
  retryAfter: string | null;
  body: string;
}

/** A connected client. */
export class ChatClient {
  /** Every message the server sent, in order. */
  readonly received: ServerMessage[] = [];
  /** Resolves with the close code and reason once the connection ends. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: { match: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }[] = [];

  constructor(
    readonly ws: WebSocket,
    readonly kind: ClientKind,
  ) {
    this.closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on("message", (data: Buffer) => {
      const parsed = ServerMessage.safeParse(JSON.parse(data.toString("utf8")));
      if (!parsed.success) return;
      this.received.push(parsed.data);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(parsed.data)) return true;
        w.resolve(parsed.data);
        return false;
      });
    });
  }

  /** The next (or an already received) message of this type. */
  next<T extends ServerMessage["type"]>(type: T, timeoutMs = 5000): Promise<Extract<ServerMessage, { type: T }>> {
    const seen = this.received.find((m) => m.type === type);
    if (seen !== undefined) return Promise.resolve(seen as Extract<ServerMessage, { type: T }>);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${type} message within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match: (m) => m.type === type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Extract<ServerMessage, { type: T }>);
        },
      });
    });
  }

  /** Sends a chat message and waits for its reply. */
  async chat(text: string, timeoutMs = 5000): Promise<string> {
    const id = Math.random().toString(36).slice(2);
    const reply = new Promise<ServerMessage>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match: (m) => m.type === "reply" && m.id === id,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
    this.ws.send(JSON.stringify({ type: "chat", id, text }));
    const message = await reply;
    return message.type === "reply" ? message.text : "";
  }

  /** Closes the connection (a well-behaved tab closing). */
  close(): Promise<{ code: number; reason: string }> {
    this.ws.close(1000, "bye");
    return this.closed;
  }

  /** Drops the TCP connection without a close handshake. */
  destroy(): void {
    this.ws.terminate();
  }
}

/**
 * Opens one client of `kind`. Resolves with the client once the server's
 * welcome arrived, or with the refusal when the server answered the upgrade
 * with an HTTP error (401, 503 …).
 */
export function connect(url: string, token: string, kind: ClientKind = "live", timeoutMs = 10_000): Promise<ChatClient | Refusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${token}` },
      autoPong: kind !== "no-pong",
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
    });
    const client = new ChatClient(ws, kind);
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] ?? null, body });
        ws.terminate();
      });
    });
    ws.once("error", (err) => reject(err));
    ws.once("open", () => {
      client
        .next("welcome", timeoutMs)
        .then(() => {
          ws.removeAllListeners("error");
          ws.on("error", () => undefined);
          if (kind === "paused") (ws as unknown as { _socket: { pause(): void } })._socket.pause();
          resolve(client);
        })
        .catch(reject);
    });
  });
}

/** True when `connect` was refused. */
export function isRefusal(result: ChatClient | Refusal): result is Refusal {
  return !(result instanceof ChatClient);
}
