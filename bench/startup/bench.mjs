// The startup benchmark: how long the `reclaim` CLI takes to start, against
// a bare `node -e 0` in the same run (issue 18: the CLI loads only the
// subcommand it runs).
//
// Each command is run `reps` times as a child process from the repository
// root (spawnSync, wall time with process.hrtime around it), interleaved:
// every repetition runs every command once, in an order rotated from one
// repetition to the next, after one untimed repetition (disk cache). Each
// run's exit code and output are checked: `--version` prints the package's
// version, `rules validate rules` exits 0 and says the rules are valid,
// `--help` lists the subcommands, `rules replay` over a small generated
// factory log (../pipeline/generate.mjs) exits 0 with a JSON report that
// opened one incident per HARD LIMIT candidate.
//
// Figures: median and p90 of each command; the ratio of each median to the
// median of `node -e 0`. Targets: `reclaim --version` and `reclaim rules
// validate rules` at most 3× `node -e 0`; `--help` and `rules replay` are
// for information.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { median, sectionHeader } from "../lib.mjs";
import { generateLog } from "../pipeline/generate.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const RECLAIM = join(ROOT, "bin", "reclaim");
const DIST_CLI = join(ROOT, "dist", "bundle", "main.js");

export const name = "startup";

export const defaults = {
  reps: 15,
  replayLines: 2000, // the generated log `rules replay` reads (2 HARD LIMIT candidates at 1 per 1,000)
  timeoutMs: 30_000, // one command
};

/** Command-line options (`node bench/run.mjs startup --reps N`) and their ranges. */
export const optionRanges = { reps: [1, 200], replayLines: [1000, 1_000_000] };

/** `--smoke`: a quick check that the benchmark works (CI), not a measurement. */
export const smoke = { reps: 2 };

export const targets = {
  ratioMax: 3, // median wall time ≤ 3 × node -e 0
};

/** The q-quantile (nearest rank) of numbers. */
function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** The commands, each with what its output must be; `logFile` is the generated log for `rules replay`. */
function commands(version, logFile, { candidates, lines }) {
  return [
    { key: "node", label: "node -e 0 (baseline)", args: ["-e", "0"], check: () => null },
    {
      key: "version",
      label: "reclaim --version",
      args: [RECLAIM, "--version"],
      target: true,
      check: (r) => (r.stdout.trim() === version ? null : `printed ${JSON.stringify(r.stdout.trim())}, expected ${version}`),
    },
    {
      key: "validate",
      label: "reclaim rules validate rules",
      args: [RECLAIM, "rules", "validate", "rules"],
      target: true,
      check: (r) => (/\bvalid\b/.test(r.stdout) ? null : `printed ${JSON.stringify(r.stdout.trim().slice(0, 200))}, expected "… valid …"`),
    },
    {
      key: "help",
      label: "reclaim --help",
      args: [RECLAIM, "--help"],
      check: (r) => (/Usage: reclaim/.test(r.stdout) && /\brules\b/.test(r.stdout) && /\bfactory\b/.test(r.stdout) ? null : "the help does not list the subcommands"),
    },
    {
      key: "replay",
      label: `reclaim rules replay (a ${candidates}-candidate log)`,
      args: [RECLAIM, "rules", "replay", "--rules", "rules", "--logs", logFile, "--json"],
      check: (r) => {
        let report;
        try {
          report = JSON.parse(r.stdout);
        } catch {
          return `printed no JSON report: ${JSON.stringify(r.stdout.slice(0, 200))}`;
        }
        const incidents = report.incidents?.length;
        if (report.lines?.read !== lines) return `read ${report.lines?.read} lines, ${lines} written`;
        return incidents === candidates ? null : `opened ${incidents} incidents, expected ${candidates}`;
      },
    },
  ];
}

/** One timed run of `cmd`: wall ms, or a problem. */
function once(cmd, timeoutMs) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, cmd.args, { cwd: ROOT, encoding: "utf8", timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error !== undefined) return { ms, problem: `${cmd.label}: ${r.error.message}` };
  if (r.status !== 0) return { ms, problem: `${cmd.label}: exit ${r.status ?? r.signal}: ${r.stderr.trim().slice(0, 300)}` };
  const wrong = cmd.check(r);
  return { ms, problem: wrong === null ? null : `${cmd.label}: ${wrong}` };
}

/** Runs the benchmark (see the top of the file). */
export async function run({ log = () => {}, ...overrides } = {}) {
  const opts = { ...defaults, ...overrides };
  if (!existsSync(DIST_CLI)) throw new Error("dist/bundle/main.js is missing: run `npm run build` first");
  const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
  const dir = mkdtempSync(join(os.tmpdir(), "reclaim-bench-startup-"));
  const problems = [];
  try {
    const logFile = join(dir, "factory.log");
    const written = generateLog(logFile, { lines: opts.replayLines });
    const candidates = written.candidates;
    if (typeof candidates !== "number") throw new Error(`generate.mjs reported ${JSON.stringify(written)}`);
    const cmds = commands(version, logFile, written);
    const times = Object.fromEntries(cmds.map((c) => [c.key, []]));
    log(`${cmds.length} commands, 1 untimed + ${opts.reps} timed repetitions, interleaved`);
    for (let rep = 0; rep <= opts.reps; rep++) {
      for (let j = 0; j < cmds.length; j++) {
        const cmd = cmds[(j + rep) % cmds.length];
        const r = once(cmd, opts.timeoutMs);
        if (r.problem !== null) {
          problems.push(r.problem);
          break;
        }
        if (rep > 0) times[cmd.key].push(r.ms);
      }
      if (problems.length > 0) break;
    }
    if (problems.length > 0) return { name, opts, rows: [], details: [{ problem: problems[0] }], problems };

    const base = median(times.node);
    const rows = cmds.map((c) => {
      const med = median(times[c.key]);
      const ratio = med / base;
      return {
        command: c.label,
        median: med,
        p90: quantile(times[c.key], 0.9),
        ratio: c.key === "node" ? null : ratio,
        target: c.target === true ? `≤ ${targets.ratioMax}×` : c.key === "node" ? "" : "none",
        result: c.key === "node" ? "baseline" : c.target === true ? (ratio <= targets.ratioMax ? "PASS" : "FAIL") : "info",
      };
    });
    const details = cmds.map((c) => ({
      command: c.label,
      "runs (ms, in order)": times[c.key].map((x) => x.toFixed(0)).join(" "),
      "min (ms)": Math.min(...times[c.key]).toFixed(0),
    }));
    return { name, opts, rows, details, problems, candidates };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The results table (bench/run.mjs prints it and writes it to BENCHMARKS.md). */
export function resultsTable(rows, table) {
  if (rows.length === 0) return "(no valid run)";
  return table(
    rows.map((r) => ({
      command: r.command,
      "median (ms)": r.median.toFixed(0),
      "p90 (ms)": r.p90.toFixed(0),
      "median / node -e 0": r.ratio === null ? "" : `${r.ratio.toFixed(2)}×`,
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
    `- ${o.reps} timed runs of each command (after one untimed), interleaved, from the repository root; \`rules replay\` reads a generated factory log of ${o.replayLines} lines (${result.candidates} HARD LIMIT candidates)`,
    "",
    resultsTable(result.rows, table),
    "",
    "Every run:",
    "",
    table(result.details),
  ].join("\n");
}
