/**
 * A log line's keys are data, never the shape of the objects that hold
 * them: a top-level `"__proto__"` key is kept as a field of that name (it
 * does not become the prototype of the entry's fields, whose properties
 * would then read as fields the line does not have), and a field name that
 * is only inherited (`toString`, `constructor`) has no value. Otherwise a
 * line without a `userId` could make the detector act on one that appears
 * nowhere in the incident's evidence.
 */
import { describe, expect, it } from "vitest";
import { keyOf } from "../../../src/operator/detect/detector.js";
import { compileRule, fieldValue } from "../../../src/operator/rules/compile.js";
import { RemediationRule } from "../../../src/operator/rules/schema.js";
import { evidenceOf } from "../../../src/operator/incidents/record.js";
import { replay } from "../../../src/operator/replay.js";
import { structToJson } from "../../../src/operator/sources/gcp/decode.js";
import { parseLine } from "../../../src/operator/sources/scan.js";
import type { LogEvent } from "../../../src/operator/sources/event.js";

const USER = "105945141827483856053";

function parsed(line: string): LogEvent {
  const event = parseLine(Buffer.from(line));
  if (typeof event === "string") throw new Error(`not an entry: ${event}`);
  return event;
}

const rule = compileRule(
  RemediationRule.parse({
    apiVersion: "reclaim.dev/v1",
    kind: "RemediationRule",
    metadata: { name: "hard-limit" },
    spec: { trigger: { log: { event: "factory.hard_limit" } }, key: ["userId", "pod"], ladder: [{ rung: "probe" }] },
  }),
);

describe("a log line's keys", () => {
  it("a top-level __proto__ object is a field of that name, not the fields' prototype: the user it names is not the line's", () => {
    const event = parsed(
      `{"time":"2026-12-05T08:00:00Z","severity":"ERROR","event":"factory.hard_limit","pod":"p-0","__proto__":{"userId":"${USER}"},"message":"x"}`,
    );
    expect(Object.getPrototypeOf(event.fields)).toBe(Object.prototype);
    expect(Object.keys(event.fields)).toEqual(["event", "pod", "__proto__"]);
    expect(fieldValue(event, "userId")).toBeUndefined();
    // The evidence keeps it as it came.
    expect(JSON.parse(JSON.stringify(event.fields))).toEqual(JSON.parse(`{"event":"factory.hard_limit","pod":"p-0","__proto__":{"userId":"${USER}"}}`));
    // Nobody to act on: the line names no user of its own.
    expect(keyOf(rule, event)).toBeNull();
  });

  it("the same line with its own userId is keyed on that user", () => {
    const event = parsed(`{"time":"2026-12-05T08:00:00Z","severity":"ERROR","event":"factory.hard_limit","pod":"p-0","userId":"${USER}","message":"x"}`);
    expect(keyOf(rule, event)).toMatchObject({ userId: USER, pod: "p-0" });
  });

  it("a Cloud Logging entry's __proto__ payload key and resource label are kept as data too", () => {
    const entry = `{"timestamp":"2026-12-05T08:00:00Z","severity":"ERROR","resource":{"type":"k8s_container","labels":{"pod_name":"p-1","__proto__":"x"}},"jsonPayload":{"event":"factory.hard_limit","__proto__":{"userId":"${USER}"}}}`;
    const event = parsed(entry);
    expect(fieldValue(event, "userId")).toBeUndefined();
    expect(Object.keys(event.resource)).toEqual(["pod_name", "__proto__"]);
    expect(fieldValue(event, "resource.__proto__")).toBe("x");
    expect(fieldValue(event, "pod")).toBe("p-1");
  });

  it("an inherited name is no field", () => {
    const event = parsed('{"time":"2026-12-05T08:00:00Z","event":"e","message":"x"}');
    for (const name of ["toString", "constructor", "hasOwnProperty", "resource.toString"]) expect(fieldValue(event, name)).toBeUndefined();
  });

  it("a protobuf Struct from the Cloud Logging API decodes a __proto__ key as data as well", () => {
    const payload = structToJson({
      fields: {
        event: { stringValue: "factory.hard_limit" },
        // A computed key: an own property named __proto__, as the decoded wire map has it.
        ["__proto__"]: { structValue: { fields: { userId: { stringValue: USER } } } },
      },
    });
    expect(Object.getPrototypeOf(payload)).toBe(Object.prototype);
    expect(Object.keys(payload)).toEqual(["event", "__proto__"]);
    expect((payload as { userId?: unknown }).userId).toBeUndefined();
  });

  it("an incident's evidence keeps a field named __proto__, even null, as a field", () => {
    const evidence = evidenceOf(parsed(`{"time":"2026-12-05T08:00:00Z","event":"factory.hard_limit","__proto__":null,"userId":"${USER}","message":"x"}`));
    expect(Object.getPrototypeOf(evidence.fields)).toBe(Object.prototype);
    expect(Object.entries(evidence.fields)).toEqual([
      ["event", "factory.hard_limit"],
      ["__proto__", null],
      ["userId", USER],
    ]);
  });

  it("replay counts entries whose event is named __proto__ under that name", async () => {
    const line = '{"time":"2026-12-05T08:00:00Z","event":"__proto__","message":"x"}';
    const report = await replay([rule], [parsed(line), parsed(line)]);
    expect(Object.entries(report.diagnosis.events)).toContainEqual(["__proto__", 2]);
  });
});
