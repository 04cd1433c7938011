/**
 * Compiled rules: which log entries a trigger matches (events, severity,
 * field conditions, resource labels, RE2 patterns with named groups), RE2's
 * linear time on an adversarial message, and incident titles.
 */
import { describe, expect, it } from "vitest";
import type { LogEvent } from "../../../src/operator/sources/event.js";
import { compilePattern, compileRule, PatternError } from "../../../src/operator/rules/compile.js";
import { RemediationRule, type RemediationRuleInput } from "../../../src/operator/rules/schema.js";
import { renderTitle } from "../../../src/operator/rules/template.js";

type LogTriggerInput = RemediationRuleInput["spec"]["trigger"]["log"];

function ruleWith(log: LogTriggerInput): RemediationRule {
  return RemediationRule.parse({
    apiVersion: "reclaim.dev/v1",
    kind: "RemediationRule",
    metadata: { name: "test-rule" },
    spec: { trigger: { log }, ladder: [{ rung: "probe" }] },
  });
}

/** A factory HARD LIMIT entry; `over` replaces any part of it. */
function entry(over: Partial<LogEvent> = {}): LogEvent {
  return {
    time: Date.parse("2024-05-01T12:00:00Z"),
    severity: "ERROR",
    message: "HARD LIMIT: User 105945141827451681156 still over limit after cleanup (20/20)",
    event: "factory.hard_limit",
    fields: { userId: "105945141827451681156", managers: 20, limit: 20, pod: "factory-0" },
    resource: { pod_name: "factory-0", namespace_name: "chat" },
    insertId: null,
    ...over,
  };
}

const fields = (extra: Record<string, unknown>): Partial<LogEvent> => ({ fields: { ...entry().fields, ...extra } });

describe("compileRule: matching", () => {
  it.each<[string, LogTriggerInput, Partial<LogEvent>, boolean]>([
    // event: one name or a list
    ["one event, same", { event: "factory.hard_limit" }, {}, true],
    ["one event, other", { event: "factory.error" }, {}, false],
    ["event list, member", { event: ["factory.error", "factory.hard_limit"] }, {}, true],
    ["event list, not a member", { event: ["factory.error", "factory.refused"] }, {}, false],
    ["event, entry without one", { event: "factory.hard_limit" }, { event: null }, false],
    // minSeverity: at or above
    ["minSeverity equal", { event: "factory.hard_limit", minSeverity: "ERROR" }, {}, true],
    ["minSeverity above", { event: "factory.hard_limit", minSeverity: "ERROR" }, { severity: "CRITICAL" }, true],
    ["minSeverity below", { event: "factory.hard_limit", minSeverity: "ERROR" }, { severity: "WARNING" }, false],
    ["minSeverity, DEFAULT entry", { event: "factory.hard_limit", minSeverity: "DEBUG" }, { severity: "DEFAULT" }, false],
    ["no minSeverity: any", { event: "factory.hard_limit" }, { severity: "DEFAULT" }, true],
    // where: a scalar is equality
    ["scalar, equal", { where: { pod: "factory-0" } }, {}, true],
    ["scalar, other", { where: { pod: "factory-1" } }, {}, false],
    ["scalar, no type coercion", { where: { managers: "20" } }, {}, false],
    ["eq", { where: { managers: { eq: 20 } } }, {}, true],
    ["eq, other", { where: { managers: { eq: 19 } } }, {}, false],
    ["ne", { where: { pod: { ne: "factory-1" } } }, {}, true],
    ["ne, equal", { where: { pod: { ne: "factory-0" } } }, {}, false],
    ["ne, field absent", { where: { reason: { ne: "limit" } } }, {}, true],
    ["in", { where: { pod: { in: ["factory-0", "factory-1"] } } }, {}, true],
    ["in, not a member", { where: { pod: { in: ["factory-1", "factory-2"] } } }, {}, false],
    ["notIn", { where: { pod: { notIn: ["factory-1"] } } }, {}, true],
    ["notIn, a member", { where: { pod: { notIn: ["factory-0"] } } }, {}, false],
    ["gt", { where: { managers: { gt: 19 } } }, {}, true],
    ["gt, equal", { where: { managers: { gt: 20 } } }, {}, false],
    ["gte, equal", { where: { managers: { gte: 20 } } }, {}, true],
    ["gte, below", { where: { managers: { gte: 21 } } }, {}, false],
    ["lt", { where: { managers: { lt: 21 } } }, {}, true],
    ["lt, equal", { where: { managers: { lt: 20 } } }, {}, false],
    ["lte, equal", { where: { managers: { lte: 20 } } }, {}, true],
    ["lte, above", { where: { managers: { lte: 19 } } }, {}, false],
    ["a range", { where: { managers: { gte: 10, lt: 30 } } }, {}, true],
    ["a range, outside", { where: { managers: { gte: 10, lt: 20 } } }, {}, false],
    ["gt on a string field", { where: { pod: { gt: 0 } } }, {}, false],
    ["gt on a missing field", { where: { removed: { gt: 0 } } }, {}, false],
    ["exists", { where: { userId: { exists: true } } }, {}, true],
    ["exists, absent", { where: { userId: { exists: true } } }, { fields: {} }, false],
    ["exists, null", { where: { userId: { exists: true } } }, fields({ userId: null }), false],
    ["exists false, absent", { where: { reason: { exists: false } } }, {}, true],
    ["exists false, present", { where: { userId: { exists: false } } }, {}, false],
    ["all conditions must hold", { where: { pod: "factory-0", managers: { gt: 20 } } }, {}, false],
    ["boolean field", { where: { degraded: true } }, fields({ degraded: true }), true],
    // resource.X reads a resource label, not a payload field
    ["resource label", { where: { "resource.namespace_name": "chat" } }, {}, true],
    ["resource label, other", { where: { "resource.namespace_name": "prod" } }, {}, false],
    ["resource label, not a payload field", { where: { "resource.managers": 20 } }, {}, false],
    ["resource label, absent", { where: { "resource.cluster": { exists: true } } }, {}, false],
    // pattern: searched in the message
    ["pattern found", { pattern: "HARD LIMIT" }, {}, true],
    ["pattern not found", { pattern: "^UNEXPECTED" }, {}, false],
    ["pattern anchored", { pattern: "\\(20/20\\)$" }, {}, true],
    ["event and pattern, both", { event: "factory.hard_limit", pattern: "still over limit" }, {}, true],
    ["event and pattern, pattern fails", { event: "factory.hard_limit", pattern: "maximum number" }, {}, false],
  ])("%s", (_name, log, over, matches) => {
    expect(compileRule(ruleWith(log)).match(entry(over)) !== null).toBe(matches);
  });

  it.each<[string, string, Record<string, string> | null]>([
    ["P-style groups", "User (?P<user>\\d+) still over limit after cleanup \\((?P<managers>\\d+)/(?P<limit>\\d+)\\)", { user: "105945141827451681156", managers: "20", limit: "20" }],
    ["angle-bracket groups", "User (?<user>\\d+)", { user: "105945141827451681156" }],
    ["no groups", "HARD LIMIT", {}],
    ["an optional group that did not take part", "(?P<hard>HARD)|(?P<soft>SOFT)", { hard: "HARD" }],
    ["no match", "(?P<user>nobody)", null],
  ])("pattern with %s yields its named groups", (_name, pattern, groups) => {
    const match = compileRule(ruleWith({ pattern })).match(entry());
    expect(match === null ? null : match.groups).toEqual(groups);
  });

  it("lists the JSON spelling of its events as needles, or null when it has none", () => {
    expect(compileRule(ruleWith({ event: ["factory.hard_limit", "factory.error"] })).needles).toEqual(['"factory.hard_limit"', '"factory.error"']);
    expect(compileRule(ruleWith({ pattern: "HARD LIMIT" })).needles).toBeNull();
  });
});

describe("RE2 patterns", () => {
  it("matches an evil pattern against a 100 kB adversarial message (linear time, no backtracking)", () => {
    const rule = compileRule(ruleWith({ pattern: "(a+)+$" }));
    const attack = `${"a".repeat(100_000)}!`; // catastrophic for a backtracking engine
    expect(rule.match(entry({ message: attack }))).toBeNull();
    expect(rule.match(entry({ message: `!${"a".repeat(100_000)}` }))).not.toBeNull();
  });

  it.each([
    ["a backreference", "(a)\\1"],
    ["a lookbehind", "(?<=x)y"],
    ["a lookahead", "x(?=y)"],
    ["an unclosed class", "[a-"],
  ])("rejects %s with a PatternError", (_name, pattern) => {
    expect(() => compilePattern(pattern)).toThrow(PatternError);
    expect(() => compileRule(ruleWith({ pattern }))).toThrow(expect.objectContaining({ code: "ERR_RECLAIM_PATTERN" }));
  });
});

describe("renderTitle", () => {
  it.each<[string, string, Record<string, unknown>, string]>([
    ["fields", "Chat lockout: user {{userId}} at {{managers}}/{{limit}} on {{pod}}", { userId: "u1", managers: 20, limit: 20, pod: "factory-0" }, "Chat lockout: user u1 at 20/20 on factory-0"],
    ["spaces inside the braces", "{{ userId }}", { userId: "u1" }, "u1"],
    ["a pattern group", "user {{match.user}}", { "match.user": "42" }, "user 42"],
    ["the rule name", "{{rule}}: {{userId}}", { rule: "factory-lockout", userId: "u1" }, "factory-lockout: u1"],
    ["a boolean", "degraded={{degraded}}", { degraded: false }, "degraded=false"],
    ["an absent value", "user {{userId}} on {{pod}}", { userId: "u1" }, "user u1 on ?"],
    ["an object value", "{{fields}}", { fields: { a: 1 } }, "?"],
    ["a null value", "{{userId}}", { userId: null }, "?"],
    ["no placeholders", "Chat lockout", { userId: "u1" }, "Chat lockout"],
    ["control characters", "{{reason}}", { reason: "a\nb\tc\u001bd" }, "a b c d"],
    ["a long value, cut at 80", "{{userId}}", { userId: "x".repeat(200) }, `${"x".repeat(80)}…`],
    ["a value of exactly 80", "{{userId}}", { userId: "y".repeat(80) }, "y".repeat(80)],
    ["no template injection", "{{userId}}", { userId: "{{rule}}", rule: "secret" }, "{{rule}}"],
  ])("%s", (_name, template, values, expected) => {
    expect(renderTitle(template, values)).toBe(expected);
  });
});

describe("compileRule: explain", () => {
  const trigger: LogTriggerInput = {
    event: "factory.hard_limit",
    minSeverity: "ERROR",
    where: { managers: { gte: 20 }, pod: { exists: true } },
    pattern: "HARD LIMIT: User (?P<user>\\d+)",
  };
  it.each<[string, Partial<LogEvent>, string]>([
    ["another event", { event: "factory.error" }, "event"],
    ["no event", { event: null }, "event"],
    ["below minSeverity", { severity: "WARNING" }, "severity"],
    ["the first where condition that fails", fields({ managers: 3, pod: undefined }), "where:managers"],
    ["a later where condition", fields({ pod: undefined }), "where:pod"],
    ["the pattern not in the message", { message: "something else" }, "pattern"],
  ])("says why an entry does not match: %s", (_name, over, miss) => {
    const rule = compileRule(ruleWith(trigger));
    expect(rule.explain(entry(over))).toBe(miss);
    expect(rule.match(entry(over))).toBeNull();
  });

  it("gives the match, with its groups, when it matches, as match does", () => {
    const rule = compileRule(ruleWith(trigger));
    expect(rule.explain(entry())).toEqual({ groups: { user: "105945141827451681156" } });
    expect(rule.match(entry())).toEqual(rule.explain(entry()));
  });

  it("says a metric rule matches no log entry", () => {
    const metric = compileRule(
      RemediationRule.parse({
        apiVersion: "reclaim.dev/v1",
        kind: "RemediationRule",
        metadata: { name: "m" },
        spec: { trigger: { metric: { query: "max(x)" } }, ladder: [{ rung: "probe" }] },
      }),
    );
    expect(metric.explain(entry())).toBe("metric");
    expect(metric.match(entry())).toBeNull();
  });
});
