/**
 * A chat room on Reclaim's factory, as a Node backend would use it: the
 * application keeps its own HTTP server and routes, and hands the factory
 * what its messages mean. The factory owns authentication, the per-user
 * limit, the cleanup ladder, heartbeats, backpressure, the control API and
 * metrics.
 *
 *   RECLAIM_AUTH_SECRET=… RECLAIM_CONTROL_TOKEN=… node examples/chat-room/dist/server.js
 *
 * Clients connect to ws://HOST:PORT/chat with a token (an HS256 JWT whose
 * `sub` is the user id) and send `{"type":"say","text":"…"}`; everyone in
 * the room gets `{"type":"said","user":"…","text":"…"}`. `{"type":"ping"}`
 * is a keepalive: answered, but not use of the tab.
 */
import { createServer } from "node:http";
import { startFactory, type Session } from "reclaim";

const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? "127.0.0.1";

/** Everyone connected, by manager id. */
const room = new Map<string, Session>();

function broadcast(message: unknown): void {
  const text = JSON.stringify(message);
  for (const member of room.values()) member.send(text);
}

// The application's own server and routes: the factory only takes WebSocket upgrades to /chat.
const server = createServer((req, res) => {
  if (req.url === "/who") {
    const users = [...new Set([...room.values()].map((s) => s.userId))].sort();
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ users }));
    return;
  }
  res.writeHead(404, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ error: "not found" }));
});

const factory = await startFactory(
  {
    limit: Number(process.env.RECLAIM_LIMIT ?? 5),
    controlPort: Number(process.env.CONTROL_PORT ?? 8081),
    controlHost: "127.0.0.1",
    ...(process.env.RECLAIM_AUTH_SECRET === undefined ? {} : { authSecret: process.env.RECLAIM_AUTH_SECRET }),
    ...(process.env.RECLAIM_CONTROL_TOKEN === undefined ? {} : { controlToken: process.env.RECLAIM_CONTROL_TOKEN }),
  },
  {
    server,
    path: "/chat",
    app: (session) => {
      room.set(session.managerId, session);
      session.send(JSON.stringify({ type: "joined", user: session.userId, limit: session.limit, active: session.active }));
      return {
        message: (data, isBinary): void => {
          if (isBinary) return;
          let message: { type?: unknown; text?: unknown };
          try {
            message = JSON.parse(data.toString("utf8")) as { type?: unknown; text?: unknown };
          } catch {
            session.send(JSON.stringify({ type: "error", error: "messages are JSON" }));
            return;
          }
          if (message.type === "ping") {
            session.send(JSON.stringify({ type: "pong" }));
            return;
          }
          if (message.type === "say" && typeof message.text === "string") {
            session.markUse(); // chat is use of the tab: `force` evicts the least recently used one first
            broadcast({ type: "said", user: session.userId, text: message.text.slice(0, 2000) });
          }
        },
        close: ({ code, removal }): void => {
          room.delete(session.managerId);
          if (removal !== null) console.log(`${session.userId}'s tab ${session.managerId} was removed by the factory (${removal}, close ${code})`);
        },
      };
    },
  },
);

server.listen(port, host, () => {
  console.log(`chat-room listening on ${factory.wsUrl} (control ${factory.controlUrl})`);
});

const stop = (): void => {
  void factory.close().then(() => server.close(() => process.exit(0)));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
