// The adaptive benchmark's clients: every user's connections, in one process.
// All are `ws` clients with `autoPong: false` that answer each ping themselves,
// echoing its payload (the factory's sequence number), after a delay from
// ./delays.mjs. `silence` turns some into zombies: they stay connected (TCP
// open, still reading) but answer no ping any more, and pongs they had
// scheduled are dropped. A connection closed that was not silenced is a live
// client the factory took away: a false eviction.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { WebSocket } from "ws";
import { ready, serve } from "../factory/child.mjs";
import { delaySource } from "./delays.mjs";

/** userId → its connections still open (in opening order). */
const users = new Map();
let source = null;
let pending = 0;
let pongsSent = 0;
let latePongs = 0;
let pingsWhileSilenced = 0;
let liveClosed = 0;
let silencedClosed = 0;
const liveCloseCodes = new Map();
const answeredBeforeClose = [];
const delays = [];
const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();

function openOne(url, userId, authorization, handshakeTimeoutMs) {
  const conn = { ws: null, userId, medianMs: source.connectionMedian(), silenced: false, answered: 0, timers: new Set(), lastPingAt: 0, lastPongAt: 0 };
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { Authorization: authorization }, perMessageDeflate: false, handshakeTimeout: handshakeTimeoutMs, autoPong: false });
    conn.ws = ws;
    let opened = false;
    ws.on("open", () => {
      opened = true;
      users.get(userId).push(conn);
      resolve();
    });
    ws.on("ping", (data) => {
      conn.lastPingAt = performance.now();
      if (conn.silenced) {
        pingsWhileSilenced++;
        return;
      }
      const { ms, late } = source.pong(conn.medianMs);
      delays.push(ms);
      if (late) latePongs++;
      pending++;
      const timer = setTimeout(() => {
        conn.timers.delete(timer);
        pending--;
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.pong(data);
        conn.lastPongAt = performance.now();
        conn.answered++;
        pongsSent++;
      }, ms);
      conn.timers.add(timer);
    });
    ws.on("error", (err) => {
      if (!opened) reject(new Error(`a connection of ${userId} did not open: ${err.message}`));
    });
    ws.on("close", (code) => {
      dropTimers(conn);
      if (!opened) return reject(new Error(`a connection of ${userId} closed before it opened (${code})`));
      const list = users.get(userId);
      list.splice(list.indexOf(conn), 1);
      if (conn.silenced) silencedClosed++;
      else {
        liveClosed++;
        // It had answered the last ping (the probe's) before it saw the close: how long before.
        if (conn.lastPongAt > conn.lastPingAt) answeredBeforeClose.push(performance.now() - conn.lastPongAt);
        liveCloseCodes.set(code, (liveCloseCodes.get(code) ?? 0) + 1);
      }
    });
  });
}

function dropTimers(conn) {
  for (const timer of conn.timers) clearTimeout(timer);
  pending -= conn.timers.size;
  conn.timers.clear();
}

/** Sets up the delay source (once) and tops every user up to `perUser` open connections, `inFlight` handshakes at a time. */
async function open({ url, tokens, perUser, delay, inFlight = 50, handshakeTimeoutMs = 10_000 }) {
  source ??= delaySource(delay);
  const todo = [];
  for (const [userId, authorization] of Object.entries(tokens)) {
    if (!users.has(userId)) users.set(userId, []);
    for (let i = users.get(userId).length; i < perUser; i++) todo.push(() => openOne(url, userId, authorization, handshakeTimeoutMs));
  }
  const workers = Array.from({ length: Math.min(inFlight, todo.length) }, async () => {
    while (todo.length > 0) await todo.shift()();
  });
  await Promise.all(workers);
  return { opened: [...users.values()].reduce((n, list) => n + list.length, 0) };
}

/**
 * Turns `count` connections of each of `userIds` into zombies: those that have
 * answered the most pings (the oldest: zombies with history). Returns how
 * many pongs each had answered.
 */
function silence({ userIds, count }) {
  const history = [];
  for (const userId of userIds) {
    const candidates = users.get(userId).filter((c) => !c.silenced).sort((a, b) => b.answered - a.answered);
    for (const conn of candidates.slice(0, count)) {
      conn.silenced = true;
      dropTimers(conn);
      history.push(conn.answered);
    }
  }
  return { history };
}

/**
 * After a probe: waits (at most `timeoutMs`) until every zombie has been
 * closed by the factory; closes those it missed itself. Returns how many it missed.
 */
async function clearZombies({ timeoutMs }) {
  const zombies = () => [...users.values()].flat().filter((c) => c.silenced);
  const deadline = Date.now() + timeoutMs;
  while (zombies().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  const missed = zombies();
  for (const conn of missed) conn.ws.terminate();
  while (zombies().length > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  return { missed: missed.length };
}

/** Waits until no pong is scheduled (at most `timeoutMs`): every ping so far is answered. */
async function drain({ timeoutMs }) {
  const deadline = Date.now() + timeoutMs;
  while (pending > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  return { pending };
}

function quantile(sorted, q) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function stats() {
  const sorted = [...delays].sort((a, b) => a - b);
  return {
    open: [...users.values()].reduce((n, list) => n + list.length, 0),
    pending,
    pongsSent,
    latePongs,
    pingsWhileSilenced,
    liveClosed,
    silencedClosed,
    liveCloseCodes: Object.fromEntries(liveCloseCodes),
    answeredBeforeClose: [...answeredBeforeClose],
    loop: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
    delays: { count: sorted.length, mean: sorted.length === 0 ? 0 : sorted.reduce((a, b) => a + b, 0) / sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), p999: quantile(sorted, 0.999), max: sorted.at(-1) ?? 0 },
  };
}

serve({
  // How many live connections have closed so far (cheap: no sorting).
  closed: () => ({ liveClosed }),
  open,
  silence,
  clearZombies,
  drain,
  stats,
  exit: () => setImmediate(() => process.exit(0)),
});

ready();
