/**
 * Line framing: however the input is cut into reads, the batches hold
 * exactly its complete lines, in order, minus the over-long ones (counted).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LineFramer } from "../../../src/operator/sources/lines.js";

/** Frames `chunks` one after the other, then the end of input; returns the lines and batch sizes seen. */
function frameAll(chunks: string[], maxLineBytes: number): { lines: string[]; counted: number; skipped: number } {
  const framer = new LineFramer(maxLineBytes);
  const lines: string[] = [];
  let counted = 0;
  const take = (data: Buffer | null, n: number): void => {
    if (data === null) return expect(n).toBe(0);
    const text = data.toString("latin1");
    expect(text.endsWith("\n")).toBe(true);
    const got = text.slice(0, -1).split("\n");
    expect(got).toHaveLength(n);
    lines.push(...got);
    counted += n;
  };
  for (const chunk of chunks) {
    const framed = framer.push(Buffer.from(chunk, "latin1"));
    take(framed.data, framed.lines);
  }
  const last = framer.finish();
  take(last.data, last.lines);
  return { lines, counted, skipped: framer.counters.skippedLongLines };
}

function expected(input: string, maxLineBytes: number): { lines: string[]; skipped: number } {
  if (input === "") return { lines: [], skipped: 0 };
  const all = (input.endsWith("\n") ? input.slice(0, -1) : input).split("\n");
  return { lines: all.filter((l) => l.length <= maxLineBytes), skipped: all.filter((l) => l.length > maxLineBytes).length };
}

describe("LineFramer", () => {
  it.each([
    { name: "whole lines in one read", chunks: ["a\nb\n"], lines: ["a", "b"] },
    { name: "a line completed by the next read", chunks: ["ab", "c\nd\n"], lines: ["abc", "d"] },
    { name: "a line over three reads", chunks: ["a", "b", "c\n"], lines: ["abc"] },
    { name: "the last line without a newline counts at the end", chunks: ["a\nb"], lines: ["a", "b"] },
    { name: "a newline alone", chunks: ["a", "\n", "\n"], lines: ["a", ""] },
    { name: "the \\r stays in the batch", chunks: ["a\r", "\nb\r\n"], lines: ["a\r", "b\r"] },
  ])("$name", ({ chunks, lines }) => {
    expect(frameAll(chunks, 100).lines).toEqual(lines);
  });

  it.each([
    { name: "inside one read", chunks: ["ok\n0123456789AB\nok2\n"], lines: ["ok", "ok2"] },
    { name: "across reads", chunks: ["ok\n0123", "456789", "AB\nok2\n"], lines: ["ok", "ok2"] },
    { name: "ending a read", chunks: ["ok\n0123456789AB", "\nok2\n"], lines: ["ok", "ok2"] },
    { name: "at the end of input", chunks: ["ok\n0123456789AB"], lines: ["ok"] },
    { name: "two in a row", chunks: ["0123456789AB\n0123456789AB\nok\n"], lines: ["ok"] },
  ])("skips and counts a line longer than the cap $name", ({ chunks, lines }) => {
    const got = frameAll(chunks, 10);
    expect(got.lines).toEqual(lines);
    expect(got.skipped).toBe(chunks.join("").split("0123456789AB").length - 1);
  });

  it("keeps a line of exactly the cap", () => {
    expect(frameAll(["0123456789\n"], 10)).toMatchObject({ lines: ["0123456789"], skipped: 0 });
  });

  it("never carries more than the cap", () => {
    const framer = new LineFramer(10);
    for (let i = 0; i < 100; i++) {
      framer.push(Buffer.from("xxxxxxx"));
      expect(framer.carry.length).toBeLessThanOrEqual(10);
    }
  });

  it("reports where the last complete line ends", () => {
    const framer = new LineFramer(100);
    expect(framer.push(Buffer.from("ab\ncd"))).toMatchObject({ lines: 1, end: 3 });
    expect(framer.frame(Buffer.from("cdef\n"), 2)).toMatchObject({ lines: 1, end: 5 });
  });

  it("gives exactly the lines of any input, however it is cut", () => {
    const input = fc.string({ unit: fc.constantFrom("a", "b", "\n", "\r"), maxLength: 120 });
    fc.assert(
      fc.property(input, fc.array(fc.nat(120), { maxLength: 8 }), fc.integer({ min: 1, max: 12 }), (text, cuts, max) => {
        const points = [...new Set(cuts.map((c) => Math.min(c, text.length)))].sort((a, b) => a - b);
        const chunks: string[] = [];
        let from = 0;
        for (const p of [...points, text.length]) {
          if (p > from) chunks.push(text.slice(from, p));
          from = Math.max(from, p);
        }
        const got = frameAll(chunks, max);
        const want = expected(text, max);
        expect(got.lines).toEqual(want.lines);
        expect(got.counted).toBe(want.lines.length);
        expect(got.skipped).toBe(want.skipped);
      }),
      { numRuns: 3000 },
    );
  });
});
