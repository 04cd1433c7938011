// The proxy benchmark (issue 16): `reclaim factory --upstream` against a
// direct connection to the same backend, in the same run, all on 127.0.0.1,
// every part in a process of its own.
//
// - The upstream: a bare `ws` echo server (upstream.mjs): every message back
//   as it came, text as text, binary as binary, no compression.
// - The proxy: the factory from dist/ with `upstream` set to that server
//   (factory.mjs): a high per-user limit, the heartbeat out of the way (1 h),
//   otherwise its defaults.
// - Speed (client.mjs, one set of processes for all speed rounds): the round
//   trip of one connection, one 64-byte text message at a time (p50, p99),
//   and the message rate of `clients` connections with `window` messages in
//   flight each for `durationMs`; each round measures both paths, direct and
//   proxied, the first of the two alternating from round to round.
// - Memory (fresh processes for every round and path; the load client is
//   bench/factory/load-client.mjs): `connections` idle connections opened
//   with at most `inFlight` handshakes at a time. Direct: the upstream's RSS
//   growth per connection. Proxied: the factory's RSS growth per connection
//   (the target: at most 2× the direct figure), and the upstream's (the
//   backend's own cost, paid either way). Readings after a settle and two
//   `gc()` calls (bench/factory/child.mjs).
//
// A connection that fails, a message that is lost or comes back changed, a
// connection count that is off: the run is invalid. A missed target is FAIL.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Child, signTokens } from "../factory/bench.mjs";
import { median, sectionHeader } from "../lib.mjs";

const DIST_FACTORY = fileURLToPath(new URL("../../dist/factory/factory.js", import.meta.url));

export const name = "proxy";

export const defaults = {
  rounds: 3, // speed rounds (direct and proxied in each); figures are medians over them
  warmup: 200, // round trip: messages before the timed ones (alternately text and binary)
  count: 2000, // round trip: timed messages, one at a time
  bytes: 64, // every message's size (ASCII text)
  clients: 50, // throughput: connections
  window: 16, // throughput: messages in flight per connection
  durationMs: 5000, // throughput: how long each path is loaded
  connections: 2000, // memory: idle connections per round
  memoryRounds: 2, // memory: rounds of direct then proxied, fresh processes each
  inFlight: 200, // memory: handshakes in flight (below the factory's 256 pending per address)
  users: 100, // users the tokens are signed for (round robin; the factory's limit is 10,000 each)
  settleMs: 1000, // before each memory reading
  // Memory rounds: every process runs with --max-semi-space-size=this (MiB; 0: Node's default, up to 16). Opening
  // connections allocates fast, and V8 grows its young generation to its cap once, whatever holds them: with the
  // default that is up to 32 MB, 16 KB per connection of 2,000, which would swamp the per-connection figure.
  semiSpaceMiB: 1,
  openTimeoutMs: 120_000, // opening all of a memory round's connections
  handshakeTimeoutMs: 30_000, // one handshake
  roundTripTimeoutMs: 60_000, // one round trip run
  drainTimeoutMs: 10_000, // throughput: the messages still out after the window
};

/** Command-line options (`node bench/run.mjs proxy --connections N`) and their ranges. */
export const optionRanges = {
  rounds: [1, 10],
  warmup: [0, 10_000],
  count: [10, 100_000],
  bytes: [1, 16_384],
  clients: [1, 500],
  window: [1, 256],
  durationMs: [200, 60_000],
  // Each proxied connection is 2 of the factory's file descriptors (20,000 each process) and 2 ephemeral ports.
  connections: [1, 5000],
  memoryRounds: [1, 10],
  inFlight: [1, 250],
  users: [1, 5000],
  settleMs: [0, 10_000],
  semiSpaceMiB: [0, 64],
};

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { rounds: 1, warmup: 10, count: 50, clients: 4, window: 4, durationMs: 300, connections: 50, memoryRounds: 1, inFlight: 20, users: 10, settleMs: 50, roundTripTimeoutMs: 10_000, drainTimeoutMs: 3000 };

/** Issue 16: the factory's memory per proxied connection at most 2× a direct `ws` connection's. */
export const targets = { memoryRatioMax: 2 };

const KB = 1024;

/** One speed round: round trip and throughput on both paths, `first` first. */
async function speedRound({ client, urls, authorization, opts, first, log }) {
  const order = first === "direct" ? ["direct", "proxied"] : ["proxied", "direct"];
  const problems = [];
  const out = { roundTrip: {}, throughput: {} };
  for (const path of order) {
    log(`${path}: round trip, ${opts.warmup} + ${opts.count} messages of ${opts.bytes} bytes one at a time`);
    const rt = await client.call(
      "roundTrip",
      { url: urls[path], authorization: authorization[0], warmup: opts.warmup, count: opts.count, bytes: opts.bytes, timeoutMs: opts.roundTripTimeoutMs, handshakeTimeoutMs: opts.handshakeTimeoutMs },
      opts.roundTripTimeoutMs + 15_000,
    );
    if (rt.lost > 0 || rt.mismatched > 0 || rt.oddCloses > 0) {
      problems.push(`${path} round trip: ${rt.lost} of ${opts.warmup + opts.count} messages lost${rt.timedOut ? " (timed out)" : ""}, ${rt.mismatched} changed, ${rt.oddCloses} closed abnormally`);
    }
    out.roundTrip[path] = rt;
  }
  for (const path of order) {
    log(`${path}: throughput, ${opts.clients} connections × ${opts.window} in flight for ${opts.durationMs} ms`);
    const tp = await client.call(
      "throughput",
      {
        url: urls[path],
        authorization: authorization.slice(0, opts.clients),
        window: opts.window,
        durationMs: opts.durationMs,
        bytes: opts.bytes,
        drainTimeoutMs: opts.drainTimeoutMs,
        handshakeTimeoutMs: opts.handshakeTimeoutMs,
      },
      opts.durationMs + opts.drainTimeoutMs + opts.handshakeTimeoutMs + 15_000,
    );
    if (tp.lost > 0 || tp.mismatched > 0 || tp.closedEarly > 0 || tp.oddCloses > 0) {
      problems.push(`${path} throughput: ${tp.lost} of ${tp.sent} messages lost, ${tp.mismatched} changed, ${tp.closedEarly} connections closed early, ${tp.oddCloses} closed abnormally`);
    }
    out.throughput[path] = tp;
  }
  return { ...out, first, problems };
}

/** The speed phase: one upstream, one factory in front of it, one client, `opts.rounds` rounds. */
async function speedPhase({ authSecret, authorization, opts, log }) {
  const upstream = new Child("upstream", "../proxy/upstream.mjs", { execArgv: ["--expose-gc"] });
  const client = new Child("speed client", "../proxy/client.mjs");
  let factory;
  const rounds = [];
  const problems = [];
  try {
    const [up] = await Promise.all([upstream.ready(20_000), client.ready(20_000)]);
    const upstreamUrl = `ws://127.0.0.1:${up.port}/`;
    factory = new Child("factory", "../proxy/factory.mjs", { execArgv: ["--expose-gc"], env: { RECLAIM_BENCH_AUTH_SECRET: authSecret, RECLAIM_BENCH_UPSTREAM: upstreamUrl } });
    const f = await factory.ready(20_000);
    const urls = { direct: upstreamUrl, proxied: `ws://127.0.0.1:${f.port}/ws` };
    for (let r = 1; r <= opts.rounds; r++) {
      const round = await speedRound({ client, urls, authorization, opts, first: r % 2 === 1 ? "direct" : "proxied", log: (msg) => log(`speed round ${r}/${opts.rounds}, ${msg}`) });
      rounds.push(round);
      problems.push(...round.problems);
      if (problems.length > 0) break;
    }
    if (problems.length === 0) {
      // Every client has closed; the factory removes each manager when its side of the close is done: polled, at most 10 s.
      const deadline = Date.now() + 10_000;
      let left = (await factory.call("stats")).connections;
      while (left !== 0 && Date.now() < deadline) {
        await sleep(50);
        left = (await factory.call("stats")).connections;
      }
      if (left !== 0) problems.push(`factory: ${left} connections still registered 10 s after the speed rounds' clients closed, expected 0`);
    }
  } finally {
      if (factory !== undefined) await factory.stop();
    await upstream.stop();
    await client.stop();
  }
  return { rounds, problems };
}

const delta = (before, after, key, n) => (after[key] - before[key]) / n / KB;

/** The node flags of a memory round's processes: `--expose-gc`, and the young generation's cap (see `defaults.semiSpaceMiB`). */
const memoryExecArgv = (opts) => ["--expose-gc", ...(opts.semiSpaceMiB > 0 ? [`--max-semi-space-size=${opts.semiSpaceMiB}`] : [])];

/**
 * One memory round for `path`, in fresh processes: "direct" (clients → the
 * upstream), "proxied" (clients → the factory → the upstream) or "relay"
 * (clients → relay.mjs → the upstream).
 */
async function memoryRound({ path, authSecret, authorization, opts, log }) {
  const problems = [];
  const n = authorization.length;
  const execArgv = memoryExecArgv(opts);
  const upstream = new Child(`${path} upstream`, "../proxy/upstream.mjs", { execArgv });
  const client = new Child(`${path} load client`, "load-client.mjs");
  let middle; // the factory or the relay
  try {
    const [up] = await Promise.all([upstream.ready(20_000), client.ready(20_000)]);
    const upstreamUrl = `ws://127.0.0.1:${up.port}/`;
    let url = upstreamUrl;
    if (path === "proxied") {
      middle = new Child("factory", "../proxy/factory.mjs", { execArgv, env: { RECLAIM_BENCH_AUTH_SECRET: authSecret, RECLAIM_BENCH_UPSTREAM: upstreamUrl } });
      url = `ws://127.0.0.1:${(await middle.ready(20_000)).port}/ws`;
    } else if (path === "relay") {
      middle = new Child("relay", "../proxy/relay.mjs", { execArgv, env: { RECLAIM_BENCH_UPSTREAM: upstreamUrl } });
      url = `ws://127.0.0.1:${(await middle.ready(20_000)).port}/`;
    }
    const read = async (child) => {
      if (child === undefined) return null;
      const memory = await child.call("memory", { settleMs: opts.settleMs }, opts.settleMs + 10_000);
      const spaces = await child.call("heapSpaces");
      return { ...memory, newSpace: spaces.new_space.size };
    };
    const memory = () => Promise.all([read(upstream), read(middle)]);
    log(`${path}: memory before`);
    const [upBefore, midBefore] = await memory();
    log(`${path}: opening ${n} connections, ≤ ${opts.inFlight} in flight`);
    const open = await client.call(
      "open",
      { url, authorization, inFlight: opts.inFlight, timeoutMs: opts.openTimeoutMs, handshakeTimeoutMs: opts.handshakeTimeoutMs },
      opts.openTimeoutMs + 10_000,
    );
    if (open.opened !== n) {
      const why = open.errors.map((e) => `${e.count}× ${e.message}`).join("; ");
      problems.push(`${path}: only ${open.opened} of ${n} connections opened${open.timedOut ? " (timed out)" : ""}: ${why}`);
    }
    log(`${path}: memory after`);
    const [upAfter, midAfter] = await memory();
    const upStats = await upstream.call("stats");
    if (upStats.connections !== n) problems.push(`${path}: the upstream holds ${upStats.connections} connections, expected ${n}`);
    if (middle !== undefined) {
      const midStats = await middle.call("stats");
      if (midStats.connections !== n) problems.push(`${path}: the ${middle.label} holds ${midStats.connections} connections, expected ${n}`);
      if (path === "relay" && midStats.upstreamOpen !== n) problems.push(`relay: ${midStats.upstreamOpen} upstream connections open, expected ${n}`);
    }
    const clientStats = await client.call("stats");
    if (clientStats.open !== n || clientStats.closedAfterOpen > 0) {
      problems.push(`${path}: ${clientStats.open} of ${n} connections open at the end, ${clientStats.closedAfterOpen} closed (codes ${JSON.stringify(clientStats.closeCodes)})`);
    }
    const perConn = (before, after) =>
      before === null
        ? null
        : {
            before,
            after,
            rssKB: delta(before, after, "rss", n),
            heapKB: delta(before, after, "heapUsed", n),
            heapTotalKB: delta(before, after, "heapTotal", n),
            // What is not V8's heap: sockets' native state, libuv, malloc (RSS growth minus the heap's committed growth).
            nativeKB: delta(before, after, "rss", n) - delta(before, after, "heapTotal", n),
            externalKB: delta(before, after, "external", n),
            newSpaceMB: (after.newSpace - before.newSpace) / 1024 ** 2,
          };
    return { path, problems, open, handshakesPerSec: open.opened / (open.ms / 1000), upstream: perConn(upBefore, upAfter), middle: perConn(midBefore, midAfter) };
  } finally {
    // The servers go first: they close the sockets.
    if (middle !== undefined) await middle.stop();
    await upstream.stop();
    await client.stop();
  }
}

/**
 * Runs the benchmark: the speed rounds, then `memoryRounds` rounds of direct,
 * proxied and relay memory. Returns the table rows, the details of every
 * round and `problems` (anything that makes the run invalid).
 */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (!existsSync(DIST_FACTORY)) throw new Error("dist/factory/factory.js is missing: run `npm run build` first");
  const authSecret = randomBytes(32).toString("hex");
  const authorization = await signTokens(authSecret, Math.max(opts.connections, opts.clients), opts.users);
  log(`signed ${authorization.length} tokens for ${opts.users} users`);

  const problems = [];
  const speed = await speedPhase({ authSecret, authorization, opts, log });
  problems.push(...speed.problems);

  const memory = [];
  if (problems.length === 0) {
    const memAuthorization = authorization.slice(0, opts.connections);
    for (let r = 1; r <= opts.memoryRounds && problems.length === 0; r++) {
      const ctx = { authSecret, authorization: memAuthorization, opts, log: (msg) => log(`memory round ${r}/${opts.memoryRounds}, ${msg}`) };
      const round = {};
      for (const path of ["direct", "proxied", "relay"]) {
        round[path] = await memoryRound({ path, ...ctx });
        problems.push(...round[path].problems);
        if (problems.length > 0) break;
      }
      memory.push(round);
    }
  }

  const rows = [];
  if (problems.length === 0) {
    const s = speed.rounds;
    const ratioText = (x, base) => (Math.abs(base) < 0.01 ? "—" : `${(x / base).toFixed(2)}×`);
    const fig = (metric, direct, proxied, relay, digits, target = "none", pass) => ({
      metric,
      direct: direct.toFixed(digits),
      proxied: proxied.toFixed(digits),
      ratio: ratioText(proxied, direct),
      relay: relay === null ? "—" : relay.toFixed(digits),
      relayRatio: relay === null ? "—" : ratioText(relay, direct),
      target,
      result: pass === undefined ? "info" : pass(proxied / direct) ? "PASS" : "FAIL",
    });
    const rt = (p, key) => median(s.map((r) => r.roundTrip[p][key]));
    const tp = (p) => median(s.map((r) => r.throughput[p].perSecond));
    // Memory figures: the process that holds the client's connection (direct: the upstream; proxied: the factory; relay: the relay).
    const holder = (r, p) => (p === "direct" ? r.direct.upstream : r[p].middle);
    const m = (p, key) => median(memory.map((r) => holder(r, p)[key]));
    const mem = (metric, key, target, pass) => fig(metric, m("direct", key), m("proxied", key), m("relay", key), 2, target, pass);
    rows.push(
      fig(`Round trip p50 (ms), ${opts.bytes}-byte text`, rt("direct", "p50"), rt("proxied", "p50"), null, 3),
      fig(`Round trip p99 (ms), ${opts.bytes}-byte text`, rt("direct", "p99"), rt("proxied", "p99"), null, 3),
      fig(`Messages per second, ${opts.clients} connections × ${opts.window} in flight`, tp("direct"), tp("proxied"), null, 0),
      mem("RSS per idle connection (KB)", "rssKB", `≤ ${targets.memoryRatioMax.toFixed(1)}×`, (x) => x <= targets.memoryRatioMax),
      mem("V8 heap used per idle connection (KB)", "heapKB"),
      mem("RSS − V8 heap committed, per idle connection (KB)", "nativeKB"),
      mem("External memory per idle connection (KB)", "externalKB"),
      fig(
        "The upstream's own RSS per connection (KB)",
        median(memory.map((r) => r.direct.upstream.rssKB)),
        median(memory.map((r) => r.proxied.upstream.rssKB)),
        median(memory.map((r) => r.relay.upstream.rssKB)),
        2,
      ),
      fig(
        "Handshakes per second",
        median(memory.map((r) => r.direct.handshakesPerSec)),
        median(memory.map((r) => r.proxied.handshakesPerSec)),
        median(memory.map((r) => r.relay.handshakesPerSec)),
        0,
      ),
    );
  }

  const blank = { "round trip p50 / p99 / max (ms)": "", "messages/s": "", "messages sent = echoed": "", "RSS / heap used / native per conn (KB)": "", "RSS before → after (MB)": "", "new space growth (MB)": "", "handshakes/s": "" };
  const details = [];
  speed.rounds.forEach((r, i) => {
    for (const p of ["direct", "proxied"]) {
      const rt = r.roundTrip[p];
      const tp = r.throughput[p];
      if (rt === undefined) continue;
      details.push({
        round: `speed ${i + 1}${r.first === p ? " (first)" : ""}`,
        "path: process": p,
        ...blank,
        "round trip p50 / p99 / max (ms)": rt.p50 === null ? "—" : `${rt.p50.toFixed(3)} / ${rt.p99.toFixed(3)} / ${rt.max.toFixed(1)}`,
        "messages/s": tp === undefined ? "—" : tp.perSecond.toFixed(0),
        "messages sent = echoed": tp === undefined ? "—" : `${tp.sent} = ${tp.received}`,
      });
    }
  });
  const mb = (bytes) => (bytes / 1024 ** 2).toFixed(1);
  memory.forEach((r, i) => {
    const lines = [];
    if (r.direct !== undefined) lines.push(["direct", "upstream", r.direct.upstream, r.direct]);
    if (r.proxied !== undefined) lines.push(["proxied", "factory", r.proxied.middle, r.proxied], ["proxied", "upstream", r.proxied.upstream, null]);
    if (r.relay !== undefined) lines.push(["relay", "relay", r.relay.middle, r.relay], ["relay", "upstream", r.relay.upstream, null]);
    for (const [path, proc, x, round] of lines) {
      details.push({
        round: `memory ${i + 1}`,
        "path: process": `${path}: ${proc}`,
        ...blank,
        "RSS / heap used / native per conn (KB)": `${x.rssKB.toFixed(2)} / ${x.heapKB.toFixed(2)} / ${x.nativeKB.toFixed(2)}`,
        "RSS before → after (MB)": `${mb(x.before.rss)} → ${mb(x.after.rss)}`,
        "new space growth (MB)": x.newSpaceMB.toFixed(1),
        "handshakes/s": round === null ? "" : round.handshakesPerSec.toFixed(0),
      });
    }
  });
  return { name, opts, rows, details, problems, speed, memory };
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  if (rows.length === 0) return "(no figures: the run was invalid)";
  return table(
    rows.map((r) => ({
      figure: r.metric,
      direct: r.direct,
      "through the factory": r.proxied,
      "factory / direct": r.ratio,
      "minimal relay": r.relay,
      "relay / direct": r.relayRatio,
      target: r.target,
      result: r.result,
    })),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  return [
    ...sectionHeader(m, cmd),
    `- Upstream: a bare \`ws\` echo server; proxy: the factory (\`upstream\` set to it, limit 10,000 per user, heartbeat every hour, otherwise its defaults); clients with bearer tokens for ${o.users} users; every part in its own process`,
    `- Speed: ${o.rounds} rounds on one set of processes, each measuring both paths (the first alternating): round trip of ${o.count} text messages of ${o.bytes} bytes one at a time after ${o.warmup} warm-up; ` +
      `${o.clients} connections × ${o.window} messages in flight for ${(o.durationMs / 1000).toFixed(1)} s; figures are medians over the rounds`,
    `- Memory: ${o.memoryRounds} rounds of direct, through the factory, through the minimal relay, fresh processes each, ${o.connections} idle connections (≤ ${o.inFlight} handshakes in flight), ` +
      `RSS after a ${o.settleMs} ms settle and two \`gc()\` calls, every process run with ${o.semiSpaceMiB > 0 ? `\`--max-semi-space-size=${o.semiSpaceMiB}\`` : "Node's default young generation"}; ` +
      `the figure is the growth per connection of the process that holds the client's connection (direct: the upstream); medians over the rounds`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every round:",
    "",
    table(result.details),
  ].join("\n");
}
