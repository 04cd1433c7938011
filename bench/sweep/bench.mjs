// The sweep benchmark: does the heartbeat sweep stall chat? (issue 18)
//
// A factory child (server.mjs, from dist/) holds `connections` idle
// connections from a load client child (../factory/load-client.mjs: default
// `ws` clients, which answer every ping), and one chat client child
// (chat-client.mjs) chats with it: a chat message every `chatIntervalMs`
// for `durationS` seconds after `warmupS` untimed, each timed from its send
// to its reply. Each scenario runs in fresh processes:
//   1. baseline: heartbeat off (every hour: no sweep in the window);
//   2. heartbeat every `heartbeatMs` (3 s), the factory as built (sliced sweeps);
//   3. the self-check (`selfCheck` 1, the default): the same, with the sweep
//      in one slice (server.mjs swaps in a `Heartbeat` with `sliceMs: Infinity`
//      through the library's exported classes). It must FAIL the target; if
//      it does not, the benchmark cannot see a stall and says so.
//
// The chat client sends open loop: every `chatIntervalMs` a message goes
// out whether or not the earlier ones are answered, as many users typing
// each on their own would. A sender of one message at a time sends nothing
// while the factory's loop is stalled, so a 500 ms stall would delay
// exactly one of its messages and no percentile would show it (coordinated
// omission); and timing its messages from when they were due instead makes
// each message wait for all before it, so that any slowdown longer than the
// interval piles up. Open loop, every message sent during a stall waits out
// the rest of the stall, and only that.
//
// Figures per scenario: p50, p99, max of the round trip over the whole
// window, and p99 of the messages in flight during a sweep (sent before the
// sweep ended, answered after it began). Targets: each p99 of the heartbeat
// scenario within `targets.p99DiffMaxMs` (20 ms) of the baseline's p99.
// Valid only when the heartbeat scenarios swept in the window (the sweeps
// recorded and the factory's reclaim_factory_heartbeat_sweep_seconds count),
// the baseline did not, every connection stayed open and every message got
// its reply. For telling the factory's stalls from this machine's load, the
// details add the factory's own event-loop delay, its CPU share and its
// involuntary context switches (runnable, but another process ran) over the
// window, and the chat client's.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { Child, median, signTokens } from "../factory/bench.mjs";
import { sectionHeader } from "../lib.mjs";

const DIST_FACTORY = fileURLToPath(new URL("../../dist/factory/factory.js", import.meta.url));

export const name = "sweep";

export const defaults = {
  connections: 10_000,
  users: 1000, // 10 connections each (the child's limit is 100)
  durationS: 30, // the measured window: 10 sweeps at 3 s
  warmupS: 3, // untimed chat first (JIT)
  chatIntervalMs: 10,
  heartbeatMs: 3000,
  rounds: 3, // every scenario once per round, fresh processes each time; figures are medians over the rounds
  selfCheck: 1, // 1: also the unsliced sweep, which must fail
  unpaced: 1, // 1: also the sliced sweep without pacing (before ADR 34), for information
  niceLoadClient: 0, // 1: the load client at nice 19, so that its answers to 10,000 pings take CPU only when nobody else wants it
  inFlight: 200,
  openTimeoutMs: 120_000,
  handshakeTimeoutMs: 30_000,
};

/** Command-line options (`node bench/run.mjs sweep --connections N`) and their ranges. */
export const optionRanges = {
  connections: [1, 12_000],
  durationS: [1, 600],
  warmupS: [0, 60],
  chatIntervalMs: [1, 1000],
  heartbeatMs: [100, 60_000],
  rounds: [1, 10],
  selfCheck: [0, 1],
  niceLoadClient: [0, 1],
};

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { connections: 200, users: 20, durationS: 2, warmupS: 0, heartbeatMs: 500, rounds: 1 };

export const targets = {
  p99DiffMaxMs: 20, // heartbeat on: chat round trip p99 ≤ baseline p99 + 20 ms
};

const BASELINE_HEARTBEAT_MS = 3_600_000;

/** The q-quantile (nearest rank) of numbers; null for none. */
function quantile(xs, q) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** One scenario in fresh processes: factory, load client, chat client. */
async function scenario(kind, { authorization, chatAuthorization, authSecret, opts, log }) {
  const problems = [];
  const n = authorization.length;
  const heartbeatMs = kind === "baseline" ? BASELINE_HEARTBEAT_MS : opts.heartbeatMs;
  const env = {
    RECLAIM_BENCH_AUTH_SECRET: authSecret,
    RECLAIM_BENCH_HEARTBEAT_MS: String(heartbeatMs),
    RECLAIM_BENCH_SWEEP_UNSLICED: kind === "unsliced" ? "1" : "0",
    RECLAIM_BENCH_SWEEP_UNPACED: kind === "unpaced" ? "1" : "0",
  };
  const server = new Child(`${kind} factory`, "../sweep/server.mjs", { env });
  let load;
  let chat;
  try {
    const { port, unsliced, unpaced } = await server.ready(20_000);
    if (unsliced !== (kind === "unsliced")) problems.push(`${kind}: the factory child runs ${unsliced ? "unsliced" : "sliced"} sweeps`);
    if (unpaced !== (kind === "unsliced" || kind === "unpaced")) problems.push(`${kind}: the factory child runs ${unpaced ? "unpaced" : "paced"} sweeps`);
    const url = `ws://127.0.0.1:${port}/ws`;
    load = new Child(`${kind} load client`, "load-client.mjs");
    chat = new Child(`${kind} chat client`, "../sweep/chat-client.mjs");
    await Promise.all([load.ready(20_000), chat.ready(20_000)]);
    if (opts.niceLoadClient === 1) os.setPriority(load.proc.pid, 19);

    log(`${kind}: opening ${n} idle connections`);
    const open = await load.call(
      "open",
      { url, authorization, inFlight: opts.inFlight, timeoutMs: opts.openTimeoutMs, handshakeTimeoutMs: opts.handshakeTimeoutMs },
      opts.openTimeoutMs + 10_000,
    );
    if (open.opened !== n) {
      const why = open.errors.map((e) => `${e.count}× ${e.message}`).join("; ");
      problems.push(`${kind}: only ${open.opened} of ${n} connections opened${open.timedOut ? " (timed out)" : ""}: ${why}`);
      return { kind, problems };
    }
    await chat.call("connect", { url, authorization: chatAuthorization, timeoutMs: 10_000 }, 15_000);

    log(`${kind}: chatting for ${opts.warmupS} + ${opts.durationS} s, a message every ${opts.chatIntervalMs} ms, heartbeat every ${heartbeatMs} ms`);
    const before = await server.call("sweeps");
    await server.call("mark");
    const chatted = await chat.call(
      "chat",
      { durationMs: opts.durationS * 1000, warmupMs: opts.warmupS * 1000, intervalMs: opts.chatIntervalMs },
      (opts.durationS + opts.warmupS) * 1000 + 60_000,
    );
    const loop = await server.call("loop");
    const after = await server.call("sweeps");

    if (chatted.wrong.length > 0) problems.push(`${kind}: ${chatted.wrong.length} wrong replies, e.g. ${chatted.wrong[0]}`);
    if (chatted.closed !== null) problems.push(`${kind}: the chat connection closed (${chatted.closed})`);
    const serverStats = await server.call("stats");
    const loadStats = await load.call("stats");
    if (loadStats.open !== n || loadStats.closedAfterOpen > 0 || serverStats.connections !== n + 1 || after.terminated > 0) {
      problems.push(
        `${kind}: ${loadStats.open} of ${n} idle connections open at the end, ${loadStats.closedAfterOpen} closed ` +
          `(codes ${JSON.stringify(loadStats.closeCodes)}), the factory holds ${serverStats.connections} (expected ${n + 1}), the heartbeat terminated ${after.terminated}`,
      );
    }

    // The sweeps that overlap the measured window (one still running at the end counts until the end).
    const inWindow = after.sweeps
      .map((s) => ({ start: s.start, end: s.end ?? chatted.end }))
      .filter((s) => s.end > chatted.measureFrom && s.start < chatted.end);
    const histCount = after.histogram.count - before.histogram.count;
    const histSumMs = (after.histogram.sum - before.histogram.sum) * 1000;
    const expectSweeps = kind === "baseline" ? 0 : Math.floor((opts.durationS * 1000) / opts.heartbeatMs);
    if (kind === "baseline" && (inWindow.length > 0 || histCount > 0)) problems.push(`baseline: ${inWindow.length} sweeps in the window (expected none)`);
    if (kind !== "baseline" && (inWindow.length < Math.max(1, expectSweeps - 1) || histCount < 1)) {
      problems.push(`${kind}: ${inWindow.length} sweeps in the window, ${histCount} in the factory's histogram (expected about ${expectSweeps})`);
    }

    const unanswered = chatted.answered.filter((a) => a === null).length;
    if (unanswered > 0) problems.push(`${kind}: ${unanswered} of ${chatted.answered.length} chat messages got no reply`);
    const rtt = chatted.answered.map((a, i) => a - chatted.sent[i]);
    const sendLate = chatted.sent.map((t, i) => t - chatted.due[i]);
    const duringSweep = rtt.filter((_, i) => inWindow.some((s) => chatted.sent[i] < s.end && chatted.answered[i] > s.start));
    const sweepWall = inWindow.map((s) => s.end - s.start);
    return {
      kind,
      problems,
      heartbeatMs,
      messages: rtt.length,
      p50: quantile(rtt, 0.5),
      p99: quantile(rtt, 0.99),
      max: quantile(rtt, 1),
      sendLateP99: quantile(sendLate, 0.99),
      sendLateMax: quantile(sendLate, 1),
      duringSweepMessages: duringSweep.length,
      duringSweepP99: quantile(duringSweep, 0.99),
      sweeps: inWindow.length,
      histCount,
      histSumMs,
      sweepWallMedianMs: sweepWall.length > 0 ? median(sweepWall) : null,
      loop,
      chatInvoluntary: chatted.involuntary,
    };
  } finally {
    // The factory goes first: it closes the sockets, so the client side is not left in TIME_WAIT.
    await server.stop();
    if (load !== undefined) await load.stop();
    if (chat !== undefined) await chat.stop();
  }
}

const fmt = (x, digits = 1) => (x === null || x === undefined || Number.isNaN(x) ? "–" : x.toFixed(digits));

/**
 * Runs the benchmark: `rounds` rounds of baseline, heartbeat on and (with
 * `selfCheck`) the unsliced self-check, fresh processes each. Returns the
 * rows, the details of every scenario, and `problems` (an invalid run).
 */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (!existsSync(DIST_FACTORY)) throw new Error("dist/factory/factory.js is missing: run `npm run build` first");
  const authSecret = randomBytes(32).toString("hex");
  const authorization = await signTokens(authSecret, opts.connections, opts.users);
  const [chatAuthorization] = await signTokens(authSecret, 1, 1); // bench-user-0000: one more tab, within the limit of 100
  log(`signed ${authorization.length} tokens for ${opts.users} users`);

  const kinds = ["baseline", "sliced", ...(opts.unpaced === 1 ? ["unpaced"] : []), ...(opts.selfCheck === 1 ? ["unsliced"] : [])];
  const rounds = [];
  const problems = [];
  for (let r = 1; r <= opts.rounds && problems.length === 0; r++) {
    const round = {};
    for (const kind of kinds) {
      const result = await scenario(kind, { authorization, chatAuthorization, authSecret, opts, log: (msg) => log(`round ${r}/${opts.rounds}, ${msg}`) });
      problems.push(...result.problems);
      if (result.problems.length > 0) break;
      round[kind] = result;
    }
    if (problems.length === 0) rounds.push(round);
  }
  if (rounds.length === 0) return { name, opts, rows: [], details: [{ problem: problems[0] ?? "no round" }], problems, rounds };

  const med = (kind, key) => {
    const xs = rounds.map((round) => round[kind][key]).filter((x) => x !== null);
    return xs.length === 0 ? null : median(xs);
  };
  const baseP99 = med("baseline", "p99");
  const label = { sliced: "heartbeat every", unpaced: "sliced but not paced (before ADR 34), every", unsliced: "self-check, unsliced sweep, every" };
  const rows = [
    { scenario: "heartbeat off (baseline)", p50: med("baseline", "p50"), p99: baseP99, max: med("baseline", "max"), duringSweepP99: null, sweeps: med("baseline", "sweeps"), kind: "baseline" },
  ];
  for (const kind of kinds.slice(1)) {
    const p99 = med(kind, "p99");
    const during = med(kind, "duringSweepP99");
    const worst = Math.max(p99, during ?? p99);
    rows.push({
      scenario: `${label[kind]} ${opts.heartbeatMs / 1000} s`,
      p50: med(kind, "p50"),
      p99,
      max: med(kind, "max"),
      duringSweepP99: during,
      sweeps: med(kind, "sweeps"),
      diff: worst - baseP99,
      kind,
      result: kind === "unpaced" ? "info" : worst - baseP99 <= targets.p99DiffMaxMs ? "PASS" : "FAIL",
    });
  }
  if (opts.selfCheck === 1 && rows.at(-1).result === "PASS") {
    // Not a problem of the run, but a benchmark that cannot tell a stall from none proves nothing: say so.
    rows.at(-1).result = "PASS (the self-check should FAIL: the benchmark does not see the stall at these sizes)";
  }
  const details = rounds.flatMap((round, i) =>
    kinds.map((kind) => {
      const s = round[kind];
      return {
        round: String(i + 1),
        scenario: kind,
        messages: String(s.messages),
        "p50 / p99 / max (ms)": `${fmt(s.p50)} / ${fmt(s.p99)} / ${fmt(s.max)}`,
        "chat client sent late: p99 / max (ms)": `${fmt(s.sendLateP99)} / ${fmt(s.sendLateMax)}`,
        "in flight during a sweep: n, p99 (ms)": `${s.duringSweepMessages}, ${fmt(s.duringSweepP99)}`,
        "sweeps in window": String(s.sweeps),
        "histogram: count, sum (ms)": `${s.histCount}, ${fmt(s.histSumMs)}`,
        "sweep wall, median (ms)": fmt(s.sweepWallMedianMs),
        "factory loop delay p99 / max (ms)": `${fmt(s.loop.delayP99Ms)} / ${fmt(s.loop.delayMaxMs)}`,
        "factory CPU share": `${fmt(s.loop.cpuShare * 100, 0)} %`,
        "involuntary switches: factory, chat client": `${s.loop.involuntary}, ${s.chatInvoluntary}`,
      };
    }),
  );
  return { name, opts, rows, details, problems, rounds };
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  if (rows.length === 0) return "(no valid round)";
  return table(
    rows.map((r) => ({
      scenario: r.scenario,
      "sweeps in window": fmt(r.sweeps, 0),
      "p50 (ms)": fmt(r.p50),
      "p99 (ms)": fmt(r.p99),
      "max (ms)": fmt(r.max),
      "p99 in flight during a sweep (ms)": fmt(r.duringSweepP99),
      "worse p99 − baseline p99 (ms)": r.kind === "baseline" ? "" : fmt(r.diff),
      target: r.kind === "baseline" ? "" : r.kind === "unpaced" ? "none" : `≤ ${targets.p99DiffMaxMs} ms${r.kind === "unsliced" ? " (must FAIL)" : ""}`,
      result: r.kind === "baseline" ? "baseline" : r.result,
    })),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  return [
    ...sectionHeader(m, cmd),
    `- Load: ${o.connections} idle connections on 127.0.0.1 (${o.users} users × ${Math.ceil(o.connections / o.users)}) plus one chat client ` +
      `sending a message every ${o.chatIntervalMs} ms (open loop), timed for ${o.durationS} s after ${o.warmupS} s untimed; ` +
      `${o.rounds} round${o.rounds === 1 ? "" : "s"} of heartbeat off (baseline), heartbeat every ${o.heartbeatMs} ms` +
      `${o.unpaced === 1 ? ", sliced but not paced" : ""}${o.selfCheck === 1 ? " and the unsliced self-check" : ""}, each in fresh processes`,
    `- Round trips are timed from each message's send to its reply; with more than one round each figure is the median over the rounds.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every scenario:",
    "",
    table(result.details),
  ].join("\n");
}
