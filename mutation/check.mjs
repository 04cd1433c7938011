#!/usr/bin/env node
// Per-file mutation scores against the recorded ones (issue 20).
//
//   node mutation/check.mjs [--report FILE]... [--scores mutation/scores.json] [--only-reported] [--write]
//
// The reports default to every reports/mutation/*.json (one per mutation group).
// A file's score is (killed + timed out) / (killed + timed out + survived + no coverage), in percent. Mutants
// that did not compile, failed at run time or are ignored (`// Stryker disable …: reason`) count for neither side.
// Without --write: every file in the scores file must be in a report (with --only-reported, files of groups not
// run are left out) and score at least its recorded figure (to the hundredth); exit 1 if not, 2 on unreadable
// input. With --write: the reports' scores are recorded (other files' records are kept).
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  if (at < 0) return fallback;
  const value = args[at + 1];
  if (value === undefined || value.startsWith("--")) fail(2, `${name} needs a value`);
  return value;
};
for (const arg of args) {
  if (arg.startsWith("--") && !["--report", "--scores", "--write", "--only-reported"].includes(arg)) fail(2, `unknown option ${arg}`);
}
const reportPaths = [];
args.forEach((arg, i) => {
  if (arg !== "--report") return;
  const value = args[i + 1];
  if (value === undefined || value.startsWith("--")) fail(2, "--report needs a value");
  reportPaths.push(value);
});
if (reportPaths.length === 0) {
  const dir = "reports/mutation";
  if (existsSync(dir)) for (const name of readdirSync(dir).sort()) if (name.endsWith(".json")) reportPaths.push(join(dir, name));
  if (reportPaths.length === 0) fail(2, `no report in ${dir}: run npm run mutate first`);
}
const onlyReported = args.includes("--only-reported");
const scoresPath = option("--scores", "mutation/scores.json");
const write = args.includes("--write");

function fail(code, message) {
  console.error(`mutation check: ${message}`);
  process.exit(code);
}

function readJson(path, what) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    fail(2, `cannot read the ${what} ${path}: ${err.code ?? err.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    fail(2, `${path} is not JSON: ${err.message}`);
  }
}

const KILLED = new Set(["Killed", "Timeout"]);
const COUNTED = new Set(["Killed", "Timeout", "Survived", "NoCoverage"]);
const now = {};
for (const reportPath of reportPaths) {
  const report = readJson(reportPath, "report");
  if (typeof report?.files !== "object" || report.files === null) fail(2, `${reportPath} has no "files": not a Stryker JSON report`);
  for (const [file, { mutants }] of Object.entries(report.files)) {
    if (!Array.isArray(mutants)) fail(2, `${reportPath}: ${file} has no mutants list`);
    const counted = mutants.filter((m) => COUNTED.has(m.status));
    const killed = counted.filter((m) => KILLED.has(m.status)).length;
    const survived = counted.filter((m) => m.status === "Survived").length;
    const noCoverage = counted.filter((m) => m.status === "NoCoverage").length;
    const score = counted.length === 0 ? 100 : Math.floor((killed / counted.length) * 10_000) / 100;
    now[file] = { score, killed, survived, noCoverage, ignored: mutants.filter((m) => m.status === "Ignored").length };
  }
}

const files = Object.keys(now).sort();
if (write) {
  const kept = existsSync(scoresPath) ? (readJson(scoresPath, "recorded scores").files ?? {}) : {};
  const record = { note: "Per-file mutation scores (percent, floored to the hundredth); mutation/check.mjs fails when one drops.", files: { ...kept } };
  for (const file of files) record.files[file] = now[file].score;
  record.files = Object.fromEntries(Object.entries(record.files).sort(([a], [b]) => a.localeCompare(b)));
  writeFileSync(scoresPath, `${JSON.stringify(record, null, 2)}\n`);
  for (const file of files) console.log(`${now[file].score.toFixed(2).padStart(6)} %  ${file}`);
  console.log(`mutation check: wrote ${files.length} scores to ${scoresPath}`);
  process.exit(0);
}

const recorded = readJson(scoresPath, "recorded scores");
if (typeof recorded?.files !== "object" || recorded.files === null) fail(2, `${scoresPath} has no "files"`);
const problems = [];
for (const [file, figure] of Object.entries(recorded.files)) {
  if (typeof figure !== "number") fail(2, `${scoresPath}: the score of ${file} is not a number`);
  const got = now[file];
  if (got === undefined && onlyReported) continue;
  if (got === undefined) problems.push(`${file}: recorded at ${figure.toFixed(2)} %, missing from the report`);
  else if (got.score < figure) problems.push(`${file}: ${got.score.toFixed(2)} %, below its recorded ${figure.toFixed(2)} % (${got.survived} survived, ${got.noCoverage} without coverage)`);
}
for (const file of files) {
  const figure = recorded.files[file];
  const mark = figure === undefined ? "(not recorded)" : now[file].score < figure ? `DROPPED from ${figure.toFixed(2)} %` : `recorded ${figure.toFixed(2)} %`;
  console.log(`${now[file].score.toFixed(2).padStart(6)} %  ${file}  ${mark}`);
}
if (problems.length > 0) {
  for (const p of problems) console.error(`mutation check: ${p}`);
  console.error("mutation check: kill the new survivors (or mark an equivalent one with a reason); TESTING.md says how");
  process.exit(1);
}
console.log(`mutation check: ${Object.keys(recorded.files).filter((f) => now[f] !== undefined).length} files at or above their recorded scores`);
