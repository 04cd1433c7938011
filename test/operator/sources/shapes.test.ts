/**
 * Shapes told from bytes (no parse), counted by the scanner for every line,
 * and the watch that raises an alarm (at most once a minute) when most of a
 * source's recent lines are not understood.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../support/clock.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import { Scanner } from "../../../src/operator/sources/scan.js";
import {
  classifyLine,
  countShapes,
  newShapeCounts,
  SHAPE_ALARM_INTERVAL_MS,
  ShapeWatch,
  type ShapeAlarm,
  type ShapeCounts,
} from "../../../src/operator/sources/shapes.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";

const factory = JSON.stringify({ severity: "ERROR", time: "2026-11-26T12:00:00Z", pod: "p0", event: "factory.hard_limit", userId: "u1", message: "HARD LIMIT" });
const bunyan = JSON.stringify({ name: "chat", hostname: "h", pid: 1, level: 50, msg: "x".repeat(100), time: "2026-11-26T12:00:00Z" });
const sink = JSON.stringify({ insertId: "a1", jsonPayload: { event: "factory.hard_limit" }, timestamp: "2026-11-26T12:00:00Z" });
const text = JSON.stringify({ insertId: "a2", textPayload: "HARD LIMIT", timestamp: "2026-11-26T12:00:00Z" });

describe("classifyLine", () => {
  it.each([
    { line: factory, shape: "json" },
    { line: bunyan, shape: "json" }, // its time key far from the start
    { line: `\uFEFF${factory}\r`, shape: "json" },
    { line: JSON.stringify({ timestamp: "2026-11-26T12:00:00Z", x: 1 }), shape: "json" },
    { line: sink, shape: "log_entry" },
    { line: text, shape: "log_entry" },
    { line: JSON.stringify({ level: "info", ts: 1.5, msg: "request timeout", timeout: 3 }), shape: "json_not_entry" },
    { line: '{"a":1}', shape: "json_not_entry" },
    { line: "[", shape: "json_fragment" },
    { line: "  {", shape: "json_fragment" },
    { line: '    "insertId": "k3x9",', shape: "json_fragment" },
    { line: "  },", shape: "json_fragment" },
    { line: '{"time":"2026-11-26T12:00:00Z","cut', shape: "json_fragment" },
    { line: "INFO:root:started", shape: "text" },
    { line: "2026-11-26 12:00:00 ERROR HARD LIMIT", shape: "text" },
    { line: "", shape: "blank" },
    { line: " \t ", shape: "blank" },
  ])("$shape: $line", ({ line, shape }) => {
    expect(classifyLine(Buffer.from(line))).toBe(shape);
  });

  it("counts a batch line by line as classifyLine does, the needles' positions shared between lines", () => {
    const lines = [factory, sink, "text", '{"a":1}', text, bunyan, "", sink, '{"no":"time here"}', factory];
    const counts = newShapeCounts();
    countShapes(Buffer.from(`${lines.join("\n")}\n`), counts);
    const want = newShapeCounts();
    for (const line of lines) want[classifyLine(Buffer.from(line))]++;
    expect(counts).toEqual(want);
    expect(counts).toMatchObject({ json: 3, log_entry: 3, text: 1, json_not_entry: 2, blank: 1 });
  });
});

describe("Scanner: shapes of every line", () => {
  const rule = { name: "r", needles: ['"factory.hard_limit"'] } as unknown as CompiledRule;

  it("counts lines that are not candidates by their bytes, and a malformed candidate as json_not_entry", () => {
    const watch: ShapeCounts[] = [];
    const scanner = new Scanner([rule], { watch: { record: (c: ShapeCounts) => watch.push({ ...c }) } as unknown as ShapeWatch });
    const broken = '{"event":"factory.hard_limit","time":"not a time"}';
    const data = Buffer.from(`${factory}\nplain text\n${broken}\n{"x":1}\n`);
    const events = [...scanner.lazy({ data, lines: 4 })];
    expect(events).toHaveLength(1);
    expect(scanner.stats.shapes).toMatchObject({ json: 1, text: 1, json_not_entry: 2 });
    expect(watch).toEqual([scanner.stats.shapes]);
  });

  it("takes the source's word for decoded entries", () => {
    const scanner = new Scanner([rule]);
    scanner.scan({ data: Buffer.from(`${sink}\n${sink}\n`), lines: 2, shape: "gcloud_array" });
    expect(scanner.stats.shapes).toMatchObject({ gcloud_array: 2, log_entry: 0 });
  });
});

describe("ShapeWatch", () => {
  const counts = (c: Partial<ShapeCounts>): ShapeCounts => ({ ...newShapeCounts(), ...c });

  function setup(): { clock: ManualClock; alarms: ShapeAlarm[]; watch: ShapeWatch; metrics: OperatorMetrics } {
    const clock = new ManualClock(Date.parse("2026-11-26T12:00:00Z"));
    const alarms: ShapeAlarm[] = [];
    const metrics = new OperatorMetrics({ defaultMetrics: false });
    const watch = new ShapeWatch({ source: "file:x.log", clock, metrics, onAlarm: (a) => alarms.push(a) });
    return { clock, alarms, watch, metrics };
  }

  it("raises no alarm before 100 non-blank lines, then one when more than half are not understood", () => {
    const { alarms, watch } = setup();
    watch.record(counts({ text: 99, blank: 500 }));
    expect(alarms).toHaveLength(0);
    watch.record(counts({ text: 1 }));
    expect(alarms).toHaveLength(1);
    expect(alarms[0]).toMatchObject({ source: "file:x.log", lines: 100, notUnderstood: 100, seen: { text: 100 } });
    expect(alarms[0]!.message).toContain("file:x.log: 100 of the last 100 lines are not log entries it can read (100 text (plain text)); expected the factory's JSON lines");
  });

  it("raises no alarm at exactly half, nor while understood lines are the majority", () => {
    const { alarms, watch } = setup();
    watch.record(counts({ text: 100, json: 100 }));
    watch.record(counts({ json_fragment: 60, log_entry: 100 }));
    expect(alarms).toHaveLength(0);
  });

  it("alarms at most once a minute per source, and counts each alarm and every line by shape", async () => {
    const { clock, alarms, watch, metrics } = setup();
    watch.record(counts({ text: 200 }));
    watch.record(counts({ text: 200 }));
    clock.advance(SHAPE_ALARM_INTERVAL_MS - 1);
    watch.record(counts({ text: 200 }));
    expect(alarms).toHaveLength(1);
    clock.advance(1);
    watch.record(counts({ text: 200 }));
    expect(alarms).toHaveLength(2);
    const text = await metrics.registry.metrics();
    expect(text).toContain('reclaim_operator_lines_by_shape_total{source="file:x.log",shape="text"} 800');
    expect(text).toContain('reclaim_operator_source_not_understood_total{source="file:x.log"} 2');
  });

  it("judges the last 1000 lines, in whole batches: old text no longer counts once good lines cover the window", () => {
    const { clock, alarms, watch } = setup();
    watch.record(counts({ text: 900 }));
    expect(alarms).toHaveLength(1);
    clock.advance(SHAPE_ALARM_INTERVAL_MS);
    watch.record(counts({ json: 1000 })); // the 900 text lines leave the window
    watch.record(counts({ text: 400 })); // 400 of 1400 lines
    expect(alarms).toHaveLength(1);
    watch.record(counts({ text: 700 })); // 1100 text lines now cover the window: the json batch left it
    expect(alarms).toHaveLength(2);
  });
});

describe("watchShapes: the live operator's alarm", () => {
  it("logs an ERROR on the operator's own log (operator.source_error, kind not_understood) and counts it", async () => {
    const { PassThrough } = await import("node:stream");
    const { createOperatorLog } = await import("../../../src/operator/log.js");
    const { watchShapes } = await import("../../../src/operator/sources/shapes.js");
    const out = new PassThrough();
    let written = "";
    out.on("data", (d: Buffer) => (written += d.toString()));
    const log = createOperatorLog({ streams: [out], pod: "op-0" });
    const metrics = new OperatorMetrics({ defaultMetrics: false });
    const watch = watchShapes({ source: "stdin", clock: new ManualClock(), metrics, log });
    watch.record({ ...newShapeCounts(), json_fragment: 150, json: 10 });
    await log.close();
    const lines = written.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ severity: "ERROR", event: "operator.source_error", source: "stdin", kind: "not_understood", lines: 160, notUnderstood: 150 });
    expect(String(lines[0]!.message)).toContain("stdin: 150 of the last 160 lines are not log entries it can read (150 json_fragment (pieces of multi-line JSON, or cut-off objects), 10 json (JSON log lines such as the factory writes))");
    expect(await metrics.registry.metrics()).toContain('reclaim_operator_source_not_understood_total{source="stdin"} 1');
  });
});
