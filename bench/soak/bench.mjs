// The soak benchmark (issue 11, "the proof"): a simulated week of lockouts
// through the real operator, and its heap after the week against its heap
// after the first simulated day — memory must stay flat for weeks.
//
// The measured side runs in a child process (bench/soak/child.mjs, with
// --expose-gc and the operator container's NODE_OPTIONS): `startOperator`
// from dist/ on a ManualClock, so every wait and deadline of the operator
// (ladder backoff, verification polling, term timers, rule reload polling)
// runs on simulated time; a source the simulation pushes the factory's
// refusal lines into; incidents in a real folder (FileIncidentStore); rungs
// and admission checks over real HTTP to the model factory
// (test/support/model-factory.mjs). The week is bench/soak/schedule.mjs.
//
// Baseline, in the same run: the same process after the first simulated day.
// After every day, with no ladder running, the child runs full collections and
// reads `heapUsed`; the figure is day N against day 1. The heap right after
// the operator started (before any lockout) is reported beside them, so the
// operator's own cost shows.
//
// A run is invalid (exit 1) unless every lockout ends in a record (each of
// its two lines is one trigger, and every trigger is on record exactly once:
// the incident it opened, a suppression counted on a record of its user, or a
// count on a rollup record listing the user), no incident is open at the end,
// the operator never stopped by itself, and its log has no error line.
import { fork } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { deployedNodeOptions } from "../lib.mjs";
import { sectionHeader } from "../lib.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export const name = "soak";

/** The sizes a run uses unless given on the command line (`--days 14`, …). */
export const defaults = {
  days: 7,
  everyMinutes: 2, // a lockout every 2 simulated minutes: 720 a day, 5,040 a week
  seed: 1, // which users each slot gets (bench/soak/schedule.mjs)
  reloadSeconds: 60, // how often the operator checks its rule file (simulated; its own default is 1 s)
};

export const optionRanges = { days: [2, 60], everyMinutes: [1, 720], seed: [0, 2 ** 31 - 1], reloadSeconds: [1, 3600] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { days: 2, everyMinutes: 120 };

export const targets = {
  heapRatio: 1.1, // heap used after the last day ≤ 1.10 × after the first
};

const mib = (b) => `${(b / 2 ** 20).toFixed(2)} MiB`;

/** Runs the simulation in a child with --expose-gc; resolves to its result. */
function simulate(opts, log) {
  return new Promise((resolve, reject) => {
    const child = fork(join(ROOT, "bench/soak/child.mjs"), [], {
      cwd: ROOT,
      execArgv: ["--expose-gc", ...opts.nodeOptions.split(/\s+/).filter((a) => a !== "")],
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RECLAIM_") && k !== "NODE_OPTIONS")),
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let answer = null;
    child.on("message", (msg) => {
      if (typeof msg?.progress === "string") log(msg.progress);
      else if (msg?.result !== undefined || msg?.error !== undefined) answer = msg;
    });
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      if (answer?.result !== undefined) resolve(answer.result);
      else reject(new Error(answer?.error ?? `the soak child exited with ${code ?? signal} without a result`));
    });
    child.send({ days: opts.days, everyMinutes: opts.everyMinutes, seed: opts.seed, reloadSeconds: opts.reloadSeconds });
  });
}

/** Runs the simulation once; `rows` and `details` are the tables, `problems` what makes the run invalid. */
export async function run(options = {}) {
  const opts = { ...defaults };
  for (const k of Object.keys(defaults)) if (options[k] !== undefined) opts[k] = options[k];
  opts.nodeOptions = deployedNodeOptions();
  const log = options.log ?? (() => {});
  if (!existsSync(join(ROOT, "dist/operator/operator.js"))) throw new Error("dist/ is missing: run `npm run build` first");
  log(`${opts.days} simulated days, a lockout every ${opts.everyMinutes} simulated min, seed ${opts.seed}; the child runs with --expose-gc ${opts.nodeOptions}`);
  const r = await simulate(opts, log);

  const problems = [...r.check.problems];
  if (r.stoppedBeforeEnd !== null) problems.push(`the operator stopped by itself: ${r.stoppedBeforeEnd}`);
  if (r.openBeforeStop.length > 0) problems.push(`${r.openBeforeStop.length} incident(s) open at the end of the week: ${r.openBeforeStop.slice(0, 5).join(", ")}`);
  if (r.inFlightAtEnd !== 0) problems.push(`${r.inFlightAtEnd} ladder(s) still running at the end of the week`);
  if (r.totals.lockouts !== r.check.lockouts) problems.push(`${r.totals.lockouts} lockouts pushed, the schedule has ${r.check.lockouts}`);
  if (r.log.errors.length > 0) problems.push(`the operator logged errors: ${r.log.errors.slice(0, 5).join(" | ")}`);
  // The circuit breaker opens in a day's admission outage once three incidents in a row failed there (the default
  // schedule: every day; a sparse one, as --smoke's, may have too few lockouts in it): at most once an outage.
  const openings = r.log.circuitOpenedOnDay;
  if (new Set(openings).size !== openings.length) problems.push(`the circuit breaker opened more than once in one day's outage: days [${openings.join(", ")}]`);
  const reloads = r.log.counts["info operator.rules_loaded"] ?? 0;
  if (reloads !== r.totals.ruleRewrites) problems.push(`the rule file was rewritten ${r.totals.ruleRewrites} time(s), the operator reloaded ${reloads} time(s)`);

  const first = r.days[0];
  const last = r.days[r.days.length - 1];
  const ratio = last.heapUsed / first.heapUsed;
  const grown = (d) => d.heapUsed - r.started.heapUsed;
  const statusText = Object.entries(r.check.byStatus)
    .sort((a, b) => b[1] - a[1])
    .map(([s, n]) => `${s} ${n}`)
    .join(", ");
  const rows = [
    {
      metric: "Heap used after a full GC",
      base: mib(first.heapUsed),
      test: mib(last.heapUsed),
      ratio: `${ratio.toFixed(3)}×`,
      target: `≤ ${targets.heapRatio.toFixed(2)}× day 1`,
      result: ratio <= targets.heapRatio ? "PASS" : "FAIL",
    },
    {
      metric: "… of which machine code (V8's code spaces: the JIT)",
      base: mib(first.code),
      test: mib(last.code),
      ratio: `${(last.code / first.code).toFixed(2)}×`,
      target: "none",
      result: "info",
    },
    {
      metric: `Heap used over the operator just started (${mib(r.started.heapUsed)})`,
      base: mib(grown(first)),
      test: mib(grown(last)),
      ratio: `${(grown(last) / Math.max(1, grown(first))).toFixed(2)}×`,
      target: "none",
      result: "info",
    },
    {
      metric: "RSS",
      base: mib(first.rss),
      test: mib(last.rss),
      ratio: `${(last.rss / first.rss).toFixed(2)}×`,
      target: "none",
      result: "info",
    },
    {
      metric: "Lockouts ending in a record (its user's incident, or listed in a rollup)",
      base: String(first.lockouts),
      test: `${r.check.lockouts} (${r.check.accountedUsers} / ${r.check.users} users)`,
      ratio: "—",
      target: "every one",
      result: r.check.problems.length === 0 ? "PASS" : "FAIL",
    },
    {
      metric: "Wall time (simulated days run in real time)",
      base: `${(first.wallMs / 1000).toFixed(1)} s`,
      test: `${(r.wallMs / 1000).toFixed(1)} s`,
      ratio: "—",
      target: "none",
      result: "info",
    },
  ];
  const details = r.days.map((d) => ({
    day: String(d.day),
    lockouts: String(d.lockouts),
    "heap used": mib(d.heapUsed),
    "vs day 1": `${(d.heapUsed / first.heapUsed).toFixed(3)}×`,
    "code space": mib(d.code),
    "heap total": mib(d.heapTotal),
    RSS: mib(d.rss),
    "guard keys": String(d.sizes.guardKeys),
    "dedupe ids": String(d.sizes.dedupe),
    windows: String(d.sizes.windows),
    "rollup keys": String(d.sizes.rollupKeys),
    active: String(d.sizes.active),
    "clock timers": String(d.sizes.timers),
    "model users": String(d.sizes.modelUsers),
    "wall (s)": (d.wallMs / 1000).toFixed(1),
  }));
  return { name, opts, rows, details, problems, result: r, statusText, reloads };
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  return table(
    rows.map((r) => ({
      figure: r.metric,
      "after day 1 (baseline)": r.base,
      "after the last day": r.test,
      "last / day 1": r.ratio,
      target: r.target,
      result: r.result,
    })),
  );
}

/** The results section of BENCHMARKS.md. */
export function section(result, m, cmd, table) {
  const o = result.opts;
  const r = result.result;
  const c = r.check;
  const warn = Object.entries(r.log.counts)
    .filter(([k]) => k.startsWith("warn "))
    .map(([k, n]) => `${k.slice(5)} ${n}`)
    .join(", ");
  return [
    ...sectionHeader(m, cmd),
    `- Simulated: ${o.days} days from ${new Date(Date.parse("2026-11-30T00:00:00Z")).toISOString().slice(0, 10)}, a lockout every ${o.everyMinutes} simulated minutes ` +
      `(${c.lockouts.toLocaleString("en")} lockouts of ${c.users.toLocaleString("en")} users, seed ${o.seed}); the shipped rule \`rules/factory-lockout.yaml\` ` +
      `(reloaded once a day), rule file checked every ${o.reloadSeconds} simulated s; the child runs with \`--expose-gc ${o.nodeOptions}\``,
    `- Records: ${c.records.toLocaleString("en")} — incidents ${result.statusText}; ${c.rollupRecords} rollup records listing ${c.rollupKeys} keys` +
      `${c.unlisted > 0 ? ` (+${c.unlisted} unlisted triggers)` : ""}; every one of the ${c.triggers.toLocaleString("en")} triggers (2 per lockout) is on record once`,
    `- Triggers not acted on, by reason: ${Object.entries(c.suppressedBy)
      .sort((a, b) => b[1] - a[1])
      .map(([reason, n]) => `${reason} ${n.toLocaleString("en")}`)
      .join(", ")}`,
    `- The factory received ${r.totals.rungCalls.toLocaleString("en")} rung calls (${r.totals.replayedCalls} answered from its idempotency cache); ` +
      `admission answered 500 for 25 min on ${r.totals.outages} day(s); the operator reloaded its rules ${result.reloads} time(s) and wrote no error line but the circuit breaker's opening in ${r.log.circuitOpenedOnDay.length} of the ${r.totals.outages} daily outages (it pages: ADR 25) (warnings: ${warn || "none"})`,
    `- Heap right after the operator started, before any lockout: ${mib(r.started.heapUsed)} (RSS ${mib(r.started.rss)})`,
    "",
    resultsTable(result.rows, table),
    "",
    "After every simulated day (read with no ladder running, after full collections):",
    "",
    table(result.details),
  ].join("\n");
}
