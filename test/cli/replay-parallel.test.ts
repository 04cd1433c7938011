/**
 * `reclaim rules replay --logs FILE` on a file big enough to be scanned by
 * worker threads (64 MiB and over, ADR 32) prints exactly what it prints
 * read in one thread (RECLAIM_REPLAY_WORKERS=1), JSON and text alike, on a
 * log with candidates throughout, CRLF, malformed, blank and other-shaped
 * lines, a line longer than a read, one over the line cap and a last line
 * without "\n". The real bin/reclaim (the bundle, built by `npm test`'s
 * pretest step); a module loader hook in the child lists the files it loads,
 * which shows that the workers did run.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, cleanEnv } from "../support/cli.js";

const RULES = fileURLToPath(new URL("../../rules", import.meta.url));
const T0 = Date.parse("2026-11-27T00:00:00.000Z");
const MIB = 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), "reclaim-replay-parallel-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LOADER = join(dir, "loader.mjs");
writeFileSync(LOADER, 'export async function load(url, context, next) { process.stderr.write("LOADED " + url + "\\n"); return next(url, context); }\n');
const LOG = join(dir, "big.log");

function entry(second: number, event: string, user: number, pad = 0): string {
  const severity = event === "factory.hard_limit" || event === "factory.error" ? "ERROR" : "INFO";
  const userId = String(105945141827451681156n + BigInt(user));
  const pod = `chat-factory-${user % 3}`;
  return JSON.stringify({ severity, time: new Date(T0 + second * 1000).toISOString(), pod, event, userId, managers: 20, limit: 20, message: `${event} for ${userId}${"x".repeat(pad)}` });
}

/** ~70 MiB: one candidate in ~40 lines, for a few dozen users, over weeks of event time; odd lines throughout. */
function bigLog(): Buffer {
  const parts: string[] = [];
  let bytes = 0;
  for (let i = 0; bytes < 70 * MIB; i++) {
    const second = i * 5;
    let l: string;
    if (i % 41 === 0) l = entry(second, i % 2 === 0 ? "factory.hard_limit" : "factory.error", i % 37);
    else if (i % 997 === 1) l = `${entry(second, "factory.hard_limit", i % 13)}\r`;
    else if (i % 1009 === 2) l = `{"event":"factory.hard_limit","cut off`;
    else if (i % 1013 === 3) l = "";
    else if (i % 1019 === 4) l = `text "factory.error" ${i}`;
    else if (i === 100_000) l = entry(second, "factory.hard_limit", 5, MIB - 200); // longer than one 1 MiB read, under the cap
    else if (i === 150_000) l = entry(second, "factory.hard_limit", 6, MIB + 10); // over the 1 MiB cap: skipped
    else l = entry(second, "factory.connection_opened", i % 101);
    parts.push(l);
    bytes += l.length + 1;
  }
  // The last line, a candidate, without "\n".
  return Buffer.from(`${parts.join("\n")}\n${entry(99_999_999, "factory.hard_limit", 7)}`);
}

beforeAll(() => writeFileSync(LOG, bigLog()));

/** Runs `reclaim rules replay ARGS` with RECLAIM_REPLAY_WORKERS=`workers`; its output and how many workers it started. */
function replay(workers: string, args: string[]): { status: number | null; stdout: string; stderr: string; workers: number } {
  const r = spawnSync(process.execPath, ["--no-warnings", `--experimental-loader=${pathToFileURL(LOADER).href}`, BIN, "rules", "replay", "--rules", RULES, "--logs", LOG, ...args], {
    encoding: "utf8",
    env: cleanEnv({ RECLAIM_REPLAY_WORKERS: workers }),
    timeout: 120_000,
    maxBuffer: 64 * MIB,
  });
  const lines = r.stderr.split("\n");
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: lines.filter((l) => l !== "" && !l.startsWith("LOADED ")).join("\n"),
    workers: lines.filter((l) => l.startsWith("LOADED file:") && l.endsWith("/dist/bundle/parallel-scan-worker.js")).length,
  };
}

describe("rules replay of a big file", () => {
  it("prints the same JSON report scanned by worker threads as read in one thread", () => {
    const one = replay("1", ["--json"]);
    expect(one).toMatchObject({ status: 0, stderr: "", workers: 0 });
    const report = JSON.parse(one.stdout);
    // Not a quiet log: incidents, malformed lines and several shapes, every line but the one over the cap counted.
    expect(report.incidents.length).toBeGreaterThan(10);
    expect(report.lines.malformed).toBeGreaterThan(10);
    expect(Object.keys(report.lines.shapes)).toEqual(expect.arrayContaining(["json", "json_fragment", "text", "blank"]));
    for (const workers of ["2", "3"]) {
      const many = replay(workers, ["--json"]);
      expect({ ...many, stdout: undefined }).toEqual({ status: 0, stdout: undefined, stderr: "", workers: Number(workers) });
      expect(many.stdout === one.stdout).toBe(true); // byte for byte (toBe on ~100 kB would print both on failure)
    }
  });

  it("prints the same text report too", () => {
    const one = replay("1", []);
    const many = replay("3", []);
    expect([one.status, one.workers, many.status, many.workers]).toEqual([0, 0, 0, 3]);
    expect(many.stdout.split("\n")).toEqual(one.stdout.split("\n"));
  });

  it("refuses a RECLAIM_REPLAY_WORKERS that is not a count", () => {
    const bad = replay("two", ["--json"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/RECLAIM_REPLAY_WORKERS must be an integer from 1 to 64, got "two"/);
  });
});
