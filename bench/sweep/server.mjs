// The factory under test for the sweep benchmark, from the built package
// (dist/): the auth secret comes in RECLAIM_BENCH_AUTH_SECRET, the heartbeat
// interval in RECLAIM_BENCH_HEARTBEAT_MS (3,600,000 for the baseline: no
// sweep in the window), the log goes to a null stream, no default metrics.
//
// Every sweep the factory's own timer runs is recorded (its start and end on
// the clock both processes share: performance.timeOrigin + performance.now()),
// and `sweeps` also reads the factory's `reclaim_factory_heartbeat_sweep_seconds`
// histogram, so the parent can check that sweeps happened in its window and
// pick the chat messages that were in flight during one.
//
// The self-check (RECLAIM_BENCH_SWEEP_UNSLICED=1): the factory's heartbeat is
// stopped and replaced by a `Heartbeat` built from the same public parts
// (dist/factory/heartbeat.js and dist/factory/evict.js, with the factory's
// registry, metrics, log and config) with `sliceMs: Infinity`, i.e. one
// sweep in a single slice, all at once (not paced), as before issue 18. The
// benchmark must FAIL then. With RECLAIM_BENCH_SWEEP_UNPACED=1 the same
// replacement keeps the slices and only drops the pacing (`spread: 0`): the
// sweep as it was before ADR 34, for information.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Writable } from "node:stream";
import { startFactory } from "../../dist/factory/factory.js";
import { Evictor } from "../../dist/factory/evict.js";
import { Heartbeat } from "../../dist/factory/heartbeat.js";
import { createEventLog } from "../../dist/factory/log.js";
import { ready, serve } from "../factory/child.mjs";

const authSecret = process.env.RECLAIM_BENCH_AUTH_SECRET;
const intervalMs = Number(process.env.RECLAIM_BENCH_HEARTBEAT_MS);
const unsliced = process.env.RECLAIM_BENCH_SWEEP_UNSLICED === "1";
const unpaced = unsliced || process.env.RECLAIM_BENCH_SWEEP_UNPACED === "1";
if (authSecret === undefined) throw new Error("RECLAIM_BENCH_AUTH_SECRET is not set");
if (!Number.isInteger(intervalMs) || intervalMs < 1) throw new Error("RECLAIM_BENCH_HEARTBEAT_MS must be a whole number of ms");

const devNull = new Writable({
  write(_chunk, _encoding, callback) {
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
    controlHost: "127.0.0.1",
    logLevel: "warn",
    limit: 100,
    heartbeatIntervalMs: intervalMs,
  },
  { log: createEventLog({ streams: [devNull], level: "warn" }), defaultMetrics: false },
);

let heartbeat = factory.heartbeat;
if (unpaced) {
  heartbeat.stop();
  const evictor = new Evictor(factory.registry, factory.log, factory.metrics, factory.config.closeGraceMs);
  heartbeat = new Heartbeat(factory.config.cleanup, intervalMs, factory.registry, evictor, factory.metrics, {
    spread: 0,
    ...(unsliced ? { sliceMs: Number.POSITIVE_INFINITY } : {}),
  });
  heartbeat.start();
}

const now = () => performance.timeOrigin + performance.now();
const sweeps = [];
let terminated = 0;
// The timer calls `this.sweep()`: an own property in front of the prototype's method sees every sweep.
const sweep = heartbeat.sweep.bind(heartbeat);
heartbeat.sweep = (spreadMs) => {
  const record = { start: now(), end: null, connections: factory.registry.size };
  sweeps.push(record);
  const done = sweep(spreadMs);
  void done.then((n) => {
    record.end = now();
    terminated += n;
  });
  return done;
};

async function histogram() {
  const { values } = await factory.metrics.heartbeatSweep.get();
  const pick = (suffix) => values.find((v) => v.metricName === `reclaim_factory_heartbeat_sweep_seconds${suffix}`)?.value ?? 0;
  return { count: pick("_count"), sum: pick("_sum") };
}

// How late the factory's event loop ran (1 ms timer), over the parent's window: what slicing is
// about, apart from this machine's other load (the chat client's round trip has both). With the
// factory's CPU time and involuntary context switches over the window (it was runnable, not running).
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();
let windowStart = null;

function usage() {
  const r = process.resourceUsage();
  return { cpuUs: r.userCPUTime + r.systemCPUTime, involuntary: r.involuntaryContextSwitches, at: now() };
}

serve({
  mark: () => {
    loopDelay.reset();
    windowStart = usage();
    return windowStart;
  },
  loop: () => {
    const end = usage();
    return {
      delayP99Ms: loopDelay.percentile(99) / 1e6,
      delayMaxMs: loopDelay.max / 1e6,
      cpuShare: windowStart === null ? null : (end.cpuUs - windowStart.cpuUs) / 1000 / (end.at - windowStart.at),
      involuntary: windowStart === null ? null : end.involuntary - windowStart.involuntary,
    };
  },
  stats: () => ({ connections: factory.registry.size, users: factory.registry.userCount }),
  sweeps: async () => ({ sweeps, terminated, histogram: await histogram(), unsliced, unpaced }),
  exit: () => setImmediate(() => process.exit(0)),
});

ready({ port: factory.port, unsliced, unpaced });
