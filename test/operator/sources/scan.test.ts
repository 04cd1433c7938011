/**
 * Candidate lines found in raw bytes: every line holding a needle, once, in
 * order, with its "\r" stripped — one pass for all needles of 4 bytes or
 * more, one indexOf pass each for shorter ones — and LogEvents out of them.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileRule } from "../../../src/operator/rules/compile.js";
import { RemediationRule } from "../../../src/operator/rules/schema.js";
import { countLines, parseLine, scanBatch, Scanner } from "../../../src/operator/sources/scan.js";

const HARD = '"factory.hard_limit"';
const ERROR = '"factory.error"';

function scan(data: string, needles: string[] | null): string[] {
  const out: string[] = [];
  scanBatch(Buffer.from(data), needles === null ? null : needles.map((n) => Buffer.from(n)), (line) => out.push(line.toString()));
  return out;
}

/** The slow, obvious answer: split every line, keep those whose raw bytes hold a needle, strip the "\r". */
function reference(data: string, needles: string[] | null): string[] {
  if (data === "") return [];
  const raw = (data.endsWith("\n") ? data.slice(0, -1) : data).split("\n");
  const kept = needles === null ? raw : raw.filter((l) => needles.some((n) => l.includes(n)));
  return kept.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
}

const line = (event: string, extra = ""): string => `{"severity":"ERROR","time":"2026-11-27T00:00:00Z","event":"${event}"${extra}}`;

describe("scanBatch", () => {
  const cases: { name: string; data: string; want: string[] }[] = [
    { name: "needle in the middle of the only line", data: `a ${HARD} b\n`, want: [`a ${HARD} b`] },
    { name: "needle at the start of a line", data: `x\n${HARD} b\ny\n`, want: [`${HARD} b`] },
    { name: "needle at the end of a line", data: `x\na ${HARD}\ny\n`, want: [`a ${HARD}`] },
    { name: "the whole line is the needle", data: `x\n${HARD}\ny\n`, want: [HARD] },
    { name: "needle on the first line", data: `${line("factory.hard_limit")}\nx\ny\n`, want: [line("factory.hard_limit")] },
    { name: "needle on the last line", data: `x\ny\n${line("factory.hard_limit")}\n`, want: [line("factory.hard_limit")] },
    { name: "last line without a newline", data: `x\ny\n${line("factory.hard_limit")}`, want: [line("factory.hard_limit")] },
    { name: "needle at the very end without a newline", data: `x\n${HARD}`, want: [HARD] },
    { name: "the same needle twice on a line: one candidate", data: `x\n${HARD} ${HARD}\ny\n`, want: [`${HARD} ${HARD}`] },
    { name: "CRLF: the \\r is stripped", data: `x\r\n${HARD}\r\ny\r\n`, want: [HARD] },
    { name: "CRLF on the last line without \\n", data: `x\r\n${HARD}\r`, want: [HARD] },
    { name: "adjacent candidate lines", data: `${HARD}\n${HARD}1\n${HARD}2\n`, want: [HARD, `${HARD}1`, `${HARD}2`] },
    { name: "empty lines around", data: `\n\n${HARD}\n\n`, want: [HARD] },
    { name: "no candidate", data: `${line("factory.connection_opened")}\n"factory.hard_limit\n`, want: [] },
    { name: "the needle without its quotes is not one", data: `event factory.hard_limit\n`, want: [] },
    { name: "empty data", data: "", want: [] },
  ];

  it.each(cases)("one needle: $name", ({ data, want }) => {
    expect(scan(data, [HARD])).toEqual(want);
  });

  it.each(cases)("several needles: $name", ({ data, want }) => {
    expect(scan(data, [ERROR, HARD, '"never.there"'])).toEqual(want);
  });

  it.each([
    { name: "two different needles on one line: one candidate", data: `a ${ERROR} ${HARD}\nb\n`, want: [`a ${ERROR} ${HARD}`] },
    { name: "each needle on its own line, in order", data: `${ERROR}\nx\n${HARD}\n${ERROR}\n`, want: [ERROR, HARD, ERROR] },
    { name: "the second needle first", data: `${HARD}\n${ERROR}\n`, want: [HARD, ERROR] },
    { name: "overlapping needles", data: `abcd\nbc\n`, needles: ["abc", "bcd"], want: ["abcd"] },
    { name: "one needle inside another", data: `xabcx\nb\n`, needles: ["abc", "b"], want: ["xabcx", "b"] },
  ])("several needles: $name", ({ data, needles, want }) => {
    expect(scan(data, needles ?? [HARD, ERROR])).toEqual(want);
  });

  it.each([
    { name: "regex metacharacters are literals", data: "a.b\naxb\n(a|b)*\n", needles: ["a.b", "(a|b)*"], want: ["a.b", "(a|b)*"] },
    { name: "a backslash is a literal", data: "a\\d\na1\n", needles: ["\\d", "zz"], want: ["a\\d"] },
    { name: "non-ASCII needles match their UTF-8 bytes", data: "café\ncafe\nnaïve\n", needles: ["é", "ï"], want: ["café", "naïve"] },
    { name: "one non-ASCII needle", data: "café\ncafe\n", needles: ["é"], want: ["café"] },
    { name: "the same needle twice", data: `${HARD}\nx\n`, needles: [HARD, HARD], want: [HARD] },
    {
      name: "needles longer than the 255-byte window",
      data: `${"n".repeat(300)}\n${"n".repeat(299)}m\n${"m".repeat(280)}\n`,
      needles: ["n".repeat(300), "m".repeat(280)],
      want: ["n".repeat(300), "m".repeat(280)],
    },
  ])("$name", ({ data, needles, want }) => {
    expect(scan(data, needles)).toEqual(want);
  });

  it.each([
    { data: "a\nb\n", want: ["a", "b"] },
    { data: "a\nb", want: ["a", "b"] },
    { data: "a\r\n\r\nb\r\n", want: ["a", "", "b"] },
    { data: "\n", want: [""] },
    { data: "", want: [] },
  ])("null needles: every line of $data is a candidate", ({ data, want }) => {
    expect(scan(data, null)).toEqual(want);
  });

  it("an empty list of needles finds nothing", () => {
    expect(scan(`${HARD}\n`, [])).toEqual([]);
  });

  it.each([
    { name: "an empty needle", needles: [""] },
    { name: "a needle with a newline", needles: ["a\nb", "c"] },
  ])("refuses $name", ({ needles }) => {
    expect(() => scan("a\n", needles)).toThrow(TypeError);
  });

  it("sees a needle array changed in place", () => {
    const needles = [Buffer.from(HARD)];
    const data = Buffer.from(`${HARD}\n${ERROR}\n`);
    const found = (): string[] => {
      const out: string[] = [];
      scanBatch(data, needles, (l) => out.push(l.toString()));
      return out;
    };
    expect(found()).toEqual([HARD]);
    needles.push(Buffer.from(ERROR));
    expect(found()).toEqual([HARD, ERROR]);
    needles[0] = Buffer.from('"factory.zombie"');
    expect(found()).toEqual([ERROR]);
  });

  it("hands over views of the batch, not copies", () => {
    const data = Buffer.from(`x\n${HARD}\n`);
    const seen: Buffer[] = [];
    scanBatch(data, [Buffer.from(HARD)], (l) => seen.push(l));
    expect(seen[0]!.buffer).toBe(data.buffer);
  });

  it("agrees with splitting every line, for any input and needles of 4 bytes or more (one pass for all)", () => {
    const text = fc.string({ unit: fc.constantFrom("a", "b", "\n", "\r", '"', "é"), maxLength: 400 });
    const needle = fc.string({ unit: fc.constantFrom("a", "b", '"', "é", "\r"), minLength: 4, maxLength: 7 });
    fc.assert(
      fc.property(text, fc.array(needle, { minLength: 1, maxLength: 4 }), (data, needles) => {
        expect(scan(data, needles)).toEqual(reference(data, needles));
      }),
      { numRuns: 3000 },
    );
  });

  it("finds needles that straddle the middle of the batch, where the two walks meet", () => {
    for (let at = 0; at < 60; at++) {
      const data = `${"x".repeat(at)}${HARD}${"y".repeat(60 - at)}\n${"z".repeat(40)}\n`;
      expect(scan(data, [HARD, ERROR])).toEqual([`${"x".repeat(at)}${HARD}${"y".repeat(60 - at)}`]);
      expect(scan(`${"z".repeat(at)}\n${data}`, [HARD])).toEqual([`${"x".repeat(at)}${HARD}${"y".repeat(60 - at)}`]);
    }
  });

  it("finds needles that straddle each quarter of the batch, where the four walks meet (ADR 37)", () => {
    // Batches of 4 × 50 + 60 bytes or so: each quarter boundary falls at every offset inside the needle in turn.
    for (const size of [200, 203, 257]) {
      for (let at = 0; at + HARD.length <= size; at++) {
        const data = `${"x".repeat(at)}${HARD}${"y".repeat(size - at - HARD.length)}\n${"z".repeat(10)}\n`;
        expect({ size, at, got: scan(data, [HARD, ERROR]) }).toEqual({ size, at, got: [data.slice(0, size)] });
      }
    }
  });

  it("agrees with splitting every line on long batches read through views at any offset (one 16-bit load per step)", () => {
    // Long enough that each of the four walks covers many lines; the batch is a view into a bigger buffer, at an odd
    // offset, as the file source hands it over (`subarray` of its read buffer).
    const piece = fc.constantFrom("a", "b", "\n", "\r", '"', "é", HARD, ERROR, '"factory.', "hard_limit", "xxxxxxxxxxxxxxxx");
    const text = fc.array(piece, { maxLength: 300 }).map((parts) => parts.join(""));
    const needle = fc.constantFrom(HARD, ERROR, '"factory.hard', "ab\"é", "xxxxx");
    fc.assert(
      fc.property(text, fc.array(needle, { minLength: 1, maxLength: 3 }), fc.nat(7), (data, needles, offset) => {
        const bytes = Buffer.from(data);
        const padded = Buffer.alloc(offset + bytes.length + 5, "\n");
        bytes.copy(padded, offset);
        const view = padded.subarray(offset, offset + bytes.length);
        const out: string[] = [];
        scanBatch(view, needles.map((n) => Buffer.from(n)), (l) => out.push(l.toString()));
        expect(out).toEqual(reference(data, needles));
      }),
      { numRuns: 2000 },
    );
  });

  it("agrees with splitting every line, for any input and short needles (one indexOf pass each)", () => {
    const text = fc.string({ unit: fc.constantFrom("a", "b", "c", "\n", "\r", "é", '"'), maxLength: 80 });
    const needle = fc.string({ unit: fc.constantFrom("a", "b", "c", "\r", "é", '"'), minLength: 1, maxLength: 3 });
    fc.assert(
      fc.property(text, fc.option(fc.array(needle, { maxLength: 3 })), (data, needles) => {
        expect(scan(data, needles)).toEqual(reference(data, needles));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("countLines", () => {
  it.each([
    { data: "", want: 0 },
    { data: "a", want: 1 },
    { data: "a\n", want: 1 },
    { data: "a\nb", want: 2 },
    { data: "\n\n", want: 2 },
    { data: "a\r\nb\r\n", want: 2 },
  ])("$data has $want lines", ({ data, want }) => {
    expect(countLines(Buffer.from(data))).toBe(want);
  });
});

describe("parseLine", () => {
  it("turns a factory line into a LogEvent", () => {
    const event = parseLine(
      Buffer.from('{"severity":"ERROR","time":"2026-11-27T00:00:00.000Z","pod":"p-0","event":"factory.hard_limit","userId":"u1","managers":20,"limit":20,"message":"HARD LIMIT: User u1 still over limit after cleanup (20/20)"}'),
    );
    expect(event).toMatchObject({
      time: Date.parse("2026-11-27T00:00:00.000Z"),
      severity: "ERROR",
      event: "factory.hard_limit",
      fields: { userId: "u1", managers: 20, limit: 20, pod: "p-0" },
      message: "HARD LIMIT: User u1 still over limit after cleanup (20/20)",
    });
  });

  it("turns a Cloud Logging LogEntry into a LogEvent", () => {
    const entry = {
      insertId: "abc",
      timestamp: "2026-11-27T00:00:01Z",
      severity: "ERROR",
      resource: { type: "k8s_container", labels: { pod_name: "factory-1" } },
      jsonPayload: { event: "factory.error", userId: "u2", message: "UNEXPECTED FACTORY ERROR" },
    };
    expect(parseLine(Buffer.from(JSON.stringify(entry)))).toMatchObject({
      insertId: "abc",
      event: "factory.error",
      fields: { userId: "u2", pod: "factory-1" },
      resource: { pod_name: "factory-1" },
    });
  });

  it.each([
    { name: "not JSON", line: "HARD LIMIT: User 1 still over limit", want: "malformed" },
    { name: "JSON cut short", line: '{"event":"factory.hard_limit","time":"2026-11-27T00:00:00Z"', want: "malformed" },
    { name: "a JSON array", line: "[1,2]", want: "malformed" },
    { name: "a JSON number", line: "42", want: "malformed" },
    { name: "a JSON string", line: '"factory.hard_limit"', want: "malformed" },
    { name: "JSON null", line: "null", want: "malformed" },
    { name: "an object without a time (normalize() rejects it)", line: '{"event":"factory.hard_limit"}', want: "malformed" },
    { name: "an object with a time that is no time", line: '{"event":"x","time":"yesterday"}', want: "malformed" },
    { name: "an empty line", line: "", want: "ignored" },
    { name: "a blank line", line: " \t\r", want: "ignored" },
  ])("$name is $want", ({ line: text, want }) => {
    expect(parseLine(Buffer.from(text))).toBe(want);
  });

  it.each([
    { name: "a trailing \\r", line: '{"time":"2026-11-27T00:00:00Z","event":"e"}\r' },
    { name: "a byte-order mark", line: '\uFEFF{"time":"2026-11-27T00:00:00Z","event":"e"}' },
  ])("tolerates $name", ({ line: text }) => {
    expect(parseLine(Buffer.from(text))).toMatchObject({ event: "e" });
  });

  it("decodes invalid UTF-8 as U+FFFD rather than failing", () => {
    const bytes = Buffer.concat([Buffer.from('{"time":"2026-11-27T00:00:00Z","event":"e","message":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    expect(parseLine(bytes)).toMatchObject({ message: "\uFFFD\uFFFD" });
  });
});

function rule(trigger: Record<string, unknown>): ReturnType<typeof compileRule> {
  return compileRule(
    RemediationRule.parse({
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "hard-limit" },
      spec: { trigger: { log: trigger }, ladder: [{ rung: "probe" }] },
    }),
  );
}

describe("Scanner", () => {
  const batch = (lines: string[]): { data: Buffer; lines: number } => ({ data: Buffer.from(lines.map((l) => `${l}\n`).join("")), lines: lines.length });

  it("parses only the candidate lines of its rules and counts malformed ones without failing", () => {
    const hardLimit = rule({ event: ["factory.hard_limit", "factory.error"], minSeverity: "ERROR" });
    const scanner = new Scanner([hardLimit]);
    const events = scanner.scan(
      batch([
        line("factory.connection_opened"),
        line("factory.hard_limit", ',"userId":"u1"'),
        "not json, and not a candidate",
        `not json but mentions ${HARD}`,
        `{"event":"factory.error","userId":"u2"`, // cut short
        line("factory.cleanup", ',"message":"mentions \\"factory.error\\" in text"'),
        line("factory.error", ',"userId":"u3"'),
      ]),
    );
    expect(events.map((e) => [e.event, e.fields.userId])).toEqual([
      ["factory.hard_limit", "u1"],
      ["factory.error", "u3"],
    ]);
    // The scanner does not match: the rule does, and rejects the decoy.
    expect(events.filter((e) => hardLimit.match(e) !== null)).toHaveLength(2);
    expect(scanner.stats).toMatchObject({ linesRead: 7, candidates: 4, malformed: 2, ignored: 0 });
  });

  it("parses every line when a rule names no events, and ignores blank ones", () => {
    const scanner = new Scanner([rule({ event: "factory.hard_limit" }), rule({ pattern: "HARD LIMIT" })]);
    expect(scanner.needles).toBeNull();
    const events = scanner.scan(batch([line("factory.cleanup"), "", "garbage", line("factory.zombie")]));
    expect(events.map((e) => e.event)).toEqual(["factory.cleanup", "factory.zombie"]);
    expect(scanner.stats).toMatchObject({ linesRead: 4, candidates: 4, malformed: 1, ignored: 1 });
  });

  it("with no rules finds no candidates", () => {
    const scanner = new Scanner([]);
    expect(scanner.scan(batch([line("factory.hard_limit")]))).toEqual([]);
    expect(scanner.stats.candidates).toBe(0);
  });

  it("uses the union of its rules' needles", () => {
    const scanner = new Scanner([rule({ event: "factory.hard_limit" }), rule({ event: ["factory.error", "factory.hard_limit"] })]);
    expect(scanner.needles?.map((n) => n.toString())).toEqual([HARD, ERROR]);
  });
});
