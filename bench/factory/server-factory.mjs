// The factory under test, from the built package (dist/). Run with
// --expose-gc; the auth secret comes in RECLAIM_BENCH_AUTH_SECRET so the
// parent can sign the clients' tokens before any timing starts. The periodic
// heartbeat is pushed out of the way (1 h): only the sweeps the parent asks
// for run. With RECLAIM_BENCH_HEARTBEAT_MS (the hold phase) the factory runs
// with that heartbeat interval, its timer stopped until `hold` starts it.
import { Writable } from "node:stream";
import { startFactory } from "../../dist/factory/factory.js";
import { createEventLog } from "../../dist/factory/log.js";
import { measureMemory, ready, serve, timeHold, timeSweeps } from "./child.mjs";

const authSecret = process.env.RECLAIM_BENCH_AUTH_SECRET;
if (authSecret === undefined) throw new Error("RECLAIM_BENCH_AUTH_SECRET is not set");
const holdIntervalMs = process.env.RECLAIM_BENCH_HEARTBEAT_MS === undefined ? null : Number(process.env.RECLAIM_BENCH_HEARTBEAT_MS);

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
    logLevel: "warn",
    heartbeatIntervalMs: holdIntervalMs ?? 3_600_000,
  },
  { log: createEventLog({ streams: [devNull], level: "warn" }), defaultMetrics: false },
);
// The hold phase starts the timer itself, once every connection is open.
if (holdIntervalMs !== null) factory.heartbeat.stop();

function pending() {
  let n = 0;
  for (const manager of factory.registry.allManagers()) if (manager.awaitingPong) n++;
  return n;
}

serve({
  memory: ({ settleMs }) => measureMemory(settleMs),
  cpu: () => process.cpuUsage(),
  stats: () => ({ connections: factory.registry.size, users: factory.registry.userCount }),
  sweep: (args) =>
    timeSweeps(
      args,
      () => factory.heartbeat.sweep(),
      pending,
      () => factory.registry.size,
    ),
  hold: (args) => {
    if (holdIntervalMs !== args.intervalMs) throw new Error(`hold every ${args.intervalMs} ms needs RECLAIM_BENCH_HEARTBEAT_MS=${args.intervalMs}`);
    const heartbeat = factory.heartbeat;
    const sweep = heartbeat.sweep.bind(heartbeat);
    return timeHold(args, {
      // The factory's own timer calls `this.sweep()`: an own property in front of the prototype's method sees every call.
      instrument: (wrap) => {
        heartbeat.sweep = () => wrap(sweep);
      },
      start: () => heartbeat.start(),
      stop: () => heartbeat.stop(),
      pending,
      connections: () => factory.registry.size,
    });
  },
  exit: () => setImmediate(() => process.exit(0)),
});

ready({ port: factory.port });
