// The flooders: N signed-in WebSocket clients on 127.0.0.1 that, once
// welcomed, never read again (`ws.pause()` on the first message) and, on
// `start`, send chat messages as fast as TCP takes them until `stop`.
//
// "As fast as TCP takes them" with bounded memory on this side: each client
// keeps at most `inFlight` messages handed to `ws` and not yet written to the
// kernel (the send callback), and sends the next one as each is written. When
// the server stops reading, the kernel's buffers fill, the callbacks stop
// and so does the client: what it holds stays at `inFlight` messages.
import { WebSocket } from "ws";
import { ready, serve } from "../factory/child.mjs";

/** One entry per connection: its socket and what happened to it. */
const clients = [];
let flooding = false;
let floodStartedAt = 0;
let stoppedAfterMs = null;
let haltTimer = null;

/**
 * Opens one connection per `authorization` header value, all at once; each
 * pauses on its first message (the welcome). Resolves when every one is
 * welcomed or has failed, or at `timeoutMs`.
 */
function open({ url, authorization, handshakeTimeoutMs, timeoutMs }) {
  return new Promise((resolve) => {
    const errors = new Map();
    let settled = 0;
    let welcomed = 0;
    const finish = (timedOut) => {
      clearTimeout(timer);
      resolve({ attempted: authorization.length, welcomed, timedOut, errors: [...errors].map(([message, count]) => ({ message, count })).slice(0, 10) });
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    const settle = (ok, reason) => {
      if (ok) welcomed++;
      else errors.set(reason, (errors.get(reason) ?? 0) + 1);
      if (++settled === authorization.length) finish(false);
    };
    for (const header of authorization) {
      const ws = new WebSocket(url, { headers: { Authorization: header }, perMessageDeflate: false, handshakeTimeout: handshakeTimeoutMs });
      const client = { ws, welcomed: false, inFlight: 0, sent: 0, sentBytes: 0, sendErrors: 0, end: null };
      clients.push(client);
      ws.once("message", () => {
        // Never reads again: what the server sends from now on piles up in the kernel, then in the server.
        ws.pause();
        client.welcomed = true;
        settle(true);
      });
      ws.on("error", (err) => {
        if (!client.welcomed && client.end === null) settle(false, err.message);
        client.error ??= err.code ?? err.message;
      });
      ws.on("close", (code, reason) => {
        if (!client.welcomed && client.end === null && client.error === undefined) settle(false, `closed ${code} before the welcome`);
        client.end = { code, reason: reason.toString(), error: client.error ?? null, afterMs: floodStartedAt > 0 ? Date.now() - floodStartedAt : null };
      });
    }
  });
}

function pump(client, payload, inFlight) {
  client.scheduled = false;
  while (flooding && client.ws.readyState === WebSocket.OPEN && client.inFlight < inFlight) {
    client.inFlight++;
    client.ws.send(payload, { binary: false }, (err) => {
      client.inFlight--;
      if (err) client.sendErrors++;
      else {
        client.sent++;
        client.sentBytes += payload.length;
      }
      // Not at once: a write the kernel takes at once calls back on the next tick, and sending again from
      // there would never let the event loop turn (no timer, no IPC, no other client) while the server reads.
      if (!client.scheduled) {
        client.scheduled = true;
        setImmediate(pump, client, payload, inFlight);
      }
    });
  }
}

/** Ends the flood: no client sends another message. */
function halt() {
  if (!flooding) return;
  flooding = false;
  stoppedAfterMs = Date.now() - floodStartedAt;
  clearTimeout(haltTimer);
}

serve({
  open,
  /**
   * Every welcomed client sends `{"type":"chat","text":…}` of `textBytes`
   * ASCII characters for `durationMs` (its own timer), or until `stop`.
   */
  start: ({ textBytes, inFlight, durationMs }) => {
    const text = "x".repeat(textBytes);
    const payload = Buffer.from(JSON.stringify({ type: "chat", text }), "utf8");
    flooding = true;
    floodStartedAt = Date.now();
    haltTimer = setTimeout(halt, durationMs);
    for (const client of clients) if (client.welcomed) pump(client, payload, inFlight);
    return { startedAt: floodStartedAt, messageBytes: payload.length };
  },
  /** How many connections have ended so far. */
  ended: () => ({ ended: clients.filter((c) => c.end !== null).length }),
  /** Stops sending (if still sending); reports when it stopped, what each client sent and how it ended (null: still open). */
  stop: () => {
    halt();
    return {
      stoppedAfterMs,
      clients: clients.map((c) => ({ welcomed: c.welcomed, sent: c.sent, sentBytes: c.sentBytes, sendErrors: c.sendErrors, open: c.ws.readyState === WebSocket.OPEN, end: c.end })),
    };
  },
  // Returns nothing: the reply is sent over IPC, and an Immediate does not serialize.
  exit: () => {
    setImmediate(() => process.exit(0));
  },
});

ready();
