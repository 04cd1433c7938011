#!/usr/bin/env node
// Runs the named benchmark (or all of them), prints a table, and rewrites
// that benchmark's results section in BENCHMARKS.md (between
// `<!-- results:NAME:start -->` and `<!-- results:NAME:end -->`).
//
//   node bench/run.mjs [NAME ...] [--OPTION N ...] [--smoke] [--no-write]
//
// Each benchmark is `bench/NAME/bench.mjs`. It exports `run(options)`
// returning `{ rows, details, problems, opts }`, `defaults`, and may export
// `optionRanges` (`{ option: [min, max] }`: the integer options it takes on
// the command line), `smoke` (the tiny sizes `--smoke` runs: a check that the
// benchmark still works, as `.ci/run` does, never a measurement; it implies
// `--no-write`), `resultsTable(rows, table)` (the summary it prints) and
// `section(result, machine, command, table)` (its results in BENCHMARKS.md;
// `bench/lib.mjs` has the lines every section starts with).
//
// Exits non-zero when a run is invalid (a connection failed to open or
// dropped, a scan found the wrong lines, …); a missed target is reported as
// FAIL in the table, not as an error.
// Benchmarks run against the built package: `npm run build` first.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { fileURLToPath } from "node:url";

const NAMES = ["factory", "pipeline", "latency", "flood", "engine", "probe", "soak", "slowreader", "proxy", "sweep", "startup", "adaptive", "rss"];
const BENCHMARKS = Object.fromEntries(NAMES.map((name) => [name, () => import(`./${name}/bench.mjs`)]));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DOC = `${ROOT}BENCHMARKS.md`;
const WATCHDOG_MS = 20 * 60_000;

async function parseArgs(argv) {
  const names = [];
  const given = {};
  let write = true;
  let smoke = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--no-write") write = false;
    else if (arg === "--smoke") smoke = true;
    else if (arg.startsWith("--")) {
      const value = argv[++i];
      if (value === undefined || !/^\d+$/.test(value)) throw new Error(`${arg} takes a whole number`);
      given[arg.slice(2)] = Number(value);
    } else if (arg === "all") names.push(...NAMES);
    else if (arg in BENCHMARKS) names.push(arg);
    else throw new Error(`unknown benchmark ${arg} (benchmarks: ${NAMES.join(", ")})`);
  }
  const chosen = names.length > 0 ? [...new Set(names)] : NAMES;
  const modules = Object.fromEntries(await Promise.all(chosen.map(async (name) => [name, await BENCHMARKS[name]()])));
  // An option goes to every chosen benchmark that takes it; one that none takes is an error.
  const options = Object.fromEntries(chosen.map((name) => [name, {}]));
  for (const [option, value] of Object.entries(given)) {
    const takers = chosen.filter((name) => modules[name].optionRanges?.[option] !== undefined);
    if (takers.length === 0) throw new Error(`--${option}: none of ${chosen.join(", ")} takes it`);
    for (const name of takers) {
      const [min, max] = modules[name].optionRanges[option];
      if (value < min || value > max) throw new Error(`--${option} takes a whole number from ${min} to ${max} (${name})`);
      options[name][option] = value;
    }
  }
  return { names: chosen, modules, options, write: write && !smoke, smoke };
}

/** The commit checked out, and whether src/ has uncommitted changes (what `npm run build` compiled). */
function commit() {
  try {
    const git = (...args) => execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return `${git("rev-parse", "--short", "HEAD")}${git("status", "--porcelain", "--", "src") === "" ? "" : " + uncommitted changes in src/"}`;
  } catch {
    return "unknown (not a git checkout)";
  }
}

function machine() {
  const require = createRequire(import.meta.url);
  const cpus = os.cpus();
  return {
    nproc: os.availableParallelism(),
    cpu: cpus[0]?.model.trim() ?? "unknown",
    memGiB: (os.totalmem() / 1024 ** 3).toFixed(1),
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    ws: require("ws/package.json").version,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    commit: commit(),
    load: os.loadavg().map((x) => x.toFixed(2)).join(" "),
  };
}

function command(argv) {
  const event = process.env.npm_lifecycle_event;
  if (event === "bench" || event?.startsWith("bench:")) return `npm run ${event}${argv.length > 1 ? ` -- ${argv.slice(1).join(" ")}` : ""}`;
  return ["node bench/run.mjs", ...argv].join(" ");
}

/** A GitHub-flavoured markdown table (also readable as plain text). */
function table(rows) {
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells) => `| ${cells.map((cell, i) => String(cell).padEnd(width[i])).join(" | ")} |`;
  return [line(cols), `|${width.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map((r) => line(cols.map((c) => r[c])))].join("\n");
}

function rewriteDoc(name, body) {
  const start = `<!-- results:${name}:start -->`;
  const end = `<!-- results:${name}:end -->`;
  const block = `${start}\n${body}\n${end}`;
  let doc = existsSync(DOC) ? readFileSync(DOC, "utf8") : "# Benchmarks\n";
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a >= 0 && b > a) doc = doc.slice(0, a) + block + doc.slice(b + end.length);
  else doc = `${doc.trimEnd()}\n\n## Results: ${name}\n\n${block}\n`;
  writeFileSync(DOC, doc);
}

async function main() {
  const argv = process.argv.slice(2);
  const { names, modules, options, write, smoke } = await parseArgs(argv);
  const m = machine();
  const cmd = command(argv);
  console.log(`${cmd}\n${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB, Node ${m.node}, ws ${m.ws}, ${m.date}, load ${m.load}\n`);
  let invalid = false;
  for (const name of names) {
    const bench = modules[name];
    const started = Date.now();
    const sizes = smoke ? { ...(bench.smoke ?? {}), ...options[name] } : options[name];
    if (smoke) console.log(`${name}: smoke run (${JSON.stringify(sizes)}), a check that it works, not a measurement`);
    const log = (msg) => console.log(`  [${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);
    const result = await bench.run({ ...sizes, smoke, log });
    const rowsTable = bench.resultsTable(result.rows, table);
    console.log(`\n${name}:\n${rowsTable}\n\n${table(result.details)}\n`);
    if (result.problems.length > 0) {
      invalid = true;
      console.error(`${name}: INVALID RUN, BENCHMARKS.md left as it was:\n  ${result.problems.join("\n  ")}`);
      continue;
    }
    if (write) {
      rewriteDoc(name, bench.section(result, m, cmd, table));
      console.log(`BENCHMARKS.md: results:${name} rewritten`);
    }
  }
  return invalid ? 1 : 0;
}

const watchdog = setTimeout(() => {
  console.error(`bench: gave up after ${WATCHDOG_MS / 60_000} min`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
