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
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const GENERATE = fileURLToPath(new URL("./generate.mjs", import.meta.url));
const DIST = (file) => fileURLToPath(new URL(`../../dist/${file}`, import.meta.url));

export const name = "pipeline";

export const defaults = {
  lines: 2_000_000,
  candidateEvery: 1000, // 0.1 % candidates
  rounds: 5, // figures are medians over the rounds
};

export const targets = {
  ratioMin: 0.3, // operator lines/s ≥ 0.3 × grep -F -c lines/s
};

const NEEDLE_HARD_LIMIT = '"factory.hard_limit"';
const NEEDLE_ERROR = '"factory.error"';

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Writes the log in a child process (generate.mjs), so that its garbage stays out of this heap. */
function generate(file, opts) {
  const r = spawnSync(process.execPath, [GENERATE, file, String(opts.lines), String(opts.candidateEvery)], {
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

/** The operator's path over the file; returns its time, CPU time and counts. */
async function operator(file, rule, needles, lib, stateDir) {
  const source = new lib.FileSource({ path: file, follow: false, fromStart: true, ...(stateDir === undefined ? {} : { stateDir }) });
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
  const opts = { ...defaults, ...(options.lines === undefined ? {} : { lines: options.lines }), ...(options.rounds === undefined ? {} : { rounds: options.rounds }) };
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
    return { name, opts, rows, details, problems, written, rounds, grepVersion: grepVersion() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
    `_Written by \`bench/run.mjs\` from the run below; rerun to replace it._`,
    "",
    `- Command: \`${cmd}\` (after \`npm run build\`), commit ${m.commit}`,
    `- Machine: ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB RAM, ${m.os}; Node ${m.node}, ${result.grepVersion}`,
    `- Date: ${m.date} (load average at start: ${m.load})`,
    `- Log: ${o.lines.toLocaleString("en")} lines, ${(w.bytes / 1e6).toFixed(0)} MB, in the page cache; ` +
      `${w.candidates} candidates (${w.hardLimit} factory.hard_limit + ${w.factoryError} factory.error, ${((100 * w.candidates) / o.lines).toFixed(2)} %); ${o.rounds} rounds`,
    `- Each rate is the median over the rounds (lines / wall time); "operator / baseline" is the ratio of the medians, "ratio per round" the lowest and highest ratio of a single round.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every round:",
    "",
    table(result.details),
  ].join("\n");
}
