import { describe, expect, it } from "vitest";
import { MAX_EVENT_NAMES, replay } from "../../src/operator/replay.js";
import { compileRule } from "../../src/operator/rules/compile.js";
import { RemediationRule } from "../../src/operator/rules/schema.js";
import type { LogEvent } from "../../src/operator/sources/event.js";
import { hardLimit, rule, T0 } from "../support/rules.js";

describe("replay", () => {
  const log = [
    hardLimit("u1", T0),
    { ...hardLimit("u1", T0 + 1000), event: "factory.error", fields: { event: "factory.error", userId: "u1", pod: "factory-0", limit: 20 } },
    hardLimit("u2", T0 + 2000),
    hardLimit("u1", T0 + 3 * 60_000),
    hardLimit("u2", T0 + 2000), // the same entry again
    hardLimit("u1", T0 + 20 * 60_000),
    hardLimit("u2", T0 + 2000), // and again, beyond maxAge (15 min) of the newest: stale, whatever it repeats
  ];

  it("reports which incidents would open, when, for which key, which rungs, and what guards suppressed", async () => {
    const report = await replay([rule("lockout", { guards: { cooldown: "10m" } })], log);
    expect(report.incidents.map((i) => [i.at, i.key.userId, i.action, i.rungs.join(">"), i.suppressed])).toEqual([
      ["2026-11-26T12:00:00.000Z", "u1", "act", "probe>force", { cooldown: 2 }],
      ["2026-11-26T12:00:02.000Z", "u2", "act", "probe>force", {}],
      ["2026-11-26T12:20:00.000Z", "u1", "act", "probe>force", {}],
    ]);
    expect(report.dropped.duplicate).toBe(1);
    expect(report.dropped.stale).toBe(1);
  });

  it("gives the same answer every run", async () => {
    const a = await replay([rule("lockout")], log);
    const b = await replay([rule("lockout")], log);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });
});

describe("replay: why entries did or did not open an incident", () => {
  const at = (s: number): number => T0 + s * 1000;
  const entry = (over: Partial<LogEvent> & { fields?: Record<string, unknown> }, s: number): LogEvent => {
    const base = hardLimit("u1", at(s));
    return { ...base, ...over, fields: { ...base.fields, ...over.fields } };
  };

  it("counts, per rule, each step an entry fell at: its event, minSeverity, where, pattern, the key, maxAge, the threshold", async () => {
    const lockout = rule("lockout", {
      trigger: { log: { event: ["factory.hard_limit", "factory.error"], minSeverity: "ERROR", where: { managers: { gte: 20 } }, pattern: "HARD LIMIT" } },
      threshold: { count: 3, window: "1m" },
    });
    const log: LogEvent[] = [
      entry({ event: "factory.resource_limit", fields: { event: "factory.resource_limit" } }, 0), // another event
      entry({ event: null, fields: { event: undefined } }, 1), // no event
      entry({ severity: "WARNING" }, 2), // below minSeverity
      entry({ fields: { managers: 3 } }, 3), // where not met
      entry({ message: "something else" }, 4), // pattern not found
      entry({ fields: { pod: undefined } }, 5), // no pod (a key field)
      entry({ fields: { userId: "not a user id!" } }, 6), // invalid user id
      entry({}, 7), // counted
      entry({}, 7), // the same entry again
      entry({ fields: { userId: "u2" } }, 20 * 60), // counted; now the newest: 20 minutes on
      entry({ fields: { userId: "u3" } }, 8), // older than maxAge (15m) against the newest
    ];
    const report = await replay([lockout], log);
    expect(report.incidents).toEqual([]);
    expect(report.diagnosis.rules).toEqual([
      {
        rule: "lockout",
        trigger: "log",
        entries: 11,
        events: { "factory.hard_limit": 9, "factory.error": 0 },
        otherEvent: 2,
        belowSeverity: 1,
        whereNotMet: { managers: 1 },
        untrusted: {},
        patternNotFound: 1,
        matched: 6,
        duplicate: 1,
        unkeyed: { pod: 1, "userId (invalid)": 1 },
        stale: 1,
        counted: 2,
        triggers: 0,
      },
    ]);
    expect(report.diagnosis.events).toEqual({ "factory.hard_limit": 9, "(none)": 1, "factory.resource_limit": 1, "factory.error": 0 });
  });

  it("counts the thresholds reached, and says a metric rule never fires in a replay of logs", async () => {
    const metric = compileRule(
      RemediationRule.parse({
        apiVersion: "reclaim.dev/v1",
        kind: "RemediationRule",
        metadata: { name: "at-limit" },
        spec: { trigger: { metric: { query: "max(x)" } }, key: ["userId"], ladder: [{ rung: "probe" }] },
      }),
    );
    const report = await replay([rule("lockout"), metric], [hardLimit("u1", T0), hardLimit("u2", T0 + 1)]);
    expect(report.incidents).toHaveLength(2);
    expect(report.diagnosis.rules.map((d) => [d.rule, d.trigger, d.matched, d.counted, d.triggers])).toEqual([
      ["lockout", "log", 2, 0, 2],
      ["at-limit", "metric", 0, 0, 0],
    ]);
  });

  it("keeps at most MAX_EVENT_NAMES event names (the rules' own always), the rest counted together, long names cut", async () => {
    const log = Array.from({ length: 200 }, (_, i) => entry({ event: `noise.${i}`, fields: { event: `noise.${i}` } }, i));
    log.push(entry({}, 300), entry({ event: "x".repeat(500), fields: {} }, 301));
    const report = await replay([rule("lockout")], log);
    const names = Object.keys(report.diagnosis.events);
    expect(names.length).toBeLessThanOrEqual(MAX_EVENT_NAMES + 1);
    expect(report.diagnosis.events["factory.hard_limit"]).toBe(1);
    expect(report.diagnosis.events["factory.error"]).toBe(0);
    expect(report.diagnosis.events["(other)"]).toBe(202 - (MAX_EVENT_NAMES - 2) - 1);
    expect(Object.values(report.diagnosis.events).reduce((a, b) => a + b, 0)).toBe(202);
    expect(names.every((n) => n.length <= 101)).toBe(true);
  });
});
