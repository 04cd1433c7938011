// The upstream of the proxy benchmark: a bare `ws` echo server, the backend
// a team would put behind `reclaim factory --upstream`. Every message goes
// back as it came, text as text and binary as binary; no compression, any
// path. Run with --expose-gc (the memory readings need it).
import { WebSocketServer } from "ws";
import v8 from "node:v8";
import { measureMemory, ready, serve } from "../factory/child.mjs";

const noop = () => {};
let received = 0;

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("error", noop);
  ws.on("message", (data, isBinary) => {
    received++;
    ws.send(data, { binary: isBinary });
  });
});
wss.on("error", (err) => {
  console.error(`upstream echo server: ${err.message}`);
  process.exit(1);
});

serve({
  /** V8's heap spaces (committed and used bytes of each). */
  heapSpaces: () => Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }])),
  memory: ({ settleMs }) => measureMemory(settleMs),
  stats: () => ({ connections: wss.clients.size, received }),
  exit: () => setImmediate(() => process.exit(0)),
});

wss.on("listening", () => ready({ port: wss.address().port }));
