// The probe benchmark: what one `probe` (POST /v1/users/{userId}/rungs/probe
// on the factory's control API) costs for one user's 20 connections while
// 0, others/2 and `others` other connections are open on the same factory.
// The run with 0 others is the baseline, measured in the same round; a probe
// that is O(that user's connections) costs the same with 10,000 others
// (ratio ≈ 1), one that walked every connection would not.
//
// Each scenario runs in fresh processes: the factory (server.mjs, from dist/),
// a load client holding the others (../factory/load-client.mjs: default `ws`
// clients, idle), and the probed users' client (user-client.mjs):
//   - user A: 20 live connections. Its probe returns as soon as the 20 pongs
//     are back, so its wall time is the figure that would grow if the event
//     loop had more to do with more connections open;
//   - user B: 15 live and 5 zombies (open, never answer a ping). Its probe
//     waits out the probe timeout (the factory's default, 1 s) and evicts the
//     5; its wall time is the timeout by design, its CPU time is the figure.
//     The 5 zombies are reopened after each probe.
// Per repetition, A then B; for each, the factory's CPU time (its
// `process.cpuUsage()`, read over IPC just before and just after the HTTP
// call) and the call's wall time, seen by this process.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Child, median, signTokens } from "../factory/bench.mjs";
import { sectionHeader } from "../lib.mjs";

const DIST_FACTORY = fileURLToPath(new URL("../../dist/factory/factory.js", import.meta.url));

export const name = "probe";

export const defaults = {
  others: 10_000, // the scenarios: 0, others/2, others
  othersPerUser: 10,
  rounds: 2, // every scenario once per round, fresh processes each time
  reps: 10, // probes of each user per scenario and round
  warmup: 3, // untimed probes of each user first (JIT, first HTTP connection)
  live: 15, // user B's live connections; plus `zombies` = 20, the per-user limit
  zombies: 5,
  inFlight: 200,
  openTimeoutMs: 120_000,
  handshakeTimeoutMs: 30_000,
  probeCallTimeoutMs: 10_000, // one HTTP call; the probe itself waits ≤ 1 s
};

/** Command-line options (`node bench/run.mjs probe --others N`) and their ranges. */
export const optionRanges = { others: [2, 12_000], rounds: [1, 10], reps: [1, 100] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { others: 200, rounds: 1, reps: 2, warmup: 1 };

export const targets = {
  cpuRatioMax: 1.5, // factory CPU per probe with N others ≤ 1.5 × with none
};

const USER_A = "bench-probe-user-a";
const USER_B = "bench-probe-user-b";
const USER_CONNECTIONS = 20;
const cpuTotal = (c) => c.user + c.system;
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** One probe over HTTP: the factory's CPU time and the wall time around it, and the rung's result. */
async function probeOnce(server, controlUrl, controlToken, userId, timeoutMs) {
  const cpu0 = await server.call("cpu");
  const t0 = process.hrtime.bigint();
  const res = await fetch(`${controlUrl}/v1/users/${userId}/rungs/probe`, {
    method: "POST",
    headers: { Authorization: `Bearer ${controlToken}`, "Content-Type": "application/json" },
    body: "{}",
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = await res.json();
  const wallMs = ms(t0);
  const cpu1 = await server.call("cpu");
  if (res.status !== 200) throw new Error(`probe of ${userId}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return { wallMs, cpuUs: cpuTotal(cpu1) - cpuTotal(cpu0), gcMs: cpu1.gcMs - cpu0.gcMs, result: body };
}

/** Waits until the factory holds `count` managers for `userId` (the client's `open` can come first). */
async function waitForActive(server, userId, count) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const s = await server.call("stats", { userId });
    if (s.active === count) return;
    if (Date.now() > deadline) throw new Error(`${userId} holds ${s.active} managers, expected ${count}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** One scenario in fresh processes: `others` other connections, then the probes. */
async function scenario(others, { authSecret, controlToken, othersAuth, userTokens, opts, log }) {
  const problems = [];
  const server = new Child("factory", "../probe/server.mjs", { env: { RECLAIM_BENCH_AUTH_SECRET: authSecret, RECLAIM_BENCH_CONTROL_TOKEN: controlToken } });
  let load;
  let users;
  try {
    const { port, controlUrl } = await server.ready(20_000);
    const url = `ws://127.0.0.1:${port}/ws`;
    if (others > 0) {
      load = new Child("load client", "load-client.mjs");
      await load.ready(20_000);
      log(`opening ${others} other connections`);
      const open = await load.call(
        "open",
        { url, authorization: othersAuth.slice(0, others), inFlight: opts.inFlight, timeoutMs: opts.openTimeoutMs, handshakeTimeoutMs: opts.handshakeTimeoutMs },
        opts.openTimeoutMs + 10_000,
      );
      if (open.opened !== others) {
        problems.push(`${others} others: only ${open.opened} opened: ${open.errors.map((e) => `${e.count}× ${e.message}`).join("; ")}`);
        return { others, problems };
      }
    }
    users = new Child("probed users' client", "../probe/user-client.mjs");
    await users.ready(20_000);
    await users.call("open", { url, authorization: userTokens[USER_A], live: USER_CONNECTIONS }, 30_000);
    await users.call("open", { url, authorization: userTokens[USER_B], live: opts.live, zombies: opts.zombies }, 30_000);
    await waitForActive(server, USER_A, USER_CONNECTIONS);
    await waitForActive(server, USER_B, USER_CONNECTIONS);
    const held = await server.call("stats", { userId: USER_A });
    if (held.connections !== others + 2 * USER_CONNECTIONS) problems.push(`${others} others: the factory holds ${held.connections} connections, expected ${others + 2 * USER_CONNECTIONS}`);

    const a = [];
    const b = [];
    log(`${others} others: ${opts.warmup} untimed + ${opts.reps} timed probes of each user`);
    for (let i = 0; i < opts.warmup + opts.reps; i++) {
      const pa = await probeOnce(server, controlUrl, controlToken, USER_A, opts.probeCallTimeoutMs);
      if (pa.result.removed.length !== 0 || pa.result.remaining !== USER_CONNECTIONS) {
        problems.push(`${others} others: the probe of 20 live connections removed ${pa.result.removed.length}, left ${pa.result.remaining}`);
      }
      const pb = await probeOnce(server, controlUrl, controlToken, USER_B, opts.probeCallTimeoutMs);
      const noPong = pb.result.removed.filter((r) => r.reason === "no_pong").length;
      if (noPong !== opts.zombies || pb.result.removed.length !== opts.zombies || pb.result.remaining !== opts.live) {
        problems.push(`${others} others: the probe of ${opts.live} live + ${opts.zombies} zombies removed ${JSON.stringify(pb.result.removed.map((r) => r.reason))}, left ${pb.result.remaining}`);
      }
      if (problems.length > 0) break;
      if (i >= opts.warmup) {
        a.push({ wallMs: pa.wallMs, cpuUs: pa.cpuUs, gcMs: pa.gcMs, rungMs: pa.result.durationMs });
        b.push({ wallMs: pb.wallMs, cpuUs: pb.cpuUs, gcMs: pb.gcMs, rungMs: pb.result.durationMs });
      }
      // Back to 20 for the next probe: new zombies in place of the evicted ones.
      await users.call("open", { url, authorization: userTokens[USER_B], zombies: opts.zombies }, 30_000);
      await waitForActive(server, USER_B, USER_CONNECTIONS);
    }

    const userStats = await users.call("stats");
    if (userStats.liveClosed > 0) problems.push(`${others} others: ${userStats.liveClosed} live connections of the probed users closed (${JSON.stringify(userStats.liveCloseCodes)})`);
    let othersPings = 0;
    if (load !== undefined) {
      const s = await load.call("stats");
      othersPings = s.pingsReceived;
      if (s.open !== others || s.closedAfterOpen > 0) problems.push(`${others} others: ${s.open} open at the end, ${s.closedAfterOpen} closed`);
      // The probe pings one user's connections and nobody else's.
      if (s.pingsReceived !== 0) problems.push(`${others} others: the other connections saw ${s.pingsReceived} pings, expected 0`);
    }
    return { others, problems, a, b, othersPings };
  } finally {
    await server.stop();
    if (load !== undefined) await load.stop();
    if (users !== undefined) await users.stop();
  }
}

/**
 * Runs the benchmark: `rounds` rounds of the scenarios 0, others/2 and
 * `others` other connections, each in fresh processes. Returns the figures
 * and `problems` (a connection that did not open or dropped, a probe that
 * removed the wrong managers, a ping to someone else): anything that makes
 * the run invalid. Missed targets are not problems.
 */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (!existsSync(DIST_FACTORY)) throw new Error("dist/factory/factory.js is missing: run `npm run build` first");
  const counts = [0, Math.round(opts.others / 2), opts.others];

  const authSecret = randomBytes(32).toString("hex");
  const controlToken = randomBytes(24).toString("hex");
  const othersAuth = await signTokens(authSecret, opts.others, Math.ceil(opts.others / opts.othersPerUser));
  const { TokenAuth } = await import("../../dist/factory/auth.js");
  const auth = new TokenAuth(authSecret);
  const userTokens = { [USER_A]: `Bearer ${await auth.sign(USER_A, 3600)}`, [USER_B]: `Bearer ${await auth.sign(USER_B, 3600)}` };
  log(`signed ${othersAuth.length} tokens for the others and 2 for the probed users`);

  const rounds = [];
  const problems = [];
  for (let r = 1; r <= opts.rounds && problems.length === 0; r++) {
    const round = [];
    for (const others of counts) {
      const s = await scenario(others, { authSecret, controlToken, othersAuth, userTokens, opts, log: (msg) => log(`round ${r}/${opts.rounds}, ${msg}`) });
      problems.push(...s.problems);
      if (s.problems.length > 0) break;
      round.push(s);
    }
    if (problems.length === 0) rounds.push(round);
  }
  if (rounds.length === 0) return { name, opts, counts, rows: [], details: [], problems, rounds };

  // Every figure: the median over all timed probes of all rounds in that scenario.
  const all = (i, user, key) => rounds.flatMap((round) => round[i][user].map((p) => p[key]));
  const perRound = (i, user, key) => rounds.map((round) => median(round[i][user].map((p) => p[key])) / median(round[0][user].map((p) => p[key])));
  const figure = (metric, user, key, unit, digits, target) => {
    const med = counts.map((_, i) => median(all(i, user, key)));
    const ratios = med.map((m) => m / med[0]);
    const spread = (i) => {
      const xs = perRound(i, user, key);
      return rounds.length > 1 ? ` (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` : "";
    };
    const pass = target === undefined ? undefined : ratios.slice(1).every((x) => x <= target);
    return {
      metric: `${metric} (${unit})`,
      values: med.map((m) => m.toFixed(digits)),
      ratios: ratios.map((x, i) => (i === 0 ? "" : `${x.toFixed(2)}×${spread(i)}`)),
      target: target === undefined ? "none" : `≤ ${target}×`,
      result: pass === undefined ? "info" : pass ? "PASS" : "FAIL",
    };
  };
  const rows = [
    figure("A, 20 live: factory CPU per probe", "a", "cpuUs", "µs", 0, targets.cpuRatioMax),
    figure("A, 20 live: wall time per probe call", "a", "wallMs", "ms", 2),
    figure("A, 20 live: the rung's own duration", "a", "rungMs", "ms", 2),
    figure(`B, ${opts.live} live + ${opts.zombies} zombies: factory CPU per probe`, "b", "cpuUs", "µs", 0, targets.cpuRatioMax),
    figure(`B, ${opts.live} live + ${opts.zombies} zombies: wall time per probe call`, "b", "wallMs", "ms", 1),
  ].map((row) => ({ ...row, counts }));
  const details = rounds.flatMap((round, r) =>
    round.map((s) => ({
      round: String(r + 1),
      "other connections": String(s.others),
      "A: CPU µs, median (min–max)": spreadOf(s.a.map((p) => p.cpuUs), 0),
      "A: wall ms, median (min–max)": spreadOf(s.a.map((p) => p.wallMs), 2),
      "B: CPU µs, median (min–max)": spreadOf(s.b.map((p) => p.cpuUs), 0),
      "B: wall ms, median (min–max)": spreadOf(s.b.map((p) => p.wallMs), 1),
      "GC pauses inside the timed probes, A / B (ms)": `${sum(s.a.map((p) => p.gcMs)).toFixed(1)} / ${sum(s.b.map((p) => p.gcMs)).toFixed(1)}`,
      "pings seen by the others": String(s.othersPings),
    })),
  );
  return { name, opts, counts, rows, details, problems, rounds };
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

function spreadOf(xs, digits) {
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(
    rows.map((r) => {
      const row = { figure: r.metric };
      r.counts.forEach((n, i) => {
        const label = `${n.toLocaleString("en")} others`;
        row[i === 0 ? `${label} (baseline)` : label] = r.values[i];
        if (i > 0) row[`ratio at ${n.toLocaleString("en")}`] = r.ratios[i];
      });
      return { ...row, target: r.target, result: r.result };
    }),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  return [
    ...sectionHeader(m, cmd),
    `- Load: ${result.counts.map((n) => n.toLocaleString("en")).join(" / ")} other idle connections (${o.othersPerUser} per user); ` +
      `user A with 20 live connections, user B with ${o.live} live + ${o.zombies} zombies; ${o.rounds} rounds of every scenario in fresh processes; ` +
      `per scenario and round ${o.warmup} untimed and ${o.reps} timed probes of each user; probe timeout: the factory's default, 1 s`,
    `- Each figure is the median over every timed probe of the scenario; a ratio is against the same figure with 0 others, in brackets the lowest and highest ratio of a single round.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every round:",
    "",
    table(result.details),
  ].join("\n");
}
