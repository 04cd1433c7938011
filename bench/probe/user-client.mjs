// The probed user's connections: `live` ones (default `ws` clients, which
// answer every ping at once) and `zombies` (`autoPong: false`: open sockets
// that never answer, as in the original outage). After a probe has evicted
// the zombies, `open` with only zombies brings the user back to 20.
import { WebSocket } from "ws";
import { ready, serve } from "../factory/child.mjs";

const live = new Set();
const zombies = new Set();
let liveClosed = 0;
let zombiesClosed = 0;
const liveCloseCodes = new Map();

function openOne(url, authorization, zombie, handshakeTimeoutMs) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: { Authorization: authorization },
      perMessageDeflate: false,
      handshakeTimeout: handshakeTimeoutMs,
      autoPong: !zombie,
    });
    let opened = false;
    ws.on("open", () => {
      opened = true;
      (zombie ? zombies : live).add(ws);
      resolve();
    });
    ws.on("error", (err) => {
      if (!opened) reject(new Error(`a ${zombie ? "zombie" : "live"} connection did not open: ${err.message}`));
    });
    ws.on("close", (code) => {
      if (!opened) return reject(new Error(`a ${zombie ? "zombie" : "live"} connection closed before it opened (${code})`));
      if (zombie) {
        zombies.delete(ws);
        zombiesClosed++;
      } else {
        live.delete(ws);
        liveClosed++;
        liveCloseCodes.set(code, (liveCloseCodes.get(code) ?? 0) + 1);
      }
    });
  });
}

/** Opens `live` live and `zombies` zombie connections, one at a time (they are few). */
async function open({ url, authorization, live: liveCount = 0, zombies: zombieCount = 0, handshakeTimeoutMs = 10_000 }) {
  for (let i = 0; i < liveCount; i++) await openOne(url, authorization, false, handshakeTimeoutMs);
  for (let i = 0; i < zombieCount; i++) await openOne(url, authorization, true, handshakeTimeoutMs);
  return stats();
}

function stats() {
  return { live: live.size, zombies: zombies.size, liveClosed, zombiesClosed, liveCloseCodes: Object.fromEntries(liveCloseCodes) };
}

serve({
  open,
  stats,
  exit: () => setImmediate(() => process.exit(0)),
});

ready();
