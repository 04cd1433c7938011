/**
 * The server-side Cloud Logging filter built from the rules: events OR-ed,
 * the lowest minSeverity, the user's filter AND-ed, metric rules ignored,
 * values quoted. Checked as text and against the fake server's evaluator.
 */
import { describe, expect, it } from "vitest";
import {
  andFilters,
  buildFilter,
  GcpFilterError,
  MAX_FILTER_LENGTH,
  quoteFilterValue,
  ruleSelection,
  timestampAtLeast,
} from "../../../src/operator/sources/gcp-filter.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { compileFilter } from "../../support/gcp/filter.js";
import { factoryEntry } from "../../support/gcp/entries.js";
import { rule } from "../../support/rules.js";

type LogInput = { event?: string | string[]; minSeverity?: "DEFAULT" | "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL"; where?: Record<string, unknown>; pattern?: string };

function logRule(name: string, log: LogInput): CompiledRule {
  return rule(name, { trigger: { log: log as never } });
}

function metricRule(name: string): CompiledRule {
  return rule(name, { trigger: { metric: { query: "up == 0" } } });
}

const hardLimit = logRule("hard-limit", { event: ["factory.hard_limit", "factory.error"], minSeverity: "ERROR" });
const refused = logRule("refused", { event: "factory.refused", minSeverity: "WARNING" });
const anySeverity = logRule("any-severity", { event: "factory.slow" });
const byPattern = logRule("by-pattern", { pattern: "HARD LIMIT", minSeverity: "INFO" });
const defaultSeverity = logRule("default-severity", { event: "factory.x", minSeverity: "DEFAULT" });

describe("buildFilter", () => {
  it.each<[string, CompiledRule[], string | undefined, string]>([
    ["one rule, two events", [hardLimit], undefined, '(jsonPayload.event="factory.error" OR jsonPayload.event="factory.hard_limit") AND severity>=ERROR'],
    ["one event needs no parentheses", [refused], undefined, 'jsonPayload.event="factory.refused" AND severity>=WARNING'],
    [
      "events are united, the lowest severity wins",
      [hardLimit, refused],
      undefined,
      '(jsonPayload.event="factory.error" OR jsonPayload.event="factory.hard_limit" OR jsonPayload.event="factory.refused") AND severity>=WARNING',
    ],
    ["a rule without minSeverity lifts the severity restriction", [hardLimit, anySeverity], undefined, '(jsonPayload.event="factory.error" OR jsonPayload.event="factory.hard_limit" OR jsonPayload.event="factory.slow")'],
    ["minSeverity DEFAULT restricts nothing", [defaultSeverity], undefined, 'jsonPayload.event="factory.x"'],
    ["a rule without events lifts the event restriction", [hardLimit, byPattern], undefined, "severity>=INFO"],
    ["metric rules contribute nothing", [hardLimit, metricRule("up")], undefined, '(jsonPayload.event="factory.error" OR jsonPayload.event="factory.hard_limit") AND severity>=ERROR'],
    ["only metric rules: nothing", [metricRule("up")], undefined, ""],
    ["no rules: the extra filter alone", [], 'resource.type="k8s_container"', 'resource.type="k8s_container"'],
    ["the extra filter is AND-ed", [refused], 'resource.labels.namespace_name="chat"', 'jsonPayload.event="factory.refused" AND severity>=WARNING AND resource.labels.namespace_name="chat"'],
    [
      "a compound extra filter is parenthesized",
      [refused],
      'resource.type="k8s_container" OR resource.type="gce_instance"',
      'jsonPayload.event="factory.refused" AND severity>=WARNING AND (resource.type="k8s_container" OR resource.type="gce_instance")',
    ],
    ["an extra filter in parentheses is kept as is", [refused], "(a=1 OR b=2)", 'jsonPayload.event="factory.refused" AND severity>=WARNING AND (a=1 OR b=2)'],
    ["a blank extra filter is ignored", [refused], "   ", 'jsonPayload.event="factory.refused" AND severity>=WARNING'],
  ])("%s", (_name, rules, extra, expected) => {
    expect(buildFilter(rules, extra)).toBe(expected);
  });

  it("quotes event names with quotes and backslashes", () => {
    const odd = logRule("odd", { event: ['say "hi"', "back\\slash"] });
    expect(buildFilter([odd])).toBe('(jsonPayload.event="back\\\\slash" OR jsonPayload.event="say \\"hi\\"")');
    // The evaluator reads the escapes back to the original names.
    const matches = compileFilter(buildFilter([odd]));
    expect(matches(factoryEntry(Date.now(), { event: 'say "hi"' }))).toBe(true);
    expect(matches(factoryEntry(Date.now(), { event: "back\\slash" }))).toBe(true);
    expect(matches(factoryEntry(Date.now(), { event: "say hi" }))).toBe(false);
  });

  it("lets through exactly what the rules could match, as the server reads it", () => {
    const matches = compileFilter(buildFilter([hardLimit, refused], 'resource.labels.namespace_name="chat"'));
    expect(matches(factoryEntry(Date.now(), { event: "factory.hard_limit", severity: "ERROR" }))).toBe(true);
    expect(matches(factoryEntry(Date.now(), { event: "factory.refused", severity: "WARNING" }))).toBe(true);
    expect(matches(factoryEntry(Date.now(), { event: "factory.refused", severity: "INFO" }))).toBe(false);
    expect(matches(factoryEntry(Date.now(), { event: "factory.connection_opened", severity: "ERROR" }))).toBe(false);
    const elsewhere = factoryEntry(Date.now(), { event: "factory.hard_limit" });
    elsewhere.resource!.labels!.namespace_name = "other";
    expect(matches(elsewhere)).toBe(false);
  });

  it("refuses control characters with a stable code", () => {
    const bad = logRule("bad", { event: "line\nbreak" });
    expect(() => buildFilter([bad])).toThrow(expect.objectContaining({ code: "ERR_RECLAIM_GCP_FILTER_VALUE" }));
    expect(() => quoteFilterValue("\u0000")).toThrow(GcpFilterError);
  });

  it("refuses a filter longer than Cloud Logging accepts", () => {
    const many = logRule("many", { event: Array.from({ length: 800 }, (_, i) => `factory.event_number_${i}`) });
    expect(() => buildFilter([many])).toThrow(expect.objectContaining({ code: "ERR_RECLAIM_GCP_FILTER_TOO_LONG" }));
    expect(MAX_FILTER_LENGTH).toBe(20_000);
  });
});

describe("filter helpers", () => {
  it.each<[string, string]>([
    ["plain", '"plain"'],
    ['a"b', '"a\\"b"'],
    ["a\\b", '"a\\\\b"'],
    ['\\"', '"\\\\\\""'],
    ["ünïcode ✓", '"ünïcode ✓"'],
  ])("quoteFilterValue(%j) is %s", (value, quoted) => {
    expect(quoteFilterValue(value)).toBe(quoted);
  });

  it.each<[(string | undefined)[], string]>([
    [[], ""],
    [["", undefined], ""],
    [["a=1"], "a=1"],
    [["a=1", "b=2"], "a=1 AND b=2"],
    [["a=1 OR b=2", "c=3"], "(a=1 OR b=2) AND c=3"],
    [["(a=1) AND (b=2)", "c=3"], "(a=1) AND (b=2) AND c=3"],
    [["(a=1) AND b=2 OR c=3", "d=4"], "((a=1) AND b=2 OR c=3) AND d=4"],
    [["NOT a=1", "b=2"], "(NOT a=1) AND b=2"],
    [['x=" AND "', "c=3"], 'x=" AND " AND c=3'],
    [['x="a)b"', "c=3"], 'x="a)b" AND c=3'],
  ])("andFilters(%j) is %j", (parts, expected) => {
    expect(andFilters(...parts)).toBe(expected);
  });

  it("writes a time bound the server honours", () => {
    expect(timestampAtLeast("2026-11-26T12:00:00.123456789Z")).toBe('timestamp>="2026-11-26T12:00:00.123456789Z"');
    const matches = compileFilter(timestampAtLeast("2026-11-26T12:00:00.5Z"));
    expect(matches(factoryEntry("2026-11-26T12:00:00.499999999Z", { event: "e" }))).toBe(false);
    expect(matches(factoryEntry("2026-11-26T12:00:00.500Z", { event: "e" }))).toBe(true);
  });

  it("summarizes what the rules select", () => {
    expect(ruleSelection([hardLimit, refused, metricRule("up")])).toEqual({
      events: ["factory.error", "factory.hard_limit", "factory.refused"],
      minSeverity: "WARNING",
      logRules: 2,
    });
    expect(ruleSelection([byPattern])).toEqual({ events: null, minSeverity: "INFO", logRules: 1 });
  });
});
