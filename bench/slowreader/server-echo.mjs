// The baseline: a bare `ws` echo server with no backpressure, doing what the
// factory does for a chat message and nothing more: a welcome on connect,
// then for each text message `JSON.parse` and a `reply` with "echo: " + text,
// sent whether or not the client reads. Same `ws` options as the factory's
// chat endpoint (no compression, 64 KiB largest message). Run with
// --expose-gc. The parent reads this process's RSS from /proc and kills it
// at its RSS cap: nothing here bounds what waits to be sent.
import { WebSocketServer } from "ws";
import { measureMemory, ready, serve } from "../factory/child.mjs";

const noop = () => {};
let received = 0;
let echoed = 0;

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/ws", perMessageDeflate: false, maxPayload: 64 * 1024 });
wss.on("connection", (ws) => {
  ws.on("error", noop);
  ws.send(JSON.stringify({ type: "welcome", managerId: "bare", limit: 0, active: 0 }));
  ws.on("message", (data, isBinary) => {
    received++;
    if (isBinary) return;
    let message;
    try {
      message = JSON.parse(data.toString("utf8"));
    } catch {
      return;
    }
    if (message?.type !== "chat" || typeof message.text !== "string") return;
    ws.send(JSON.stringify({ type: "reply", text: `echo: ${message.text}` }));
    echoed++;
  });
});
wss.on("error", (err) => {
  console.error(`bare echo server: ${err.message}`);
  process.exit(1);
});

/** Memory after two full collections: what is live. */
function liveMemory() {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage();
}

serve({
  memory: ({ settleMs }) => measureMemory(settleMs),
  /** Memory by kind right now, garbage included (no gc). */
  heap: () => process.memoryUsage(),
  stats: () => {
    let maxBuffered = 0;
    for (const ws of wss.clients) maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
    return { connections: wss.clients.size, received, echoed, maxBufferedNow: maxBuffered, live: liveMemory() };
  },
  exit: () => {
    setImmediate(() => process.exit(0));
  },
});

wss.on("listening", () => ready({ port: wss.address().port }));
