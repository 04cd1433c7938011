// The factory under test for the adaptive benchmark, from the built package
// (dist/): `probeDeadline` from RECLAIM_BENCH_PROBE_DEADLINE (fixed, rfc6298
// or phi), the probe's ceiling 1 s (`probeTimeoutMs`, the default) and floor
// 100 ms (`probeFloorMs`, the default), limit 20. The heartbeat's timer is
// pushed out to 1 h: the parent runs the factory's own sweep
// (`factory.heartbeat.sweep()`, the code the timer runs) between probes
// instead, so that a sweep never lands inside a probe (see bench.mjs), paced
// over RECLAIM_BENCH_SWEEP_SPREAD_MS as the timer paces its sweeps (ADR 34).
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Writable } from "node:stream";
import { startFactory } from "../../dist/factory/factory.js";
import { createEventLog } from "../../dist/factory/log.js";
import { ready, serve } from "../factory/child.mjs";

const authSecret = process.env.RECLAIM_BENCH_AUTH_SECRET;
const controlToken = process.env.RECLAIM_BENCH_CONTROL_TOKEN;
const mode = process.env.RECLAIM_BENCH_PROBE_DEADLINE;
if (authSecret === undefined || controlToken === undefined) throw new Error("RECLAIM_BENCH_AUTH_SECRET and RECLAIM_BENCH_CONTROL_TOKEN must be set");
if (!["fixed", "rfc6298", "phi"].includes(mode)) throw new Error(`RECLAIM_BENCH_PROBE_DEADLINE must be fixed, rfc6298 or phi, not ${mode}`);

const spreadMs = Number(process.env.RECLAIM_BENCH_SWEEP_SPREAD_MS ?? "0");
if (!Number.isFinite(spreadMs) || spreadMs < 0) throw new Error(`RECLAIM_BENCH_SWEEP_SPREAD_MS must be a number of ms >= 0, not ${process.env.RECLAIM_BENCH_SWEEP_SPREAD_MS}`);
const CEILING_MS = 1000;
const FLOOR_MS = 100;

const devNull = new Writable({
  write(_chunk, _encoding, callback) {
    callback();
  },
});

const factory = await startFactory(
  {
    dev: true,
    authSecret,
    controlToken,
    port: 0,
    host: "127.0.0.1",
    controlPort: 0,
    controlHost: "127.0.0.1",
    logLevel: "warn",
    limit: 20,
    probeDeadline: mode,
    probeTimeoutMs: CEILING_MS,
    probeFloorMs: FLOOR_MS,
    heartbeatIntervalMs: 3_600_000,
  },
  { log: createEventLog({ streams: [devNull], level: "warn" }), defaultMetrics: false },
);

// How late this process's event loop ran (timers included): a busy machine shows here first.
const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();

serve({
  // One heartbeat sweep; resolves with how many connections it terminated (no pong since the last sweep).
  sweep: async () => ({ terminated: await factory.heartbeat.sweep(spreadMs) }),
  // The deadline each connection of `userIds` would get from a probe now, and how many round trips it has shown.
  deadlines: ({ userIds }) =>
    userIds.flatMap((userId) => factory.registry.managersOf(userId).map((m) => ({ ms: m.rtt.deadline(mode, FLOOR_MS, CEILING_MS, factory.rttTail.stretch()), tail: factory.rttTail.stretch(), samples: m.rtt.samples, mean: m.rtt.srtt }))),
  // The event loop's delay since the last call (ms): p50, p99, max.
  loop: () => {
    const r = { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
    loop.reset();
    return r;
  },
  stats: () => ({ connections: factory.registry.size }),
  exit: () => setImmediate(() => process.exit(0)),
});

ready({ port: factory.port, controlUrl: factory.controlUrl });
