// The adaptive benchmark (issue 18, ADR 28): the probe's per-connection
// deadline (`probeDeadline`: fixed, rfc6298, phi) against live clients whose
// pongs follow a heavy-tailed delay distribution (./delays.mjs: some pongs
// 10× late) and zombies with history, side by side in the same run.
//
// For each delay profile (a median pong delay) and each mode, in fresh
// processes with the same seed (the same clients):
//   - the factory (factory.mjs, from dist/) with probeDeadline = mode, ceiling
//     1 s, floor 100 ms, limit 20; its heartbeat timer is pushed out to 1 h and
//     this process runs the factory's own sweep between probes instead;
//   - the clients (clients.mjs): `users` users × 20 connections, all answering
//     pings themselves after a drawn delay.
// Warm-up: `warmupSweeps` sweeps (round-trip history). Then `rounds` rounds of:
//   1. `sweepsPerRound` sweeps, each after every pong of the last is back
//      (so the heartbeat never terminates a live client nor a zombie, and no
//      ping is outstanding when the probe starts);
//   2. half of the users (alternating) get `zombies` zombies: the connections
//      of theirs that answered the most pings stop answering (they stay
//      connected); the other half have live connections only;
//   3. every user is probed at once (POST /v1/users/{id}/rungs/probe);
//   4. the zombies the probe missed are closed by the client, and every user
//      is topped up to 20 again (fresh connections, which build history
//      until they are the oldest and are silenced in turn).
// The heartbeat could not simply run on its timer: with a 1 s interval a sweep
// lands inside every fixed-mode probe (1 s), and a zombie silenced while a
// heartbeat ping was out would be terminated by the heartbeat, not the probe.
//
// A false eviction is a client that was answering and got closed (seen by the
// clients; the rungs' `removed` must agree). Zombie detection time is the
// rung's `durationMs` of a probe with zombies: the rung evicts when it
// returns, i.e. when every connection has answered or passed its deadline.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { Child } from "../factory/bench.mjs";
import { sectionHeader } from "../lib.mjs";
import { SHAPE } from "./delays.mjs";

const DIST_FACTORY = fileURLToPath(new URL("../../dist/factory/factory.js", import.meta.url));

export const name = "adaptive";

export const MODES = ["fixed", "rfc6298", "phi"];
const PER_USER = 20; // the factory's limit: every user full

export const defaults = {
  // Delay profiles, each run in every mode: median pong delay M (ms), users (× 20 connections), rounds.
  // Live connections probed per mode: rounds × users × (20 − zombies/2), 11,400 for 50 users and 12 rounds.
  // The last profile is a small factory (80 connections): its sweeps are too small to delay the round trips
  // they measure. `--median`, `--users`, `--rounds` run one profile (defaults 20 ms, 50, 12) instead.
  profiles: [
    { medianMs: 20, users: 50, rounds: 12 },
    { medianMs: 1, users: 50, rounds: 12 },
    { medianMs: 1, users: 4, rounds: 40 },
  ],
  zombies: 2, // per user with zombies, per round
  warmupSweeps: 8,
  sweepsPerRound: 2,
  // Each sweep is paced as the factory's timer paces it (ADR 34): over half of a 1 s interval. 0: all at once.
  sweepSpreadMs: 500,
  tailPermille: 20, // 2 % of pongs 10× late
  capMs: 800,
  seed: 18,
  drainTimeoutMs: 5000,
  probeCallTimeoutMs: 10_000,
};

/** Command-line options (`node bench/run.mjs adaptive --rounds N`) and their ranges. */
export const optionRanges = { users: [2, 500], rounds: [1, 200], zombies: [1, 10], median: [1, 200], seed: [0, 2 ** 31], sweepSpreadMs: [0, 5000] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { profiles: [{ medianMs: 20, users: 4, rounds: 2 }], warmupSweeps: 3, sweepsPerRound: 1 };

export const targets = {
  falseEvictions: 0, // live clients evicted, default mode (phi)
  detectionP99Ms: 250, // zombie detection p99, default mode (phi), on loopback (profiles up to loopbackMedianMs)
  loopbackMedianMs: 5, // a profile whose median pong delay is above this is a wide-area network, not loopback
};

const profileName = ({ medianMs, users }) => `M = ${medianMs} ms, ${(users * PER_USER).toLocaleString("en")} conns`;
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/** Nearest-rank quantile. */
function quantile(xs, q) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

async function probeOnce(controlUrl, controlToken, userId, timeoutMs) {
  const t0 = process.hrtime.bigint();
  const res = await fetch(`${controlUrl}/v1/users/${userId}/rungs/probe`, {
    method: "POST",
    headers: { Authorization: `Bearer ${controlToken}`, "Content-Type": "application/json" },
    body: "{}",
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = await res.json();
  const wallMs = ms(t0);
  if (res.status !== 200) throw new Error(`probe of ${userId}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return { wallMs, durationMs: body.durationMs, removed: body.removed };
}

/** One mode of one profile, in fresh processes. */
async function measureMode(mode, { medianMs, users, rounds }, { authSecret, controlToken, tokens, opts, log }) {
  const problems = [];
  const userIds = Object.keys(tokens).slice(0, users);
  tokens = Object.fromEntries(userIds.map((userId) => [userId, tokens[userId]]));
  const delay = { seed: opts.seed, medianMs, tailPermille: opts.tailPermille, capMs: opts.capMs };
  const factory = new Child(`factory (${mode})`, "../adaptive/factory.mjs", {
    env: { RECLAIM_BENCH_AUTH_SECRET: authSecret, RECLAIM_BENCH_CONTROL_TOKEN: controlToken, RECLAIM_BENCH_PROBE_DEADLINE: mode, RECLAIM_BENCH_SWEEP_SPREAD_MS: String(opts.sweepSpreadMs) },
  });
  const clients = new Child("clients", "../adaptive/clients.mjs");
  const out = { mode, profile: profileName({ medianMs, users }), liveProbed: 0, zombiesProbed: 0, zombiesDetected: 0, serverExtra: 0, heartbeatTerminated: 0, withZombies: [], liveOnly: [], deadlines: [], means: [], tails: [], history: [], load: os.loadavg()[0], falseWithZombies: 0, falseLiveOnly: 0 };
  try {
    const { port, controlUrl } = await factory.ready(20_000);
    await clients.ready(20_000);
    const url = `ws://127.0.0.1:${port}/ws`;
    const topUp = async () => {
      const { opened } = await clients.call("open", { url, tokens, perUser: PER_USER, delay }, 60_000);
      if (opened !== userIds.length * PER_USER) throw new Error(`${mode}: ${opened} connections open, expected ${userIds.length * PER_USER}`);
    };
    const sweep = async () => {
      const { pending } = await clients.call("drain", { timeoutMs: opts.drainTimeoutMs }, opts.drainTimeoutMs + 5000);
      if (pending > 0) problems.push(`${mode}: ${pending} pongs still scheduled after ${opts.drainTimeoutMs} ms`);
      const { terminated } = await factory.call("sweep");
      out.heartbeatTerminated += terminated;
    };
    await topUp();
    log(`${out.profile}, ${mode}: ${userIds.length * PER_USER} connections open, ${opts.warmupSweeps} warm-up sweeps`);
    for (let i = 0; i < opts.warmupSweeps; i++) await sweep();
    await factory.call("loop"); // from here on: the rounds

    for (let r = 0; r < rounds && problems.length === 0; r++) {
      for (let i = 0; i < opts.sweepsPerRound; i++) await sweep();
      await clients.call("drain", { timeoutMs: opts.drainTimeoutMs }, opts.drainTimeoutMs + 5000);
      const deadlines = await factory.call("deadlines", { userIds });
      out.deadlines.push(...deadlines.map((d) => d.ms));
      out.means.push(...deadlines.map((d) => d.mean));
      if (deadlines.length > 0) out.tails.push(deadlines[0].tail);
      const zombieUsers = userIds.filter((_, i) => i % 2 === r % 2);
      const { history } = await clients.call("silence", { userIds: zombieUsers, count: opts.zombies });
      out.history.push(...history);
      const before = await clients.call("closed");
      const probes = await Promise.all(userIds.map((userId) => probeOnce(controlUrl, controlToken, userId, opts.probeCallTimeoutMs)));
      const { missed } = await clients.call("clearZombies", { timeoutMs: 3000 }, 10_000);
      const zombiesNow = zombieUsers.length * opts.zombies;
      const removedNow = sum(probes.map((p) => p.removed.length));
      // Live connections the rungs removed close at the same time as the zombies; give their close events a moment.
      let after = await clients.call("closed");
      for (const until = Date.now() + 2000; after.liveClosed - before.liveClosed < removedNow - (zombiesNow - missed) && Date.now() < until; ) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        after = await clients.call("closed");
      }
      const falseNow = after.liveClosed - before.liveClosed;
      out.zombiesProbed += zombiesNow;
      out.zombiesDetected += zombiesNow - missed;
      out.liveProbed += userIds.length * PER_USER - zombiesNow;
      // The rungs' own account must match what the clients saw.
      if (removedNow !== zombiesNow - missed + falseNow) problems.push(`${mode}, round ${r + 1}: the probes removed ${removedNow}, the clients lost ${zombiesNow - missed} zombies and ${falseNow} live connections`);
      const reasons = new Set(probes.flatMap((p) => p.removed.map((x) => x.reason)));
      for (const reason of reasons) if (reason !== "no_pong") problems.push(`${mode}: a probe removed a connection for ${reason}`);
      probes.forEach((p, i) => {
        const zombie = zombieUsers.includes(userIds[i]);
        (zombie ? out.withZombies : out.liveOnly).push(p);
        if (zombie) out.falseWithZombies += Math.max(0, p.removed.length - opts.zombies);
        else out.falseLiveOnly += p.removed.length;
      });
      await topUp();
      if ((r + 1) % 4 === 0 || r + 1 === rounds) log(`${out.profile}, ${mode}: round ${r + 1}/${rounds}, ${after.liveClosed} false evictions so far`);
    }
    out.clients = await clients.call("stats");
    out.factoryLoop = await factory.call("loop");
    out.falseEvictions = out.clients.liveClosed;
    if (out.heartbeatTerminated > 0) problems.push(`${mode}: the heartbeat terminated ${out.heartbeatTerminated} connections (a pong later than a sweep)`);
    return { ...out, problems };
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
    return { ...out, problems };
  } finally {
    await factory.stop();
    await clients.stop();
  }
}

/**
 * Runs the benchmark: every delay profile, every mode in fresh processes.
 * Returns the figures and `problems` (a connection that did not open, a
 * sweep that terminated someone, rungs and clients that disagree): anything
 * that makes the run invalid. Missed targets are not problems.
 */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (overrides.median !== undefined || overrides.users !== undefined || overrides.rounds !== undefined) {
    opts.profiles = [{ medianMs: overrides.median ?? 20, users: overrides.users ?? 50, rounds: overrides.rounds ?? 12 }];
  }
  const maxUsers = Math.max(...opts.profiles.map((p) => p.users));
  if (!existsSync(DIST_FACTORY)) throw new Error("dist/factory/factory.js is missing: run `npm run build` first");
  const authSecret = randomBytes(32).toString("hex");
  const controlToken = randomBytes(24).toString("hex");
  const { TokenAuth } = await import("../../dist/factory/auth.js");
  const auth = new TokenAuth(authSecret);
  const tokens = {};
  for (let i = 0; i < maxUsers; i++) {
    const userId = `bench-adaptive-${String(i).padStart(3, "0")}`;
    tokens[userId] = `Bearer ${await auth.sign(userId, 3600)}`;
  }

  const results = [];
  const problems = [];
  for (const profile of opts.profiles) {
    for (const mode of MODES) {
      const m = await measureMode(mode, profile, { authSecret, controlToken, tokens, opts, log });
      problems.push(...m.problems);
      results.push(m);
      if (problems.length > 0) break;
    }
    if (problems.length > 0) break;
  }
  if (problems.length > 0) return { name, opts, rows: [], details: [], problems, results };

  const fmt = (x, digits = 0) => (Number.isNaN(x) ? "—" : x.toFixed(digits));
  const rows = [];
  for (const p of opts.profiles) {
    const profile = profileName(p);
    // The issue's goal is for loopback; over a wide-area network (M = 20 ms, 2 % of pongs 10× late) a p99 of 250 ms
    // would be a deadline inside the late pongs' range: the false evictions are what the goal there is.
    const loopback = p.medianMs <= targets.loopbackMedianMs;
    const byMode = Object.fromEntries(MODES.map((mode) => [mode, results.find((r) => r.mode === mode && r.profile === profile)]));
    const row = (figure, value, target, pass) => ({
      profile,
      figure,
      ...Object.fromEntries(MODES.map((mode) => [mode, value(byMode[mode])])),
      target: target ?? "none",
      result: pass === undefined ? "info" : pass ? "PASS" : "FAIL",
    });
    const phi = byMode.phi;
    const detection = (r, q) => quantile(r.withZombies.map((p) => p.durationMs), q);
    rows.push(
      row("live connections probed", (r) => r.liveProbed.toLocaleString("en")),
      row("false evictions (live clients closed)", (r) => String(r.falseEvictions), `= ${targets.falseEvictions} (phi)`, phi.falseEvictions <= targets.falseEvictions),
      row("zombies detected / probed", (r) => `${r.zombiesDetected} / ${r.zombiesProbed}`),
      row("zombie detection p50 (ms)", (r) => fmt(detection(r, 0.5))),
      loopback
        ? row("zombie detection p99 (ms)", (r) => fmt(detection(r, 0.99)), `≤ ${targets.detectionP99Ms} (phi)`, detection(phi, 0.99) <= targets.detectionP99Ms)
        : row("zombie detection p99 (ms)", (r) => fmt(detection(r, 0.99)), "none (not loopback)"),
      row("live-only probe p50 / p99 (ms)", (r) => `${fmt(quantile(r.liveOnly.map((p) => p.durationMs), 0.5))} / ${fmt(quantile(r.liveOnly.map((p) => p.durationMs), 0.99))}`),
      row("smoothed round trip (SRTT) the factory measured, per connection p50 / p99 (ms)", (r) => `${fmt(quantile(r.means, 0.5), 1)} / ${fmt(quantile(r.means, 0.99), 1)}`),
      row("deadline per connection p50 / p99 (ms)", (r) => `${fmt(quantile(r.deadlines, 0.5))} / ${fmt(quantile(r.deadlines, 0.99))}`),
    );
  }
  const details = results.map((r) => ({
    profile: r.profile,
    mode: r.mode,
    "probes with zombies / live only": `${r.withZombies.length} / ${r.liveOnly.length}`,
    "zombie detection p50 / p99 / max (ms)": `${fmt(quantile(r.withZombies.map((p) => p.durationMs), 0.5))} / ${fmt(quantile(r.withZombies.map((p) => p.durationMs), 0.99))} / ${fmt(Math.max(...r.withZombies.map((p) => p.durationMs)))}`,
    "call wall time with zombies p50 / p99 (ms)": `${fmt(quantile(r.withZombies.map((p) => p.wallMs), 0.5))} / ${fmt(quantile(r.withZombies.map((p) => p.wallMs), 0.99))}`,
    "zombies' pongs answered before silence, min / median": `${Math.min(...r.history)} / ${quantile(r.history, 0.5)}`,
    "pongs sent (10× late)": `${r.clients.pongsSent} (${r.clients.latePongs})`,
    "pong delay p50 / p99 / p99.9 / max (ms)": `${fmt(r.clients.delays.p50, 1)} / ${fmt(r.clients.delays.p99, 1)} / ${fmt(r.clients.delays.p999, 1)} / ${fmt(r.clients.delays.max, 1)}`,
    "pong delay mean (clients) / smoothed round trip (factory's SRTT, p50 of connections) (ms)": `${fmt(r.clients.delays.mean, 1)} / ${fmt(quantile(r.means, 0.5), 1)}`,
    "phi's stretch (ADR 38), min / median / max over rounds": r.mode === "phi" ? `${fmt(Math.min(...r.tails), 2)} / ${fmt(quantile(r.tails, 0.5), 2)} / ${fmt(Math.max(...r.tails), 2)}` : "not used",
    "event loop delay p99 / max (ms)": `factory ${fmt(r.factoryLoop.p99, 0)} / ${fmt(r.factoryLoop.max, 0)}; clients ${fmt(r.clients.loop.p99, 0)} / ${fmt(r.clients.loop.max, 0)}`,
    "load at start": r.load.toFixed(2),
    "false evictions, close codes": r.falseEvictions === 0 ? "0" : `${r.falseEvictions} ${JSON.stringify(r.clients.liveCloseCodes)}`,
    "false evictions in probes with zombies / live only": `${r.falseWithZombies} / ${r.falseLiveOnly}`,
    "of those, pong sent ≥ 5 ms before the close (median gap, ms)": answeredEarly(r.clients.answeredBeforeClose, fmt),
  }));
  return { name, opts, rows, details, problems, results };
}

/** False evictions whose client had sent its pong at least 5 ms before it saw the close: the rung was still waiting for others. */
function answeredEarly(gaps, fmt) {
  const early = gaps.filter((g) => g >= 5);
  return early.length === 0 ? "0" : `${early.length} (${fmt(quantile(early, 0.5), 0)})`;
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(rows.map((r) => ({ profile: r.profile, figure: r.figure, "fixed (1 s)": r.fixed, rfc6298: r.rfc6298, "phi (default)": r.phi, target: r.target, result: r.result })));
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  return [
    ...sectionHeader(m, cmd),
    `- Profiles (M, users × ${PER_USER} connections, the limit, rounds): ${o.profiles.map((p) => `${p.medianMs} ms, ${p.users} users, ${p.rounds} rounds`).join("; ")}`,
    `- Per profile and mode: ${o.warmupSweeps} warm-up sweeps, then each round ${o.sweepsPerRound} sweeps (${o.sweepSpreadMs > 0 ? `paced over ${o.sweepSpreadMs} ms, as the factory's timer paces them` : "all at once, not paced"}) and one probe of every user at once, ` +
      `half of the users (alternating) with ${o.zombies} zombies (their connections with the most pongs answered go silent); each mode in fresh processes, same seed (${o.seed})`,
    `- Pong delays: per connection a median m = M·e^(${SHAPE.sigmaConnection}·Z), per pong m·e^(${SHAPE.sigmaJitter}·Z'), ${o.tailPermille / 10} % of pongs ×${SHAPE.tailFactor}, capped at ${o.capMs} ms`,
    `- Factory: ceiling (\`probeTimeoutMs\`) 1000 ms, floor (\`probeFloorMs\`) 100 ms; the figures are the rung's \`durationMs\`; percentiles are nearest-rank`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every mode:",
    "",
    table(result.details),
  ].join("\n");
}
