// The latency benchmark: how long after the factory writes a HARD LIMIT line
// the operator (a) triggers, (b) has the first rung's response and
// (c) has verified the recovery, against a minimal direct remediator in the
// same run (the baseline: bench/latency/baseline.mjs).
//
// Two legacy factories (`reclaim factory --cleanup legacy`, the outage's
// cleanup), each a child process writing its JSON log to a file in a temp
// folder. The operator (`reclaim operator`, a child process: file source on
// factory A's log, the shipped factory-lockout rule with a 1 ms settle) acts
// on A; the baseline (a child process) follows B's log and acts on B.
// Incidents alternate between A and B, one at a time (the order flips every
// pair), so both see the same machine at nearly the same moments. One
// incident, on either side:
//   1. a fresh user opens 20 real zombie clients (ws, `autoPong: false`): the
//      manager limit. With `history` (the default) they answer pings at first:
//      the bench probes the user 3 times through the control API, so the
//      factory learns each connection's round trips (as the heartbeat teaches
//      it in ladder mode; a legacy factory has no heartbeat), then they go
//      silent — zombies with history, whose probe deadline follows their own
//      round trips (ADR 28: phi, the factory's default) instead of the 1 s
//      ceiling. Without it they never answer (the ceiling: the first wave's
//      figures);
//   2. its 21st connection is refused with 503, and the factory logs
//      "Resource limit exceeded", "HARD LIMIT" and "UNEXPECTED FACTORY ERROR";
//   3. the remediator probes the user (the 20 zombies are evicted after the
//      probe timeout) and verifies admission;
//   4. the bench then connects the user for real and chats once (the run is
//      invalid if that fails), and waits for the 20 zombies to be closed.
// Times: the factory's own `time` on the HARD LIMIT line (t0), and the
// remediator's own clock (Date.now(), same machine): the operator's incident
// record (detectedAt, the probe's finishedAt, the verification's `at`), the
// baseline's JSON lines.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { spawnJsonLines } from "./children.mjs";
import { sectionHeader } from "../lib.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DIST = (file) => join(ROOT, "dist", file);
const CLI = join(ROOT, "bin", "reclaim");
const BASELINE = fileURLToPath(new URL("./baseline.mjs", import.meta.url));
const SHIPPED_RULE = join(ROOT, "rules", "factory-lockout.yaml");

export const name = "latency";

export const defaults = {
  incidents: 100, // per side
  warmup: 3, // untimed incidents per side first
  probeTimeoutMs: 1000, // the probe rung's timeoutMs (the factory's default)
  gapMs: 100, // pause after each incident
  history: 1, // 1: zombies with round-trip history (answered 3 probes before going silent); 0: silent from the start
};

/** Command-line options (`node bench/run.mjs latency --incidents N`) and their ranges. */
export const optionRanges = { incidents: [1, 500], warmup: [0, 20], probeTimeoutMs: [100, 5000], gapMs: [0, 5000], history: [0, 1] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { incidents: 3, warmup: 1 };

/**
 * Targets on the operator's (c): with history, issue 18's P1 (p50 ≤ 150 ms, p99 ≤ 300 ms on loopback); without, the
 * first wave's, relative to the probe timeout every zombie then waits out.
 */
export const targets = { p50SlackMs: 100, p99SlackMs: 300, historyP50Ms: 150, historyP99Ms: 300 };
/** Probes of the live clients before they go silent: the estimator needs 3 round trips before it leaves the ceiling. */
const HISTORY_PROBES = 3;

const LIMIT = 20;
const INCIDENT_TIMEOUT_MS = 20_000;
const AUTH_SECRET = "reclaim-bench-latency-auth-secret-0123456789";
const CONTROL_TOKEN = "reclaim-bench-latency-control-token";

/** Nearest-rank percentile of sorted numbers. */
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1];
}

function summary(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

/** The environment of the children: the bench's secrets, none of the caller's RECLAIM_* settings. */
function childEnv(extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RECLAIM_")));
  return { ...env, RECLAIM_AUTH_SECRET: AUTH_SECRET, RECLAIM_CONTROL_TOKEN: CONTROL_TOKEN, ...extra };
}

/** A legacy factory in a child process, its log appended to `logFile`; its stdout lines give the HARD LIMIT times. */
async function startFactory(label, dir, opts) {
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, "factory.log");
  const proc = spawnJsonLines(
    label,
    [CLI, "factory", "--cleanup", "legacy", "--host", "127.0.0.1", "--port", "0", "--control-port", "0", "--log-file", logFile, "--probe-timeout", String(opts.probeTimeoutMs)],
    { cwd: dir, env: childEnv({ POD_NAME: label }) },
  );
  const hardLimits = new Map();
  proc.onLine((line) => {
    if (line.event === "factory.hard_limit" && typeof line.userId === "string") hardLimits.set(line.userId, Date.parse(line.time));
  });
  const started = await proc.waitFor("factory.started line", (l) => l.event === "factory.started", 15_000);
  return { proc, logFile, hardLimits, wsUrl: `ws://127.0.0.1:${started.port}/ws`, controlUrl: `http://127.0.0.1:${started.controlPort}` };
}

/**
 * The shipped rule, unchanged but for a 1 ms settle, a blast radius that lets
 * the run's incidents through, and the bench's probe timeout on its probe step.
 */
function benchRule(YAML, dir, opts) {
  const doc = YAML.parse(readFileSync(SHIPPED_RULE, "utf8"));
  const probe = doc.spec.ladder[0];
  if (probe?.rung !== "probe") throw new Error(`${SHIPPED_RULE}: the first rung is no longer probe; update the latency benchmark`);
  probe.params = { ...probe.params, timeoutMs: opts.probeTimeoutMs };
  doc.spec.verify.settle = "1ms";
  doc.spec.guards.maxPerHour = 100_000;
  const file = join(dir, "factory-lockout-bench.yaml");
  writeFileSync(file, YAML.stringify(doc));
  return { file, doc };
}

async function startOperator(dir, factory, ruleFile) {
  const incidentsDir = join(dir, "incidents");
  const proc = spawnJsonLines(
    "operator",
    [
      CLI,
      "operator",
      "--rules",
      ruleFile,
      "--source",
      `file:${factory.logFile}`,
      "--incidents",
      incidentsDir,
      "--state",
      join(dir, "state"),
      "--control",
      factory.controlUrl,
      "--metrics-port",
      "0",
      "--sweep-schedule",
      "off",
      "--digest-schedule",
      "off",
      "--retention-schedule",
      "off",
    ],
    { cwd: dir, env: childEnv({ POD_NAME: "operator" }) },
  );
  await proc.waitFor("operator.started line", (l) => l.event === "operator.started", 15_000);
  return {
    proc,
    /** Resolves with the incident record once the operator logged its closing. */
    async remediated(userId, timeoutMs) {
      const closed = await proc.waitFor(`incident closed for ${userId}`, (l) => l.event === "operator.incident_closed" && l.userId === userId, timeoutMs);
      const record = JSON.parse(readFileSync(join(incidentsDir, `${closed.incident}.json`), "utf8"));
      return { record, closedLogged: Date.parse(closed.time) };
    },
  };
}

async function startBaseline(factory, opts) {
  const proc = spawnJsonLines("baseline", [BASELINE], {
    cwd: ROOT,
    env: childEnv({
      RECLAIM_BENCH_BASELINE: JSON.stringify({ log: factory.logFile, control: factory.controlUrl, token: CONTROL_TOKEN, probeTimeoutMs: opts.probeTimeoutMs }),
    }),
  });
  await proc.waitFor("ready line", (l) => l.ready === true, 15_000);
  return {
    proc,
    remediated(userId, timeoutMs) {
      return proc.waitFor(`remediation of ${userId}`, (l) => l.userId === userId, timeoutMs);
    },
  };
}

/** Times of one operator incident, from its record; problems when it did not resolve through a verified probe. */
function operatorTimes({ record, closedLogged }, t0, problems, label) {
  const probe = record.rungs[0];
  const verified = record.rungs.find((r) => r.verification?.verified === true);
  if (record.status !== "resolved") problems.push(`${label}: incident ${record.id} ended ${record.status}`);
  if (probe === undefined || probe.rung !== "probe" || probe.outcome !== "ok") problems.push(`${label}: the first rung was not a successful probe`);
  if (verified === undefined) problems.push(`${label}: no rung was verified`);
  else if (verified.index !== 0) problems.push(`${label}: recovered only after rung ${verified.index + 1} (${verified.rung})`);
  if (probe?.result?.removed.length !== LIMIT) problems.push(`${label}: the probe removed ${probe?.result?.removed.length ?? "no"} managers, ${LIMIT} zombies were open`);
  const at = (iso) => (iso === null || iso === undefined ? NaN : Date.parse(iso) - t0);
  const finished = at(probe?.finishedAt);
  return {
    trigger: at(record.detectedAt),
    rung: finished,
    verified: at(verified?.verification.at),
    callSent: finished - (probe?.durationMs ?? NaN),
    closed: closedLogged - t0,
  };
}

function baselineTimes(out, t0, problems, label) {
  if (out.error !== null) problems.push(`${label}: ${out.error}`);
  if (out.removed !== LIMIT) problems.push(`${label}: the probe removed ${out.removed ?? "no"} managers, ${LIMIT} zombies were open`);
  if (out.admittedAt === null) problems.push(`${label}: never admitted`);
  const rel = (t) => (t === null ? NaN : t - t0);
  return { trigger: rel(out.seenAt), rung: rel(out.rungAt), verified: rel(out.admittedAt), callSent: rel(out.seenAt), closed: NaN };
}

/** Probes `userId` through the factory's control API; the rung's result. */
async function probe(factory, userId, opts) {
  const res = await fetch(`${factory.controlUrl}/v1/users/${encodeURIComponent(userId)}/rungs/probe`, {
    method: "POST",
    headers: { authorization: `Bearer ${CONTROL_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ timeoutMs: opts.probeTimeoutMs }),
    signal: AbortSignal.timeout(opts.probeTimeoutMs + 5000),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`history probe: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** One incident on one side; returns its times, or null (with problems) when it failed. */
async function incident(side, userId, lib, problems, opts) {
  const label = `${side.name} ${userId}`;
  const token = await lib.auth.sign(userId, 3600);
  const zombies = [];
  try {
    for (const attempt of await Promise.all(Array.from({ length: LIMIT }, () => lib.connect(side.factory.wsUrl, token, "no-pong")))) {
      if (lib.isRefusal(attempt)) throw new Error(`zombie refused with HTTP ${attempt.status}`);
      zombies.push(attempt);
    }
    if (opts.history === 1) {
      // Alive at first: each answers the probes' pings itself, then stops (a tab whose process froze).
      let answering = true;
      for (const z of zombies) z.ws.on("ping", (data) => answering && z.ws.pong(data));
      for (let i = 0; i < HISTORY_PROBES; i++) {
        const { removed } = await probe(side.factory, userId, opts);
        if (removed.length > 0) throw new Error(`history probe ${i + 1} evicted ${removed.length} live client(s)`);
      }
      answering = false;
    }
    const remediated = side.remediator.remediated(userId, INCIDENT_TIMEOUT_MS);
    remediated.catch(() => undefined); // awaited below
    const refused = await lib.connect(side.factory.wsUrl, token, "live");
    if (!lib.isRefusal(refused)) {
      refused.destroy();
      throw new Error("the 21st connection was admitted: no lockout");
    }
    const result = await remediated;
    const t0 = side.factory.hardLimits.get(userId);
    if (t0 === undefined) throw new Error("the factory logged no HARD LIMIT line");
    const times = side.name === "operator" ? operatorTimes(result, t0, problems, label) : baselineTimes(result, t0, problems, label);
    // Recovered for real: the user connects and chats.
    const tab = await lib.connect(side.factory.wsUrl, token, "live");
    if (lib.isRefusal(tab)) throw new Error(`not recovered: the user's next connection got HTTP ${tab.status}`);
    await tab.chat("hello");
    await tab.close();
    const open = await Promise.all(zombies.map((z) => Promise.race([z.closed.then(() => false), sleep(5000).then(() => true)])));
    if (open.some(Boolean)) problems.push(`${label}: ${open.filter(Boolean).length} zombie(s) still connected 5 s after the remediation`);
    return times;
  } catch (err) {
    problems.push(`${label}: ${err instanceof Error ? err.message : String(err)}`);
    return null;
  } finally {
    for (const z of zombies) z.destroy();
  }
}

export async function run(options = {}) {
  const opts = { ...defaults };
  for (const key of Object.keys(defaults)) if (options[key] !== undefined) opts[key] = options[key];
  const log = options.log ?? (() => {});
  for (const f of ["cli/main.js", "factory/auth.js", "demo/clients.js"]) {
    if (!existsSync(DIST(f))) throw new Error(`dist/${f} is missing: run \`npm run build\` first`);
  }
  const { TokenAuth } = await import(DIST("factory/auth.js"));
  const { connect, isRefusal } = await import(DIST("demo/clients.js"));
  const YAML = (await import("yaml")).default;
  const lib = { auth: new TokenAuth(AUTH_SECRET), connect, isRefusal };

  const problems = [];
  const dir = mkdtempSync(join(tmpdir(), "reclaim-bench-latency-"));
  const children = [];
  try {
    const [factoryA, factoryB] = await Promise.all([
      startFactory("bench-factory-a", join(dir, "a"), opts),
      startFactory("bench-factory-b", join(dir, "b"), opts),
    ]);
    children.push(factoryA.proc, factoryB.proc);
    const rule = benchRule(YAML, dir, opts);
    const operator = await startOperator(join(dir, "a"), factoryA, rule.file);
    children.push(operator.proc);
    const baseline = await startBaseline(factoryB, opts);
    children.push(baseline.proc);
    const sides = {
      operator: { name: "operator", factory: factoryA, remediator: operator },
      baseline: { name: "baseline", factory: factoryB, remediator: baseline },
    };
    log(`factories, operator (pid ${operator.proc.child.pid}) and baseline (pid ${baseline.proc.child.pid}) up; ${opts.warmup} warm-up incident(s) per side`);
    for (let w = 0; w < opts.warmup; w++) {
      const ignored = [];
      for (const side of [sides.operator, sides.baseline]) {
        await incident(side, `bench-warm-${side.name}-${w}`, lib, ignored, opts);
        await sleep(opts.gapMs);
      }
      for (const p of ignored) problems.push(`warm-up: ${p}`);
    }
    const results = { operator: [], baseline: [] };
    const deadline = Date.now() + 10 * 60_000;
    for (let i = 0; i < opts.incidents; i++) {
      const order = i % 2 === 0 ? [sides.operator, sides.baseline] : [sides.baseline, sides.operator];
      for (const side of order) {
        const times = await incident(side, `bench-${side.name}-${i}`, lib, problems, opts);
        if (times !== null) results[side.name].push(times);
        await sleep(opts.gapMs);
      }
      if ((i + 1) % 10 === 0 || i + 1 === opts.incidents) {
        const c = (name) => summary(results[name].map((t) => t.verified)).p50;
        log(`${i + 1}/${opts.incidents} incidents per side; (c) median so far: operator ${c("operator")} ms, baseline ${c("baseline")} ms`);
      }
      if (Date.now() > deadline) {
        problems.push(`stopped after ${i + 1} incidents per side: over 10 minutes`);
        break;
      }
    }
    for (const name of ["operator", "baseline"]) {
      if (results[name].length !== opts.incidents) problems.push(`${name}: ${results[name].length} of ${opts.incidents} incidents measured`);
    }
    return { name, opts, problems, results, ...tables(results, opts) };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

const FIGURES = [
  ["trigger", "(a) trigger"],
  ["rung", "(b) first rung's response"],
  ["verified", "(c) verified recovery"],
];

function tables(results, opts) {
  const fmt = (x) => (Number.isFinite(x) ? String(Math.round(x)) : "—");
  const rows = [];
  for (const [key, label] of FIGURES) {
    const op = summary(results.operator.map((t) => t[key]));
    const base = summary(results.baseline.map((t) => t[key]));
    for (const p of ["p50", "p95", "p99", "max"]) {
      let target = "none";
      let result = "info";
      if (key === "verified" && (p === "p50" || p === "p99")) {
        const limit =
          opts.history === 1
            ? p === "p50"
              ? targets.historyP50Ms
              : targets.historyP99Ms
            : opts.probeTimeoutMs + (p === "p50" ? targets.p50SlackMs : targets.p99SlackMs);
        target = `≤ ${limit}`;
        result = op[p] <= limit ? "PASS" : "FAIL";
      }
      rows.push({
        figure: label,
        percentile: p,
        operator: fmt(op[p]),
        baseline: fmt(base[p]),
        diff: fmt(op[p] - base[p]),
        ratio: base[p] > 0 ? `${(op[p] / base[p]).toFixed(2)}×` : "—",
        target,
        result,
      });
    }
  }
  // Where the operator's time goes, stage by stage (information).
  const stage = (side, f) => summary(results[side].map(f));
  const stages = [
    ["line → trigger (read, scan, match)", (t) => t.trigger],
    ["trigger → probe call sent", (t) => t.callSent - t.trigger],
    ["probe call (waits the zombies' deadlines)", (t) => t.rung - t.callSent],
    ["probe response → verified", (t) => t.verified - t.rung],
    ["verified → record written, closing logged", (t) => t.closed - t.verified],
  ];
  const details = stages.map(([what, f]) => {
    const op = stage("operator", f);
    const base = stage("baseline", f);
    return {
      stage: what,
      "operator p50": fmt(op.p50),
      "operator p99": fmt(op.p99),
      "operator max": fmt(op.max),
      "baseline p50": fmt(base.p50),
      "baseline p99": fmt(base.p99),
      "baseline max": fmt(base.max),
    };
  });
  return { rows, details };
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(
    rows.map((r) => ({
      figure: r.figure,
      percentile: r.percentile,
      "operator (ms)": r.operator,
      "baseline (ms)": r.baseline,
      "operator − baseline (ms)": r.diff,
      "operator / baseline": r.ratio,
      "target (ms)": r.target,
      result: r.result,
    })),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  return [
    ...sectionHeader(m, cmd),
    `- ${o.incidents} incidents per side after ${o.warmup} warm-up incidents per side, alternating operator and baseline; ` +
      `${LIMIT} zombie clients each, ${o.history === 1 ? `with history (they answered ${HISTORY_PROBES} probes, then went silent)` : "silent from the start (no history: every one waits the ceiling)"}; ` +
      `probe timeout (ceiling) ${o.probeTimeoutMs} ms, deadlines phi (the factory's default); verify settle 1 ms; ${o.gapMs} ms between incidents`,
    `- Milliseconds from the factory's \`time\` on the HARD LIMIT line; nearest-rank percentiles over the incidents of each side.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Where the time goes, stage by stage (ms; each stage's own percentiles, so they do not add up):",
    "",
    table(result.details),
  ].join("\n");
}
