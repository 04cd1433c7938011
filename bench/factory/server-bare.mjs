// The baseline: a bare `ws` server that accepts every upgrade on /ws and does
// nothing else. Run with --expose-gc. Its heartbeat (the pattern from ws's
// README: an isAlive flag, terminate or ping) is attached only when the sweep
// or hold phase starts, so it costs nothing in the memory reading; in the hold
// phase it runs on the README's `setInterval`.
import { WebSocketServer } from "ws";
import { measureMemory, ready, serve, timeHold, timeSweeps } from "./child.mjs";

const noop = () => {};
function heartbeatPong() {
  this.isAlive = true;
}

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/ws", perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("error", noop);
});
wss.on("error", (err) => {
  console.error(`bare server: ${err.message}`);
  process.exit(1);
});

let heartbeatAttached = false;
function attachHeartbeat() {
  if (heartbeatAttached) return;
  heartbeatAttached = true;
  for (const ws of wss.clients) {
    ws.isAlive = true;
    ws.on("pong", heartbeatPong);
  }
}

function sweep() {
  let terminated = 0;
  for (const ws of wss.clients) {
    if (ws.isAlive === false) {
      ws.terminate();
      terminated++;
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
  return terminated;
}

function pending() {
  let n = 0;
  for (const ws of wss.clients) if (ws.isAlive === false) n++;
  return n;
}

serve({
  memory: ({ settleMs }) => measureMemory(settleMs),
  cpu: () => process.cpuUsage(),
  stats: () => ({ connections: wss.clients.size }),
  sweep: (args) => {
    attachHeartbeat();
    return timeSweeps(args, sweep, pending, () => wss.clients.size);
  },
  hold: (args) => {
    attachHeartbeat();
    let tick = sweep;
    let interval = null;
    return timeHold(args, {
      instrument: (wrap) => {
        tick = () => wrap(sweep);
      },
      start: () => {
        interval = setInterval(() => tick(), args.intervalMs);
      },
      stop: () => clearInterval(interval),
      pending,
      connections: () => wss.clients.size,
    });
  },
  exit: () => setImmediate(() => process.exit(0)),
});

wss.on("listening", () => ready({ port: wss.address().port }));
