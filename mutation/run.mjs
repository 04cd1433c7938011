#!/usr/bin/env node
// Runs Stryker once per mutation group (mutation/groups.json), then the per-file score check (mutation/check.mjs).
//
//   node mutation/run.mjs [GROUP...]   the groups named (default: all), incremental from mutation/GROUP.incremental.json
//   node mutation/run.mjs --ci         every group with committed incremental state, within RECLAIM_MUTATE_BUDGET_S
//                                      seconds in all (default 600); fails past it, or when a file's score drops
//
// RECLAIM_MUTATE_FULL=1 ignores the incremental state (every mutant runs again); RECLAIM_MUTATE_CONCURRENCY sets
// Stryker's test runner processes (default 2).
import { spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { groups } from "./groups.mjs";

const args = process.argv.slice(2);
const ci = args.includes("--ci");
const all = groups();
const named = args.filter((a) => !a.startsWith("--"));
for (const arg of args) if (arg.startsWith("--") && arg !== "--ci") die(2, `unknown option ${arg}`);
for (const name of named) if (all[name] === undefined) die(2, `no mutation group "${name}" (groups: ${Object.keys(all).join(", ")})`);
const chosen = named.length > 0 ? named : Object.keys(all).filter((name) => !ci || existsSync(`mutation/${name}.incremental.json`));
const budgetS = Number(process.env.RECLAIM_MUTATE_BUDGET_S ?? 600);
if (!Number.isFinite(budgetS) || budgetS <= 0) die(2, `RECLAIM_MUTATE_BUDGET_S must be a positive number of seconds, got ${process.env.RECLAIM_MUTATE_BUDGET_S}`);
const deadline = Date.now() + budgetS * 1000;

function die(code, message) {
  console.error(`mutation: ${message}`);
  process.exit(code);
}

/** Runs a command; resolves its exit code, or "timeout" when killed at the deadline. */
function run(command, commandArgs, env, until) {
  return new Promise((resolve) => {
    const child = spawn(command, commandArgs, { stdio: "inherit", env: { ...process.env, ...env }, detached: true });
    const timer = until === null ? null : setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, Math.max(0, until - Date.now()));
    let timedOut = false;
    child.on("exit", (code, signal) => {
      if (timer !== null) clearTimeout(timer);
      resolve(timedOut ? "timeout" : (code ?? (signal === null ? 1 : 128)));
    });
  });
}

if (chosen.length === 0) {
  console.log("mutation: no group has committed incremental state yet; nothing to run");
  process.exit(0);
}
const reports = [];
for (const name of chosen) {
  rmSync(`reports/mutation/${name}.json`, { force: true });
  const started = Date.now();
  console.log(`mutation: group ${name} (${all[name].mutate.join(", ")})`);
  const code = await run("npx", ["stryker", "run"], { RECLAIM_MUTATE_GROUP: name }, ci ? deadline : null);
  if (code === "timeout") die(1, `group ${name} did not finish within the budget of ${budgetS} s: commit fresh incremental state (TESTING.md)`);
  if (code !== 0) die(1, `Stryker failed on group ${name} (exit ${code})`);
  console.log(`mutation: group ${name} took ${Math.round((Date.now() - started) / 1000)} s`);
  reports.push("--report", `reports/mutation/${name}.json`);
}
const check = await run(process.execPath, ["mutation/check.mjs", ...reports, ...(ci ? [] : ["--only-reported"])], {}, null);
process.exit(check === "timeout" ? 1 : check);
