// The flood benchmark (issue 7, part 4): 100,000 matching HARD LIMIT lines
// for 10,000 distinct users, appended within 10 s to the log a real operator
// tails, with a real factory (dev mode) behind its control API so that the
// rungs it runs really run. Measured: the operator's peak RSS, the actions it
// took against the rule's rate limit, the records it wrote, whether every
// user is accounted for, and the time to drain.
//
// Baseline, in the same run and in every round, measured first: the same
// lines through the same operator binary and the same schedule, with a rule
// that matches nothing (the shipped rule with its event renamed), so its
// figures are the cost of reading and scanning 100,000 lines — ingestion
// only. The flood's figures are reported beside it and as ratios.
//
// Each side of each round: a fresh temp folder, a fresh factory and operator
// (`node bin/reclaim …`, against dist/), an empty log file that the bench
// appends to in 100 slices, one every `seconds`/100; the operator's RSS is
// sampled every 50 ms from /proc/PID/status and its VmHWM read before it is
// stopped. Drained = the operator's saved position (its state file, written
// after a batch is processed and the batch's records are written) is the end
// of the file, and no incident is open (`reclaim_operator_open_incidents` 0).
//
// RECLAIM_BENCH_KEEP=1 keeps each side's temp folder (the operator's own log,
// its records and saved position) to look into a run.
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, openSync, closeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuLimitGroup, deployedCpuLimit, deployedNodeOptions, median, sectionHeader } from "../lib.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = join(ROOT, "bin/reclaim");
const SHIPPED_RULE = join(ROOT, "rules/factory-lockout.yaml");
const POD = "bench-factory-0";

export const name = "flood";

export const defaults = {
  users: 10_000,
  linesPerUser: 10, // 100,000 lines
  seconds: 10, // appended within this many seconds
  rounds: 3, // figures are medians over the rounds
};

export const optionRanges = { users: [10, 1_000_000], linesPerUser: [1, 1000], seconds: [1, 120], rounds: [1, 10] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { users: 500, linesPerUser: 4, seconds: 2, rounds: 1 };

export const targets = {
  peakRssMb: 200, // the flood's peak RSS
  limitedDrainAfterLastS: 1, // under the Deployment's CPU limit, the backlog when the flood ends
};

/** Most keys one rollup record lists (src/operator/incidents/model.ts, MAX_ROLLUP_KEYS). */
const ROLLUP_PAGE = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The shipped rule (maxPerHour 20, probe → force → degrade); for the baseline with an event nothing logs. */
/** The shipped rule in `dir/rule.yaml`; with `matchNothing`, its trigger event renamed to one nothing logs (the baseline). */
export function writeRule(dir, matchNothing) {
  let yaml = readFileSync(SHIPPED_RULE, "utf8");
  if (matchNothing) {
    const before = yaml;
    yaml = yaml.replace("event: [factory.hard_limit, factory.error]", "event: [factory.never_logged]");
    if (yaml === before) throw new Error("rules/factory-lockout.yaml changed: the baseline cannot rename its trigger event");
  }
  const file = join(dir, "rule.yaml");
  writeFileSync(file, yaml);
  return { file, maxPerHour: Number(/maxPerHour:\s*(\d+)/.exec(yaml)?.[1] ?? "NaN") };
}

function start(args, out, extraEnv = {}) {
  const fd = openSync(out, "a");
  // Dev mode: the built-in secrets, so factory and operator agree without any set here.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RECLAIM_") && k !== "NODE_OPTIONS")), ...extraEnv };
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ["ignore", fd, fd], env });
  closeSync(fd);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return { child, exited };
}

async function waitHttp(url, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${what} did not come up at ${url}`);
    await sleep(50);
  }
}

async function stop(proc) {
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGTERM");
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), 15_000);
  const result = await proc.exited;
  clearTimeout(timer);
  return result;
}

/** VmRSS and VmHWM of a process, in bytes. */
function memoryOf(pid) {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? "NaN") * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/** User and system CPU time of a process, in ms. */
function cpuOf(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (100 Hz)
}

async function metrics(url) {
  const text = await (await fetch(url)).text();
  const values = new Map();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const at = line.lastIndexOf(" ");
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  const sum = (prefix) => [...values].filter(([k]) => k === prefix || k.startsWith(`${prefix}{`)).reduce((n, [, v]) => n + v, 0);
  const matching = (prefix, part) => [...values].filter(([k]) => k.startsWith(`${prefix}{`) && k.includes(part)).reduce((n, [, v]) => n + v, 0);
  return { values, sum, matching };
}

/** The lines of the flood, in 100 slices: line k is user k mod users' (k div users)-th line, so each user's lines spread over the whole window. */
function* slices(opts) {
  const total = opts.users * opts.linesPerUser;
  const per = Math.ceil(total / 100);
  for (let start = 0; start < total; start += per) {
    const end = Math.min(total, start + per);
    yield { start, end };
  }
}

function linesFor(opts, start, end) {
  const time = new Date().toISOString();
  let text = "";
  for (let k = start; k < end; k++) {
    const user = `flood-user-${String(k % opts.users).padStart(7, "0")}`;
    text +=
      `{"severity":"ERROR","time":"${time}","pod":"${POD}","event":"factory.hard_limit","userId":"${user}","managers":20,"limit":20,` +
      `"seq":${k},"message":"HARD LIMIT: User ${user} still over limit after cleanup (20/20)"}\n`;
  }
  return text;
}

/**
 * One side of a round: a factory and an operator, the lines appended on
 * schedule, until drained. `limit`: a CPU limit group (bench/lib.mjs
 * cpuLimitGroup) the operator runs in, as its Deployment's limit would hold it.
 */
async function side(opts, matchNothing, log, limit = null) {
  const what = matchNothing ? "baseline" : limit === null ? "flood" : "flood, limited";
  const dir = mkdtempSync(join(tmpdir(), `reclaim-bench-flood-${matchNothing ? "baseline" : "flood"}-`));
  const procs = [];
  try {
    const [port, controlPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const rule = writeRule(dir, matchNothing);
    const logFile = join(dir, "factory.log");
    writeFileSync(logFile, "");
    const factory = start(
      ["factory", "--dev", "--host", "127.0.0.1", "--port", String(port), "--control-port", String(controlPort), "--log-level", "warn"],
      join(dir, "factory.out"),
    );
    procs.push(factory);
    await waitHttp(`http://127.0.0.1:${controlPort}/healthz`, "the factory");
    // prettier-ignore
    const operator = start(
      ["operator", "--dev", "--rules", rule.file, "--source", `file:${logFile}`, "--from-start", "--incidents", join(dir, "incidents"),
        "--state", join(dir, "state"), "--control", `http://127.0.0.1:${controlPort}`, "--metrics-port", String(metricsPort),
        "--sweep-schedule", "off", "--digest-schedule", "off", "--retention-schedule", "off"],
      join(dir, "operator.out"),
      { NODE_OPTIONS: opts.nodeOptions },
    );
    procs.push(operator);
    // Before it reads a line: its start-up may run unthrottled, the flood does not.
    limit?.add(operator.child.pid);
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    await waitHttp(`http://127.0.0.1:${metricsPort}/readyz`, "the operator");
    await sleep(500); // let it settle (JIT, first poll) before the idle figure
    const pid = operator.child.pid;
    const idle = memoryOf(pid);
    const cpu0 = cpuOf(pid);

    let peakRss = idle.rss;
    let peakAt = 0;
    const t0 = performance.now();
    const sampler = setInterval(() => {
      try {
        const { rss } = memoryOf(pid);
        if (rss > peakRss) {
          peakRss = rss;
          peakAt = performance.now() - t0;
        }
      } catch {
        // exited
      }
    }, 50);

    // Append the lines on schedule: slice i at i × seconds / 100.
    const all = [...slices(opts)];
    const interval = (opts.seconds * 1000) / all.length;
    let lastWrite = 0;
    for (const [i, s] of all.entries()) {
      const due = t0 + i * interval;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      appendFileSync(logFile, linesFor(opts, s.start, s.end));
      lastWrite = performance.now();
    }
    const appendMs = lastWrite - t0;
    const size = statSync(logFile).size;
    log(`  ${what}: ${opts.users * opts.linesPerUser} lines, ${(size / 1e6).toFixed(1)} MB appended in ${(appendMs / 1000).toFixed(2)} s`);

    // Drained: the saved position is the end of the file and no incident is open.
    const stateDir = join(dir, "state");
    const deadline = performance.now() + 180_000;
    let drainedAt = null;
    for (;;) {
      const files = existsSync(stateDir) ? readdirSync(stateDir).filter((f) => f.endsWith(".json")) : [];
      const offset = files.length === 0 ? 0 : JSON.parse(readFileSync(join(stateDir, files[0]), "utf8")).offset;
      if (offset >= size) {
        const m = await metrics(metricsUrl);
        if (m.sum("reclaim_operator_open_incidents") === 0) {
          drainedAt = performance.now();
          break;
        }
      }
      if (performance.now() > deadline) break;
      await sleep(20);
    }
    clearInterval(sampler);
    if (drainedAt === null) throw new Error(`${what}: the operator did not drain within 180 s`);
    const final = memoryOf(pid);
    const cpuMs = cpuOf(pid) - cpu0;
    const throttled = limit?.throttled() ?? null;
    const m = await metrics(metricsUrl);
    const factoryMetrics = await metrics(`http://127.0.0.1:${controlPort}/metrics`);
    const exit = await stop(operator);
    await stop(factory);

    // What it wrote.
    const incidentsDir = join(dir, "incidents");
    const names = existsSync(incidentsDir) ? readdirSync(incidentsDir) : [];
    const records = names.filter((f) => f.endsWith(".json")).map((f) => JSON.parse(readFileSync(join(incidentsDir, f), "utf8")));
    const rollups = records.filter((r) => r.rollup !== undefined);
    const perKey = records.filter((r) => r.rollup === undefined);
    const accounted = new Set([...perKey.map((r) => r.target.userId), ...rollups.flatMap((r) => r.rollup.keys.map((k) => k.userId))]);
    return {
      exit,
      idleRss: idle.rss,
      peakRss: Math.max(peakRss, final.hwm),
      sampledPeakRss: peakRss,
      peakAtMs: peakAt,
      appendMs,
      drainMs: drainedAt - t0,
      drainAfterLastMs: drainedAt - lastWrite,
      cpuMs,
      throttled,
      bytes: size,
      linesRead: m.sum("reclaim_operator_lines_read_total"),
      matches: m.sum("reclaim_operator_rule_matches_total"),
      acted: m.matching("reclaim_operator_triggers_total", 'outcome="acted"'),
      suppressedTriggers: m.matching("reclaim_operator_triggers_total", 'outcome="suppressed"'),
      suppressedKeys: m.sum("reclaim_operator_suppressed_keys_total"),
      unlisted: m.sum("reclaim_operator_suppressed_unlisted_total"),
      storeErrors: m.sum("reclaim_operator_store_errors_total"),
      rungCalls: factoryMetrics.matching("reclaim_factory_control_requests_total", 'route="rung"'),
      files: names.filter((f) => !f.startsWith(".")).length,
      records: records.length,
      rollupRecords: rollups.length,
      perKey,
      rungsRun: perKey.reduce((n, r) => n + r.rungs.length, 0),
      resolved: perKey.filter((r) => r.status === "resolved").length,
      accounted: accounted.size,
      maxPerHour: rule.maxPerHour,
    };
  } finally {
    for (const p of procs) await stop(p).catch(() => undefined);
    try {
      limit?.remove();
    } catch (err) {
      log(`  could not remove the CPU limit group ${limit?.dir}: ${String(err)}`);
    }
    // RECLAIM_BENCH_KEEP=1 keeps the folder (the operator's log, its records) to look into a run.
    if (process.env.RECLAIM_BENCH_KEEP === "1") log(`  kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The flood under the Deployment's CPU limit: does the operator keep up
 * with it there? Its backlog when the last line is appended is the drain
 * after it; target ≤ targets.limitedDrainAfterLastS in the worst round.
 */
function limitedRows(opts, rounds, { sec, med, perRound, worst }) {
  const limit = `${opts.cpuLimit}m`;
  const worstDrain = worst((r) => r.limited.drainAfterLastMs);
  return [
    {
      metric: `Drain under the Deployment's CPU limit (${limit}): last line appended → processed, nothing open`,
      base: `${sec(med((r) => r.flood.drainAfterLastMs))} (no limit)`,
      test: sec(med((r) => r.limited.drainAfterLastMs)),
      ratio: `${(med((r) => r.limited.drainAfterLastMs) / med((r) => r.flood.drainAfterLastMs)).toFixed(2)}×`,
      perRound: perRound((r) => r.limited.drainAfterLastMs / r.flood.drainAfterLastMs),
      target: `≤ ${targets.limitedDrainAfterLastS} s (worst round: ${sec(worstDrain)})`,
      result: worstDrain <= targets.limitedDrainAfterLastS * 1000 ? "PASS" : "FAIL",
    },
    {
      metric: `Operator CPU time under the limit (${limit}), and periods throttled`,
      base: `${sec(med((r) => r.flood.cpuMs))} (no limit)`,
      test: `${sec(med((r) => r.limited.cpuMs))}; ${med((r) => r.limited.throttled.throttled)} of ${med((r) => r.limited.throttled.periods)} periods`,
      ratio: `${(med((r) => r.limited.cpuMs) / med((r) => r.flood.cpuMs)).toFixed(2)}×`,
      perRound: perRound((r) => r.limited.cpuMs / r.flood.cpuMs),
      target: "none",
      result: "info",
    },
  ];
}

export async function run(options = {}) {
  const opts = { ...defaults };
  for (const k of Object.keys(defaults)) if (options[k] !== undefined) opts[k] = options[k];
  opts.nodeOptions = deployedNodeOptions();
  const log = options.log ?? (() => {});
  log(`operator NODE_OPTIONS as deployed (manifests/base/operator/deployment.yaml): ${opts.nodeOptions}`);
  opts.cpuLimit = deployedCpuLimit();
  // A third side per round: the flood with the operator held to its Deployment's CPU limit (needs a writable cgroup).
  const limitName = (i) => `reclaim-bench-flood-${process.pid}-${i}`;
  const probe = cpuLimitGroup(opts.cpuLimit, limitName("probe"));
  probe?.remove();
  opts.limited = probe !== null;
  log(opts.limited ? `the limited flood runs in a cgroup with the Deployment's CPU limit: ${opts.cpuLimit}m` : "no writable cgroup CPU controller here: the limited flood is not measured");
  if (!existsSync(join(ROOT, "dist/cli/main.js"))) throw new Error("dist/ is missing: run `npm run build` first");
  const total = opts.users * opts.linesPerUser;
  const problems = [];
  const rounds = [];
  for (let i = 0; i < opts.rounds; i++) {
    log(`round ${i + 1}/${opts.rounds}: baseline (a rule that matches nothing), then the flood${opts.limited ? ", then the flood under the CPU limit" : ""}`);
    const base = await side(opts, true, log);
    const flood = await side(opts, false, log);
    const limited = opts.limited ? await side(opts, false, log, cpuLimitGroup(opts.cpuLimit, limitName(i))) : null;
    log(
      `  baseline: peak ${(base.peakRss / 2 ** 20).toFixed(0)} MiB, drained ${(base.drainAfterLastMs / 1000).toFixed(2)} s after the last line; ` +
        `flood: peak ${(flood.peakRss / 2 ** 20).toFixed(0)} MiB, drained ${(flood.drainAfterLastMs / 1000).toFixed(2)} s after, ` +
        `${flood.acted} acted, ${flood.records} records, ${flood.accounted} users accounted for` +
        (limited === null ? "" : `; under ${opts.cpuLimit}m: drained ${(limited.drainAfterLastMs / 1000).toFixed(2)} s after, ${(limited.cpuMs / 1000).toFixed(1)} s of CPU`),
    );
    for (const [what, s] of [
      ["baseline", base],
      ["flood", flood],
      ...(limited === null ? [] : [["flood, limited", limited]]),
    ]) {
      if (s.linesRead !== total) problems.push(`round ${i + 1}, ${what}: the operator read ${s.linesRead} lines, ${total} written`);
      if (s.storeErrors !== 0) problems.push(`round ${i + 1}, ${what}: ${s.storeErrors} store errors`);
      if (s.exit.code !== 0) problems.push(`round ${i + 1}, ${what}: the operator exited with ${s.exit.code ?? s.exit.signal} on SIGTERM`);
    }
    if (base.matches !== 0 || base.records !== 0) problems.push(`round ${i + 1}: the baseline rule matched ${base.matches} lines and wrote ${base.records} records`);
    if (flood.matches !== total) problems.push(`round ${i + 1}: the flood rule matched ${flood.matches} lines, ${total} written`);
    if (limited !== null && limited.matches !== total) problems.push(`round ${i + 1}: under the CPU limit the flood rule matched ${limited.matches} lines, ${total} written`);
    if (flood.appendMs > opts.seconds * 1000 + 1000) problems.push(`round ${i + 1}: appending took ${(flood.appendMs / 1000).toFixed(1)} s, more than ${opts.seconds} s`);
    if (flood.rungCalls !== flood.rungsRun) problems.push(`round ${i + 1}: the factory received ${flood.rungCalls} rung calls, the records show ${flood.rungsRun}`);
    rounds.push({ base, flood, limited });
  }

  const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const sec = (ms) => `${(ms / 1000).toFixed(2)} s`;
  const med = (f) => median(rounds.map(f));
  const perRound = (f) => {
    const r = rounds.map(f);
    return `${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)}`;
  };
  const worst = (f) => Math.max(...rounds.map(f));
  const maxPerHour = rounds[0].flood.maxPerHour;
  const suppressedUsers = opts.users - Math.min(opts.users, maxPerHour);
  const recordBound = maxPerHour + Math.ceil(suppressedUsers / ROLLUP_PAGE);
  const peak = worst((r) => r.flood.peakRss);
  const acted = worst((r) => r.flood.acted);
  const records = worst((r) => r.flood.records);
  const accountedMin = Math.min(...rounds.map((r) => r.flood.accounted + r.flood.unlisted));
  const rows = [
    {
      metric: "Peak RSS of the operator (VmHWM)",
      base: mib(med((r) => r.base.peakRss)),
      test: mib(med((r) => r.flood.peakRss)),
      ratio: `${(med((r) => r.flood.peakRss) / med((r) => r.base.peakRss)).toFixed(2)}×`,
      perRound: perRound((r) => r.flood.peakRss / r.base.peakRss),
      target: `≤ ${targets.peakRssMb} MB (worst round: ${(peak / 1e6).toFixed(0)} MB)`,
      result: peak <= targets.peakRssMb * 1e6 ? "PASS" : "FAIL",
    },
    {
      metric: "RSS growth over idle (peak − before the first line)",
      base: mib(med((r) => r.base.peakRss - r.base.idleRss)),
      test: mib(med((r) => r.flood.peakRss - r.flood.idleRss)),
      ratio: `${(med((r) => r.flood.peakRss - r.flood.idleRss) / Math.max(1, med((r) => r.base.peakRss - r.base.idleRss))).toFixed(2)}×`,
      perRound: perRound((r) => (r.flood.peakRss - r.flood.idleRss) / Math.max(1, r.base.peakRss - r.base.idleRss)),
      target: "none",
      result: "info",
    },
    {
      metric: "Drain: last line appended → processed, nothing open",
      base: sec(med((r) => r.base.drainAfterLastMs)),
      test: sec(med((r) => r.flood.drainAfterLastMs)),
      ratio: `${(med((r) => r.flood.drainAfterLastMs) / med((r) => r.base.drainAfterLastMs)).toFixed(2)}×`,
      perRound: perRound((r) => r.flood.drainAfterLastMs / r.base.drainAfterLastMs),
      target: "none",
      result: "info",
    },
    {
      metric: "Drain: first line appended → processed, nothing open",
      base: sec(med((r) => r.base.drainMs)),
      test: sec(med((r) => r.flood.drainMs)),
      ratio: `${(med((r) => r.flood.drainMs) / med((r) => r.base.drainMs)).toFixed(2)}×`,
      perRound: perRound((r) => r.flood.drainMs / r.base.drainMs),
      target: "none",
      result: "info",
    },
    {
      metric: "Operator CPU time (user + system)",
      base: sec(med((r) => r.base.cpuMs)),
      test: sec(med((r) => r.flood.cpuMs)),
      ratio: `${(med((r) => r.flood.cpuMs) / med((r) => r.base.cpuMs)).toFixed(2)}×`,
      perRound: perRound((r) => r.flood.cpuMs / r.base.cpuMs),
      target: "none",
      result: "info",
    },
    ...(opts.limited ? limitedRows(opts, rounds, { sec, med, perRound, worst }) : []),
    {
      metric: "Ladders started (acted on)",
      base: "0",
      test: String(med((r) => r.flood.acted)),
      ratio: "—",
      perRound: `${Math.min(...rounds.map((r) => r.flood.acted))}–${acted}`,
      target: `≤ maxPerHour (${maxPerHour})`,
      result: acted <= maxPerHour ? "PASS" : "FAIL",
    },
    {
      metric: "Rung calls the factory received",
      base: "0",
      test: String(med((r) => r.flood.rungCalls)),
      ratio: "—",
      perRound: `${Math.min(...rounds.map((r) => r.flood.rungCalls))}–${worst((r) => r.flood.rungCalls)}`,
      target: "none",
      result: "info",
    },
    {
      metric: "Records written (.json; each has its .md)",
      base: String(med((r) => r.base.records)),
      test: String(med((r) => r.flood.records)),
      ratio: "—",
      perRound: `${Math.min(...rounds.map((r) => r.flood.records))}–${records}`,
      target: `≤ ${recordBound} (acted + ⌈${suppressedUsers} / ${ROLLUP_PAGE}⌉)`,
      result: records <= recordBound ? "PASS" : "FAIL",
    },
    {
      metric: "Users accounted for (a record of their own, listed in a rollup, or counted unlisted)",
      base: "—",
      test: `${med((r) => r.flood.accounted + r.flood.unlisted)} / ${opts.users}`,
      ratio: "—",
      perRound: `${accountedMin}–${worst((r) => r.flood.accounted + r.flood.unlisted)}`,
      target: `all ${opts.users}`,
      result: accountedMin >= opts.users ? "PASS" : "FAIL",
    },
  ];
  const details = rounds.flatMap((r, i) =>
    [
      ["baseline", r.base],
      ["flood", r.flood],
      ...(r.limited === null ? [] : [[`flood, ${opts.cpuLimit}m`, r.limited]]),
    ].map(([what, s]) => ({
      round: String(i + 1),
      side: what,
      "idle RSS": mib(s.idleRss),
      "peak RSS": mib(s.peakRss),
      "peak at (s)": (s.peakAtMs / 1000).toFixed(1),
      "append (s)": (s.appendMs / 1000).toFixed(2),
      "drain after last (s)": (s.drainAfterLastMs / 1000).toFixed(2),
      "CPU (s)": (s.cpuMs / 1000).toFixed(1),
      "throttled periods": s.throttled === null ? "—" : `${s.throttled.throttled} / ${s.throttled.periods}`,
      "lines read": String(s.linesRead),
      matched: String(s.matches),
      acted: String(s.acted),
      "rung calls": String(s.rungCalls),
      resolved: String(s.resolved),
      "suppressed triggers": String(s.suppressedTriggers),
      "keys rolled up": String(s.suppressedKeys),
      unlisted: String(s.unlisted),
      records: `${s.records} (${s.rollupRecords} rollup)`,
      files: String(s.files),
    })),
  );
  for (const r of rounds) for (const s of [r.base, r.flood, r.limited]) if (s !== null) delete s.perKey;
  return { name, opts, rows, details, problems, rounds, total };
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(
    rows.map((r) => ({
      figure: r.metric,
      "baseline (matches nothing)": r.base,
      flood: r.test,
      "flood / baseline": r.ratio,
      "per round": r.perRound,
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
    `- Flood: ${result.total.toLocaleString("en")} HARD LIMIT lines for ${o.users.toLocaleString("en")} users (${o.linesPerUser} each), appended in 100 slices within ${o.seconds} s; ` +
      `the shipped rule \`rules/factory-lockout.yaml\` (maxPerHour ${result.rounds[0].flood.maxPerHour}); ${o.rounds} round(s), baseline first in each`,
    `- Operator as deployed: \`NODE_OPTIONS=${o.nodeOptions}\` (from manifests/base/operator/deployment.yaml), on every side`,
    o.limited
      ? `- Third side per round: the flood again, the operator in a cgroup with a CFS quota of its Deployment's CPU limit (${o.cpuLimit}m per 100 ms period), as Kubernetes holds it`
      : `- The flood under the Deployment's CPU limit (${o.cpuLimit}m) was not measured: no writable cgroup CPU controller on this machine`,
    `- Each figure is the median over the rounds; "per round" is the lowest and highest ratio (or value) of a single round. Targets are checked against the worst round.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every round:",
    "",
    table(result.details),
  ].join("\n");
}
