// The factory benchmark: a bare `ws` server (the baseline, measured first)
// and the factory, each in its own child process, loaded by a separate load
// client child with the same 5,000 idle connections on 127.0.0.1.
//
// Figures: RSS per idle connection, handshakes per second, heartbeat sweep
// cost per connection; each with the factory/bare ratio of this same run.
//
// Then the hold phase: both servers again, fresh, each holding 10,000
// connections for `holdSweeps` intervals of a real heartbeat timer (the
// factory's own Heartbeat; ws's README `setInterval` for the bare server):
// the sweep's CPU time per interval and the server's whole CPU time per
// interval (the sweep plus the pongs it brings back), each per connection.
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { median, sectionHeader } from "../lib.mjs";

const here = (file) => fileURLToPath(new URL(file, import.meta.url));
const DIST_FACTORY = fileURLToPath(new URL("../../dist/factory/factory.js", import.meta.url));

export const name = "factory";

export const defaults = {
  connections: 5000,
  users: 500, // 10 connections each: far below the per-user limit of 20
  inFlight: 200,
  sweeps: 20,
  rounds: 5, // bare then factory, fresh processes each time; figures are medians over the rounds
  sweepGapMs: 200, // idle time after the previous sweep's pongs are all back
  pongTimeoutMs: 10_000,
  settleMs: 1000, // before each memory reading
  openTimeoutMs: 120_000, // the whole opening phase
  handshakeTimeoutMs: 30_000, // one handshake
  holdConnections: 10_000, // the hold phase; 0 skips it
  holdUsers: 1000, // 10 connections each, as above
  holdRounds: 2, // bare then factory, fresh processes each time
  holdSweeps: 10, // heartbeat intervals timed per server and round
  holdIntervalMs: 2000, // the heartbeat interval in the hold phase (the factory's default is 30 s; see BENCHMARKS.md)
};

/**
 * Command-line options (`node bench/run.mjs factory --connections N`) and
 * their ranges. 12,000 connections fit: every process may hold 20,000 file
 * descriptors, and the load client's ports come from 32768–60999.
 */
export const optionRanges = {
  connections: [1, 12_000],
  rounds: [1, 20],
  sweeps: [1, 100],
  holdConnections: [0, 12_000],
  holdRounds: [1, 10],
  holdSweeps: [1, 60],
  holdIntervalMs: [200, 30_000],
};

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = {
  connections: 200,
  users: 20,
  rounds: 1,
  sweeps: 2,
  settleMs: 100,
  holdConnections: 200,
  holdUsers: 20,
  holdRounds: 1,
  holdSweeps: 2,
  holdIntervalMs: 500,
};

export const targets = {
  rssRatioMax: 1.2,
  handshakeRatioMin: 0.8,
};

/** A child process with request/response calls over IPC, each with a timeout. */
export class Child {
  constructor(label, file, { execArgv = [], env = {} } = {}) {
    this.label = label;
    this.nextId = 1;
    this.pending = new Map();
    this.exited = false;
    this.proc = fork(here(file), [], {
      execArgv,
      env: { ...process.env, ...env },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.readyInfo = new Promise((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.readyInfo.catch(() => {}); // seen by ready(); not an unhandled rejection if nobody waits
    this.proc.on("message", (msg) => {
      if (msg?.ready === true) return this.readyResolve(msg);
      const waiter = this.pending.get(msg?.id);
      if (waiter === undefined) return;
      this.pending.delete(msg.id);
      clearTimeout(waiter.timer);
      if (msg.ok) waiter.resolve(msg.result);
      else waiter.reject(new Error(`${this.label}: ${msg.error}`));
    });
    this.proc.on("exit", (code, signal) => {
      this.exited = true;
      const err = new Error(`${this.label} exited (code ${code}, signal ${signal})`);
      this.readyReject(err);
      for (const waiter of this.pending.values()) {
        clearTimeout(waiter.timer);
        waiter.reject(err);
      }
      this.pending.clear();
    });
  }

  /** Waits for the child's ready message. */
  ready(timeoutMs) {
    return withTimeout(this.readyInfo, timeoutMs, `${this.label} did not start within ${timeoutMs} ms`);
  }

  call(cmd, args = {}, timeoutMs = 30_000) {
    if (this.exited) return Promise.reject(new Error(`${this.label} is not running`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label}: ${cmd} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.proc.send({ id, cmd, ...args });
    });
  }

  /** Ends the child: politely, then SIGKILL after 3 s. */
  async stop() {
    if (this.exited) return;
    const gone = new Promise((resolve) => this.proc.once("exit", resolve));
    this.proc.send({ id: 0, cmd: "exit" }, () => {});
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 3000);
    await gone;
    clearTimeout(timer);
  }
}

export function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}

export { median };
const cpuTotal = (c) => c.user + c.system;

/** Signs one token per connection (`users` users, round robin), before any timing starts. */
export async function signTokens(authSecret, connections, users) {
  const { TokenAuth } = await import("../../dist/factory/auth.js");
  const auth = new TokenAuth(authSecret);
  const authorization = [];
  for (let i = 0; i < connections; i++) {
    const user = `bench-user-${String(i % users).padStart(4, "0")}`;
    authorization.push(`Bearer ${await auth.sign(user, 3600)}`);
  }
  return authorization;
}

/**
 * One server through all phases, with fresh processes: start it, read its
 * memory, open the connections (timed, and the server's CPU time taken),
 * read its memory again, run the heartbeat sweeps, check that every
 * connection is still open, stop everything. `file` is the server child,
 * relative to this folder. With `hold` (the hold phase) the sweeps are the
 * server's own heartbeat timer, every `opts.holdIntervalMs`, for
 * `opts.holdSweeps` intervals, instead of sweeps called one by one.
 */
export async function measureServer(kind, file, { authorization, authSecret, opts, log, hold = false }) {
  const problems = [];
  const n = authorization.length;
  const env = { RECLAIM_BENCH_AUTH_SECRET: authSecret, ...(hold ? { RECLAIM_BENCH_HEARTBEAT_MS: String(opts.holdIntervalMs) } : {}) };
  const server = new Child(`${kind} server`, file, { execArgv: ["--expose-gc"], env });
  let client;
  try {
    const { port } = await server.ready(20_000);
    client = new Child(`${kind} load client`, "load-client.mjs");
    await client.ready(20_000);
    const url = `ws://127.0.0.1:${port}/ws`;

    log(`${kind}: memory before`);
    const before = await server.call("memory", { settleMs: opts.settleMs }, opts.settleMs + 10_000);

    log(`${kind}: opening ${n} connections, ≤ ${opts.inFlight} in flight`);
    const cpu0 = await server.call("cpu");
    const open = await client.call(
      "open",
      { url, authorization, inFlight: opts.inFlight, timeoutMs: opts.openTimeoutMs, handshakeTimeoutMs: opts.handshakeTimeoutMs },
      opts.openTimeoutMs + 10_000,
    );
    const cpu1 = await server.call("cpu");
    if (open.opened !== n) {
      const why = open.errors.map((e) => `${e.count}× ${e.message}`).join("; ");
      problems.push(`${kind}: only ${open.opened} of ${n} connections opened${open.timedOut ? " (timed out)" : ""}: ${why}`);
    }
    const atOpen = await server.call("stats");
    if (atOpen.connections !== n) problems.push(`${kind}: the server holds ${atOpen.connections} connections, expected ${n}`);

    log(`${kind}: memory after`);
    const after = await server.call("memory", { settleMs: opts.settleMs }, opts.settleMs + 10_000);

    let sweeps;
    let held = null;
    if (hold) {
      log(`${kind}: holding ${n} connections for ${opts.holdSweeps} heartbeat intervals of ${opts.holdIntervalMs} ms`);
      const holdTimeout = (opts.holdSweeps + 1) * opts.holdIntervalMs + opts.pongTimeoutMs + 10_000;
      held = await server.call("hold", { sweeps: opts.holdSweeps, intervalMs: opts.holdIntervalMs, pongTimeoutMs: opts.pongTimeoutMs }, holdTimeout);
      if (held.held !== n || held.swept !== opts.holdSweeps || held.terminated > 0 || held.pendingAfter > 0 || held.connectionsAfter !== n) {
        problems.push(
          `${kind}: the heartbeat held ${held.held} connections, swept ${held.swept} times (expected ${opts.holdSweeps}), ` +
            `terminated ${held.terminated}, ${held.pendingAfter} pongs missing at the end, ${held.connectionsAfter} connections left`,
        );
      }
      sweeps = { swept: held.held, cpuUs: held.cpuUs, wallUs: held.wallUs };
    } else {
      log(`${kind}: ${opts.sweeps} heartbeat sweeps`);
      const sweepTimeout = opts.sweeps * (opts.pongTimeoutMs + opts.sweepGapMs + 2000) + opts.pongTimeoutMs + 10_000;
      sweeps = await server.call("sweep", { count: opts.sweeps, gapMs: opts.sweepGapMs, pongTimeoutMs: opts.pongTimeoutMs }, sweepTimeout);
      if (sweeps.swept !== n || sweeps.terminated > 0 || sweeps.pendingAfter > 0) {
        problems.push(`${kind}: heartbeat swept ${sweeps.swept} connections, terminated ${sweeps.terminated}, ${sweeps.pendingAfter} pongs missing at the end`);
      }
    }
    const pingsExpected = (hold ? opts.holdSweeps : opts.sweeps) * n;
    const clientStats = await client.call("stats");
    if (clientStats.open !== n || clientStats.closedAfterOpen > 0) {
      problems.push(`${kind}: ${clientStats.open} of ${n} connections open at the end, ${clientStats.closedAfterOpen} closed (codes ${JSON.stringify(clientStats.closeCodes)})`);
    }
    if (clientStats.pingsReceived !== pingsExpected) {
      problems.push(`${kind}: clients saw ${clientStats.pingsReceived} pings, expected ${pingsExpected}`);
    }
    return {
      held,
      holdCpuMsPerInterval: held === null ? null : held.totalCpuUs / held.swept / 1000,
      holdCpuUsPerConnInterval: held === null ? null : held.totalCpuUs / held.swept / n,
      kind,
      problems,
      before,
      after,
      open,
      sweeps,
      clientStats,
      rssPerConnKB: (after.rss - before.rss) / n / 1024,
      heapPerConnKB: (after.heapUsed - before.heapUsed) / n / 1024,
      handshakesPerSec: open.opened / (open.ms / 1000),
      serverCpuUsPerHandshake: (cpuTotal(cpu1) - cpuTotal(cpu0)) / open.opened,
      sweepCpuUsPerConn: median(sweeps.cpuUs) / sweeps.swept,
      sweepWallUsPerConn: median(sweeps.wallUs) / sweeps.swept,
      sweepCpuMsMedian: median(sweeps.cpuUs) / 1000,
      sweepWallMsMedian: median(sweeps.wallUs) / 1000,
    };
  } finally {
    // The server goes first: it closes the sockets, so the client side is not left in TIME_WAIT.
    await server.stop();
    if (client !== undefined) await client.stop();
  }
}

/**
 * Runs the benchmark: `rounds` rounds of bare ws then factory, each with
 * fresh processes; every figure is the median over the rounds. `log` prints
 * progress. Returns the figures, the table rows, and `problems`: anything
 * that makes the run invalid (a connection that did not open, dropped, or
 * missed a ping). Missed targets are not problems.
 */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (!existsSync(DIST_FACTORY)) throw new Error("dist/factory/factory.js is missing: run `npm run build` first");

  // Tokens are signed up front, with the secret the factory child is given, so no signing is timed.
  const authSecret = randomBytes(32).toString("hex");
  const authorization = await signTokens(authSecret, opts.connections, opts.users);
  log(`signed ${authorization.length} tokens for ${opts.users} users (≤ ${Math.ceil(opts.connections / opts.users)} connections each)`);

  const rounds = [];
  const problems = [];
  for (let r = 1; r <= opts.rounds; r++) {
    const ctx = { authorization, authSecret, opts, log: (msg) => log(`round ${r}/${opts.rounds}, ${msg}`) };
    const bare = await measureServer("bare", "server-bare.mjs", ctx);
    problems.push(...bare.problems);
    const factory = await measureServer("factory", "server-factory.mjs", ctx);
    problems.push(...factory.problems);
    rounds.push({ bare, factory });
    if (problems.length > 0) break; // an invalid round: no point in going on
  }

  const holdRounds = [];
  if (opts.holdConnections > 0 && problems.length === 0) {
    const holdAuthorization = await signTokens(authSecret, opts.holdConnections, opts.holdUsers);
    log(`hold phase: signed ${holdAuthorization.length} tokens for ${opts.holdUsers} users`);
    for (let r = 1; r <= opts.holdRounds; r++) {
      const ctx = { authorization: holdAuthorization, authSecret, opts, hold: true, log: (msg) => log(`hold round ${r}/${opts.holdRounds}, ${msg}`) };
      const bare = await measureServer("bare", "server-bare.mjs", ctx);
      problems.push(...bare.problems);
      const factory = await measureServer("factory", "server-factory.mjs", ctx);
      problems.push(...factory.problems);
      holdRounds.push({ bare, factory });
      if (problems.length > 0) break;
    }
  }

  const figureOf = (set) => (metric, key, digits, target, pass) => {
    const bare = median(set.map((round) => round.bare[key]));
    const factory = median(set.map((round) => round.factory[key]));
    const ratio = factory / bare;
    const ratios = set.map((round) => round.factory[key] / round.bare[key]);
    return {
      metric,
      bare: bare.toFixed(digits),
      factory: factory.toFixed(digits),
      ratio: `${ratio.toFixed(2)}×`,
      perRound: set.length > 1 ? `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}` : "",
      target: target ?? "none",
      result: pass === undefined ? "info" : pass(ratio) ? "PASS" : "FAIL",
    };
  };
  const figure = figureOf(rounds);
  const rows = [
    figure("RSS per idle connection (KB)", "rssPerConnKB", 2, `≤ ${targets.rssRatioMax.toFixed(1)}×`, (x) => x <= targets.rssRatioMax),
    figure("Handshakes per second", "handshakesPerSec", 0, `≥ ${targets.handshakeRatioMin.toFixed(1)}×`, (x) => x >= targets.handshakeRatioMin),
    figure("Heap used per idle connection (KB)", "heapPerConnKB", 2),
    figure("Server CPU per handshake (µs)", "serverCpuUsPerHandshake", 0),
    figure("Heartbeat sweep CPU per connection (µs)", "sweepCpuUsPerConn", 2),
    figure("Heartbeat sweep wall per connection (µs)", "sweepWallUsPerConn", 2),
  ];
  if (holdRounds.length > 0) {
    const holdFigure = figureOf(holdRounds);
    const n = opts.holdConnections.toLocaleString("en");
    rows.push(
      holdFigure(`${n} held, heartbeat on: sweep CPU per interval (ms)`, "sweepCpuMsMedian", 1),
      holdFigure(`${n} held, heartbeat on: sweep CPU per connection (µs)`, "sweepCpuUsPerConn", 2),
      holdFigure(`${n} held, heartbeat on: server CPU per interval (ms)`, "holdCpuMsPerInterval", 1),
      holdFigure(`${n} held, heartbeat on: server CPU per connection and interval (µs)`, "holdCpuUsPerConnInterval", 2),
      holdFigure(`${n} held: RSS per idle connection (KB)`, "rssPerConnKB", 2),
      holdFigure(`${n} held: heap used per idle connection (KB)`, "heapPerConnKB", 2),
    );
  }
  const kb = (bytes) => (bytes / 1024).toFixed(0);
  const details = rounds.flatMap((round, i) =>
    [round.bare, round.factory].map((r) => ({
      round: String(i + 1),
      server: r.kind === "bare" ? "bare ws" : "factory",
      "RSS before → after (KB)": `${kb(r.before.rss)} → ${kb(r.after.rss)}`,
      "RSS / conn (KB)": r.rssPerConnKB.toFixed(2),
      "heap / conn (KB)": r.heapPerConnKB.toFixed(2),
      "open time (ms)": r.open.ms.toFixed(0),
      "handshakes/s": r.handshakesPerSec.toFixed(0),
      "server CPU / handshake (µs)": r.serverCpuUsPerHandshake.toFixed(0),
      "sweep CPU / wall, median (ms)": `${r.sweepCpuMsMedian.toFixed(1)} / ${r.sweepWallMsMedian.toFixed(1)}`,
    })),
  );
  const holdDetails = holdRounds.flatMap((round, i) =>
    [round.bare, round.factory].map((r) => ({
      "hold round": String(i + 1),
      server: r.kind === "bare" ? "bare ws" : "factory",
      "RSS / conn (KB)": r.rssPerConnKB.toFixed(2),
      "heap / conn (KB)": r.heapPerConnKB.toFixed(2),
      "handshakes/s": r.handshakesPerSec.toFixed(0),
      sweeps: String(r.held.swept),
      "sweep CPU, each (ms)": r.held.cpuUs.map((us) => (us / 1000).toFixed(0)).join(" "),
      "sweep CPU / wall, median (ms)": `${r.sweepCpuMsMedian.toFixed(1)} / ${r.sweepWallMsMedian.toFixed(1)}`,
      "server CPU over the hold (ms)": `${(r.held.totalCpuUs / 1000).toFixed(0)} in ${(r.held.windowMs / 1000).toFixed(1)} s`,
      "server CPU / interval (ms)": r.holdCpuMsPerInterval.toFixed(1),
    })),
  );
  return { name, opts, rows, details, holdDetails, problems, rounds, holdRounds };
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(
    rows.map((r) => ({
      figure: r.metric,
      "bare ws": r.bare,
      factory: r.factory,
      "factory / bare": r.ratio,
      "ratio per round": r.perRound,
      target: r.target,
      result: r.result,
    })),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  const hold = result.holdRounds.length > 0;
  return [
    ...sectionHeader(m, cmd),
    `- Load: ${o.connections} idle connections on 127.0.0.1 (${o.users} users × ${Math.ceil(o.connections / o.users)}), ≤ ${o.inFlight} handshakes in flight; ` +
      `${o.rounds} rounds of bare ws then factory, each server and each load client in a fresh process; ${o.sweeps} heartbeat sweeps per server and round`,
    ...(hold
      ? [
          `- Hold phase: ${o.holdConnections} connections (${o.holdUsers} users × ${Math.ceil(o.holdConnections / o.holdUsers)}), ` +
            `${o.holdRounds} rounds of bare ws then factory in fresh processes, each held for ${o.holdSweeps} intervals of its own heartbeat timer every ${o.holdIntervalMs} ms`,
        ]
      : []),
    `- Each figure is the median over the rounds; "factory / bare" is the ratio of the medians, "ratio per round" the lowest and highest ratio of a single round.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every round:",
    "",
    table(result.details),
    ...(hold ? ["", "Every hold round:", "", table(result.holdDetails)] : []),
  ].join("\n");
}
