// The slow-reader benchmark (issue 12, item 1): how much a server's memory
// grows while signed-in clients send chat messages as fast as TCP takes them
// and never read the replies.
//
// Each round runs in fresh processes, all on 127.0.0.1: one server child
// (the factory from dist/ with its defaults, or the baseline, a bare `ws`
// echo server with no backpressure) and one flooder child (flooder.mjs) with
// N clients, one user each. The clients connect, pause on the welcome (never
// read again), the server's memory is read after a settle and two `gc()`
// calls, then every client floods for the round's length (16 KiB chat
// texts, each echoed by the server). This process reads the server's VmRSS from
// /proc/PID/status every `sampleMs` and its VmHWM (reset through clear_refs
// at the flood's start) at the end: the figure is the peak minus the reading
// before the flood.
//
// Rounds: bare then factory with N = 1 for `roundMs` (the issue's 10 s);
// then the factory with N = `clients` until it has paused every flooder (the
// kernel's socket buffers take the first ~4 MB of every connection's
// replies, so the server holds nothing of a flooder until ~5 MB went through
// it: 500 MB for 100, more than 10 s of this machine's echo), then `holdMs`
// more, at most `manyRoundMaxMs`; the bare server with N = `clients` for as
// long as that round flooded; last, the factory with N = `clients` and
// `slowReaderTimeoutMs` set to `closeRoundTimeoutMs`, the one setting
// changed, until the factory has closed every flooder (at most
// `closeRoundMaxMs`). In the other rounds the default, 30 s, is longer than
// any flooder stays paused, so the factory closes nobody there.
//
// Every server is capped: at `capMiB` of RSS its round stops, the server is
// killed, and its growth is reported as "≥ cap". The baseline reaches it; the
// cap keeps the benchmark from taking the machine down.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Child, signTokens } from "../factory/bench.mjs";
import { sectionHeader } from "../lib.mjs";

const DIST_FACTORY = fileURLToPath(new URL("../../dist/factory/factory.js", import.meta.url));
const MiB = 1024 * 1024;
const KiB = 1024;

export const name = "slowreader";

export const defaults = {
  clients: 100, // N of the many-clients rounds (the first rounds have 1)
  roundMs: 10_000, // how long the client floods in the N = 1 rounds: shorter than the factory's slowReaderTimeoutMs (30 s)
  manyRoundMaxMs: 60_000, // the factory's N = clients round floods until every flooder is paused, then holdMs, at most this long
  holdMs: 3000, // how long every flooder stays paused at once before that round ends
  textBytes: 16_384, // chat text per message: the contract's largest (src/contract/client.ts), ASCII
  inFlight: 16, // messages per client handed to ws and not yet written to the kernel
  capMiB: 1536, // a server's RSS cap: its round stops there and reports "≥ cap"
  baselineMany: 1, // 1: the baseline also floods with N = clients; 0: only with N = 1
  closeRoundTimeoutMs: 5000, // the factory round with slowReaderTimeoutMs set to this (0 skips it)
  closeRoundMaxMs: 60_000, // that round floods until every flooder is closed, at most this long
  settleMs: 1000, // before the memory reading that precedes the flood
  sampleMs: 20, // VmRSS sampling period
  handshakeTimeoutMs: 10_000,
  openTimeoutMs: 60_000, // opening all of a round's connections
};

/** Command-line options (`node bench/run.mjs slowreader --roundMs N`) and their ranges. */
export const optionRanges = {
  clients: [1, 1000],
  roundMs: [500, 180_000],
  manyRoundMaxMs: [1000, 180_000],
  holdMs: [0, 60_000],
  textBytes: [1, 16_384],
  inFlight: [1, 256],
  capMiB: [64, 8192],
  baselineMany: [0, 1],
  closeRoundTimeoutMs: [0, 120_000],
  closeRoundMaxMs: [1000, 180_000],
  settleMs: [0, 10_000],
};

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { clients: 2, roundMs: 1000, manyRoundMaxMs: 3000, holdMs: 200, baselineMany: 0, closeRoundTimeoutMs: 200, closeRoundMaxMs: 5000, settleMs: 100 };

/** The issue's goal for one flooder; with N the allowance grows by each one's own bound (see BENCHMARKS.md). */
export const targets = { oneClientMiB: 64 };

/** The bound for N flooders: 64 MiB + N × (sendHighWaterBytes + maxPayloadBytes), in bytes. */
export function boundBytes(n, config) {
  return targets.oneClientMiB * MiB + n * (config.sendHighWaterBytes + config.maxPayloadBytes);
}

/** VmRSS and VmHWM of a process, in bytes (Linux /proc). */
export function procMemory(pid) {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    if (m === null) throw new Error(`/proc/${pid}/status has no ${key}`);
    return Number(m[1]) * 1024;
  };
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/** Resets VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`); false where the kernel refuses. */
function resetPeak(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * One round in fresh processes: `kind` ("bare" or "factory") with `n`
 * flooders for `roundMs` (or until the server reaches the RSS cap).
 * `slowReaderTimeoutMs` (factory only) overrides that one setting. `end`:
 * "time" floods for `roundMs`; "paused" (factory) until the factory has
 * paused every flooder, then `opts.holdMs` more; "closed" (factory) until it
 * has closed every flooder and the clients have seen it; both at most
 * `roundMs`.
 */
async function floodRound({ kind, n, roundMs, end = "time", authorization, authSecret, slowReaderTimeoutMs = null, opts, log }) {
  const problems = [];
  const label = `${kind} N=${n}${slowReaderTimeoutMs === null ? "" : ` slowReaderTimeoutMs=${slowReaderTimeoutMs}`}`;
  const env = {
    RECLAIM_BENCH_AUTH_SECRET: authSecret,
    ...(slowReaderTimeoutMs === null ? {} : { RECLAIM_BENCH_SLOW_READER_TIMEOUT_MS: String(slowReaderTimeoutMs) }),
  };
  const server = new Child(`${label} server`, kind === "bare" ? "../slowreader/server-echo.mjs" : "../slowreader/server-factory.mjs", { execArgv: ["--expose-gc"], env });
  // Started together: the factory's start-up (module loading) is most of a short round's time.
  const flooder = new Child(`${label} flooders`, "../slowreader/flooder.mjs");
  const capBytes = opts.capMiB * MiB;
  try {
    const [info] = await Promise.all([server.ready(20_000), flooder.ready(20_000)]);
    const pid = server.proc.pid;

    log(`${label}: opening ${n} connections`);
    const url = `ws://127.0.0.1:${info.port}/ws`;
    const open = await flooder.call(
      "open",
      { url, authorization: authorization.slice(0, n), handshakeTimeoutMs: opts.handshakeTimeoutMs, timeoutMs: opts.openTimeoutMs },
      opts.openTimeoutMs + 10_000,
    );
    if (open.welcomed !== n) {
      const why = open.errors.map((e) => `${e.count}× ${e.message}`).join("; ");
      problems.push(`${label}: only ${open.welcomed} of ${n} clients were welcomed${open.timedOut ? " (timed out)" : ""}: ${why}`);
      return { kind, n, label, problems };
    }
    if (kind === "factory") await server.call("track", { everyMs: opts.sampleMs });

    await server.call("memory", { settleMs: opts.settleMs }, opts.settleMs + 10_000);
    const before = procMemory(pid).rss;
    const hwmReset = resetPeak(pid);

    log(`${label}: flooding for ${roundMs} ms (RSS before ${(before / MiB).toFixed(0)} MiB, cap ${opts.capMiB} MiB)`);
    const started = await flooder.call("start", { textBytes: opts.textBytes, inFlight: opts.inFlight, durationMs: roundMs });
    let peak = before;
    let peakAtMs = 0;
    let last = before;
    let capped = null;
    let vanished = false;
    let allClosedAfterMs = null;
    let allReachedAfterMs = null;
    let onCap;
    const capReached = new Promise((resolve) => {
      onCap = resolve;
    });
    const sample = () => {
      if (capped !== null || vanished) return;
      let m;
      try {
        m = procMemory(pid);
      } catch {
        vanished = true; // the server died: reported below
        return onCap();
      }
      last = m.rss;
      if (m.rss > peak) {
        peak = m.rss;
        peakAtMs = Date.now() - started.startedAt;
      }
      if (m.rss >= capBytes) {
        capped = { atMs: Date.now() - started.startedAt, rss: m.rss };
        server.proc.kill("SIGKILL");
        onCap();
      }
    };
    // Sampled until the flooders have stopped, whenever that is: the peak may come as they stop.
    const sampler = setInterval(sample, opts.sampleMs);
    let flooded;
    let heapAtEnd = null;
    try {
      const deadline = started.startedAt + roundMs;
      const pause = (ms) => Promise.race([sleep(Math.max(0, Math.min(ms, deadline - Date.now()))), capReached]);
      /** Polls `done` every 250 ms until it is true (→ the time since the start), the deadline, or the cap (→ null). */
      const until = async (done) => {
        while (Date.now() < deadline && capped === null && !vanished) {
          if (await done()) return Date.now() - started.startedAt;
          await pause(250);
        }
        return null;
      };
      if (end === "time") await pause(roundMs);
      else if (end === "paused") {
        // Every flooder at the high-water mark at once is the most the factory holds for them: then `holdMs` more.
        allReachedAfterMs = await until(async () => (await server.call("progress")).reached >= n);
        if (allReachedAfterMs !== null) await pause(opts.holdMs);
      } else {
        allClosedAfterMs = await until(async () => (await server.call("progress")).closed >= n);
        // Outside a smoke run, also until every client has seen its connection end: the factory destroys a
        // socket `closeGraceMs` after its close frame, which a client that does not read never sees.
        const waitUntil = Date.now() + (allClosedAfterMs === null || opts.smoke === true ? 0 : info.config.closeGraceMs + 1000);
        while (Date.now() < waitUntil && capped === null && (await flooder.call("ended")).ended < n) await sleep(100);
      }
      // The factory's heap as the flood ends, beside the last RSS sample (the bare server would answer only
      // after the backlog the kernel holds for it, which it goes on reading and echoing: not asked).
      const heap = kind === "factory" && capped === null && !vanished ? server.call("heap").catch(() => null) : null;
      flooded = await flooder.call("stop");
      sample();
      heapAtEnd = await heap;
    } finally {
      clearInterval(sampler);
    }
    if (capped === null && !vanished) {
      try {
        const m = procMemory(pid);
        last = m.rss;
        // VmHWM since the reset also sees a peak between two samples.
        if (hwmReset && m.hwm > peak) peak = m.hwm;
      } catch {
        vanished = true;
      }
    }
    const endedAt = Date.now();
    if (capped === null && flooded.stoppedAfterMs > roundMs + 2000) {
      problems.push(`${label}: the flooders stopped ${flooded.stoppedAfterMs} ms after the start, not ${roundMs}: their event loop was starved`);
    }
    let stats = null;
    if (capped === null && !vanished) {
      stats = await server.call("stats", {}, 30_000);
    } else if (capped === null) {
      problems.push(`${label}: the server exited during the flood (not at the cap)`);
    }
    const idle = flooded.clients.filter((c) => c.sent === 0).length;
    if (idle > 0) problems.push(`${label}: ${idle} of ${n} clients sent nothing`);
    // A flooder the factory never paused (nor closed) before the last reading did not load it fully: the
    // figure would measure the kernel's buffers, not the bound. A measurement needs every one; a smoke run
    // (1 s, a check that the benchmark works) only shows the count.
    let reached = null;
    if (kind === "factory" && stats !== null) {
      const byEnd = (t) => t !== null && t <= endedAt;
      reached = stats.pausedAt.filter(byEnd).length + stats.removals.filter((r) => r.pausedAt === null && byEnd(r.at)).length;
      if (reached < n && opts.smoke !== true) {
        const option = end === "closed" ? "--closeRoundMaxMs" : end === "paused" ? "--manyRoundMaxMs" : "--roundMs";
        problems.push(`${label}: only ${reached} of ${n} flooders reached the high-water mark within the ${roundMs} ms round: too short for this machine now (raise ${option})`);
      }
    }
    return {
      kind,
      n,
      label,
      roundMs,
      allClosedAfterMs,
      allReachedAfterMs,
      heapAtEnd,
      reached,
      endedAt,
      slowReaderTimeoutMs: slowReaderTimeoutMs ?? info.config?.slowReaderTimeoutMs ?? null,
      config: info.config ?? null,
      problems,
      before,
      peak,
      growth: peak - before,
      peakAtMs,
      last,
      capped,
      hwmReset,
      startedAt: started.startedAt,
      messageBytes: started.messageBytes,
      flooded,
      stats,
    };
  } finally {
    // The server goes first: it closes the sockets.
    await server.stop();
    await flooder.stop();
  }
}

const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`;
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;
/** The lowest and highest of some durations (ms), in seconds: "0.4 s" or "0.4–0.7 s". */
const span = (xs) => {
  if (xs.length === 0) return "—";
  const lo = (Math.min(...xs) / 1000).toFixed(1);
  const hi = (Math.max(...xs) / 1000).toFixed(1);
  return lo === hi ? `${lo} s` : `${lo}–${hi} s`;
};

/** V8 heap used / committed / Buffers (ArrayBuffers), in MiB. */
const memoryText = (m) => `${(m.heapUsed / MiB).toFixed(0)} / ${(m.heapTotal / MiB).toFixed(0)} / ${(m.arrayBuffers / MiB).toFixed(0)} MiB`;

/** A round's growth as the table shows it: "≥ cap" when the server reached its cap. */
function growthText(r, opts) {
  if (r === undefined) return "not run";
  return r.capped === null ? mib(r.growth) : `≥ ${mib(opts.capMiB * MiB - r.before)} (cap ${opts.capMiB} MiB at ${secs(r.capped.atMs)})`;
}

function ratioText(factory, bare) {
  if (factory === undefined || bare === undefined) return "—";
  const ratio = factory.growth / bare.growth;
  // A capped baseline grew at least this much: the ratio is at most this.
  return bare.capped === null ? `${ratio.toFixed(3)}×` : `≤ ${ratio.toFixed(3)}×`;
}

/** What happened to the flooders of a round, server side and client side, in a few words. */
function outcome(r) {
  if (r.capped !== null) return `server killed at the cap after ${secs(r.capped.atMs)}`;
  const parts = [];
  if (r.stats !== null && r.kind === "factory") {
    const paused = r.stats.pausedAt.filter((t) => t !== null && t <= r.endedAt).map((t) => t - r.startedAt);
    const again = r.stats.pauses - r.stats.pausedAt.filter((t) => t !== null).length;
    parts.push(`${paused.length}/${r.n} paused (reading stopped) at ${span(paused)}${again > 0 ? ` (paused again after a drain: ${again}×)` : ""}`);
    const slow = r.stats.removals.filter((x) => x.event === "factory.slow_reader");
    if (slow.length > 0) {
      const whys = [...new Set(slow.map((x) => x.why))].join("/");
      parts.push(`${slow.length}/${r.n} closed 1008 (${whys}) at ${span(slow.map((x) => x.at - r.startedAt))}`);
    } else parts.push("none closed");
    const other = r.stats.removals.filter((x) => x.event !== "factory.slow_reader");
    if (other.length > 0) parts.push(`${other.length} removed otherwise (${[...new Set(other.map((x) => x.reason))].join(", ")})`);
  }
  const ended = r.flooded.clients.filter((c) => c.end !== null);
  if (ended.length > 0) {
    const how = [...new Set(ended.map((c) => `${c.end.code}${c.end.error === null ? "" : ` ${c.end.error}`}`))].join(", ");
    parts.push(`clients saw ${ended.length} drop (${how}) at ${span(ended.map((c) => c.end.afterMs))}`);
  } else parts.push(`clients: all ${r.n} still open`);
  return parts.join("; ");
}

/**
 * Runs the rounds (see the header). Returns the table rows, one details row
 * per round, and `problems`: what makes the run invalid (a client not
 * welcomed or sending nothing, a server that died other than at the cap, a
 * factory round too short for its flooders to reach the high-water mark).
 * A missed target is a FAIL in the rows, not a problem.
 */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (!existsSync(DIST_FACTORY)) throw new Error("dist/factory/factory.js is missing: run `npm run build` first");
  if (!existsSync("/proc/self/status")) throw new Error("the slowreader benchmark reads servers' RSS from /proc: Linux only");

  const authSecret = randomBytes(32).toString("hex");
  const many = opts.clients;
  const authorization = await signTokens(authSecret, Math.max(1, many), Math.max(1, many)); // one user per client: far from the limit of 20
  const base = { authorization, authSecret, opts };
  const problems = [];
  const rounds = {};
  const plan = [
    ["bare1", { kind: "bare", n: 1, roundMs: opts.roundMs }],
    ["factory1", { kind: "factory", n: 1, roundMs: opts.roundMs }],
    ...(many > 1 ? [["factoryN", { kind: "factory", n: many, roundMs: opts.manyRoundMaxMs, end: "paused" }]] : []),
    // As long as the factory's round flooded (it ran first): the same flood, without backpressure.
    ...(many > 1 && opts.baselineMany === 1 ? [["bareN", { kind: "bare", n: many, roundMs: () => rounds.factoryN.flooded.stoppedAfterMs }]] : []),
    ...(opts.closeRoundTimeoutMs > 0
      ? [["closeN", { kind: "factory", n: many, roundMs: opts.closeRoundMaxMs, end: "closed", slowReaderTimeoutMs: opts.closeRoundTimeoutMs }]]
      : []),
  ];
  for (const [key, round] of plan) {
    const r = await floodRound({ ...base, ...round, roundMs: typeof round.roundMs === "function" ? round.roundMs() : round.roundMs, log });
    rounds[key] = r;
    problems.push(...r.problems);
    if (r.problems.length > 0) break; // an invalid round: no point in going on
  }

  const config = rounds.factory1?.config ?? null;
  const rows = [];
  if (rounds.factory1?.before !== undefined) {
    const f = rounds.factory1;
    rows.push({
      metric: "1 client floods, never reads: peak RSS growth",
      bare: growthText(rounds.bare1, opts),
      factory: growthText(f, opts),
      ratio: ratioText(f, rounds.bare1),
      target: `≤ ${targets.oneClientMiB} MiB`,
      result: f.capped === null && f.growth <= targets.oneClientMiB * MiB ? "PASS" : "FAIL",
    });
  }
  if (rounds.factoryN?.before !== undefined && config !== null) {
    const f = rounds.factoryN;
    const bound = boundBytes(many, config);
    rows.push(
      {
        metric: `${many} clients flood, never read: peak RSS growth`,
        bare: growthText(rounds.bareN, opts),
        factory: growthText(f, opts),
        ratio: ratioText(f, rounds.bareN),
        target: `≤ ${mib(bound)} (64 MiB + ${many} × (${config.sendHighWaterBytes / KiB} + ${config.maxPayloadBytes / KiB}) KiB)`,
        result: f.capped === null && f.growth <= bound ? "PASS" : "FAIL",
      },
      {
        metric: `${many} clients: peak RSS growth per flooder`,
        bare: rounds.bareN === undefined ? "not run" : rounds.bareN.capped === null ? mib(rounds.bareN.growth / many) : `≥ ${mib((opts.capMiB * MiB - rounds.bareN.before) / many)}`,
        factory: mib(f.growth / many),
        ratio: "",
        target: "none",
        result: "info",
      },
    );
  }
  for (const key of ["factory1", "factoryN"]) {
    const f = rounds[key];
    if (f?.stats === undefined || f.stats === null) continue;
    const closed = f.stats.removals.filter((x) => x.event === "factory.slow_reader").length;
    rows.push({
      metric: `${f.n} client${f.n === 1 ? "" : "s"}, ${secs(f.flooded.stoppedAfterMs)} flood: flooders closed by the factory (slowReaderTimeoutMs ${secs(f.slowReaderTimeoutMs)})`,
      bare: "none (no backpressure)",
      factory: `${closed} of ${f.n} closed; ${f.reached} of ${f.n} at the high-water mark, not read from`,
      ratio: "",
      target: "none",
      result: "info",
    });
  }
  const c = rounds.closeN;
  if (c?.stats !== undefined && c.stats !== null) {
    const slow = c.stats.removals.filter((x) => x.event === "factory.slow_reader");
    const afterPause = slow.filter((x) => x.pausedAt !== null).map((x) => x.at - x.pausedAt);
    rows.push(
      {
        metric: `${c.n} clients, slowReaderTimeoutMs ${secs(c.slowReaderTimeoutMs)}: closed with 1008 (slow_reader)`,
        bare: "—",
        factory: `${slow.length} of ${c.n} (${[...new Set(slow.map((x) => x.why))].join("/") || "none"}), ${span(afterPause)} after the pause`,
        ratio: "",
        target: `all ${c.n}`,
        result: slow.length === c.n ? "PASS" : "FAIL",
      },
      {
        metric: `${c.n} clients, slowReaderTimeoutMs ${secs(c.slowReaderTimeoutMs)}: peak RSS growth, and at the round's end`,
        bare: "—",
        factory: `${mib(c.growth)}; ${mib(c.last - c.before)} at the end`,
        ratio: "",
        target: "none",
        result: "info",
      },
    );
  }

  const details = Object.values(rounds)
    .filter((r) => r.before !== undefined)
    .map((r) => ({
      server: r.kind === "bare" ? "bare ws echo" : "factory",
      clients: String(r.n),
      slowReaderTimeoutMs: r.kind === "bare" ? "—" : String(r.slowReaderTimeoutMs),
      "flood (s)": (r.capped === null ? r.flooded.stoppedAfterMs / 1000 : r.capped.atMs / 1000).toFixed(1),
      "RSS before": mib(r.before),
      "peak RSS": r.capped === null ? mib(r.peak) : `≥ ${mib(r.peak)} (cap)`,
      growth: r.capped === null ? mib(r.growth) : `≥ ${mib(r.growth)}`,
      "peak at (s)": (r.peakAtMs / 1000).toFixed(1),
      "RSS at end": mib(r.last),
      "clients sent": `${r.flooded.clients.reduce((s, x) => s + x.sent, 0)} msgs, ${mib(r.flooded.clients.reduce((s, x) => s + x.sentBytes, 0))}`,
      "server read / replied (msgs)": r.stats === null ? "—" : `${r.stats.received} / ${r.kind === "factory" ? r.stats.echoed - r.n : r.stats.echoed}`,
      "flood's end: V8 heap used / committed / Buffers": r.heapAtEnd === null ? "—" : memoryText(r.heapAtEnd),
      "after the round, live (gc())": r.stats === null ? "—" : memoryText(r.stats.live),
      "most waiting for one client": r.kind === "factory" && r.stats !== null ? `${(r.stats.maxBufferedSeen / KiB).toFixed(0)} KiB` : r.stats === null ? "—" : `${(r.stats.maxBufferedNow / KiB).toFixed(0)} KiB (at end)`,
      "what happened to the flooders": outcome(r),
    }));
  return { name, opts, rows, details, problems, rounds, config };
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(
    rows.map((r) => ({
      figure: r.metric,
      "bare ws echo (no backpressure)": r.bare,
      factory: r.factory,
      "factory / bare": r.ratio,
      target: r.target,
      result: r.result,
    })),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  const c = result.config;
  const msg = Object.values(result.rounds).find((r) => r.messageBytes !== undefined)?.messageBytes;
  return [
    ...sectionHeader(m, cmd),
    `- Flood: each client sends \`{"type":"chat","text":…}\` of ${o.textBytes} ASCII characters (${msg ?? "?"} bytes a message), ≤ ${o.inFlight} messages per client not yet written, never reading after the welcome; ` +
      `N = 1 for ${secs(o.roundMs)}; the factory with N = ${o.clients} until all are paused + ${secs(o.holdMs)} (at most ${secs(o.manyRoundMaxMs)}), the bare server as long; ` +
      `each round in fresh processes; RSS sampled every ${o.sampleMs} ms, and VmHWM (reset at the flood's start); every server capped at ${o.capMiB} MiB`,
    c === null
      ? "- Factory: its defaults"
      : `- Factory: its defaults — sendHighWaterBytes ${c.sendHighWaterBytes / KiB} KiB, sendMaxBufferedBytes ${c.sendMaxBufferedBytes / KiB} KiB, slowReaderTimeoutMs ${c.slowReaderTimeoutMs}, maxPayloadBytes ${c.maxPayloadBytes / KiB} KiB, closeGraceMs ${c.closeGraceMs}, heartbeatIntervalMs ${c.heartbeatIntervalMs}` +
        (o.closeRoundTimeoutMs > 0 ? `; in the last round only, slowReaderTimeoutMs ${o.closeRoundTimeoutMs} (flooding until all are closed, at most ${secs(o.closeRoundMaxMs)})` : ""),
    "",
    resultsTable(result.rows, table),
    "",
    "Every round, in the order run:",
    "",
    table(result.details),
  ].join("\n");
}
