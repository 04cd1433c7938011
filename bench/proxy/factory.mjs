// The proxy under test: the factory from the built package (dist/) in proxy
// mode, `upstream` set to RECLAIM_BENCH_UPSTREAM (the upstream child's URL).
// Run with --expose-gc. The auth secret comes in RECLAIM_BENCH_AUTH_SECRET
// (the parent signs the clients' tokens); the per-user limit is high (10,000)
// so no client is refused, and the heartbeat is pushed out of the way (1 h).
// Everything else is the factory's default. The log is dropped.
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { startFactory } from "../../dist/factory/factory.js";
import { createEventLog } from "../../dist/factory/log.js";
import v8 from "node:v8";
import { measureMemory, ready, serve } from "../factory/child.mjs";

const authSecret = process.env.RECLAIM_BENCH_AUTH_SECRET;
if (authSecret === undefined) throw new Error("RECLAIM_BENCH_AUTH_SECRET is not set");
const upstream = process.env.RECLAIM_BENCH_UPSTREAM;
if (upstream === undefined) throw new Error("RECLAIM_BENCH_UPSTREAM is not set");

const devNull = new Writable({
  write(_chunk, _encoding, callback) {
    callback();
  },
});

const factory = await startFactory(
  {
    authSecret,
    controlToken: randomBytes(24).toString("hex"),
    port: 0,
    host: "127.0.0.1",
    controlPort: 0,
    upstream,
    limit: 10_000,
    heartbeatIntervalMs: 3_600_000,
    logLevel: "warn",
  },
  { log: createEventLog({ streams: [devNull], level: "warn" }), defaultMetrics: false },
);

serve({
  /** V8's heap spaces (committed and used bytes of each). */
  heapSpaces: () => Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }])),
  memory: ({ settleMs }) => measureMemory(settleMs),
  stats: () => ({ connections: factory.registry.size, users: factory.registry.userCount }),
  exit: () => setImmediate(() => process.exit(0)),
});

ready({ port: factory.port, upstreamConnectTimeoutMs: factory.config.upstreamConnectTimeoutMs });
