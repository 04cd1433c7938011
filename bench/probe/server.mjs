// The factory under test for the probe benchmark, from the built package
// (dist/): the auth secret and the control token come from the parent
// (RECLAIM_BENCH_AUTH_SECRET, RECLAIM_BENCH_CONTROL_TOKEN), the log goes to a
// null stream, and the periodic heartbeat is pushed out to 1 h so that the
// only pings are the probe's. The parent reads this process's CPU time
// (`process.cpuUsage()`, all threads) before and after each probe.
import { PerformanceObserver } from "node:perf_hooks";
import { Writable } from "node:stream";
import { startFactory } from "../../dist/factory/factory.js";
import { createEventLog } from "../../dist/factory/log.js";
import { ready, serve } from "../factory/child.mjs";

const authSecret = process.env.RECLAIM_BENCH_AUTH_SECRET;
const controlToken = process.env.RECLAIM_BENCH_CONTROL_TOKEN;
if (authSecret === undefined || controlToken === undefined) throw new Error("RECLAIM_BENCH_AUTH_SECRET and RECLAIM_BENCH_CONTROL_TOKEN must be set");

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
    heartbeatIntervalMs: 3_600_000,
  },
  { log: createEventLog({ streams: [devNull], level: "warn" }), defaultMetrics: false },
);

// The benchmark's self-check: with RECLAIM_BENCH_PROBE_WALK_ALL=1 the registry
// looks at every connection whenever a user's managers are read, as an O(all)
// probe would; the probe benchmark must then fail its target.
if (process.env.RECLAIM_BENCH_PROBE_WALK_ALL === "1") {
  const registry = factory.registry;
  const managersOf = registry.managersOf.bind(registry);
  let seen = 0;
  registry.managersOf = (userId) => {
    for (const manager of registry.allManagers()) seen += manager.socket.bufferedAmount + 1;
    globalThis.reclaimBenchSeen = seen;
    return managersOf(userId);
  };
}

// Time spent in garbage collection so far (main-thread pauses as V8 reports them), so the
// parent can tell how much of a probe's CPU time was a collection that happened to land in it.
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMs += entry.duration;
}).observe({ entryTypes: ["gc"] });

serve({
  cpu: () => ({ ...process.cpuUsage(), gcMs }),
  stats: ({ userId }) => ({ connections: factory.registry.size, users: factory.registry.userCount, active: factory.registry.active(userId) }),
  exit: () => setImmediate(() => process.exit(0)),
});

ready({ port: factory.port, controlUrl: factory.controlUrl });
