// The load client: opens N idle WebSocket connections to one server with at
// most `inFlight` handshakes at a time, times it, then holds them open
// (default `ws` clients: they answer pings by themselves) until the parent
// ends the process.
import { WebSocket } from "ws";
import { ready, serve } from "./child.mjs";

const sockets = [];
let pingsReceived = 0;
let closedAfterOpen = 0;
const closeCodes = new Map();

function onPing() {
  pingsReceived++;
}

/**
 * Opens one connection per entry of `authorization` (the header value to
 * send). Resolves when every attempt has opened or failed, or at `timeoutMs`
 * (attempts still pending then count as failed).
 */
function open({ url, authorization, inFlight, timeoutMs, handshakeTimeoutMs }) {
  const total = authorization.length;
  return new Promise((resolve) => {
    let next = 0;
    let active = 0;
    let opened = 0;
    let failed = 0;
    let done = false;
    const errors = new Map();
    const started = process.hrtime.bigint();
    let lastOpenAt = started;

    const finish = (timedOut) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const ms = Number(lastOpenAt - started) / 1e6;
      resolve({
        attempted: next,
        opened,
        failed: total - opened,
        timedOut,
        ms,
        errors: [...errors].map(([message, count]) => ({ message, count })).slice(0, 10),
      });
    };
    const timer = setTimeout(() => finish(true), timeoutMs);

    const launch = () => {
      while (!done && active < inFlight && next < total) {
        const i = next++;
        active++;
        let settled = false;
        let wasOpen = false;
        const ws = new WebSocket(url, {
          headers: { Authorization: authorization[i] },
          perMessageDeflate: false,
          handshakeTimeout: handshakeTimeoutMs,
        });
        const settle = (ok, reason) => {
          if (settled) return;
          settled = true;
          active--;
          if (ok) {
            opened++;
            lastOpenAt = process.hrtime.bigint();
          } else {
            failed++;
            errors.set(reason, (errors.get(reason) ?? 0) + 1);
          }
          if (opened + failed === total) finish(false);
          else launch();
        };
        ws.on("open", () => {
          wasOpen = true;
          sockets.push(ws);
          settle(true);
        });
        ws.on("error", (err) => settle(false, err.message));
        ws.on("ping", onPing);
        ws.on("close", (code) => {
          if (!wasOpen) return settle(false, `closed before open (${code})`);
          closedAfterOpen++;
          closeCodes.set(code, (closeCodes.get(code) ?? 0) + 1);
        });
      }
    };
    launch();
  });
}

serve({
  open,
  stats: () => ({
    open: sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length,
    closedAfterOpen,
    closeCodes: Object.fromEntries(closeCodes),
    pingsReceived,
  }),
  exit: () => setImmediate(() => process.exit(0)),
});

ready();
