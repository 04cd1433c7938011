/**
 * A parallel scan (parallel-scan.ts, ADR 32) gives a replay exactly what one
 * thread gives: the same report and the same scanner counts, on logs that
 * put candidates right at the range cuts, lines longer than a read and over
 * the line cap (some across a cut), CRLF, a last line without "\n",
 * malformed, blank and other-shaped lines. The workers are built code
 * (`npm run build`, as `npm test` does first; a worker thread cannot run
 * TypeScript): the bundled worker the command ships, and once the module as
 * tsc wrote it in dist/. Real files in a temp folder.
 */
import { existsSync } from "node:fs";
import { mkdtemp, open, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Replayer } from "../../../src/operator/replay.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { loadRules } from "../../../src/operator/rules/load.js";
import { FileSource, FileSourceError } from "../../../src/operator/sources/file.js";
import { cutRanges, DEFAULT_RANGES_PER_WORKER, ParallelScan, type ParallelScanOptions } from "../../../src/operator/sources/parallel-scan.js";
import { Scanner } from "../../../src/operator/sources/scan.js";

const WORKER = new URL("../../../dist/bundle/parallel-scan-worker.js", import.meta.url);
const DIST_WORKER = new URL("../../../dist/operator/sources/parallel-scan-worker.js", import.meta.url);
const RULES = fileURLToPath(new URL("../../../rules", import.meta.url));
const T0 = Date.parse("2026-11-27T00:00:00.000Z");
const PODS = ["chat-factory-a", "chat-factory-b"];

let dir: string;
let rules: CompiledRule[];
beforeAll(async () => {
  for (const url of [WORKER, DIST_WORKER]) if (!existsSync(url)) throw new Error(`${fileURLToPath(url)} is missing: run npm run build first`);
  dir = await mkdtemp(join(tmpdir(), "reclaim-parallel-scan-"));
  const loaded = await loadRules([RULES]);
  expect(loaded.errors).toEqual([]);
  rules = loaded.rules.map((r) => r.compiled);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A factory line at `second` seconds after T0; `pad` lengthens its message. */
function line(second: number, event: string, user: number, pad = 0): string {
  const severity = event === "factory.hard_limit" || event === "factory.error" ? "ERROR" : "INFO";
  const userId = String(105945141827451681156n + BigInt(user));
  const message = `${event} for user ${userId}${"x".repeat(pad)}`;
  return JSON.stringify({ severity, time: new Date(T0 + second * 1000).toISOString(), pod: PODS[user % 2], event, userId, managers: 20, limit: 20, message });
}

/**
 * A log spanning hours (so that entries handed on out of order would turn
 * stale against maxAge 15m, or reorder incidents), with a candidate every few
 * lines for a handful of users (so cooldowns and duplicates count), and
 * every kind of odd line among them.
 */
function mixedLog(lines: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const second = i * 7;
    const kind = i % 13;
    if (kind === 0) out.push(line(second, "factory.hard_limit", i % 5));
    else if (kind === 1) out.push(`${line(second, "factory.error", i % 7)}\r`); // CRLF
    else if (kind === 2) out.push(`{"event":"factory.hard_limit","broken":`); // a malformed candidate
    else if (kind === 3) out.push(JSON.stringify({ event: "factory.hard_limit", severity: "ERROR" })); // JSON, no time: malformed
    else if (kind === 4) out.push(i % 2 === 0 ? "" : " \t");
    else if (kind === 5) out.push(`plain text naming "factory.hard_limit" at ${i}`);
    else if (kind === 6) out.push(JSON.stringify({ jsonPayload: { event: "factory.hard_limit", userId: "1", message: "m" }, severity: "ERROR", timestamp: new Date(T0 + second * 1000).toISOString() }));
    else if (kind === 7) out.push(`  "fragment": "factory.hard_limit",`);
    // Read as entries from their bytes (braces, a time key), malformed when parsed: counted as json_not_entry instead.
    else if (kind === 8) out.push(`{"time":"not a time","event":"factory.hard_limit","n":${i}}`);
    else if (kind === 9) out.push(`{"time":"2026-11-27T00:00:00Z","event":"factory.error",oops}`);
    else out.push(line(second, "factory.connection_opened", i % 11));
  }
  return out;
}

interface Result {
  report: unknown;
  stats: unknown;
}

/** The replay of `path` as `rules replay` runs it in one thread: the file source, Scanner.scan, the Replayer. */
async function oneThread(path: string, options: { chunkBytes?: number; maxLineBytes?: number } = {}): Promise<Result> {
  const replayer = new Replayer(rules);
  const scanner = new Scanner(rules);
  const source = new FileSource({ path, follow: false, fromStart: true, reuseBuffers: true, ...options });
  await source.run(async (batch) => {
    for (const event of scanner.scan(batch)) await replayer.handle(event);
  }, new AbortController().signal);
  return { report: await replayer.report(), stats: scanner.stats };
}

/** The same replay through a parallel scan of `workers` ranges; also returns the ranges. */
async function parallel(path: string, options: ParallelScanOptions & { workers: number }): Promise<Result & { ranges: readonly { start: number; end: number }[] }> {
  const replayer = new Replayer(rules);
  const scanner = new Scanner(rules);
  const fh = await open(path, "r");
  const scan = await ParallelScan.plan(fh, path, (await fh.stat()).size, { minBytes: 0, workerUrl: WORKER, ...options });
  if (scan === null) {
    await fh.close();
    throw new Error("not scanned in parallel");
  }
  await scan.run(scanner.needles!, scanner.stats, (event) => replayer.handle(event));
  return { report: await replayer.report(), stats: scanner.stats, ranges: scan.ranges };
}

async function writeLog(name: string, lines: string[], end = "\n"): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, lines.join("\n") + end);
  return path;
}

describe("a parallel scan", () => {
  it("gives the one-thread report and counts on a log of every kind of line, in 2, 3 and 4 workers of one or more ranges each", async () => {
    const path = await writeLog("mixed.log", mixedLog(3000));
    const expected = await oneThread(path);
    // Not a quiet log: incidents open, some are suppressed by cooldown, lines of each shape are counted.
    expect((expected.report as { incidents: unknown[] }).incidents.length).toBeGreaterThan(5);
    expect((expected.stats as { malformed: number }).malformed).toBeGreaterThan(100);
    for (const [workers, rangesPerWorker] of [[2, 1], [3, 1], [4, 1], [2, 4], [3, 3], [4, 5]] as const) {
      const got = await parallel(path, { workers, rangesPerWorker });
      expect(got.ranges).toHaveLength(workers * rangesPerWorker);
      expect({ workers, rangesPerWorker, report: got.report, stats: got.stats }).toEqual({ workers, rangesPerWorker, report: expected.report, stats: expected.stats });
    }
    // The default: several ranges per worker (ADR 37).
    expect((await parallel(path, { workers: 2 })).ranges.length).toBe(2 * DEFAULT_RANGES_PER_WORKER);
    // The worker as tsc wrote it (dist/), not bundled: the same.
    const fromDist = await parallel(path, { workers: 2, workerUrl: DIST_WORKER });
    expect(fromDist).toMatchObject({ report: expected.report, stats: expected.stats });
  });

  it("cuts at line starts and puts no candidate twice or never: candidates on both sides of every cut", async () => {
    // Every line a candidate of the same length: each cut falls between two candidates.
    const lines = Array.from({ length: 4001 }, (_, i) => line(i * 30, i % 2 === 0 ? "factory.hard_limit" : "factory.error", i % 9));
    const path = await writeLog("all-candidates.log", lines);
    const expected = await oneThread(path);
    const got = await parallel(path, { workers: 4 });
    const bytes = Buffer.from(lines.join("\n") + "\n");
    for (const { start } of got.ranges.slice(1)) {
      expect(bytes[start - 1]).toBe(0x0a);
      expect(bytes.subarray(start, bytes.indexOf(0x0a, start)).toString()).toMatch(/"factory\.(hard_limit|error)"/);
    }
    expect(got).toMatchObject({ report: expected.report, stats: expected.stats });
    expect((got.stats as { candidates: number }).candidates).toBe(4001);
  });

  it("frames lines longer than a read, and skips lines over the cap, as the file source does, across cuts too", async () => {
    const lines = mixedLog(600);
    for (let i = 20; i < lines.length; i += 37) lines[i] = line(i * 7, "factory.hard_limit", i % 5, 5000 + i * 13); // > chunkBytes, < cap
    for (let i = 45; i < lines.length; i += 101) lines[i] = line(i * 7, "factory.hard_limit", 3, 20_000); // over the cap: skipped unread
    lines[lines.length - 1] = line(lines.length * 7, "factory.hard_limit", 4, 30_000); // the last line, over the cap, without "\n"
    const path = await writeLog("long.log", lines, "");
    const options = { chunkBytes: 4096, maxLineBytes: 16_384 };
    const expected = await oneThread(path, options);
    for (const workers of [2, 3, 4]) {
      const got = await parallel(path, { workers, ...options });
      expect({ workers, report: got.report, stats: got.stats }).toEqual({ workers, report: expected.report, stats: expected.stats });
    }
    // Lines at the cap and one byte over it, in a file whose every read holds part of a long line.
    const edge = [line(1, "factory.hard_limit", 1, 0), "", line(2, "factory.hard_limit", 2, 0)];
    const base = edge[0]!.length;
    edge[0] = line(1, "factory.hard_limit", 1, 16_384 - base); // exactly the cap: kept
    edge[2] = line(2, "factory.hard_limit", 2, 16_384 - base + 1); // one over: skipped
    expect([edge[0].length, edge[2].length]).toEqual([16_384, 16_385]);
    const edgePath = await writeLog("edge.log", [...edge, ...mixedLog(200), ...edge]);
    const edgeExpected = await oneThread(edgePath, options);
    const edgeGot = await parallel(edgePath, { workers: 3, ...options });
    expect(edgeGot).toMatchObject({ report: edgeExpected.report, stats: edgeExpected.stats });
  });

  it("counts a last line without a newline, CRLF and a byte-order mark as one thread does", async () => {
    const lines = mixedLog(400);
    lines[0] = `\ufeff${lines[0]!}`;
    lines.push(`${line(9999, "factory.hard_limit", 2)}\r`);
    const path = await writeLog("no-final-newline.log", lines, "");
    const expected = await oneThread(path);
    const got = await parallel(path, { workers: 3 });
    expect(got).toMatchObject({ report: expected.report, stats: expected.stats });
  });

  it("hands on a flood of candidates in many small messages, more than a worker may send unacknowledged, in order", async () => {
    const lines = Array.from({ length: 6000 }, (_, i) => line(i * 3, "factory.hard_limit", i % 50));
    const path = await writeLog("flood.log", lines);
    const expected = await oneThread(path);
    // 2 KiB per message: hundreds of messages per range, far more than a worker may have unacknowledged.
    const got = await parallel(path, { workers: 3, flushBytes: 2048, chunkBytes: 8192 });
    expect(got).toMatchObject({ report: expected.report, stats: expected.stats });
  });

  it("is not used where it cannot pay or cannot cut: one worker, a small file, one long line", async () => {
    const path = await writeLog("small.log", mixedLog(50));
    const fh = await open(path, "r");
    try {
      const size = (await fh.stat()).size;
      expect(await ParallelScan.plan(fh, path, size, { minBytes: 0, workers: 1 })).toBeNull();
      expect(await ParallelScan.plan(fh, path, size, { workers: 4 })).toBeNull(); // under the default 64 MiB
    } finally {
      await fh.close();
    }
    const one = await writeLog("one-line.log", [line(1, "factory.hard_limit", 1, 50_000)]);
    const oh = await open(one, "r");
    try {
      expect(await cutRanges(oh, (await oh.stat()).size, 4)).toEqual([{ start: 0, end: (await oh.stat()).size }]);
    } finally {
      await oh.close();
    }
  });

  it("fails with a read error, not a hang, when the file shrinks under a worker", async () => {
    const path = await writeLog("shrinks.log", mixedLog(3000));
    const scanner = new Scanner(rules);
    const fh = await open(path, "r");
    const size = (await fh.stat()).size;
    const scan = await ParallelScan.plan(fh, path, size, { minBytes: 0, workers: 3, workerUrl: WORKER });
    expect(scan).not.toBeNull();
    await truncate(path, Math.floor(size / 2));
    const error = await scan!.run(scanner.needles!, scanner.stats, () => Promise.resolve()).then(
      () => null,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(FileSourceError);
    expect(error).toMatchObject({ code: "ERR_RECLAIM_SOURCE_READ", message: expect.stringMatching(/^file:.*shrinks\.log: could not read it: it shrank while being read/) });
  });

  it("fails, not hangs, when a worker cannot start", async () => {
    const path = await writeLog("no-worker.log", mixedLog(300));
    const scanner = new Scanner(rules);
    const fh = await open(path, "r");
    const scan = await ParallelScan.plan(fh, path, (await fh.stat()).size, {
      minBytes: 0,
      workers: 2,
      workerUrl: new URL("./no-such-worker.js", WORKER),
    });
    await expect(scan!.run(scanner.needles!, scanner.stats, () => Promise.resolve())).rejects.toMatchObject({
      code: "ERR_RECLAIM_SOURCE_READ",
      message: expect.stringMatching(/could not read it: its reader thread (failed|stopped)/),
    });
  });
});
