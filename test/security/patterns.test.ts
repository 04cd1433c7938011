/**
 * Pattern triggers against hostile lines: bounded by the design of the
 * engine, asserted by input size and by counted steps — never by the clock.
 *
 * - Every shipped rule (rules/*.yaml) is run against hostile entries: 1 MiB
 *   messages made of its own needles and of the outage wording, nested
 *   brackets, every byte. The shipped rules match on structure (event,
 *   severity, fields); any `pattern` they hold must be compiled by RE2.
 * - The scanner's work on a hostile batch is counted: at most one candidate
 *   and one parse per line, however the needles are arranged in it.
 * - Patterns a rule author might write that backtrack catastrophically in a
 *   JavaScript RegExp are either refused at load (with file:line:col) or
 *   compiled by RE2 (re2js, linear time) and then complete on 100 KB inputs
 *   for which a backtracking engine would need more than 2^100000 steps.
 */
import { rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { RE2JS as RE2JSClass } from "re2js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutageMessage } from "../../src/contract/events.js";
import type { LogEvent } from "../../src/operator/sources/event.js";
import { compilePattern, type CompiledRule } from "../../src/operator/rules/compile.js";
import { loadRules, type LoadedRule } from "../../src/operator/rules/load.js";
import { scanBatch, Scanner } from "../../src/operator/sources/scan.js";
import { tempDir } from "../support/operator.js";

/** re2js's class as compile.ts loads it: its CommonJS build, required on the first pattern (ADR 40). */
const { RE2JS } = createRequire(import.meta.url)("re2js") as { RE2JS: typeof RE2JSClass };

const MiB = 1024 * 1024;
let shipped: LoadedRule[];
let dir: string;
beforeAll(async () => {
  const loaded = await loadRules(["rules"]);
  expect(loaded.errors).toEqual([]);
  shipped = loaded.rules;
  expect(shipped.length).toBeGreaterThan(0);
  dir = await tempDir("reclaim-sec-patterns-");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function entry(message: string, fields: Record<string, unknown> = {}): LogEvent {
  return {
    time: Date.now(),
    severity: "ERROR",
    message,
    event: "factory.hard_limit",
    fields: { event: "factory.hard_limit", userId: "u1", pod: "p", managers: 20, limit: 20, ...fields },
    resource: {},
    insertId: null,
  };
}

/** Hostile message texts of ~1 MiB each. */
const HOSTILE: [string, string][] = [
  ["the outage wording, repeated", OutageMessage.hardLimit("victim", 20, 20).repeat(MiB / 80)],
  ["one character", "a".repeat(MiB)],
  ["nested brackets", `${"([{".repeat(MiB / 6)}${"}])".repeat(MiB / 6)}`],
  ["quotes and backslashes", '\\"'.repeat(MiB / 2)],
  ["every byte value", Buffer.from(Array.from({ length: MiB }, (_, i) => i % 256)).toString("latin1")],
  ["needles of every rule", '"factory.hard_limit""factory.error"'.repeat(MiB / 36)],
];

describe("the shipped rules", () => {
  it("hold no pattern that is not RE2: any `pattern` compiles with re2js", () => {
    for (const { rule, file } of shipped) {
      const pattern = rule.spec.trigger.log?.pattern;
      if (pattern !== undefined) expect(compilePattern(pattern), `${file}: ${rule.metadata.name}`).toBeInstanceOf(RE2JS);
    }
  });

  it.each(HOSTILE)("complete on a 1 MiB message of %s, deciding from structure only", (_label, message) => {
    for (const { compiled } of shipped) {
      const log = compiled.rule.spec.trigger.log;
      const verdict = compiled.match(entry(message));
      // The same entry with an innocent message gets the same verdict: the message does not decide.
      expect(verdict === null, compiled.name).toBe(compiled.match(entry("ok")) === null);
      if (log !== undefined && log.pattern === undefined) expect(verdict === null).toBe(compiled.match(entry("")) === null);
    }
  });
});

describe("the scanner's work on hostile batches is bounded by the number of lines", () => {
  const rules = (): CompiledRule[] => shipped.map((r) => r.compiled);
  const batches: [string, string][] = [
    ["one 4 MiB line made of needles", '"factory.hard_limit"'.repeat((4 * MiB) / 20)],
    ["needle fragments that never complete", '"factory.hard_limi'.repeat((4 * MiB) / 18)],
    ["200,000 short lines, every one a candidate", Array.from({ length: 200_000 }, (_, i) => `"factory.error"${i}`).join("\n")],
    ["200,000 lines of two needles each", '"factory.error""factory.hard_limit"\n'.repeat(200_000)],
    ["alternating near misses", '"factory.errorx"factory.hard_limit "factory.error\n'.repeat(100_000)],
  ];

  it.each(batches)("%s: each line is a candidate at most once, parsed at most once", (_label, text) => {
    const data = Buffer.from(text);
    const lines = text.split("\n").length;
    let candidates = 0;
    const needles = rules().flatMap((r) => r.needles ?? []).map((n) => Buffer.from(n));
    scanBatch(data, needles, () => candidates++);
    expect(candidates).toBeLessThanOrEqual(lines);
    const scanner = new Scanner(rules());
    scanner.scan({ data, lines });
    expect(scanner.stats.candidates).toBeLessThanOrEqual(lines);
    expect(scanner.stats.malformed + scanner.stats.ignored).toBeLessThanOrEqual(scanner.stats.candidates);
  });
});

describe("patterns a rule author might write", () => {
  /** Classic catastrophic-backtracking patterns, and what a hostile message against each looks like. */
  const EVIL: [string, string][] = [
    ["(a+)+$", `${"a".repeat(100_000)}!`],
    ["(a|a)*$", `${"a".repeat(100_000)}!`],
    ["(a|aa)+$", `${"a".repeat(100_000)}!`],
    ["(.*a){20}", "a".repeat(100_000)],
    ["^(([a-z])+.)+[A-Z]([a-z])+$", `${"a".repeat(100_000)}!`],
    ["(x+x+)+y", "x".repeat(100_000)],
    ["(\\w+\\s?)*$", `${"word ".repeat(20_000)}!`],
    ["HARD LIMIT: User (?P<user>\\S+) still over limit.*\\((\\d+)/(\\d+)\\)$", `HARD LIMIT: User ${"x".repeat(100_000)} still over limit ${"(1/".repeat(10_000)}`],
  ];

  function ruleWithPattern(pattern: string): string {
    return `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: evil }
spec:
  trigger: { log: { event: factory.hard_limit, pattern: ${JSON.stringify(pattern)} } }
  key: [userId]
  ladder: [ { rung: probe } ]
  incident: { title: "{{userId}}" }
`;
  }

  it.each(EVIL)("%s loads through RE2 and completes on a 100 KB hostile message (a backtracking engine: > 2^100000 steps)", async (pattern, message) => {
    const file = join(dir, "evil.yaml");
    await writeFile(file, ruleWithPattern(pattern));
    const { rules, errors } = await loadRules([file]);
    expect(errors).toEqual([]);
    const [rule] = rules;
    expect(compilePattern(pattern)).toBeInstanceOf(RE2JS);
    expect(message.length).toBeGreaterThanOrEqual(100_000);
    const verdict = rule!.compiled.match(entry(message));
    // Completing is the property; the verdict agrees with RE2 itself on the same input.
    expect(verdict !== null).toBe(RE2JS.compile(pattern).matcher(message).find());
  });

  it.each([
    ["a backreference", "(a+)\\1"],
    ["a lookahead", "(?=(a+))a*b\\1"],
    ["a lookbehind", "(?<=a+)b"],
    ["a repeat count RE2 refuses (over 1000)", "(.*){1,32000}[bc]"],
    ["a possessive quantifier", "a++b"],
  ])("%s is refused at load, at the pattern's line and column", async (_label, pattern) => {
    const file = join(dir, "refused.yaml");
    await writeFile(file, ruleWithPattern(pattern));
    const { rules, errors } = await loadRules([file]);
    expect(rules).toEqual([]);
    expect(errors.map((e) => e.format())).toEqual([expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:5:\\d+: spec\\.trigger\\.log\\.pattern: invalid RE2 pattern`))]);
  });
});
