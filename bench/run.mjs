#!/usr/bin/env node
// Runs the named benchmark (or all of them), prints a table, and rewrites
// that benchmark's results section in BENCHMARKS.md (between
// `<!-- results:NAME:start -->` and `<!-- results:NAME:end -->`).
//
//   node bench/run.mjs [NAME ...] [--connections N] [--rounds N] [--lines N] [--no-write]
//
// Exits non-zero when a run is invalid (a connection failed to open or
// dropped, a scan found the wrong lines); a missed target is reported as FAIL
// in the table, not as an error. A benchmark module may export its own
// `resultsTable(rows, table)` and `section(result, machine, command, table)`;
// the factory's are the default.
// Benchmarks run against the built package: `npm run build` first.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { fileURLToPath } from "node:url";

const BENCHMARKS = {
  factory: () => import("./factory/bench.mjs"),
  pipeline: () => import("./pipeline/bench.mjs"),
};
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DOC = `${ROOT}BENCHMARKS.md`;
const WATCHDOG_MS = 20 * 60_000;

function parseArgs(argv) {
  const names = [];
  const options = {};
  let write = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--no-write") write = false;
    else if (arg === "--connections") {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 9000) throw new Error("--connections takes an integer from 1 to 9000");
      options.connections = n;
    } else if (arg === "--rounds") {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 20) throw new Error("--rounds takes an integer from 1 to 20");
      options.rounds = n;
    } else if (arg === "--lines") {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1000 || n > 50_000_000) throw new Error("--lines takes an integer from 1000 to 50000000");
      options.lines = n;
    } else if (arg === "all") names.push(...Object.keys(BENCHMARKS));
    else if (arg in BENCHMARKS) names.push(arg);
    else throw new Error(`unknown benchmark or option ${arg} (benchmarks: ${Object.keys(BENCHMARKS).join(", ")})`);
  }
  return { names: names.length > 0 ? [...new Set(names)] : Object.keys(BENCHMARKS), options, write };
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

function resultsTable(rows) {
  return table(
    rows.map((r) => ({
      figure: r.metric,
      "bare ws": r.bare,
      factory: r.factory,
      "factory / bare": r.ratio,
      "ratio per round": r.perRound,
      target: r.target,
      result: r.result,
    })),
  );
}

function section(result, m, cmd) {
  const o = result.opts;
  return [
    `_Written by \`bench/run.mjs\` from the run below; rerun to replace it._`,
    "",
    `- Command: \`${cmd}\` (after \`npm run build\`), commit ${m.commit}`,
    `- Machine: ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB RAM, ${m.os}; Node ${m.node}, ws ${m.ws}`,
    `- Date: ${m.date} (load average at start: ${m.load})`,
    `- Load: ${o.connections} idle connections on 127.0.0.1 (${o.users} users × ${Math.ceil(o.connections / o.users)}), ≤ ${o.inFlight} handshakes in flight; ` +
      `${o.rounds} rounds of bare ws then factory, each server and each load client in a fresh process; ${o.sweeps} heartbeat sweeps per server and round`,
    `- Each figure is the median over the rounds; "factory / bare" is the ratio of the medians, "ratio per round" the lowest and highest ratio of a single round.`,
    "",
    resultsTable(result.rows),
    "",
    "Every round:",
    "",
    table(result.details),
  ].join("\n");
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
  const { names, options, write } = parseArgs(argv);
  const m = machine();
  const cmd = command(argv);
  console.log(`${cmd}\n${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB, Node ${m.node}, ws ${m.ws}, ${m.date}, load ${m.load}\n`);
  let invalid = false;
  for (const name of names) {
    const bench = await BENCHMARKS[name]();
    const started = Date.now();
    const result = await bench.run({ ...options, log: (msg) => console.log(`  [${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`) });
    const rowsTable = bench.resultsTable === undefined ? resultsTable(result.rows) : bench.resultsTable(result.rows, table);
    console.log(`\n${name}:\n${rowsTable}\n\n${table(result.details)}\n`);
    if (result.problems.length > 0) {
      invalid = true;
      console.error(`${name}: INVALID RUN, BENCHMARKS.md left as it was:\n  ${result.problems.join("\n  ")}`);
      continue;
    }
    if (write) {
      rewriteDoc(name, bench.section === undefined ? section(result, m, cmd) : bench.section(result, m, cmd, table));
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
