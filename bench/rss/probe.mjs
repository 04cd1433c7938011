// Loaded with `--import` into one extra operator of the rss benchmark (never
// into a measured one: the module hook below runs a thread of its own). On
// SIGUSR2 it writes one JSON line to stderr, prefixed `RSS-PROBE `: the
// process's memory as V8 and Node see it, the builtins loaded, and the files
// of packages loaded (ES modules through a loader hook, CommonJS from
// require.cache).
import { createRequire, register } from "node:module";
import { MessageChannel } from "node:worker_threads";
import v8 from "node:v8";

const esm = new Set();
const { port1, port2 } = new MessageChannel();
port1.on("message", (url) => esm.add(url));
port1.unref();
register(new URL("./probe-hook.mjs", import.meta.url), { data: { port: port2 }, transferList: [port2] });

process.on("SIGUSR2", () => {
  const require = createRequire(import.meta.url);
  const files = [...esm, ...Object.keys(require.cache)];
  const packages = {};
  for (const file of files) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file);
    if (m !== null) packages[m[1]] = (packages[m[1]] ?? 0) + 1;
  }
  const builtins = process.moduleLoadList
    .filter((x) => x.startsWith("NativeModule ") && !x.includes("internal/"))
    .map((x) => x.slice("NativeModule ".length));
  const report = {
    memory: process.memoryUsage(),
    heap: v8.getHeapStatistics(),
    code: v8.getHeapCodeStatistics(),
    spaces: v8.getHeapSpaceStatistics(),
    builtins,
    packages,
    ownFiles: files.filter((f) => f.includes("/dist/") && !f.includes("node_modules")).length,
  };
  process.stderr.write(`RSS-PROBE ${JSON.stringify(report)}\n`);
});
