// The reference of the proxy benchmark's memory rounds: the smallest relay
// one can write with `ws` in Node, to the same upstream
// (RECLAIM_BENCH_UPSTREAM): for each client it accepts (any path, no
// authentication, no limits), one upstream connection, frames passed both
// ways as they are, a close on either side closing the other. It costs what
// two `ws` sockets in one process cost: the floor of any Node proxy built on
// `ws`, the factory's included. Run with --expose-gc.
import v8 from "node:v8";
import { WebSocket, WebSocketServer } from "ws";
import { measureMemory, ready, serve } from "../factory/child.mjs";

const upstreamUrl = process.env.RECLAIM_BENCH_UPSTREAM;
if (upstreamUrl === undefined) throw new Error("RECLAIM_BENCH_UPSTREAM is not set");
const noop = () => {};
let relayed = 0;

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
wss.on("connection", (client) => {
  const upstream = new WebSocket(upstreamUrl, { perMessageDeflate: false });
  client.on("error", noop);
  upstream.on("error", noop);
  let opened = false;
  upstream.once("open", () => {
    opened = true;
    relayed++;
  });
  client.on("message", (data, isBinary) => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
  });
  upstream.on("message", (data, isBinary) => client.send(data, { binary: isBinary }));
  client.on("close", () => upstream.close());
  upstream.on("close", () => {
    if (opened) relayed--;
    client.close();
  });
});
wss.on("error", (err) => {
  console.error(`relay: ${err.message}`);
  process.exit(1);
});

serve({
  /** V8's heap spaces (committed and used bytes of each). */
  heapSpaces: () => Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }])),
  memory: ({ settleMs }) => measureMemory(settleMs),
  stats: () => ({ connections: wss.clients.size, upstreamOpen: relayed }),
  exit: () => setImmediate(() => process.exit(0)),
});

wss.on("listening", () => ready({ port: wss.address().port }));
