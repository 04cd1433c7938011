// The pipeline benchmark: how fast the operator finds the lines its rules
// care for in a big factory log, against `grep -F -c` on the same file in the
// same run (the baseline, measured first in every round).
//
// A log of 2,000,000 realistic factory lines (generate.mjs) with 0.1 %
// candidates is written to a temp folder and read twice to warm the page
// cache, and the operator's path runs once untimed (JIT warm-up). Each round
// then times, in this order:
//   1. grep -F -c '"factory.hard_limit"' FILE (process.hrtime around spawnSync);
//   2. the operator's path, in this process: FileSource (follow: false,
//      fromStart: true) → scanBatch with the needles of a compiled rule for
//      factory.hard_limit / factory.error at ERROR → parseLine → rule.match,
//      counting matches, which must equal the number of candidates written;
//   3. grep -F -c with both needles (-e … -e …), for information;
//   4. the operator's path with a saved position (stateDir: one atomic,
//      fsynced write per batch), for information.
//
// Then the replay phase: that log is deleted, a ~1 GiB log (same generator,
// cut at `replayMiB`) is written and warmed, and each of `replayRounds`
// rounds times, as child processes from the command line:
//   1. grep -F -c '"factory.hard_limit"' FILE (the baseline);
//   2. bin/reclaim rules replay --rules rules --logs FILE --json, with the
//      shipped rules; its report must name every line read, every candidate
//      matched, one incident per candidate (each candidate's user is locked
//      out once) and nothing dropped or malformed. Target: < 10 s;
//   3. the same command over an empty log: the CLI's fixed start-up cost.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { median, sectionHeader } from "../lib.mjs";

const GENERATE = fileURLToPath(new URL("./generate.mjs", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RECLAIM = join(ROOT, "bin", "reclaim");
const SHIPPED_RULES = join(ROOT, "rules");
const DIST = (file) => fileURLToPath(new URL(`../../dist/${file}`, import.meta.url));

export const name = "pipeline";

export const defaults = {
  lines: 2_000_000,
  candidateEvery: 1000, // 0.1 % candidates
  rounds: 5, // figures are medians over the rounds
  replayMiB: 1024, // the replay phase's log: cut at the first line that reaches this size; 0 skips the phase
  replayRounds: 3,
};

/** Command-line options (`node bench/run.mjs pipeline --lines N`) and their ranges. */
export const optionRanges = { lines: [1000, 50_000_000], rounds: [1, 20], replayMiB: [0, 4096], replayRounds: [1, 20] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { lines: 20_000, rounds: 1, replayMiB: 8, replayRounds: 1 };

export const targets = {
  ratioMin: 0.3, // operator lines/s ≥ 0.3 × grep -F -c lines/s
  replayMaxSeconds: 10, // `rules replay` over the replay log, wall time of the whole command
};

const NEEDLE_HARD_LIMIT = '"factory.hard_limit"';
const NEEDLE_ERROR = '"factory.error"';

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Writes the log in a child process (generate.mjs), so that its garbage stays out of this heap. */
function generate(file, opts, maxBytes) {
  const args = [GENERATE, file, String(opts.lines), String(opts.candidateEvery), ...(maxBytes === undefined ? [] : [String(maxBytes)])];
  const r = spawnSync(process.execPath, args, {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (r.status !== 0) throw new Error(`generate.mjs exited with ${r.status ?? r.signal}`, { cause: r.error });
  return JSON.parse(r.stdout);
}

/** Reads the whole file once, so that every timed run reads from the page cache. */
function warm(file) {
  const fd = openSync(file, "r");
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

/** Runs grep, timed with hrtime around spawnSync; returns its count. */
function grep(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync("grep", args, { encoding: "utf8", maxBuffer: 1024 * 1024 });
  const wall = ms(t0);
  if (r.error !== undefined) throw new Error(`grep ${args.join(" ")} failed to start`, { cause: r.error });
  if (r.status !== 0 && r.status !== 1) throw new Error(`grep ${args.join(" ")} exited with ${r.status}: ${r.stderr}`);
  return { ms: wall, count: Number(r.stdout.trim()) };
}

/** Throws unless the folder's file system has `bytes` free, with 1 GiB to spare for everyone else. */
function checkFreeSpace(dir, bytes, what) {
  const fs = statfsSync(dir);
  const free = fs.bavail * fs.bsize;
  if (free < bytes + 2 ** 30) {
    throw new Error(`${dir}: ${(free / 2 ** 30).toFixed(1)} GiB free, ${what} needs ${(bytes / 2 ** 30).toFixed(1)} GiB plus 1 GiB to spare`);
  }
  return free;
}

/** CPU time (user + system, ms) of this process's children that have been waited for; null off Linux. */
function childrenCpuMs() {
  try {
    // /proc/self/stat: fields 16 and 17 (cutime, cstime), in clock ticks (100 per second); the name in () may hold spaces.
    const stat = readFileSync("/proc/self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    return null;
  }
}

/** `bin/reclaim rules replay --rules rules --logs FILE --json` as a child process: wall time, CPU time, report. */
function rulesReplay(file) {
  const cpu0 = childrenCpuMs();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [RECLAIM, "rules", "replay", "--rules", SHIPPED_RULES, "--logs", file, "--json"], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  const wall = ms(t0);
  const cpu1 = childrenCpuMs();
  if (r.error !== undefined) throw new Error("reclaim rules replay failed to start", { cause: r.error });
  if (r.status !== 0) throw new Error(`reclaim rules replay exited with ${r.status ?? r.signal}: ${r.stderr}`);
  return { ms: wall, cpuMs: cpu0 === null || cpu1 === null ? null : cpu1 - cpu0, report: JSON.parse(r.stdout) };
}

/** What is wrong with a replay report of the generated log (`written`); empty when it is right. */
function checkReplay(report, written) {
  const wrong = [];
  const acted = report.incidents.filter((i) => i.action === "act").length;
  const suppressed = report.incidents.filter((i) => i.action === "suppressed").length;
  if (report.lines.read !== written.lines) wrong.push(`read ${report.lines.read} lines, ${written.lines} written`);
  if (report.lines.malformed !== 0) wrong.push(`${report.lines.malformed} malformed lines`);
  if (report.entries !== written.candidates || report.matched !== written.candidates) {
    wrong.push(`${report.entries} entries, ${report.matched} matched; ${written.candidates} candidates written`);
  }
  if (report.incidents.length !== written.candidates) wrong.push(`${report.incidents.length} incidents, expected ${written.candidates} (one per locked-out user)`);
  if (acted + suppressed !== report.incidents.length) wrong.push(`${report.incidents.length - acted - suppressed} incidents neither acting nor suppressed`);
  const dropped = report.dropped.duplicate + report.dropped.unkeyed + report.dropped.stale;
  if (dropped !== 0) wrong.push(`dropped ${JSON.stringify(report.dropped)}`);
  return wrong;
}

/**
 * The replay phase: writes a log of about `opts.replayMiB` MiB into `dir`,
 * warms it, and times grep and `rules replay` over it (see the top of the file).
 */
async function replayPhase(dir, opts, log, problems) {
  const maxBytes = opts.replayMiB * 2 ** 20;
  checkFreeSpace(dir, maxBytes, "the replay log");
  const file = join(dir, "replay.log");
  const empty = join(dir, "empty.log");
  writeFileSync(empty, "");
  log(`replay: writing ${opts.replayMiB} MiB to ${file}`);
  const written = generate(file, { ...opts, lines: Number.MAX_SAFE_INTEGER }, maxBytes);
  log(`replay: ${(written.bytes / 1e6).toFixed(0)} MB, ${written.lines} lines, ${written.candidates} candidates; warming the page cache`);
  warm(file);
  warm(file);
  rulesReplay(empty); // loads the CLI's modules from disk once, as a second run on the same machine would find them
  const rounds = [];
  for (let i = 0; i < opts.replayRounds; i++) {
    const grep1 = grep(["-F", "-c", NEEDLE_HARD_LIMIT, file]);
    const replay = rulesReplay(file);
    const startup = rulesReplay(empty);
    if (grep1.count !== written.hardLimit) problems.push(`replay round ${i + 1}: grep counted ${grep1.count} hard_limit lines, ${written.hardLimit} written`);
    for (const wrong of checkReplay(replay.report, written)) problems.push(`replay round ${i + 1}: rules replay ${wrong}`);
    if (startup.report.lines.read !== 0 || startup.report.incidents.length !== 0) problems.push(`replay round ${i + 1}: the empty log gave a non-empty report`);
    const acted = replay.report.incidents.filter((x) => x.action === "act").length;
    rounds.push({ grep1, replay, startup, acted, incidents: replay.report.incidents.length });
    log(
      `replay round ${i + 1}/${opts.replayRounds}: grep ${grep1.ms.toFixed(0)} ms, rules replay ${replay.ms.toFixed(0)} ms` +
        ` (CPU ${replay.cpuMs ?? "?"} ms), empty log ${startup.ms.toFixed(0)} ms; ${replay.report.incidents.length} incidents (${acted} acting)`,
    );
  }
  rmSync(file, { force: true });
  return { written, rounds };
}

/** The operator's path over the file; returns its time, CPU time and counts. */
async function operator(file, rule, needles, lib, stateDir) {
  // As the operator opens its file source (operator.ts): its tail keeps nothing of a batch's bytes, so the source
  // reads into the same two buffers (`reuseBuffers`).
  const source = new lib.FileSource({ path: file, follow: false, fromStart: true, reuseBuffers: true, ...(stateDir === undefined ? {} : { stateDir }) });
  let candidates = 0;
  let malformed = 0;
  let matches = 0;
  const onCandidate = (line) => {
    candidates++;
    const event = lib.parseLine(line);
    if (typeof event === "string") malformed++;
    else if (rule.match(event) !== null) matches++;
  };
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await source.run(async (batch) => {
    lib.scanBatch(batch.data, needles, onCandidate);
    await batch.commit();
  }, new AbortController().signal);
  const wall = ms(t0);
  const cpu = process.cpuUsage(cpu0);
  return { ms: wall, cpuMs: (cpu.user + cpu.system) / 1000, candidates, malformed, matches, stats: { ...source.stats } };
}

export async function run(options = {}) {
  const opts = { ...defaults };
  for (const key of Object.keys(optionRanges)) if (options[key] !== undefined) opts[key] = options[key];
  const log = options.log ?? (() => {});
  for (const f of ["operator/sources/file.js", "operator/sources/scan.js", "operator/rules/compile.js", "operator/rules/schema.js"]) {
    if (!existsSync(DIST(f))) throw new Error(`dist/${f} is missing: run \`npm run build\` first`);
  }
  const { FileSource } = await import(DIST("operator/sources/file.js"));
  const { scanBatch, parseLine } = await import(DIST("operator/sources/scan.js"));
  const { compileRule } = await import(DIST("operator/rules/compile.js"));
  const { RemediationRule } = await import(DIST("operator/rules/schema.js"));
  const lib = { FileSource, scanBatch, parseLine };

  const rule = compileRule(
    RemediationRule.parse({
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "factory-hard-limit" },
      spec: {
        trigger: { log: { event: ["factory.hard_limit", "factory.error"], minSeverity: "ERROR" } },
        key: ["userId", "pod"],
        ladder: [{ rung: "probe" }],
      },
    }),
  );
  const needles = rule.needles.map((n) => Buffer.from(n, "utf8"));

  const problems = [];
  const dir = mkdtempSync(join(tmpdir(), "reclaim-bench-pipeline-"));
  try {
    const file = join(dir, "factory.log");
    checkFreeSpace(dir, opts.lines * 400, "the scan log");
    log(`writing ${opts.lines} lines to ${file}`);
    const written = generate(file, opts);
    log(`${(written.bytes / 1e6).toFixed(0)} MB, ${written.hardLimit} hard_limit + ${written.factoryError} factory.error lines; warming the page cache`);
    warm(file);
    warm(file);
    // One untimed pass, so that the rounds time compiled code, as in a long-running operator.
    await operator(file, rule, needles, lib);

    const rounds = [];
    for (let i = 0; i < opts.rounds; i++) {
      log(`round ${i + 1}/${opts.rounds}: grep, then the operator`);
      // The target's pair back to back; then the figures for information (the fsyncs last).
      const grep1 = grep(["-F", "-c", NEEDLE_HARD_LIMIT, file]);
      const op = await operator(file, rule, needles, lib);
      const grep2 = grep(["-F", "-c", "-e", NEEDLE_HARD_LIMIT, "-e", NEEDLE_ERROR, file]);
      const opState = await operator(file, rule, needles, lib, join(dir, `state-${i}`));
      if (grep1.count !== written.hardLimit) problems.push(`round ${i + 1}: grep counted ${grep1.count} hard_limit lines, ${written.hardLimit} written`);
      if (grep2.count !== written.candidates) problems.push(`round ${i + 1}: grep -e -e counted ${grep2.count} lines, ${written.candidates} written`);
      for (const [what, r] of [
        ["operator", op],
        ["operator with stateDir", opState],
      ]) {
        if (r.matches !== written.candidates) problems.push(`round ${i + 1}: ${what} matched ${r.matches} lines, expected ${written.candidates}`);
        if (r.candidates !== written.candidates) problems.push(`round ${i + 1}: ${what} found ${r.candidates} candidates, expected ${written.candidates}`);
        if (r.malformed !== 0) problems.push(`round ${i + 1}: ${what} found ${r.malformed} malformed lines`);
        if (r.stats.linesRead !== opts.lines || r.stats.bytesRead !== written.bytes) {
          problems.push(`round ${i + 1}: ${what} read ${r.stats.linesRead} lines / ${r.stats.bytesRead} bytes, expected ${opts.lines} / ${written.bytes}`);
        }
      }
      rounds.push({ grep1, grep2, op, opState });
      log(
        `  grep ${grep1.ms.toFixed(0)} ms, grep -e -e ${grep2.ms.toFixed(0)} ms, operator ${op.ms.toFixed(0)} ms, with stateDir ${opState.ms.toFixed(0)} ms`,
      );
    }

    const lps = (n, wallMs) => n / (wallMs / 1000);
    const fmtRate = (x) => `${(x / 1e6).toFixed(2)} M`;
    const figure = (metric, base, test, target) => {
      const b = median(rounds.map((r) => lps(opts.lines, base(r).ms)));
      const t = median(rounds.map((r) => lps(opts.lines, test(r).ms)));
      const per = rounds.map((r) => base(r).ms / test(r).ms);
      const ratio = t / b;
      return {
        metric,
        base: fmtRate(b),
        test: fmtRate(t),
        ratio: `${ratio.toFixed(2)}×`,
        perRound: `${Math.min(...per).toFixed(2)}–${Math.max(...per).toFixed(2)}`,
        target: target === undefined ? "none" : `≥ ${target}×`,
        result: target === undefined ? "info" : ratio >= target ? "PASS" : "FAIL",
      };
    };
    const rows = [
      { ...figure("Lines per second", (r) => r.grep1, (r) => r.op, targets.ratioMin), baseline: "grep -F -c (1 needle)" },
      { ...figure("Lines per second", (r) => r.grep2, (r) => r.op), baseline: "grep -F -c -e -e (2 needles)" },
      { ...figure("Lines per second, position saved per batch", (r) => r.grep1, (r) => r.opState), baseline: "grep -F -c (1 needle)" },
    ];
    const details = rounds.map((r, i) => ({
      round: String(i + 1),
      "grep -F -c (ms)": r.grep1.ms.toFixed(0),
      "grep -e -e (ms)": r.grep2.ms.toFixed(0),
      "operator (ms)": r.op.ms.toFixed(0),
      "operator CPU, all threads (ms)": r.op.cpuMs.toFixed(0),
      "with stateDir (ms)": r.opState.ms.toFixed(0),
      "operator / grep": (r.grep1.ms / r.op.ms).toFixed(2),
      "matches / candidates": `${r.op.matches} / ${r.op.candidates}`,
    }));

    let replay = null;
    if (opts.replayMiB > 0 && problems.length === 0) {
      rmSync(file, { force: true }); // room for the replay log
      replay = await replayPhase(dir, opts, log, problems);
      rows.push(...replayRows(replay));
    }
    return { name, opts, rows, details, problems, written, rounds, replay, grepVersion: grepVersion() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The replay phase's rows of the results table. */
function replayRows({ written, rounds }) {
  const seconds = (x) => `${(x / 1000).toFixed(2)} s`;
  const size = `${(written.bytes / 2 ** 30).toFixed(2)} GiB`;
  const grepMs = median(rounds.map((r) => r.grep1.ms));
  const replayMs = median(rounds.map((r) => r.replay.ms));
  const startupMs = median(rounds.map((r) => r.startup.ms));
  const per = rounds.map((r) => r.grep1.ms / r.replay.ms);
  const spread = rounds.length > 1 ? `${Math.min(...per).toFixed(2)}–${Math.max(...per).toFixed(2)}` : "";
  const rate = (wallMs) => `${(written.lines / (wallMs / 1000) / 1e6).toFixed(2)} M`;
  return [
    {
      metric: `rules replay, ${size} log: wall time`,
      baseline: "grep -F -c (1 needle)",
      base: seconds(grepMs),
      test: seconds(replayMs),
      ratio: "",
      perRound: rounds.length > 1 ? `${seconds(Math.min(...rounds.map((r) => r.replay.ms)))}–${seconds(Math.max(...rounds.map((r) => r.replay.ms)))}` : "",
      target: `< ${targets.replayMaxSeconds} s`,
      result: replayMs < targets.replayMaxSeconds * 1000 ? "PASS" : "FAIL",
    },
    {
      metric: `rules replay, ${size} log: lines per second`,
      baseline: "grep -F -c (1 needle)",
      base: rate(grepMs),
      test: rate(replayMs),
      ratio: `${(grepMs / replayMs).toFixed(2)}×`,
      perRound: spread,
      target: "none",
      result: "info",
    },
    {
      metric: "rules replay, empty log (start-up): wall time",
      baseline: "",
      base: "",
      test: seconds(startupMs),
      ratio: "",
      perRound: "",
      target: "none",
      result: "info",
    },
  ];
}

function grepVersion() {
  const r = spawnSync("grep", ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.split("\n")[0].trim() : "unknown";
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(
    rows.map((r) => ({
      figure: r.metric,
      baseline: r.baseline,
      "baseline rate": r.base,
      operator: r.test,
      "operator / baseline": r.ratio,
      "ratio per round": r.perRound,
      target: r.target,
      result: r.result,
    })),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  const w = result.written;
  return [
    ...sectionHeader(m, cmd),
    `- Log: ${o.lines.toLocaleString("en")} lines, ${(w.bytes / 1e6).toFixed(0)} MB, in the page cache; ` +
      `${w.candidates} candidates (${w.hardLimit} factory.hard_limit + ${w.factoryError} factory.error, ${((100 * w.candidates) / o.lines).toFixed(2)} %); ${o.rounds} rounds`,
    `- Each rate is the median over the rounds (lines / wall time); "operator / baseline" is the ratio of the medians, "ratio per round" the lowest and highest ratio of a single round.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every round:",
    "",
    table(result.details),
    ...(result.replay === null ? [] : replaySection(result.replay, table)),
  ].join("\n");
}

function replaySection({ written, rounds }, table) {
  return [
    "",
    `Replay log: ${written.lines.toLocaleString("en")} lines, ${(written.bytes / 1e6).toFixed(0)} MB (${(written.bytes / 2 ** 30).toFixed(2)} GiB), in the page cache; ` +
      `${written.candidates} candidates, each for a user of its own; every replay round below reported ${written.candidates} matches and ${written.candidates} incidents, nothing dropped or malformed.`,
    "",
    table(
      rounds.map((r, i) => ({
        "replay round": String(i + 1),
        "grep -F -c (ms)": r.grep1.ms.toFixed(0),
        "rules replay (ms)": r.replay.ms.toFixed(0),
        "rules replay CPU (ms)": r.replay.cpuMs === null ? "n/a" : String(r.replay.cpuMs),
        "empty log (ms)": r.startup.ms.toFixed(0),
        "empty log CPU (ms)": r.startup.cpuMs === null ? "n/a" : String(r.startup.cpuMs),
        "incidents (acting)": `${r.incidents} (${r.acted})`,
      })),
    ),
  ];
}
