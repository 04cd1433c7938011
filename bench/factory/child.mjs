// Helpers shared by the benchmark's child processes (the two servers and the
// load client): a tiny request/response protocol over the IPC channel, and a
// clean memory reading.
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Answers the parent's `{ id, cmd, ...args }` messages with
 * `{ id, ok, result }` or `{ id, ok: false, error }`. Exits when the parent
 * goes away, so a crashed run leaves no process behind.
 */
export function serve(handlers) {
  process.on("disconnect", () => process.exit(0));
  process.on("message", (msg) => {
    if (msg === null || typeof msg !== "object" || typeof msg.cmd !== "string") return;
    const handler = handlers[msg.cmd];
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown command ${msg.cmd}`);
        return handler(msg);
      })
      .then(
        (result) => process.send?.({ id: msg.id, ok: true, result }),
        (err) => process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      );
  });
}

/** Tells the parent the child is up (with whatever it needs to know, e.g. the port). */
export function ready(info = {}) {
  process.send?.({ ready: true, ...info });
}

/**
 * Lets the process settle, runs two full GCs and reads memory. Needs
 * `--expose-gc`: without it the reading would include garbage.
 */
export async function measureMemory(settleMs) {
  const gc = globalThis.gc;
  if (typeof gc !== "function") throw new Error("run this child with --expose-gc");
  await sleep(settleMs);
  gc();
  await sleep(100);
  gc();
  await sleep(50);
  const m = process.memoryUsage();
  return { rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

/**
 * Runs `count` heartbeat sweeps. Before each one it waits until every pong of
 * the previous sweep is back (`pending()` reaches 0, at most `pongTimeoutMs`),
 * then `gapMs` more, so a sweep measures only itself and terminates nobody who
 * is alive. Returns the CPU (user + system) and wall time of each sweep.
 */
export async function timeSweeps({ count, gapMs, pongTimeoutMs }, sweep, pending, connections) {
  const cpuUs = [];
  const wallUs = [];
  let terminated = 0;
  let pongWaitsTimedOut = 0;
  const waitForPongs = async () => {
    const deadline = Date.now() + pongTimeoutMs;
    while (pending() > 0) {
      if (Date.now() > deadline) {
        pongWaitsTimedOut++;
        return;
      }
      await sleep(10);
    }
  };
  const swept = connections();
  for (let i = 0; i < count; i++) {
    await waitForPongs();
    await sleep(gapMs);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    // The factory's sweep runs in slices and resolves when done; the bare server's returns at once.
    terminated += await sweep();
    const t1 = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpu0);
    cpuUs.push(cpu.user + cpu.system);
    wallUs.push(Number(t1 - t0) / 1000);
  }
  await waitForPongs();
  return { swept, cpuUs, wallUs, terminated, pongWaitsTimedOut, pendingAfter: pending(), connectionsAfter: connections() };
}

/**
 * Holds the connections with a real heartbeat timer for `sweeps` intervals:
 * `start()` starts the server's periodic timer (every `intervalMs`), which
 * calls the sweep that `instrument` wraps; the process's CPU time is taken
 * over `(sweeps + 0.5) × intervalMs` (the sweeps and the pongs they bring
 * back), then `stop()` stops the timer and the pongs of the last sweep are
 * waited for (at most `pongTimeoutMs`). `instrument(wrap)` must make the
 * timer call `wrap(sweep)` instead of the sweep; `wrap` returns what the
 * sweep returns (how many it terminated).
 */
export async function timeHold({ sweeps, intervalMs, pongTimeoutMs }, { instrument, start, stop, pending, connections }) {
  const cpuUs = [];
  const wallUs = [];
  let terminated = 0;
  instrument((sweep) => {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const done = (n) => {
      const t1 = process.hrtime.bigint();
      const cpu = process.cpuUsage(cpu0);
      cpuUs.push(cpu.user + cpu.system);
      wallUs.push(Number(t1 - t0) / 1000);
      terminated += n;
      return n;
    };
    // The factory's sweep runs in slices (a promise; its CPU then includes what the loop served between slices);
    // the bare server's returns at once.
    const n = sweep();
    return typeof n?.then === "function" ? n.then(done) : done(n);
  });
  const held = connections();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  start();
  await sleep((sweeps + 0.5) * intervalMs);
  const cpu = process.cpuUsage(cpu0);
  const windowMs = Number(process.hrtime.bigint() - t0) / 1e6;
  stop();
  const deadline = Date.now() + pongTimeoutMs;
  while (pending() > 0 && Date.now() < deadline) await sleep(10);
  return {
    held,
    swept: cpuUs.length,
    cpuUs,
    wallUs,
    totalCpuUs: cpu.user + cpu.system,
    windowMs,
    terminated,
    pendingAfter: pending(),
    connectionsAfter: connections(),
  };
}
