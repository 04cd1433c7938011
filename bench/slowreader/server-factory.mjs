// The factory under test, from the built package (dist/), with its default
// settings: backpressure (`sendHighWaterBytes`, `sendMaxBufferedBytes`,
// `slowReaderTimeoutMs`), heartbeat, close grace and largest message are all
// the factory's own defaults. Run with --expose-gc. The auth secret comes in
// RECLAIM_BENCH_AUTH_SECRET (the parent signs the clients' tokens); only
// RECLAIM_BENCH_SLOW_READER_TIMEOUT_MS, when set, overrides one setting
// (`slowReaderTimeoutMs`: the round that shows the flooders being closed).
//
// The log goes through the factory's real event log, into a stream that keeps
// only the lines that remove a connection (slow reader, heartbeat, eviction),
// with the time each was written. `track` starts watching the managers:
// when each was first paused (reading stopped), how often, and the most ever
// waiting to be sent to it.
import { Writable } from "node:stream";
import { startFactory } from "../../dist/factory/factory.js";
import { createEventLog } from "../../dist/factory/log.js";
import { measureMemory, ready, serve } from "../factory/child.mjs";

const authSecret = process.env.RECLAIM_BENCH_AUTH_SECRET;
if (authSecret === undefined) throw new Error("RECLAIM_BENCH_AUTH_SECRET is not set");
const slowReaderOverride = process.env.RECLAIM_BENCH_SLOW_READER_TIMEOUT_MS;

const REMOVALS = new Set(["factory.slow_reader", "factory.heartbeat_terminated", "factory.evicted", "factory.zombie"]);
/** managerId → what is watched of it (from `track` on). */
const tracked = new Map();
const removals = [];

const removalLog = new Writable({
  write(chunk, _encoding, callback) {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line === "") continue;
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      if (!REMOVALS.has(entry.event)) continue;
      const t = tracked.get(entry.managerId);
      // pino writes synchronously, inside the evictor's call and before it closes the socket: this is what waited at the decision.
      const bufferedBytes = t?.manager.bufferedBytes ?? null;
      removals.push({
        event: entry.event,
        reason: entry.reason ?? null,
        at: Date.now(),
        bufferedBytes,
        why: entry.event !== "factory.slow_reader" || bufferedBytes === null ? null : bufferedBytes > factory.config.sendMaxBufferedBytes ? "over_max" : "stalled",
        pausedAt: t?.pausedAt ?? null,
      });
    }
    callback();
  },
});

const factory = await startFactory(
  {
    dev: true,
    authSecret,
    port: 0,
    host: "127.0.0.1",
    controlPort: 0,
    logLevel: "info",
    ...(slowReaderOverride === undefined ? {} : { slowReaderTimeoutMs: Number(slowReaderOverride) }),
  },
  { log: createEventLog({ streams: [removalLog], level: "info" }), defaultMetrics: false },
);

let watcher = null;

/** Memory after two full collections: what is live. */
function liveMemory() {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage();
}
function watch() {
  for (const t of tracked.values()) {
    if (!t.manager.removed) t.maxBuffered = Math.max(t.maxBuffered, t.manager.bufferedBytes);
  }
}

serve({
  memory: ({ settleMs }) => measureMemory(settleMs),
  /**
   * Starts watching every manager the registry holds now: its socket's
   * `pause()` (called by the manager at the high-water mark) is wrapped to
   * note when and how often it was called, and every `everyMs` the most
   * waiting to be sent to it is read.
   */
  track: ({ everyMs }) => {
    for (const manager of factory.registry.allManagers()) {
      const t = { manager, pausedAt: null, pauses: 0, maxBuffered: 0 };
      tracked.set(manager.id, t);
      const ws = manager.socket;
      const pause = ws.pause.bind(ws);
      // An own property in front of the prototype's method: a timer's view of `paused` lags when the loop is busy.
      ws.pause = () => {
        t.pausedAt ??= Date.now();
        t.pauses++;
        pause();
      };
    }
    watcher = setInterval(watch, everyMs);
    return { tracked: tracked.size };
  },
  /** How many flooders have reached the high-water mark (paused, or closed unpaused), and how many were closed as slow readers. */
  progress: () => {
    watch();
    let reached = removals.filter((r) => r.pausedAt === null).length;
    for (const t of tracked.values()) if (t.pausedAt !== null) reached++;
    return { reached, closed: removals.filter((r) => r.event === "factory.slow_reader").length };
  },
  /** Memory by kind right now, garbage included (no gc). */
  heap: () => process.memoryUsage(),
  stats: () => {
    watch();
    const managers = [...tracked.values()];
    return {
      connections: factory.registry.size,
      pausedNow: managers.filter((t) => !t.manager.removed && t.manager.paused).length,
      everPaused: managers.filter((t) => t.pausedAt !== null).length,
      pausedAt: managers.map((t) => t.pausedAt),
      maxBufferedSeen: Math.max(0, ...managers.map((t) => t.maxBuffered)),
      received: managers.reduce((sum, t) => sum + t.manager.messagesReceived, 0),
      echoed: managers.reduce((sum, t) => sum + t.manager.messagesSent, 0),
      removals,
      // What of it is live, after the round.
      live: liveMemory(),
      pauses: managers.reduce((sum, t) => sum + t.pauses, 0),
    };
  },
  exit: () => {
    if (watcher !== null) clearInterval(watcher);
    setImmediate(() => process.exit(0));
  },
});

const c = factory.config;
ready({
  port: factory.port,
  config: {
    sendHighWaterBytes: c.sendHighWaterBytes,
    sendMaxBufferedBytes: c.sendMaxBufferedBytes,
    slowReaderTimeoutMs: c.slowReaderTimeoutMs,
    maxPayloadBytes: c.maxPayloadBytes,
    closeGraceMs: c.closeGraceMs,
    heartbeatIntervalMs: c.heartbeatIntervalMs,
  },
});
