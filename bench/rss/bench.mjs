// The rss benchmark: the resident memory of an idle `reclaim operator` in file
// mode, against a bare Node and a "floor" Node in the same run (issue: "the
// operator's idle RSS in file mode: measure what it holds and cut it").
//
// Processes, each started fresh in every round, one at a time (interleaved:
// the order rotates from one round to the next):
// - `node` — a bare `node -e` that prints `ready` and idles;
// - `floor` — `floor.mjs`: Node with the builtins the operator loads (the list
//   the probe run below reports) and an HTTP server listening on 127.0.0.1;
// - `floor + one fetch()` and `floor + croner` — the floor plus one thing:
//   one `fetch()` (Node's undici: what the control client loaded until ADR 36
//   moved it to node:http), and the operator's three default schedules on
//   croner in UTC (ADR 36: no Intl, so no ICU data; node-cron, before, cost
//   8.8 MiB here): their price;
// - `operator` — `bin/reclaim operator` in file mode (`--source file:` an
//   empty file in a temp dir, its own `--incidents` and `--state` folders,
//   `--control` a URL nobody listens on, `--metrics-port 0`), as its
//   Deployment runs it: with the NODE_OPTIONS of
//   manifests/base/operator/deployment.yaml (ADR 39: the old space capped,
//   the young generation's semi-spaces at 1 MiB);
// - `operator, no Node flags` — the same as `node bin/reclaim operator` runs
//   it anywhere else, for information;
// - `operator as deployed, MALLOC_ARENA_MAX=1` — with glibc's malloc limited
//   to one arena (weighed in ADR 33), for information;
// - `operator as deployed, after 5,000 log lines` — the target operator once
//   it has read some everyday traffic: when it is idle, `feedLines` lines of
//   the pipeline benchmark's generator (no candidate among them: nothing to
//   act on) are appended to its log; once its metrics count them read
//   (`reclaim_operator_lines_read_total`) and no line came for `settleMs`, it
//   is measured. What a quiet operator holds after start-up is the target;
//   this row says what reading brings on top (its read buffers touched, the
//   hot functions compiled by the optimising compiler), for information;
// - `operator + --canary-url --alertmanager` — the same with a canary and an
//   Alertmanager configured (nobody listens at either; the canary only runs
//   in a ladder, the outbox has nothing to send): it loads what ADR 33 made
//   lazy (ws and the canary, the notifications), so against `operator` it is
//   what that cut saves an operator without them.
// Each is ready when it prints `ready` (or `operator.started`), then idle once
// no line arrived for `settleMs`; then /proc/PID/status (VmRSS, RssAnon,
// RssFile), /proc/PID/smaps_rollup (Pss) and /proc/PID/smaps (the pages of
// the node binary itself, of other files, anonymous) are read, the process is
// checked to be still running, and it is stopped with SIGTERM (an operator
// must exit 0).
//
// One more operator, before the rounds, runs with `--import probe.mjs` (a
// module hook, so it is never one of the measured ones): at idle it reports
// the V8 heap by space, external memory, the builtins and the package files
// loaded. That is the breakdown of what the operator holds.
//
// Figures: median (min–max) of each process's VmRSS, RssAnon, RssFile and
// node-binary pages over the rounds. Target: the operator's median VmRSS at
// most 60 MiB.
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { deployedNodeOptions, median, sectionHeader } from "../lib.mjs";
import { generateLog } from "../pipeline/generate.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const RECLAIM = join(ROOT, "bin", "reclaim");
const DIST_CLI = join(ROOT, "dist", "bundle", "main.js");
const FLOOR = fileURLToPath(new URL("./floor.mjs", import.meta.url));
const PROBE = fileURLToPath(new URL("./probe.mjs", import.meta.url));
const NODE_BINARY = realpathSync(process.execPath);
const MiB = 1024 * 1024;

export const name = "rss";

export const defaults = {
  rounds: 5, // every process started this many times
  settleMs: 3000, // idle: no output line for this long after ready
  readyTimeoutMs: 30_000, // ready and settled within this
  feedLines: 5000, // the lines the `fed` operator reads before it is measured
};

/** Command-line options (`node bench/run.mjs rss --rounds N`) and their ranges. */
export const optionRanges = { rounds: [1, 50], settleMs: [500, 60_000], feedLines: [100, 1_000_000] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { rounds: 1, settleMs: 1000, feedLines: 500 };

export const targets = {
  operatorRssMiB: 60, // the operator's median VmRSS at idle
};

/** The operator's command line in file mode, with its own folders under `dir`, tailing `dir/logName`. */
function operatorArgs(dir, logName = "factory.log") {
  const log = join(dir, logName);
  if (!existsSync(log)) writeFileSync(log, "");
  return [
    RECLAIM,
    "operator",
    "--rules",
    join(ROOT, "rules"),
    "--source",
    `file:${log}`,
    "--incidents",
    join(dir, "incidents"),
    "--state",
    join(dir, "state"),
    "--control",
    "http://127.0.0.1:9",
    "--metrics-port",
    "0",
  ];
}

const OPERATOR_ENV = { RECLAIM_CONTROL_TOKEN: "tok-0123456789abcdef-0123456789" };
/** The operator's Node options as its Deployment sets them (ADR 39). */
const DEPLOYED = deployedNodeOptions();

/** How many lines `run` wrote to `dir/feed-lines.log` for the `fed` operator. */
const fedCounts = new Map();
const feedLines = (dir) => (fedCounts.get(dir) ?? 0).toLocaleString("en-US");

/** The measured processes; `builtins` is the list the probe run reported. */
function processes(dir, builtins) {
  return [
    { key: "node", label: "node (bare, idle)", args: ["-e", "process.stdout.write('ready\\n'); setInterval(() => {}, 1 << 30)"], ready: /^ready/ },
    { key: "floor", label: `floor (${builtins.length} builtins + HTTP server)`, args: [FLOOR, ...builtins], ready: /^ready/ },
    { key: "fetch", label: "floor + one fetch()", args: [FLOOR, ...builtins, "--fetch"], ready: /^ready/ },
    { key: "cron", label: "floor + croner (3 schedules, UTC)", args: [FLOOR, ...builtins, "--cron"], ready: /^ready/ },
    {
      key: "operator",
      label: `operator (file mode, as deployed: NODE_OPTIONS=${DEPLOYED})`,
      args: operatorArgs(dir),
      env: { ...OPERATOR_ENV, NODE_OPTIONS: DEPLOYED },
      ready: /"operator\.started"/,
      operator: true,
      target: true,
    },
    {
      key: "fed",
      label: `operator as deployed, after reading ${feedLines(dir)} log lines`,
      args: operatorArgs(dir, "fed.log"),
      env: { ...OPERATOR_ENV, NODE_OPTIONS: DEPLOYED },
      ready: /"operator\.started"/,
      operator: true,
      feed: { log: join(dir, "fed.log"), lines: join(dir, "feed-lines.log") },
    },
    { key: "bare", label: "operator, no Node flags (`node bin/reclaim operator`)", args: operatorArgs(dir), env: OPERATOR_ENV, ready: /"operator\.started"/, operator: true },
    {
      key: "arena",
      label: "operator as deployed, MALLOC_ARENA_MAX=1",
      args: operatorArgs(dir),
      env: { ...OPERATOR_ENV, NODE_OPTIONS: DEPLOYED, MALLOC_ARENA_MAX: "1" },
      ready: /"operator\.started"/,
      operator: true,
    },
    {
      key: "lazy",
      label: "operator + --canary-url --alertmanager (loads what ADR 33 made lazy)",
      args: [...operatorArgs(dir), "--canary-url", "ws://127.0.0.1:9/chat", "--alertmanager", "http://127.0.0.1:9"],
      env: { ...OPERATOR_ENV, NODE_OPTIONS: DEPLOYED, RECLAIM_CANARY_TOKEN: "canary-token-0123456789" },
      ready: /"operator\.started"/,
      operator: true,
    },
  ];
}

/** kB fields of a /proc file (`VmRSS:   1234 kB`) as bytes. */
function kbFields(text) {
  const out = {};
  for (const m of text.matchAll(/^(\w+):\s+(\d+) kB$/gm)) out[m[1]] = Number(m[2]) * 1024;
  return out;
}

/** Resident bytes of the node binary's own mappings, of other files, and anonymous, from /proc/PID/smaps. */
function smapsSplit(pid) {
  const split = { nodeBinary: 0, otherFiles: 0, anonymous: 0 };
  let where = "anonymous";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head !== null) {
      const path = head[1].trim();
      where = path === NODE_BINARY ? "nodeBinary" : path.startsWith("/") ? "otherFiles" : "anonymous";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss !== null) split[where] += Number(rss[1]) * 1024;
  }
  return split;
}

/**
 * Starts `proc`, waits until it is ready and idle, measures it (or, with
 * `probe`, asks probe.mjs for its report), stops it. Resolves to
 * `{ sample, report, problem }`.
 */
function measure(proc, opts, { probe = false } = {}) {
  const args = probe ? ["--import", PROBE, ...proc.args] : proc.args;
  if (proc.feed !== undefined) writeFileSync(proc.feed.log, ""); // it tails from the end; empty, so each round appends the same
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...proc.env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let lastLineAt = 0;
  let readyAt = 0;
  let lines = 0;
  child.stdout.setEncoding("utf8").on("data", (chunk) => {
    stdout += chunk;
    const count = chunk.split("\n").length - 1;
    lines += count;
    if (count > 0) lastLineAt = Date.now();
    if (readyAt === 0 && proc.ready.test(stdout)) readyAt = Date.now();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const started = Date.now();
  let feeding = "no"; // "no" → "reading" → "read"
  let fedLines = 0;
  return new Promise((resolve) => {
    const finish = async (result) => {
      clearInterval(tick);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const { code, signal } = await exited;
      if (result.problem === null && proc.operator === true && code !== 0) {
        result.problem = `${proc.label}: exit ${code ?? signal} after SIGTERM: ${stderr.trim().slice(0, 300)}`;
      }
      resolve(result);
    };
    const tick = setInterval(() => {
      if (child.exitCode !== null || child.signalCode !== null) {
        void finish({ problem: `${proc.label}: exited (${child.exitCode ?? child.signalCode}) before it was measured: ${stderr.trim().slice(0, 300)}` });
        return;
      }
      const now = Date.now();
      if (now - started > opts.readyTimeoutMs) {
        void finish({ problem: `${proc.label}: not ready and idle within ${opts.readyTimeoutMs} ms (${lines} lines)` });
        return;
      }
      if (readyAt === 0 || now - lastLineAt < opts.settleMs) return;
      if (proc.feed !== undefined && feeding !== "read") {
        if (feeding === "no") {
          feeding = "reading";
          void feed(proc.feed, stdout).then(
            (n) => {
              feeding = "read";
              fedLines = n;
              lastLineAt = Date.now(); // idle again from now on
            },
            (err) => void finish({ problem: `${proc.label}: ${err.message}` }),
          );
        }
        return;
      }
      clearInterval(tick);
      if (probe) {
        child.kill("SIGUSR2");
        const wait = setInterval(() => {
          const m = /^RSS-PROBE (.*)$/m.exec(stderr);
          if (m === null && Date.now() - started < opts.readyTimeoutMs) return;
          clearInterval(wait);
          void finish(m === null ? { problem: `${proc.label}: the probe did not report` } : { problem: null, report: JSON.parse(m[1]) });
        }, 50);
        return;
      }
      const status = kbFields(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      const rollup = kbFields(readFileSync(`/proc/${child.pid}/smaps_rollup`, "utf8"));
      const split = smapsSplit(child.pid);
      const alive = child.exitCode === null && child.signalCode === null;
      void finish(
        alive
          ? {
              problem: null,
              sample: { rss: status.VmRSS, anon: status.RssAnon, file: status.RssFile, pss: rollup.Pss, ...split, lines, idleMs: now - lastLineAt, fedLines },
            }
          : { problem: `${proc.label}: exited while it was measured` },
      );
    }, 100);
  });
}

/** The lines an operator's metrics count read, over every source; null when it does not answer. */
async function linesRead(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    let n = 0;
    for (const m of text.matchAll(/^reclaim_operator_lines_read_total(?:\{[^}]*\})? (\d+)$/gm)) n += Number(m[1]);
    return n;
  } catch {
    return null;
  }
}

/**
 * Appends `feed.lines` to the operator's log (`feed.log`) and resolves, with
 * their count, once its metrics (its port from the `operator.started` line in
 * `stdout`) say it has read them all; rejects after 20 s.
 */
async function feed(feed, stdout) {
  const started = /"event":"operator\.started".*"metricsPort":(\d+)/.exec(stdout);
  if (started === null) throw new Error("no metricsPort in its operator.started line");
  const port = Number(started[1]);
  const before = await linesRead(port);
  if (before === null) throw new Error(`its metrics on port ${port} did not answer`);
  const text = readFileSync(feed.lines, "utf8");
  const count = text.split("\n").length - 1;
  appendFileSync(feed.log, text);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const read = await linesRead(port);
    if (read !== null && read - before >= count) return read - before;
    if (Date.now() > deadline) throw new Error(`read ${read === null ? "?" : read - before} of the ${count} lines appended within 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs the benchmark (see the top of the file). */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (!existsSync(DIST_CLI)) throw new Error("dist/bundle/main.js is missing: run `npm run build` first");
  if (process.platform !== "linux") throw new Error("the rss benchmark reads /proc: Linux only");
  const dir = mkdtempSync(join(os.tmpdir(), "reclaim-bench-rss-"));
  const problems = [];
  try {
    // The probe run: what the operator holds, and the builtins the floor loads.
    const probed = await measure(processes(dir, []).find((p) => p.key === "operator"), opts, { probe: true });
    if (probed.problem !== null) return { name, opts, rows: [], details: [{ problem: probed.problem }], problems: [probed.problem] };
    const report = probed.report;
    const builtins = report.builtins;
    // The fed operator's lines: everyday traffic only (one candidate block larger than the file: none in it).
    const fed = generateLog(join(dir, "feed-lines.log"), { lines: opts.feedLines, candidateEvery: 1e9 });
    if (fed.candidates !== 0) throw new Error(`the feed holds ${fed.candidates} candidate lines; it must hold none`);
    fedCounts.set(dir, fed.lines);
    log(`probe: ${builtins.length} builtins, ${Object.keys(report.packages).length} packages, heapUsed ${(report.memory.heapUsed / MiB).toFixed(1)} MiB`);

    const procs = processes(dir, builtins);
    const samples = Object.fromEntries(procs.map((p) => [p.key, []]));
    for (let round = 0; round < opts.rounds && problems.length === 0; round++) {
      for (let j = 0; j < procs.length; j++) {
        const proc = procs[(j + round) % procs.length];
        const r = await measure(proc, opts);
        if (r.problem !== null) {
          problems.push(r.problem);
          break;
        }
        samples[proc.key].push(r.sample);
      }
      log(`round ${round + 1}/${opts.rounds}: operator VmRSS ${((samples.operator.at(-1)?.rss ?? 0) / MiB).toFixed(1)} MiB`);
    }
    if (problems.length > 0) return { name, opts, rows: [], details: [{ problem: problems[0] }], problems };

    const stat = (key, field) => {
      const xs = samples[key].map((s) => s[field] / MiB);
      return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
    };
    const rows = procs.map((p) => ({
      key: p.key,
      process: p.label,
      rss: stat(p.key, "rss"),
      anon: stat(p.key, "anon"),
      file: stat(p.key, "file"),
      nodeBinary: stat(p.key, "nodeBinary"),
      pss: stat(p.key, "pss"),
      fedLines: Math.max(...samples[p.key].map((s) => s.fedLines)),
      target: p.target === true ? `≤ ${targets.operatorRssMiB} MiB` : "",
      result: p.target === true ? (stat(p.key, "rss").median <= targets.operatorRssMiB ? "PASS" : "FAIL") : p.key === "node" || p.key === "floor" ? "baseline" : "info",
    }));
    const details = breakdown(report, rows);
    return { name, opts, rows, details, problems, report };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What the operator holds, from the probe's report and the medians: one row per part. */
function breakdown(report, rows) {
  const mib = (x) => (x / MiB).toFixed(1);
  const byKey = Object.fromEntries(rows.map((r) => [r.key, r]));
  const op = byKey.operator;
  const floor = byKey.floor;
  const diff = (a, b) => `RssAnon ${signed(a.anon.median - b.anon.median)}, RssFile ${signed(a.file.median - b.file.median)}`;
  const out = [
    { part: "operator − floor (VmRSS medians)", MiB: signed(op.rss.median - floor.rss.median), note: diff(op, floor) },
    { part: "floor − bare node (VmRSS medians)", MiB: signed(floor.rss.median - byKey.node.rss.median), note: diff(floor, byKey.node) },
    { part: "one fetch() (floor + fetch − floor)", MiB: signed(byKey.fetch.rss.median - floor.rss.median), note: diff(byKey.fetch, floor) },
    { part: "croner, 3 schedules (floor + croner − floor)", MiB: signed(byKey.cron.rss.median - floor.rss.median), note: diff(byKey.cron, floor) },
    { part: `reading everyday lines (operator after ${feedLinesOf(byKey.fed)} lines − operator)`, MiB: signed(byKey.fed.rss.median - op.rss.median), note: diff(byKey.fed, op) },
    { part: "the lazy imports (operator + canary + Alertmanager − operator)", MiB: signed(byKey.lazy.rss.median - op.rss.median), note: diff(byKey.lazy, op) },
    { part: "node binary pages (median)", MiB: op.nodeBinary.median.toFixed(1), note: `floor ${floor.nodeBinary.median.toFixed(1)}, bare node ${byKey.node.nodeBinary.median.toFixed(1)}` },
    { part: "other file pages (median)", MiB: (op.file.median - op.nodeBinary.median).toFixed(1), note: "shared libraries (libc, libstdc++, …)" },
    { part: "V8 heap committed / used (probe)", MiB: `${mib(report.memory.heapTotal)} / ${mib(report.memory.heapUsed)}`, note: `malloced by V8 ${mib(report.heap.malloced_memory)} (peak ${mib(report.heap.peak_malloced_memory)})` },
  ];
  for (const s of report.spaces) {
    if (s.space_size === 0) continue;
    out.push({ part: `  ${s.space_name}`, MiB: `${mib(s.space_size)} / ${mib(s.space_used_size)}`, note: "committed / used" });
  }
  out.push(
    { part: "external / arrayBuffers (probe)", MiB: `${mib(report.memory.external)} / ${mib(report.memory.arrayBuffers)}`, note: "Buffers and other memory outside the V8 heap" },
    { part: "builtins loaded (probe)", MiB: "", note: report.builtins.join(" ") },
    {
      part: "package files loaded (probe)",
      MiB: "",
      note: `${Object.entries(report.packages)
        .map(([p, n]) => `${p} ${n}`)
        .join(", ")}; ${report.ownFiles} of dist/`,
    },
  );
  return out;
}

/** The lines the fed operator read (the same in every round). */
const feedLinesOf = (row) => row.fedLines.toLocaleString("en-US");

const signed = (x) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(1)}`;
const range = (s) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  if (rows.length === 0) return "(no valid run)";
  return table(
    rows.map((r) => ({
      process: r.process,
      "VmRSS MiB": range(r.rss),
      "RssAnon MiB": range(r.anon),
      "RssFile MiB": range(r.file),
      "node binary MiB": r.nodeBinary.median.toFixed(1),
      "Pss MiB": r.pss.median.toFixed(1),
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
    `- ${o.rounds} rounds, every process started fresh in each (interleaved); measured once idle (ready, then no output line for ${o.settleMs} ms); medians (min–max)`,
    "",
    resultsTable(result.rows, table),
    "",
    "What the operator holds (the V8 figures from the probe run, `--import bench/rss/probe.mjs`, not a measured process):",
    "",
    table(result.details),
  ].join("\n");
}
