// The engine benchmark: what the operator's decision path costs per log line
// in a flood, in process, without the file source, the store's disk, the
// factory or the network around it (ADR 45).
//
// Each side runs in a fresh child process with the operator's Deployment
// NODE_OPTIONS (its V8 heap settings), cold as an operator is when a flood
// starts: the flood benchmark's lines (10,000 users × 10 HARD LIMIT lines,
// user k mod users' line after line) are made in memory, then each is parsed
// by the operator's `parseLine` and handed to `Replayer` (the live engine,
// detector, guards and an in-memory store; an incident that would act is
// closed at once). Timed: that loop only.
// - baseline: the shipped rule with its trigger event renamed to one nothing
//   logs: parsing, and each rule's miss;
// - flood: the shipped rule (threshold 1, maxPerHour 20): 20 incidents act,
//   9,980 users are rolled up, every line is a trigger.
// Rounds alternate which side runs first.
//
// Figures (medians over the rounds): CPU time of the loop (process.cpuUsage),
// its wall time, young-generation collections and time in garbage collection
// (PerformanceObserver "gc"), per side and as flood / baseline. No target: a
// figure to watch when the engine changes.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { resultsTable, writeRule } from "../flood/bench.mjs";
import { deployedNodeOptions, median, sectionHeader } from "../lib.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SELF = fileURLToPath(import.meta.url);

export const name = "engine";

export const defaults = {
  users: 10_000,
  linesPerUser: 10, // 100,000 lines
  rounds: 5,
};

export const optionRanges = { users: [10, 1_000_000], linesPerUser: [1, 1000], rounds: [1, 20] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { users: 500, linesPerUser: 4, rounds: 1 };

const POD = "bench-factory-0";
const T0 = Date.parse("2026-12-05T08:00:00Z");

/** The flood benchmark's lines, in memory: line k is user k mod users' (k div users)-th, 1 ms apart per 10 lines. */
function lines(users, perUser) {
  const out = [];
  for (let k = 0; k < users * perUser; k++) {
    const user = `flood-user-${String(k % users).padStart(7, "0")}`;
    const time = new Date(T0 + Math.floor(k / 10)).toISOString();
    out.push(
      Buffer.from(
        `{"severity":"ERROR","time":"${time}","pod":"${POD}","event":"factory.hard_limit","userId":"${user}","managers":20,"limit":20,` +
          `"seq":${k},"message":"HARD LIMIT: User ${user} still over limit after cleanup (20/20)"}`,
      ),
    );
  }
  return out;
}

/** In the child: one side, timed; prints its figures as JSON. */
async function child(side, users, perUser, ruleFile) {
  const dist = (p) => import(pathToFileURL(join(ROOT, "dist", p)).href);
  const { PerformanceObserver } = await import("node:perf_hooks");
  const { loadRules } = await dist("operator/rules/load.js");
  const { parseLine } = await dist("operator/sources/scan.js");
  const { Replayer } = await dist("operator/replay.js");
  const loaded = await loadRules([ruleFile]);
  if (loaded.errors.length > 0) throw new Error(loaded.errors.map((e) => e.format()).join("\n"));
  const input = lines(users, perUser);
  const gc = { n: 0, ms: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.n++;
      gc.ms += e.duration;
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  const replayer = new Replayer(loaded.rules.map((r) => r.compiled));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const line of input) {
    const event = parseLine(line);
    if (typeof event === "string") throw new Error(`a bench line did not parse: ${event}`);
    await replayer.handle(event);
  }
  const report = await replayer.report();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // The observer hears of the last collections a moment later.
  await new Promise((resolve) => setTimeout(resolve, 20));
  observer.disconnect();
  process.stdout.write(
    `${JSON.stringify({
      side,
      lines: input.length,
      cpuMs: (cpu.user + cpu.system) / 1000,
      wallMs,
      gcCount: gc.n,
      gcMs: gc.ms,
      matched: report.matched,
      incidents: report.incidents.length,
      acting: report.incidents.filter((i) => i.action === "act").length,
    })}\n`,
  );
}

function runSide(side, opts, ruleFile) {
  const out = execFileSync(process.execPath, [...opts.nodeOptions.split(/\s+/).filter(Boolean), SELF, "--child", side, String(opts.users), String(opts.linesPerUser), ruleFile], {
    cwd: ROOT,
    encoding: "utf8",
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RECLAIM_") && k !== "NODE_OPTIONS")),
    timeout: 300_000,
  });
  return JSON.parse(out.trim().split("\n").at(-1));
}

export async function run(options = {}) {
  const opts = { ...defaults };
  for (const k of Object.keys(defaults)) if (options[k] !== undefined) opts[k] = options[k];
  opts.nodeOptions = deployedNodeOptions();
  const log = options.log ?? (() => {});
  if (!existsSync(join(ROOT, "dist/operator/replay.js"))) throw new Error("dist/ is missing: run `npm run build` first");
  const total = opts.users * opts.linesPerUser;
  const dir = mkdtempSync(join(tmpdir(), "reclaim-bench-engine-"));
  try {
    mkdirSync(join(dir, "baseline"));
    mkdirSync(join(dir, "flood"));
    const baselineRule = writeRule(join(dir, "baseline"), true);
    const floodRule = writeRule(join(dir, "flood"), false);
    const expectedActing = Math.min(opts.users, floodRule.maxPerHour);
    log(`${total} lines (${opts.users} users × ${opts.linesPerUser}), ${opts.rounds} round(s), each side in a fresh process with NODE_OPTIONS ${opts.nodeOptions}`);
    const problems = [];
    const rounds = [];
    for (let i = 0; i < opts.rounds; i++) {
      const order = i % 2 === 0 ? ["baseline", "flood"] : ["flood", "baseline"];
      const got = {};
      for (const side of order) got[side] = runSide(side, opts, side === "baseline" ? baselineRule.file : floodRule.file);
      const { baseline, flood } = got;
      log(`  round ${i + 1}: baseline ${baseline.cpuMs.toFixed(0)} ms CPU, flood ${flood.cpuMs.toFixed(0)} ms CPU (${flood.gcCount} collections)`);
      if (baseline.lines !== total || flood.lines !== total) problems.push(`round ${i + 1}: a side handled ${baseline.lines} / ${flood.lines} lines, not ${total}`);
      if (baseline.matched !== 0 || baseline.incidents !== 0) problems.push(`round ${i + 1}: the baseline rule matched ${baseline.matched} lines`);
      if (flood.matched !== total) problems.push(`round ${i + 1}: the flood rule matched ${flood.matched} lines, ${total} handled`);
      if (flood.incidents !== opts.users || flood.acting !== expectedActing) {
        problems.push(`round ${i + 1}: the flood opened ${flood.incidents} incidents (${flood.acting} acting); expected ${opts.users} (${expectedActing} acting)`);
      }
      rounds.push({ baseline, flood });
    }
    const med = (f) => median(rounds.map(f));
    const perRound = (f) => {
      const r = rounds.map(f);
      return `${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)}`;
    };
    const figure = (metric, get, format) => ({
      metric,
      base: format(med((r) => get(r.baseline))),
      test: format(med((r) => get(r.flood))),
      ratio: `${(med((r) => get(r.flood)) / med((r) => get(r.baseline))).toFixed(2)}×`,
      perRound: perRound((r) => get(r.flood) / get(r.baseline)),
      target: "none",
      result: "info",
    });
    const ms = (x) => `${x.toFixed(0)} ms`;
    const rows = [
      figure(`CPU time for ${total.toLocaleString("en")} lines (user + system)`, (s) => s.cpuMs, ms),
      figure("CPU time per line", (s) => (s.cpuMs * 1000) / s.lines, (x) => `${x.toFixed(1)} µs`),
      figure("Wall time", (s) => s.wallMs, ms),
      figure("Garbage collections (young and old)", (s) => s.gcCount, (x) => x.toFixed(0)),
      figure("Time in garbage collection", (s) => s.gcMs, ms),
    ];
    const details = rounds.flatMap((r, i) =>
      ["baseline", "flood"].map((side) => {
        const s = r[side];
        return {
          round: String(i + 1),
          side,
          "CPU (ms)": s.cpuMs.toFixed(0),
          "wall (ms)": s.wallMs.toFixed(0),
          collections: String(s.gcCount),
          "GC (ms)": s.gcMs.toFixed(0),
          matched: String(s.matched),
          incidents: `${s.incidents} (${s.acting} acting)`,
        };
      }),
    );
    return { name, opts, rows, details, problems, rounds, total };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The results table: the flood benchmark's columns (baseline matching nothing, flood, their ratio). */
export { resultsTable };

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  return [
    ...sectionHeader(m, cmd),
    `- ${result.total.toLocaleString("en")} HARD LIMIT lines for ${o.users.toLocaleString("en")} users (${o.linesPerUser} each), parsed and handled in process; ${o.rounds} round(s), the sides alternating which runs first, each in a fresh process with \`NODE_OPTIONS=${o.nodeOptions}\` (the operator's Deployment)`,
    `- Each figure is the median over the rounds; "per round" is the lowest and highest ratio of a single round.`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every run:",
    "",
    table(result.details),
  ].join("\n");
}

if (process.argv[2] === "--child") {
  const [side, users, perUser, ruleFile] = process.argv.slice(3);
  await child(side, Number(users), Number(perUser), ruleFile);
}
