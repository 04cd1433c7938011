/**
 * The stdin source over real streams: a pipe from a child process and
 * in-process PassThrough streams. Same batches as the file source; ends
 * when the stream ends.
 */
import { spawn } from "node:child_process";
import { PassThrough, Readable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import type { LineBatch } from "../../../src/operator/sources/source.js";
import { StdinSource, type StdinSourceOptions } from "../../../src/operator/sources/stdin.js";

/** A byte stream of these chunks (Readable.from alone would be in object mode). */
const bytes = (chunks: Buffer[]): Readable => Readable.from(chunks, { objectMode: false });

/** Runs the source to its end (or until `until` aborts it) and returns the lines handed over. */
function collect(
  options: StdinSourceOptions,
  onBatch: (batch: LineBatch) => Promise<void> = () => Promise.resolve(),
  signal = new AbortController().signal,
): { lines: string[]; batches: LineBatch[]; source: StdinSource; done: Promise<void> } {
  const source = new StdinSource(options);
  const lines: string[] = [];
  const batches: LineBatch[] = [];
  const done = source.run(async (batch) => {
    const text = batch.data.toString();
    expect(text.endsWith("\n")).toBe(true);
    const got = text.slice(0, -1).split("\n");
    expect(got).toHaveLength(batch.lines);
    lines.push(...got);
    batches.push(batch);
    await onBatch(batch);
  }, signal);
  return { lines, batches, source, done };
}

describe("StdinSource", () => {
  it("reads a real pipe from another process to its end", async () => {
    const child = spawn(process.execPath, [
      "-e",
      `for (let i = 0; i < 5000; i++) process.stdout.write('{"event":"factory.cleanup","n":' + i + '}\\n'); process.stdout.write("last, without newline");`,
    ]);
    const run = collect({ stream: child.stdout });
    await run.done;
    expect(run.lines).toHaveLength(5001);
    expect(run.lines[4999]).toBe('{"event":"factory.cleanup","n":4999}');
    expect(run.lines[5000]).toBe("last, without newline");
    expect(run.source.stats).toMatchObject({ linesRead: 5001, rotations: 0, truncations: 0, skippedLongLines: 0 });
    expect(run.source.stats.bytesRead).toBe(run.lines.reduce((n, l) => n + l.length + 1, 0) - 1);
  });

  it.each([
    { name: "lines cut across chunks", chunks: ["a\nb", "c\n", "d"], lines: ["a", "bc", "d"] },
    { name: "one character at a time", chunks: [..."x\ny\n"], lines: ["x", "y"] },
    { name: "CRLF kept in the batch", chunks: ["a\r\n", "b\r\n"], lines: ["a\r", "b\r"] },
    { name: "an empty stream", chunks: [], lines: [] },
    { name: "empty lines", chunks: ["\n\n"], lines: ["", ""] },
  ])("frames $name", async ({ chunks, lines }) => {
    const run = collect({ stream: bytes(chunks.map((c) => Buffer.from(c))) });
    await run.done;
    expect(run.lines).toEqual(lines);
  });

  it("reads a stream that decodes to strings", async () => {
    const stream = new PassThrough();
    stream.setEncoding("utf8");
    const run = collect({ stream });
    stream.end("é\nü\n");
    await run.done;
    expect(run.lines).toEqual(["é", "ü"]);
  });

  it("skips and counts lines longer than the cap", async () => {
    const run = collect({ stream: bytes([Buffer.from(`ok\n${"L".repeat(30)}`), Buffer.from(`${"L".repeat(30)}\nok 2\n`)]), maxLineBytes: 20 });
    await run.done;
    expect(run.lines).toEqual(["ok", "ok 2"]);
    expect(run.source.stats.skippedLongLines).toBe(1);
  });

  it("waits for data, and reads the next chunk only after the batch was handled", async () => {
    const stream = new PassThrough();
    let inside = 0;
    let most = 0;
    const run = collect({ stream }, async () => {
      most = Math.max(most, ++inside);
      await new Promise((r) => setTimeout(r, 5));
      inside--;
    });
    for (let i = 0; i < 20; i++) {
      stream.write(`line ${i}\n`);
      await new Promise((r) => setImmediate(r));
    }
    await vi.waitFor(() => expect(run.lines).toHaveLength(20));
    stream.end();
    await run.done;
    expect(most).toBe(1);
  });

  it("stops on abort while waiting, and leaves the stream open", async () => {
    const stream = new PassThrough();
    const controller = new AbortController();
    const run = collect({ stream }, undefined, controller.signal);
    stream.write("a\npartial");
    await vi.waitFor(() => expect(run.lines).toEqual(["a"]));
    controller.abort();
    await run.done;
    expect(run.lines).toEqual(["a"]); // the partial line is not handed over on abort
    expect(stream.destroyed).toBe(false);
  });

  it("fails with ERR_RECLAIM_SOURCE_READ, with the cause, when the stream fails", async () => {
    const stream = new PassThrough();
    const run = collect({ stream });
    stream.write("a\n");
    await vi.waitFor(() => expect(run.lines).toEqual(["a"]));
    const boom = new Error("EIO");
    stream.destroy(boom);
    await expect(run.done).rejects.toMatchObject({ code: "ERR_RECLAIM_SOURCE_READ", cause: boom });
  });

  it("fails, not ends, when the stream is destroyed with an error while a batch is handled", async () => {
    const stream = new PassThrough();
    const boom = new Error("EIO");
    const run = collect({ stream }, () => {
      stream.destroy(boom);
      return Promise.resolve();
    });
    stream.write("a\n");
    await expect(run.done).rejects.toMatchObject({ code: "ERR_RECLAIM_SOURCE_READ", cause: boom });
    expect(run.lines).toEqual(["a"]);
  });

  it("commits as a no-op (a pipe cannot be read again)", async () => {
    const run = collect({ stream: bytes([Buffer.from("a\n")]) }, (batch) => batch.commit());
    await run.done;
    expect(run.lines).toEqual(["a"]);
  });

  it.each([
    { name: "an object-mode stream", options: { stream: new Readable({ objectMode: true, read() {} }) } },
    { name: "a zero line cap", options: { stream: new PassThrough(), maxLineBytes: 0 } },
  ])("refuses $name with a TypeError", ({ options }) => {
    expect(() => new StdinSource(options)).toThrow(TypeError);
  });

  it("is named stdin unless told otherwise, and reads process.stdin by default", () => {
    expect(new StdinSource().name).toBe("stdin");
    expect(new StdinSource({ stream: new PassThrough(), name: "kubectl-logs" }).name).toBe("kubectl-logs");
  });
});
