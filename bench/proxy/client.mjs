// The speed client of the proxy benchmark: the round trip of one connection
// (one message at a time) and the message rate of many (a window of messages
// in flight on each), against whichever URL it is given, the upstream
// directly or the factory in front of it. Every echo is checked: same kind
// (text or binary), same bytes, in order; what does not come back within the
// deadline is counted as lost.
import { WebSocket } from "ws";
import { ready, serve } from "../factory/child.mjs";

/** Opens one connection; rejects on an error, a close before open, or `timeoutMs`. */
function openOne(url, authorization, timeoutMs) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { Authorization: authorization }, perMessageDeflate: false, handshakeTimeout: timeoutMs });
    const fail = (err) => {
      ws.off("open", onOpen);
      ws.off("close", onClose);
      ws.terminate();
      reject(err);
    };
    const onClose = (code) => fail(new Error(`closed before open (${code})`));
    const onOpen = () => {
      ws.off("error", fail);
      ws.off("close", onClose);
      ws.on("error", () => {}); // a close follows; the caller sees it
      resolve(ws);
    };
    ws.once("open", onOpen);
    ws.once("error", fail);
    ws.once("close", onClose);
  });
}

/** Closes every socket and waits for their close events (at most `timeoutMs`). Returns how many closed with another code than 1000/1005. */
async function closeAll(sockets, timeoutMs) {
  let odd = 0;
  const closed = sockets.map(
    (ws) =>
      new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once("close", (code) => {
          if (code !== 1000 && code !== 1005) odd++;
          resolve();
        });
        ws.close(1000);
      }),
  );
  let timer;
  const timedOut = await Promise.race([
    Promise.all(closed).then(() => false),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) for (const ws of sockets) ws.terminate();
  return { odd, timedOut };
}

/** Message `i` of a connection: its number, padded to `bytes` ASCII characters. */
const payload = (i, bytes) => String(i).padStart(bytes, "0");

/** A percentile of sorted numbers (nearest rank). */
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];

/**
 * One connection, one message at a time: `warmup` messages (alternately
 * text and binary: both kinds must come back as they went), then `count`
 * text messages of `bytes`, each timed from `send` to its echo.
 */
async function roundTrip({ url, authorization, warmup, count, bytes, timeoutMs, handshakeTimeoutMs }) {
  const ws = await openOne(url, authorization, handshakeTimeoutMs);
  const total = warmup + count;
  const latencies = new Float64Array(count);
  let i = 0;
  let mismatched = 0;
  let sentAt = 0n;
  let expected = "";
  let expectBinary = false;
  const result = await new Promise((resolve) => {
    const timer = setTimeout(() => finish(true), timeoutMs);
    const finish = (timedOut) => {
      clearTimeout(timer);
      ws.off("message", onMessage);
      resolve({ timedOut });
    };
    const sendNext = () => {
      expected = payload(i, bytes);
      expectBinary = i < warmup && i % 2 === 1;
      sentAt = process.hrtime.bigint();
      ws.send(expectBinary ? Buffer.from(expected) : expected, { binary: expectBinary });
    };
    const onMessage = (data, isBinary) => {
      const t = process.hrtime.bigint();
      if (isBinary !== expectBinary || data.toString("latin1") !== expected) mismatched++;
      if (i >= warmup) latencies[i - warmup] = Number(t - sentAt) / 1e6;
      i++;
      if (i === total) finish(false);
      else sendNext();
    };
    ws.on("message", onMessage);
    ws.once("close", () => {
      if (i < total) finish(true);
    });
    sendNext();
  });
  const closed = await closeAll([ws], 5000);
  const done = Math.max(0, i - warmup);
  const sorted = Array.from(latencies.subarray(0, done)).sort((a, b) => a - b);
  return {
    count,
    done,
    lost: total - i,
    mismatched,
    timedOut: result.timedOut,
    p50: done > 0 ? pct(sorted, 50) : null,
    p99: done > 0 ? pct(sorted, 99) : null,
    mean: done > 0 ? sorted.reduce((a, b) => a + b, 0) / done : null,
    max: done > 0 ? sorted[done - 1] : null,
    oddCloses: closed.odd,
  };
}

/**
 * `authorization.length` connections, each keeping `window` text messages
 * of `bytes` in flight (the next sent as each echo comes back) for
 * `durationMs`; then no new ones, and every message still out must come back
 * within `drainTimeoutMs`. The rate counts the echoes that came back within
 * the window.
 */
async function throughput({ url, authorization, window, durationMs, bytes, drainTimeoutMs, handshakeTimeoutMs }) {
  const sockets = await Promise.all(authorization.map((a) => openOne(url, a, handshakeTimeoutMs)));
  let sent = 0;
  let received = 0;
  let inWindow = 0;
  let mismatched = 0;
  let sending = true;
  let closedEarly = 0;
  let onAllBack = null;
  const conns = sockets.map((ws) => ({ ws, next: 0, expect: 0 }));
  const start = () => {
    for (const c of conns) {
      c.ws.on("close", () => {
        if (sending || sent !== received) closedEarly++;
      });
      c.ws.on("message", (data, isBinary) => {
        received++;
        if (sending) inWindow++;
        if (isBinary || data.toString("latin1") !== payload(c.expect, bytes)) mismatched++;
        c.expect++;
        if (sending) {
          c.ws.send(payload(c.next++, bytes));
          sent++;
        } else if (received === sent) onAllBack?.();
      });
      for (let k = 0; k < window; k++) {
        c.ws.send(payload(c.next++, bytes));
        sent++;
      }
    }
  };
  const t0 = process.hrtime.bigint();
  start();
  await new Promise((resolve) => setTimeout(resolve, durationMs));
  sending = false;
  const windowMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const drained = await new Promise((resolve) => {
    if (received === sent) return resolve(true);
    const timer = setTimeout(() => resolve(false), drainTimeoutMs);
    onAllBack = () => {
      clearTimeout(timer);
      resolve(true);
    };
  });
  const closed = await closeAll(sockets, 5000);
  return {
    connections: sockets.length,
    sent,
    received,
    lost: sent - received,
    mismatched,
    drained,
    closedEarly,
    windowMs,
    perSecond: inWindow / (windowMs / 1000),
    oddCloses: closed.odd,
  };
}

serve({
  roundTrip,
  throughput,
  exit: () => setImmediate(() => process.exit(0)),
});

ready();
