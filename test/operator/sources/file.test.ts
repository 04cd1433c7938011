/**
 * The file source on real files in a temp folder, with real fs operations:
 * appends, rename rotation, copytruncate, delete and recreate, restarts from
 * the saved position (no loss, no repeat), long lines, CRLF.
 */
import { createHash } from "node:crypto";
import { appendFileSync, readFileSync, renameSync, statSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { compileRule } from "../../../src/operator/rules/compile.js";
import { RemediationRule } from "../../../src/operator/rules/schema.js";
import { FileSource, type FileSourceOptions } from "../../../src/operator/sources/file.js";
import { Scanner, scanBatch } from "../../../src/operator/sources/scan.js";
import type { LineBatch } from "../../../src/operator/sources/source.js";
import { Tail } from "../../support/file-tail.js";

const POLL = 10;
let dir: string;
let log: string;
let state: string;
const running: Tail[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-file-source-"));
  log = join(dir, "factory.log");
  state = join(dir, "state");
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((t) => t.stop()));
  await rm(dir, { recursive: true, force: true });
});

function source(options: Partial<FileSourceOptions> = {}): FileSource {
  return new FileSource({ path: log, pollIntervalMs: POLL, ...options });
}

function tail(options: Partial<FileSourceOptions> = {}, onBatch?: (batch: LineBatch, tail: Tail) => Promise<void>): Tail {
  const t = new Tail(source(options), onBatch);
  running.push(t);
  return t;
}

const text = (lines: string[]): string => lines.map((l) => `${l}\n`).join("");

/** Reads the whole file once (follow: false) and returns its lines. */
async function readOnce(options: Partial<FileSourceOptions> = {}): Promise<{ lines: string[]; source: FileSource }> {
  const t = tail({ follow: false, fromStart: true, ...options });
  await t.done;
  if (t.error !== null) throw t.error;
  return { lines: t.lines, source: t.source };
}

describe("reading once (follow: false)", () => {
  it("reads every line from the start and counts its last line even without a newline", async () => {
    writeFileSync(log, "one\ntwo\nthree");
    const { lines, source: s } = await readOnce();
    expect(lines).toEqual(["one", "two", "three"]);
    expect(s.stats).toMatchObject({ linesRead: 3, bytesRead: 13, rotations: 0, truncations: 0, skippedLongLines: 0 });
  });

  it.each([1, 7, 64, 4096, 1024 * 1024])("gives every line intact with reads of %i bytes", async (chunkBytes) => {
    const want = Array.from({ length: 120 }, (_, i) => `line ${i} ${"x".repeat(i % 37)}`);
    writeFileSync(log, text(want));
    const { lines, source: s } = await readOnce({ chunkBytes });
    expect(lines).toEqual(want);
    expect(s.stats.linesRead).toBe(120);
    expect(s.stats.bytesRead).toBe(statSync(log).size);
  });

  it("reads nothing from the end of the file without fromStart", async () => {
    writeFileSync(log, "one\ntwo\n");
    expect((await readOnce({ fromStart: false })).lines).toEqual([]);
  });

  it("fails with ERR_RECLAIM_SOURCE_NOT_FOUND when there is no file", async () => {
    await expect(readOnce()).rejects.toMatchObject({ code: "ERR_RECLAIM_SOURCE_NOT_FOUND" });
  });

  it("fails with ERR_RECLAIM_SOURCE_NOT_A_FILE on a folder", async () => {
    await expect(readOnce({ path: dir })).rejects.toMatchObject({ code: "ERR_RECLAIM_SOURCE_NOT_A_FILE" });
  });

  it("keeps CRLF lines' \\r in the batch, and the scanner strips it", async () => {
    writeFileSync(log, '{"event":"factory.hard_limit"}\r\nother\r\n');
    const t = tail({ follow: false, fromStart: true });
    await t.done;
    expect(t.lines).toEqual(['{"event":"factory.hard_limit"}\r', "other\r"]);
    const found: string[] = [];
    scanBatch(t.batches[0]!.data, [Buffer.from('"factory.hard_limit"')], (l) => found.push(l.toString()));
    expect(found).toEqual(['{"event":"factory.hard_limit"}']);
  });
});

describe("long lines", () => {
  const long = "L".repeat(200);

  it.each([16, 4096])("are skipped and counted, whatever the read size (%i bytes)", async (chunkBytes) => {
    writeFileSync(log, text(["short 1", long, "short 2", long, long, "short 3"]));
    const { lines, source: s } = await readOnce({ chunkBytes, maxLineBytes: 50 });
    expect(lines).toEqual(["short 1", "short 2", "short 3"]);
    expect(s.stats.skippedLongLines).toBe(3);
    expect(s.stats.linesRead).toBe(3);
  });

  it("are skipped while they are still being written, and the next line is read whole", async () => {
    writeFileSync(log, "");
    const t = tail({ maxLineBytes: 50, chunkBytes: 16 });
    await t.caughtUp();
    for (let i = 0; i < 10; i++) {
      appendFileSync(log, "L".repeat(30));
      await t.caughtUp();
    }
    expect(t.source.stats.skippedLongLines).toBe(1);
    appendFileSync(log, "\nnext\n");
    await t.until(["next"]);
    expect(t.source.stats.skippedLongLines).toBe(1);
  });

  it("at the end of the file when the source starts are not read from their middle", async () => {
    writeFileSync(log, `old\n${long}`);
    const t = tail({ maxLineBytes: 50 });
    await t.caughtUp();
    appendFileSync(log, "still long\nnew\n");
    await t.until(["new"]);
  });
});

describe("following (follow: true)", () => {
  it("starts at the end: only lines written after the start", async () => {
    writeFileSync(log, "old 1\nold 2\n");
    const t = tail();
    await t.caughtUp();
    appendFileSync(log, "new 1\n");
    appendFileSync(log, "new 2\nnew 3\n");
    await t.until(["new 1", "new 2", "new 3"]);
  });

  it("starts at the end the file had when run() was called: a line appended right after is read", async () => {
    writeFileSync(log, "old\n");
    const t = tail();
    expect(t.source.position).toBeNull(); // not opened yet
    appendFileSync(log, "appended right after run()\n");
    await t.until(["appended right after run()"]);
  });

  it("starts at the end but reads a line being written at the start whole, once complete", async () => {
    writeFileSync(log, "old\nhalf a li");
    const t = tail();
    await vi.waitFor(() => expect(t.source.position).not.toBeNull());
    appendFileSync(log, "ne\nnew\n");
    await t.until(["half a line", "new"]);
  });

  it("with fromStart reads what is there, then what is appended", async () => {
    writeFileSync(log, "a\nb\n");
    const t = tail({ fromStart: true });
    await t.until(["a", "b"]);
    appendFileSync(log, "c\n");
    await t.until(["a", "b", "c"]);
  });

  it("hands over a partial line only once it is complete", async () => {
    writeFileSync(log, "");
    const t = tail({ fromStart: true });
    await t.caughtUp();
    appendFileSync(log, '{"event":"fac');
    await t.caughtUp();
    appendFileSync(log, 'tory.hard_limit"}\nnext');
    await t.until(['{"event":"factory.hard_limit"}']);
    appendFileSync(log, "\n");
    await t.until(['{"event":"factory.hard_limit"}', "next"]);
  });

  it("waits for a file that does not exist yet and reads it from its start", async () => {
    const t = tail();
    await new Promise((r) => setTimeout(r, 3 * POLL));
    expect(t.source.position).toBeNull();
    writeFileSync(log, "first\nsecond\n");
    await t.until(["first", "second"]);
  });

  it("survives rename rotation: reads the old file to its end, then the new one from its start", async () => {
    writeFileSync(log, "a\nb\n");
    const t = tail({ fromStart: true });
    await t.until(["a", "b"]);
    renameSync(log, `${log}.1`);
    appendFileSync(`${log}.1`, "c (written to the old file after the rename)\n");
    writeFileSync(log, "d\ne\n");
    await t.until(["a", "b", "c (written to the old file after the rename)", "d", "e"]);
    appendFileSync(log, "f\n");
    await t.until(["a", "b", "c (written to the old file after the rename)", "d", "e", "f"]);
    expect(t.source.stats).toMatchObject({ rotations: 1, truncations: 0 });
  });

  it("hands over the unterminated last line of a rotated file as a line", async () => {
    writeFileSync(log, "a\n");
    const t = tail({ fromStart: true });
    await t.until(["a"]);
    appendFileSync(log, "cut off");
    await t.caughtUp();
    renameSync(log, `${log}.1`);
    writeFileSync(log, "b\n");
    await t.until(["a", "cut off", "b"]);
  });

  it("survives rotation twice in a row", async () => {
    writeFileSync(log, "a\n");
    const t = tail({ fromStart: true });
    await t.until(["a"]);
    for (const [i, line] of ["b", "c"].entries()) {
      renameSync(log, `${log}.${i + 1}`);
      writeFileSync(log, `${line}\n`);
      await t.until(["a", "b", "c"].slice(0, i + 2));
    }
    expect(t.source.stats.rotations).toBe(2);
  });

  it("survives copytruncate: a file shorter than the position is read again from its start", async () => {
    writeFileSync(log, "a long first line\nb long second line\n");
    const t = tail({ fromStart: true });
    await t.until(["a long first line", "b long second line"]);
    truncateSync(log, 0);
    await vi.waitFor(() => expect(t.source.stats.truncations).toBe(1));
    appendFileSync(log, "c\n");
    await t.until(["a long first line", "b long second line", "c"]);
    expect(t.source.stats).toMatchObject({ truncations: 1, rotations: 0 });
  });

  it("notices a truncation even when the file grew past the position before it looked", async () => {
    writeFileSync(log, "a\nb\n");
    const t = tail({ fromStart: true });
    await t.until(["a", "b"]);
    // Synchronous, so that the source (same event loop) sees only the result.
    truncateSync(log, 0);
    appendFileSync(log, "rewritten 1\nrewritten 2\n");
    await t.until(["a", "b", "rewritten 1", "rewritten 2"]);
    expect(t.source.stats.truncations).toBe(1);
  });

  it("notices a truncation between two reads of one catch-up: no fragment, no line twice (ADR 43)", async () => {
    writeFileSync(log, "old line 1\nold line 2\nold line 3\nold line 4\n");
    let rewritten = false;
    // 16-byte reads: the first batch holds "old line 1" alone. While it is handed over, the file is truncated and
    // written again, longer than before, so the next read (with no look in between) is at an offset of new content.
    const t = tail({ fromStart: true, chunkBytes: 16 }, async (batch) => {
      if (!rewritten) {
        rewritten = true;
        truncateSync(log, 0);
        appendFileSync(log, "new line one is longer\nnew line two is longer\nnew line three is longer\n");
      }
      await batch.commit();
    });
    await t.until(["old line 1", "new line one is longer", "new line two is longer", "new line three is longer"]);
    expect(t.source.stats.truncations).toBe(1);
  });

  it("survives deletion, keeps waiting, and reads the recreated file from its start", async () => {
    writeFileSync(log, "a\n");
    const t = tail({ fromStart: true });
    await t.until(["a"]);
    unlinkSync(log);
    await new Promise((r) => setTimeout(r, 5 * POLL));
    expect(t.error).toBeNull();
    writeFileSync(log, "b\nc\n");
    await t.until(["a", "b", "c"]);
    expect(t.source.stats.rotations).toBe(1);
  });

  it("reads on without fs.watch events, by polling alone (a symlinked file, as in /var/log/containers)", async () => {
    const target = join(dir, "target.log");
    writeFileSync(target, "");
    const { symlinkSync } = await import("node:fs");
    symlinkSync(target, log);
    const t = tail();
    await t.caughtUp();
    appendFileSync(target, "through the link\n");
    await t.until(["through the link"]);
  });

  it("gives its batches to the consumer one at a time", async () => {
    writeFileSync(log, text(Array.from({ length: 50 }, (_, i) => `line ${i}`)));
    let inside = 0;
    let most = 0;
    const t = tail({ fromStart: true, chunkBytes: 32 }, async (batch) => {
      most = Math.max(most, ++inside);
      await new Promise((r) => setTimeout(r, 1));
      inside--;
      await batch.commit();
    });
    await vi.waitFor(() => expect(t.lines).toHaveLength(50));
    expect(most).toBe(1);
  });

  it("resolves run() promptly on abort, also while waiting for data", async () => {
    writeFileSync(log, "");
    const t = new Tail(source({ pollIntervalMs: 60_000 }));
    await t.caughtUp();
    await t.stop();
    expect(t.error).toBeNull();
    expect(t.source.position).toBeNull();
  });

  it("refuses a second run while one is going on", async () => {
    writeFileSync(log, "");
    const t = tail();
    await t.caughtUp();
    await expect(t.source.run(() => Promise.resolve(), new AbortController().signal)).rejects.toMatchObject({
      code: "ERR_RECLAIM_SOURCE_BUSY",
    });
  });
});

describe("the saved position", () => {
  const checkpointFile = (): string => join(state, `file-${createHash("sha256").update(log).digest("hex")}.json`);

  it("lets a restart continue exactly where the last committed batch ended: no loss, no repeat", async () => {
    writeFileSync(log, "1\n2\n3\npar");
    const first = tail({ stateDir: state, fromStart: true });
    await first.until(["1", "2", "3"]);
    await first.stop();
    appendFileSync(log, "tial\n4\n");
    const second = tail({ stateDir: state });
    await second.until(["partial", "4"]);
    appendFileSync(log, "5\n");
    await second.until(["partial", "4", "5"]);
    await second.caughtUp();
    expect(second.lines).toEqual(["partial", "4", "5"]);
  });

  it.each([1, 2, 3, 5, 8, 13])("a restart after %i batches loses and repeats nothing", async (stopAfter) => {
    const all = Array.from({ length: 40 }, (_, i) => `line ${i}`);
    writeFileSync(log, text(all));
    let seen = 0;
    const first = tail({ stateDir: state, fromStart: true, chunkBytes: 24 }, async (batch, t) => {
      await batch.commit();
      if (++seen === stopAfter) t.abort();
    });
    await first.done;
    const second = tail({ stateDir: state, follow: false });
    await second.done;
    expect([...first.lines, ...second.lines]).toEqual(all);
  });

  it("re-delivers a batch that was not committed", async () => {
    writeFileSync(log, "1\n2\n");
    const first = tail({ stateDir: state, fromStart: true, follow: false }, async () => {});
    await first.done;
    expect(first.lines).toEqual(["1", "2"]);
    const second = tail({ stateDir: state, fromStart: true, follow: false });
    await second.done;
    expect(second.lines).toEqual(["1", "2"]);
  });

  it("is written atomically to a file named by the sha256 of the path, and never goes back", async () => {
    writeFileSync(log, "a\nbb\nccc\n");
    const t = tail({ stateDir: state, fromStart: true, follow: false, chunkBytes: 3 }, async () => {});
    await t.done;
    expect(t.batches.length).toBeGreaterThan(1);
    await t.batches.at(-1)!.commit();
    await t.batches[0]!.commit(); // older: ignored
    expect(await readdir(state)).toEqual([`file-${createHash("sha256").update(log).digest("hex")}.json`]);
    const saved = JSON.parse(await readFile(checkpointFile(), "utf8"));
    const st = statSync(log, { bigint: true });
    expect(saved).toMatchObject({ version: 1, path: log, dev: String(st.dev), ino: String(st.ino), offset: 9, head: { bytes: 9 } });
  });

  it("a first run from the end saves where it started: a restart before any commit reads what was written meanwhile", async () => {
    writeFileSync(log, "before the start\n");
    const first = tail({ stateDir: state });
    await first.caughtUp();
    await first.stop();
    expect(first.lines).toEqual([]);
    const saved = JSON.parse(await readFile(checkpointFile(), "utf8"));
    expect(saved).toMatchObject({ offset: statSync(log).size, head: { bytes: statSync(log).size } });
    appendFileSync(log, "while it was down\n");
    const second = tail({ stateDir: state });
    await second.until(["while it was down"]);
  });

  it("a first run before the file exists saves that: a restart reads the file that appeared meanwhile from its start", async () => {
    const first = tail({ stateDir: state });
    await vi.waitFor(() => expect(JSON.parse(readFileSync(checkpointFile(), "utf8"))).toMatchObject({ dev: "0", ino: "0", offset: 0 }));
    await first.stop();
    writeFileSync(log, "written while it was down\n");
    const second = tail({ stateDir: state });
    await second.until(["written while it was down"]);
    expect(second.source.stats).toMatchObject({ rotations: 0, truncations: 0 });
  });

  it("fails at its start with ERR_RECLAIM_CHECKPOINT when it cannot save where it starts", async () => {
    writeFileSync(log, "a\n");
    // procfs takes no new file, not even from root: the one folder every Linux test machine cannot write to.
    const t = tail({ stateDir: "/proc/self" });
    await t.done;
    expect(t.error).toMatchObject({ code: "ERR_RECLAIM_CHECKPOINT", message: expect.stringContaining("could not save its position to /proc/self/file-") as unknown });
    expect(t.lines).toEqual([]);
  });

  it("rejects a batch's commit with ERR_RECLAIM_CHECKPOINT when it cannot save the position", async () => {
    writeFileSync(log, "a\n");
    const commits: unknown[] = [];
    const t = tail({ stateDir: "/proc/self", fromStart: true, follow: false }, async (batch) => {
      commits.push(await batch.commit().catch((err: unknown) => err));
    });
    await t.done;
    expect(t.lines).toEqual(["a"]);
    expect(commits).toEqual([expect.objectContaining({ code: "ERR_RECLAIM_CHECKPOINT" })]);
  });

  it("reads the new file from its start when the file was rotated while stopped", async () => {
    writeFileSync(log, "a\n");
    const first = tail({ stateDir: state, fromStart: true });
    await first.until(["a"]);
    await first.stop();
    renameSync(log, `${log}.1`);
    writeFileSync(log, "b\n");
    const second = tail({ stateDir: state });
    await second.until(["b"]);
    expect(second.source.stats.rotations).toBe(1);
  });

  it.each([
    { name: "truncated", rewrite: "x\n" },
    { name: "rewritten in place past the saved offset", rewrite: "rewritten\nlines\n" },
  ])("reads the file from its start when it was $name while stopped", async ({ rewrite }) => {
    writeFileSync(log, "a\nb\n");
    const first = tail({ stateDir: state, fromStart: true });
    await first.until(["a", "b"]);
    await first.stop();
    const ino = statSync(log).ino;
    truncateSync(log, 0);
    appendFileSync(log, rewrite);
    expect(statSync(log).ino).toBe(ino);
    const second = tail({ stateDir: state });
    await second.until(rewrite.trimEnd().split("\n"));
    expect(second.source.stats.truncations).toBe(1);
  });

  it("waits for a missing file and resumes it if it is the same one", async () => {
    writeFileSync(log, "a\n");
    const first = tail({ stateDir: state, fromStart: true });
    await first.until(["a"]);
    await first.stop();
    renameSync(log, `${log}.away`);
    const second = tail({ stateDir: state });
    await new Promise((r) => setTimeout(r, 3 * POLL));
    appendFileSync(`${log}.away`, "b\n");
    renameSync(`${log}.away`, log);
    await second.until(["b"]);
  });

  it("fails with ERR_RECLAIM_CHECKPOINT when the saved position is unreadable", async () => {
    writeFileSync(log, "a\n");
    await (await import("node:fs/promises")).mkdir(state);
    await writeFile(checkpointFile(), "{not json");
    await expect(readOnce({ stateDir: state })).rejects.toMatchObject({ code: "ERR_RECLAIM_CHECKPOINT" });
  });
});

describe("malformed lines", () => {
  it("are counted and skipped by the scanner, the rest still matched", async () => {
    const rule = compileRule(
      RemediationRule.parse({
        apiVersion: "reclaim.dev/v1",
        kind: "RemediationRule",
        metadata: { name: "hard-limit" },
        spec: { trigger: { log: { event: "factory.hard_limit", minSeverity: "ERROR" } }, ladder: [{ rung: "probe" }] },
      }),
    );
    const hard = (user: string): string =>
      `{"severity":"ERROR","time":"2026-11-27T00:00:00Z","event":"factory.hard_limit","userId":"${user}","message":"HARD LIMIT"}`;
    writeFileSync(
      log,
      text([hard("u1"), '{"event":"factory.hard_limit", cut', "plain text", `garbage "factory.hard_limit" garbage`, hard("u2"), "\u0000\u0001"]),
    );
    const scanner = new Scanner([rule]);
    const matched: unknown[] = [];
    const t = tail({ fromStart: true, follow: false }, (batch) => {
      for (const event of scanner.scan(batch)) if (rule.match(event) !== null) matched.push(event.fields.userId);
      return batch.commit();
    });
    await t.done;
    expect(t.error).toBeNull();
    expect(matched).toEqual(["u1", "u2"]);
    expect(scanner.stats).toMatchObject({ linesRead: 6, candidates: 4, malformed: 2, ignored: 0 });
  });
});

describe("options", () => {
  it.each([
    { name: "an empty path", options: { path: "" } },
    { name: "a path with a NUL byte", options: { path: "a\0b" } },
    { name: "a stateDir with a NUL byte", options: { path: "x.log", stateDir: "s\0" } },
    { name: "a zero poll interval", options: { path: "x.log", pollIntervalMs: 0 } },
    { name: "a fractional chunk size", options: { path: "x.log", chunkBytes: 1.5 } },
    { name: "a negative line cap", options: { path: "x.log", maxLineBytes: -1 } },
    { name: "a line cap over 64 MiB", options: { path: "x.log", maxLineBytes: 65 * 1024 * 1024 } },
  ])("refuses $name with a TypeError", ({ options }) => {
    expect(() => new FileSource(options as FileSourceOptions)).toThrow(TypeError);
  });

  it("is named file:PATH as configured", () => {
    expect(new FileSource({ path: "logs/factory.log" }).name).toBe("file:logs/factory.log");
  });
});

describe("reuseBuffers (a consumer that keeps no bytes past its batch)", () => {
  // Reads larger than a line: a carried partial line then always fits beside the next read.
  it.each([256, 4096])("reads a whole file through two buffers, every line intact (%i-byte reads)", async (chunkBytes) => {
    const expected = Array.from({ length: 2000 }, (_, i) => `{"n":${i},"pad":"${"x".repeat(i % 97)}"}`);
    await writeFile(log, `${expected.join("\n")}\n`);
    for (const reuseBuffers of [false, true]) {
      const source = new FileSource({ path: log, follow: false, fromStart: true, chunkBytes, reuseBuffers });
      const buffers = new Set<ArrayBufferLike>();
      const lines: string[] = [];
      await source.run(async (batch) => {
        buffers.add(batch.data.buffer);
        // Strings only, as rules replay's scanner keeps; then give the loop a turn, as its Replayer does.
        lines.push(...batch.data.toString("utf8").split("\n").filter((l) => l !== ""));
        await new Promise((r) => setImmediate(r));
      }, new AbortController().signal);
      expect(lines).toEqual(expected);
      if (reuseBuffers) expect(buffers.size).toBeLessThanOrEqual(2);
      else expect(buffers.size).toBeGreaterThan(2);
    }
  });
});
