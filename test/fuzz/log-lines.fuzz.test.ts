/**
 * Bad log lines, property-based (fast-check, fixed seeds, 10,000 cases each):
 * random bytes cut at random places, huge lines, deep JSON and factory-shaped
 * lines with the wrong types in their known fields, through the operator's
 * real read path — LineFramer → Scanner (the shipped rules' needles) →
 * parseLine/normalize → every shipped rule's matcher → the detector's key.
 *
 * Expected: nothing throws; every line is accounted for (read, skipped as too
 * long, malformed, ignored or an entry); memory stays bounded (the carry never
 * exceeds the line cap); and a user id to act on only ever comes from a valid
 * structured `userId` field. The last test runs a real operator: a hostile
 * line must not stop it from reading the next one.
 */
import { appendFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isUserId } from "../../src/contract/ids.js";
import { Detector, keyOf } from "../../src/operator/detect/detector.js";
import { MAX_ENTRY_DEPTH, normalize, severityRank, type LogEvent } from "../../src/operator/sources/event.js";
import type { CompiledRule } from "../../src/operator/rules/compile.js";
import { loadRules } from "../../src/operator/rules/load.js";
import { LineFramer } from "../../src/operator/sources/lines.js";
import { parseLine, Scanner } from "../../src/operator/sources/scan.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const SEED = 20261201;
const RUNS = 10_000;
/** A small cap, so that the fuzzer reaches it often. */
const MAX_LINE = 512;
const TIME = "2026-12-01T12:00:00.000Z";
const TRIGGER_EVENTS = new Set(["factory.hard_limit", "factory.error"]);

let shipped: CompiledRule[];
beforeAll(async () => {
  const loaded = await loadRules(["rules"]);
  expect(loaded.errors).toEqual([]);
  shipped = loaded.rules.map((r) => r.compiled);
  // The property below is only meaningful with a log rule among them.
  expect(shipped.some((r) => r.needles !== null && r.needles.length > 0)).toBe(true);
});

/** What the operator would do with one entry: which shipped rules match it, and the key each would act on. */
function decide(event: LogEvent): { rule: string; userId: string | null }[] {
  const out: { rule: string; userId: string | null }[] = [];
  for (const rule of shipped) {
    if (rule.match(event) === null) continue;
    out.push({ rule: rule.name, userId: keyOf(rule, event)?.userId ?? null });
  }
  return out;
}

/** The invariant on every decision: a target is a valid id, and it is the entry's own structured userId. */
function checkDecision(event: LogEvent): void {
  for (const { userId } of decide(event)) {
    if (userId === null) continue;
    expect(isUserId(userId)).toBe(true);
    const field = event.fields.userId;
    expect(typeof field === "string" || typeof field === "number").toBe(true);
    expect(String(field)).toBe(userId);
    // Only the structured event and severity can make a shipped rule match.
    expect(TRIGGER_EVENTS.has(event.event ?? "")).toBe(true);
    expect(severityRank(event.severity)).toBeGreaterThanOrEqual(severityRank("ERROR"));
  }
}

// Pieces a hostile line is made of: the shipped rules' needles, JSON punctuation, line breaks, odd bytes.
const fragment = fc.oneof(
  fc.constantFrom(
    '"factory.hard_limit"',
    '"factory.error"',
    '"factory.hard',
    'limit"',
    '{"severity":"ERROR","time":"2026-12-01T12:00:00Z","event":"factory.hard_limit","userId":"u1","pod":"p"}',
    '"userId":',
    '"userId":"../../etc"',
    '"time":',
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    '"',
    "\\",
    "\n",
    "\r\n",
    "\r",
    "\u0000",
    "\ufeff",
    " ",
  ),
  fc.string({ maxLength: 20 }),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString("latin1")),
);
const bytes = fc.oneof(
  { arbitrary: fc.array(fragment, { maxLength: 60 }).map((parts) => Buffer.from(parts.join(""), "utf8")), weight: 3 },
  { arbitrary: fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)), weight: 1 },
  // A line far over the cap, among normal ones.
  {
    arbitrary: fc.tuple(fc.integer({ min: MAX_LINE - 2, max: MAX_LINE * 8 }), fc.constantFrom("x", '"factory.error"', "\r")).map(([n, unit]) =>
      Buffer.from(`${TRIGGER}\n${unit.repeat(Math.ceil(n / unit.length))}\n${TRIGGER}\n`),
    ),
    weight: 1,
  },
);
const TRIGGER = JSON.stringify({ severity: "ERROR", time: TIME, event: "factory.hard_limit", userId: "u1", pod: "p", managers: 20, limit: 20, message: "HARD LIMIT" });

describe("raw bytes through the read path", () => {
  it(`never throws, accounts for every line, bounds the carry, and targets only valid structured user ids (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(bytes, fc.array(fc.nat(4096), { maxLength: 6 }), (data, cuts) => {
        const framer = new LineFramer(MAX_LINE);
        const scanner = new Scanner(shipped);
        const points = [...new Set(cuts.map((c) => Math.min(c, data.length)))].sort((a, b) => a - b);
        let from = 0;
        let delivered = 0;
        const take = (framed: { data: Buffer | null; lines: number }): void => {
          delivered += framed.lines;
          if (framed.data === null) return;
          for (const event of scanner.scan({ data: framed.data, lines: framed.lines })) checkDecision(event);
        };
        for (const p of [...points, data.length]) {
          if (p > from || (p === data.length && from === 0)) take(framer.push(data.subarray(from, p)));
          expect(framer.carry.length).toBeLessThanOrEqual(MAX_LINE);
          from = Math.max(from, p);
        }
        take(framer.finish());
        // Every line is delivered or skipped as too long; nothing vanishes, nothing is invented.
        const newlines = data.filter((b) => b === 0x0a).length;
        const unterminated = data.length > 0 && data[data.length - 1] !== 0x0a ? 1 : 0;
        expect(delivered + framer.counters.skippedLongLines).toBeGreaterThanOrEqual(newlines);
        expect(delivered + framer.counters.skippedLongLines).toBeLessThanOrEqual(newlines + unterminated);
        const { linesRead, candidates, malformed, ignored } = scanner.stats;
        expect(linesRead).toBe(delivered);
        expect(candidates).toBeLessThanOrEqual(linesRead);
        expect(malformed + ignored).toBeLessThanOrEqual(candidates);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });
});

// Factory-shaped lines with every known field sometimes of the wrong type.
const anyJson = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);
const hostileUserId = fc.oneof(
  fc.constantFrom("u1", "105945141827451681156", "../../etc/passwd", "..", ".", "a/b", "a%2Fb", "a\u0000b", "x".repeat(129), "", "a b", "é", "victim\nevil"),
  fc.stringMatching(/^[A-Za-z0-9._:@-]{1,128}$/),
  anyJson,
);
const factoryLine = fc.record(
  {
    severity: fc.oneof(fc.constantFrom("ERROR", "error", "WARNING", "CRITICAL", "DEFAULT", 50, 60, 10), anyJson),
    time: fc.oneof(fc.constantFrom(TIME, 1_764_590_400_000, "not a time", "", { seconds: 1_764_590_400, nanos: 5 }, { seconds: "x" }), anyJson),
    event: fc.oneof(fc.constantFrom("factory.hard_limit", "factory.error", "factory.refused", "FACTORY.HARD_LIMIT", "factory.hard_limit "), anyJson),
    userId: hostileUserId,
    pod: fc.oneof(fc.constantFrom("factory-0", "../other", ""), anyJson),
    managers: fc.oneof(fc.nat(40), anyJson),
    limit: fc.oneof(fc.nat(40), anyJson),
    message: fc.oneof(fc.constantFrom("HARD LIMIT: User victim still over limit after cleanup (20/20)", '"event":"factory.hard_limit"'), anyJson),
    jsonPayload: anyJson,
    textPayload: anyJson,
    resource: fc.oneof(fc.record({ labels: fc.dictionary(fc.string({ maxLength: 8 }), anyJson, { maxKeys: 3 }) }), anyJson),
    insertId: anyJson,
  },
  { requiredKeys: [] },
);
// Nesting: mostly around the bound, sometimes far beyond it (JSON.stringify overflows the stack from ~5,000 levels).
const depth = fc.oneof({ arbitrary: fc.nat(MAX_ENTRY_DEPTH + 4), weight: 19 }, { arbitrary: fc.integer({ min: 1000, max: 30_000 }), weight: 1 });

describe("structured lines with wrong types, deep nesting and huge sizes", () => {
  it(`parse to an entry or "malformed", never throw, and decide only on valid structured fields (${RUNS} cases)`, () => {
    const detector = new Detector({ now: () => Date.parse(TIME), maxKeys: 100, dedupeSize: 100 });
    fc.assert(
      fc.property(factoryLine, depth, fc.constantFrom("extra", "userId", "event", "time"), (line, d, deepField) => {
        const json = JSON.stringify(line);
        const nested = `${"[".repeat(d)}${"]".repeat(d)}`;
        const text = `${json.slice(0, -1)}${json.length > 2 ? "," : ""}"${deepField}":${nested}}`;
        const parsed = parseLine(Buffer.from(text));
        if (parsed === "ignored") throw new Error("a JSON object is never blank");
        if (d > MAX_ENTRY_DEPTH) expect(parsed).toBe("malformed");
        if (parsed === "malformed") return;
        checkDecision(parsed);
        // What the operator does next with a matching entry must not blow up either.
        expect(() => JSON.stringify(parsed)).not.toThrow();
        for (const rule of shipped) {
          const match = rule.match(parsed);
          if (match !== null) detector.observe(rule, parsed, match);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect(detector.size).toBeLessThanOrEqual(100);
  });

  it("a Cloud Logging entry nested beyond the bound is refused too (jsonPayload, protoPayload)", () => {
    const deep = (d: number): unknown => {
      let v: unknown = 1;
      for (let i = 0; i < d; i++) v = { v };
      return v;
    };
    const entry = (payload: unknown): unknown => ({ timestamp: TIME, severity: "ERROR", jsonPayload: { event: "factory.hard_limit", userId: "u1", payload } });
    expect(normalize(entry(deep(10)))).not.toBeNull();
    expect(normalize(entry(deep(MAX_ENTRY_DEPTH)))).toBeNull();
    expect(normalize({ timestamp: TIME, protoPayload: deep(5000) })).toBeNull();
  });

  it("a 1 MiB line of needles is one candidate, parsed once", () => {
    const scanner = new Scanner(shipped);
    const huge = `${'"factory.hard_limit"'.repeat(50_000)}\n${TRIGGER}\n`;
    const events = scanner.scan({ data: Buffer.from(huge), lines: 2 });
    expect(scanner.stats).toMatchObject({ linesRead: 2, candidates: 2, malformed: 1 });
    expect(events).toHaveLength(1);
  });
});

describe("a real operator reading hostile lines", () => {
  let dir: string;
  let operator: TestOperator | undefined;
  beforeAll(async () => {
    dir = await tempDir("reclaim-fuzz-lines-");
  });
  afterAll(async () => {
    await operator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps reading after deep, huge, binary and mistyped lines, counts them, and opens the one real incident", async () => {
    const logFile = join(dir, "factory.log");
    await writeFile(logFile, "");
    // Dry run: what matters here is what it decides, not a factory to call.
    operator = await startTestOperator({ dir, source: `file:${logFile}`, control: "http://127.0.0.1:9", dryRun: true });
    const now = new Date().toISOString();
    const line = (fields: Record<string, unknown>): string => JSON.stringify({ severity: "ERROR", time: now, event: "factory.hard_limit", pod: "p", ...fields });
    const deep = 200_000;
    const hostile = [
      line({ userId: "deep-user", nested: JSON.parse(`${"[".repeat(1000)}${"]".repeat(1000)}`) as unknown }),
      `${line({ userId: "deeper-user" }).slice(0, -1)},"nested":${"[".repeat(deep)}${"]".repeat(deep)}}`,
      line({ userId: ["array-user"] }),
      line({ userId: { id: "object-user" } }),
      line({ userId: "../../escape" }),
      line({ event: ["factory.hard_limit"], userId: "array-event-user" }),
      line({ time: "yesterday-ish", userId: "no-time-user" }),
      Buffer.from([0xff, 0xfe, 0x00, 0x22, 0x0d]).toString("latin1"),
      `"factory.hard_limit" ${"x".repeat(2 * 1024 * 1024)}`, // over the 1 MiB line cap
      "{".repeat(10_000),
    ];
    await appendFile(logFile, `${hostile.join("\n")}\n${line({ userId: "real-user" })}\n`);
    const all = await operator.until((incidents) => incidents.some((i) => i.target.userId === "real-user"), "the real trigger");
    // The deep line within the bound (1,000 levels is beyond it too) and every other hostile line: no incident.
    expect(all.map((i) => i.target.userId)).toEqual(["real-user"]);
    const metrics = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    const malformed = /reclaim_operator_lines_malformed_total\{[^}]*\} (\d+)/.exec(metrics);
    // deep-user, deeper-user and no-time-user; the others parse (and match nothing) or hold no needle.
    expect(Number(malformed?.[1])).toBe(3);
  });
});
