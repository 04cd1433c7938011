// The factory benchmark: a bare `ws` server (the baseline, measured first)
// and the factory, each in its own child process, loaded by a separate load
// client child with the same 5,000 idle connections on 127.0.0.1.
//
// Figures: RSS per idle connection, handshakes per second, heartbeat sweep
// cost per connection; each with the factory/bare ratio of this same run.
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

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
};

export const targets = {
  rssRatioMax: 1.2,
  handshakeRatioMin: 0.8,
};

/** A child process with request/response calls over IPC, each with a timeout. */
class Child {
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

function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
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
 * relative to this folder.
 */
export async function measureServer(kind, file, { authorization, authSecret, opts, log }) {
  const problems = [];
  const n = authorization.length;
  const server = new Child(`${kind} server`, file, { execArgv: ["--expose-gc"], env: { RECLAIM_BENCH_AUTH_SECRET: authSecret } });
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

    log(`${kind}: ${opts.sweeps} heartbeat sweeps`);
    const sweepTimeout = opts.sweeps * (opts.pongTimeoutMs + opts.sweepGapMs + 2000) + opts.pongTimeoutMs + 10_000;
    const sweeps = await server.call("sweep", { count: opts.sweeps, gapMs: opts.sweepGapMs, pongTimeoutMs: opts.pongTimeoutMs }, sweepTimeout);
    if (sweeps.swept !== n || sweeps.terminated > 0 || sweeps.pendingAfter > 0) {
      problems.push(`${kind}: heartbeat swept ${sweeps.swept} connections, terminated ${sweeps.terminated}, ${sweeps.pendingAfter} pongs missing at the end`);
    }
    const clientStats = await client.call("stats");
    if (clientStats.open !== n || clientStats.closedAfterOpen > 0) {
      problems.push(`${kind}: ${clientStats.open} of ${n} connections open at the end, ${clientStats.closedAfterOpen} closed (codes ${JSON.stringify(clientStats.closeCodes)})`);
    }
    if (clientStats.pingsReceived !== opts.sweeps * n) {
      problems.push(`${kind}: clients saw ${clientStats.pingsReceived} pings, expected ${opts.sweeps * n}`);
    }
    return {
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

  const med = (kind, key) => median(rounds.map((round) => round[kind][key]));
  const spread = (key, invert = false) => {
    const ratios = rounds.map((round) => round.factory[key] / round.bare[key]).map((x) => (invert ? 1 / x : x));
    return `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
  };
  const figure = (metric, key, digits, target, pass) => {
    const bare = med("bare", key);
    const factory = med("factory", key);
    const ratio = factory / bare;
    return {
      metric,
      bare: bare.toFixed(digits),
      factory: factory.toFixed(digits),
      ratio: `${ratio.toFixed(2)}×`,
      perRound: rounds.length > 1 ? spread(key) : "",
      target: target ?? "none",
      result: pass === undefined ? "info" : pass(ratio) ? "PASS" : "FAIL",
    };
  };
  const rows = [
    figure("RSS per idle connection (KB)", "rssPerConnKB", 2, `≤ ${targets.rssRatioMax.toFixed(1)}×`, (x) => x <= targets.rssRatioMax),
    figure("Handshakes per second", "handshakesPerSec", 0, `≥ ${targets.handshakeRatioMin.toFixed(1)}×`, (x) => x >= targets.handshakeRatioMin),
    figure("Heap used per idle connection (KB)", "heapPerConnKB", 2),
    figure("Server CPU per handshake (µs)", "serverCpuUsPerHandshake", 0),
    figure("Heartbeat sweep CPU per connection (µs)", "sweepCpuUsPerConn", 2),
    figure("Heartbeat sweep wall per connection (µs)", "sweepWallUsPerConn", 2),
  ];
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
  return { name, opts, rows, details, problems, rounds };
}
