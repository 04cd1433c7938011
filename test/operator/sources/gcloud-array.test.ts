/**
 * `gcloud logging read --format=json` arrays: decoded entry by entry in any
 * chunking, handed on oldest first through a bounded-memory external sort
 * whose temp files are removed on every way out, from stdin too.
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GcloudArrayError, GcloudArrayParser, readGcloudArray, type ArrayEntry } from "../../../src/operator/sources/gcloud-array.js";
import type { LineBatch } from "../../../src/operator/sources/source.js";
import { SpillSorter } from "../../../src/operator/sources/spill-sort.js";
import { StdinSource } from "../../../src/operator/sources/stdin.js";

const GCLOUD = fileURLToPath(new URL("../../fixtures/gcloud-read-hard-limit.json", import.meta.url));

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "reclaim-gcloud-array-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Parses `input` cut into chunks at `cuts`. */
function parse(input: Buffer, cuts: number[] = []): ArrayEntry[] {
  const out: ArrayEntry[] = [];
  const parser = new GcloudArrayParser((e) => out.push(e));
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    parser.push(input.subarray(from, cut));
    from = cut;
  }
  parser.push(input.subarray(from));
  parser.end();
  return out;
}

const entry = (i: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  insertId: `id${i}`,
  jsonPayload: { event: "factory.hard_limit", message: `m "${i}" \\ \u00e9 ]}`, nested: { timestamp: "1999-01-01T00:00:00Z", list: [1, { a: "}" }] } },
  receiveTimestamp: new Date(Date.UTC(2026, 10, 26, 12, 0, i + 1)).toISOString(),
  timestamp: new Date(Date.UTC(2026, 10, 26, 12, 0, i)).toISOString(),
  ...extra,
});

describe("GcloudArrayParser", () => {
  it("turns each entry of the fixture into one compact line, with its top-level timestamp", async () => {
    const input = await readFile(GCLOUD);
    const entries = parse(input);
    const want = JSON.parse(input.toString()) as { timestamp: string }[];
    expect(entries.map((e) => JSON.parse(e.line.toString()) as unknown)).toEqual(want);
    expect(entries.every((e) => !e.line.includes(0x0a))).toBe(true);
    expect(entries.map((e) => e.time)).toEqual(want.map((e) => Date.parse(e.timestamp)));
  });

  it("gives the same entries however the input is cut into chunks (escapes, nested keys, non-ASCII)", () => {
    const input = Buffer.from(`\uFEFF${JSON.stringify([entry(0), entry(1, { timestamp: undefined }), entry(2)], null, 2)}\n`);
    const want = parse(input);
    expect(want.map((e) => e.time)).toEqual([Date.UTC(2026, 10, 26, 12, 0, 0), Date.UTC(2026, 10, 26, 12, 0, 2), Date.UTC(2026, 10, 26, 12, 0, 2)]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: input.length }), { maxLength: 30 }), (cuts) => {
        expect(parse(input, cuts)).toEqual(want);
      }),
      { numRuns: 500 },
    );
  });

  it.each([
    { name: "not an array", input: '{"a":1}', error: /not a JSON array: expected \[ at byte 0/ },
    { name: "an element that is not an object", input: "[1]", error: /an element of the array is not an object/ },
    { name: "cut inside an entry", input: '[{"a":"b"', error: /ends early at byte 9, inside an entry/ },
    { name: "no closing bracket", input: '[{"a":"b"}', error: /ends early at byte 10$/ },
    { name: "data after the array", input: "[]x", error: /data after the end of the JSON array at byte 2/ },
  ])("refuses $name with a GcloudArrayError that says where", ({ input, error }) => {
    const run = (): unknown => parse(Buffer.from(input));
    expect(run).toThrow(GcloudArrayError);
    expect(run).toThrow(error);
  });

  it("skips and counts an entry longer than maxEntryBytes, keeps the rest", () => {
    const out: ArrayEntry[] = [];
    const parser = new GcloudArrayParser((e) => out.push(e), 200);
    parser.push(Buffer.from(JSON.stringify([entry(0, { big: "x".repeat(500) }), { timestamp: "2026-11-26T12:00:00Z" }])));
    parser.end();
    expect(parser.skipped).toBe(1);
    expect(out.map((e) => e.line.toString())).toEqual(['{"timestamp":"2026-11-26T12:00:00Z"}']);
  });
});

describe("SpillSorter", () => {
  it("sorts by time, oldest first, ties in reverse order of arrival, spilling runs to a temp folder it removes", async () => {
    const sorter = new SpillSorter({ runBytes: 200, tmpDir: tmp });
    const items = Array.from({ length: 300 }, (_, i) => ({ line: Buffer.from(`line ${i}`), time: i % 7 === 0 ? Number.NaN : 1000 - (i % 50) }));
    for (const { line, time } of items) await sorter.add(line, time);
    expect(sorter.runs).toBeGreaterThan(10);
    const folder = sorter.folder!;
    expect((await readdir(folder)).length).toBe(sorter.runs);
    const got: string[] = [];
    for await (const group of sorter.sorted()) got.push(...group.map(String));
    const want = items
      .map((item, seq) => ({ ...item, seq }))
      .sort((a, b) => (Number.isNaN(a.time) ? -Infinity : a.time) - (Number.isNaN(b.time) ? -Infinity : b.time) || b.seq - a.seq)
      .map((item) => item.line.toString());
    expect(got).toEqual(want);
    await sorter.dispose();
    expect((await readdir(tmp)).filter((f) => f.startsWith("reclaim-sort-"))).toEqual([]);
  });
});

describe("readGcloudArray", () => {
  const bytes = (chunks: Buffer[]): AsyncIterable<Buffer> => Readable.from(chunks, { objectMode: false }) as AsyncIterable<Buffer>;

  it("hands entries on oldest first as gcloud_array batches, with bounded runs on disk removed at the end", async () => {
    const input = Buffer.from(JSON.stringify(Array.from({ length: 200 }, (_, i) => entry(199 - i)), null, 2));
    const batches: LineBatch[] = [];
    const stats = { linesRead: 0, skippedLongLines: 0 };
    await readGcloudArray(bytes([input.subarray(0, 1000), input.subarray(1000)]), (b) => Promise.resolve(void batches.push(b)), { runBytes: 4096, tmpDir: tmp, stats }, new AbortController().signal);
    const lines = batches.flatMap((b) => b.data.toString().trimEnd().split("\n"));
    expect(lines.map((l) => (JSON.parse(l) as { insertId: string }).insertId)).toEqual(Array.from({ length: 200 }, (_, i) => `id${i}`));
    expect(batches.every((b) => b.shape === "gcloud_array")).toBe(true);
    expect(stats.linesRead).toBe(200);
    expect(await readdir(tmp)).toEqual([]);
  });

  it("removes its temp files when the consumer fails, and hands on the entries before a cut, then throws", async () => {
    const input = Buffer.from(JSON.stringify(Array.from({ length: 100 }, (_, i) => entry(99 - i)), null, 2));
    const stats = { linesRead: 0, skippedLongLines: 0 };
    const failing = readGcloudArray(bytes([input]), () => Promise.reject(new Error("consumer broke")), { runBytes: 2048, tmpDir: tmp, stats }, new AbortController().signal);
    await expect(failing).rejects.toThrow("consumer broke");
    expect(await readdir(tmp)).toEqual([]);

    const cut = input.subarray(0, input.lastIndexOf('"insertId"'));
    const seen: string[] = [];
    const broken = readGcloudArray(
      bytes([cut]),
      (b) => Promise.resolve(void seen.push(...b.data.toString().trimEnd().split("\n"))),
      { runBytes: 2048, tmpDir: tmp, stats },
      new AbortController().signal,
    );
    await expect(broken).rejects.toThrow(GcloudArrayError);
    expect(seen).toHaveLength(99);
    expect(await readdir(tmp)).toEqual([]);
  });
});

describe("readGcloudArray: stopped", () => {
  it("hands on nothing more once the signal aborts, and removes its temp files", async () => {
    const input = Buffer.from(JSON.stringify(Array.from({ length: 3000 }, (_, i) => entry(2999 - i)), null, 2));
    const stop = new AbortController();
    let batches = 0;
    await readGcloudArray(
      Readable.from([input], { objectMode: false }) as AsyncIterable<Buffer>,
      () => {
        batches++;
        stop.abort();
        return Promise.resolve();
      },
      { runBytes: 64 * 1024, tmpDir: tmp, stats: { linesRead: 0, skippedLongLines: 0 } },
      stop.signal,
    );
    expect(batches).toBe(1);
    expect(await readdir(tmp)).toEqual([]);
  });
});

describe("StdinSource: a JSON array on stdin", () => {
  it("is read as a gcloud export, oldest first; lines stay lines", async () => {
    const run = async (input: Buffer): Promise<LineBatch[]> => {
      const batches: LineBatch[] = [];
      const chunks = [input.subarray(0, 3), input.subarray(3)];
      await new StdinSource({ stream: Readable.from(chunks, { objectMode: false }), tmpDir: tmp }).run(
        (b) => Promise.resolve(void batches.push(b)),
        new AbortController().signal,
      );
      return batches;
    };
    const array = await run(Buffer.concat([Buffer.from("  \n"), await readFile(GCLOUD)]));
    const times = array.flatMap((b) => b.data.toString().trimEnd().split("\n")).map((l) => (JSON.parse(l) as { timestamp: string }).timestamp);
    expect(times).toEqual([...times].sort());
    expect(times).toHaveLength(7);
    expect(array[0]!.shape).toBe("gcloud_array");
    const lines = await run(Buffer.from('{"time":"2026-11-26T12:00:00Z"}\nplain\n'));
    expect(lines.map((b) => b.shape)).toEqual([undefined]);
    expect(lines[0]!.lines).toBe(2);
  });
});
