/**
 * The live operator on a log it cannot read (plain text from a backend that
 * is not the factory): an ERROR names the source and what it saw, and the
 * metrics count it — a wrong file never looks like a quiet day.
 */
import { appendFile } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { eventually } from "../../support/factory.js";
import { emptyLog, startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";

let operator: TestOperator | undefined;
afterEach(async () => {
  await operator?.close();
  operator = undefined;
});

describe("the operator tailing a file of plain text", () => {
  it("logs one ERROR (not_understood) and counts the lines by shape", async () => {
    const dir = await tempDir();
    const log = await emptyLog(dir);
    operator = await startTestOperator({ dir, source: `file:${log}`, control: "http://127.0.0.1:9" });
    const lines = Array.from({ length: 150 }, (_, i) => `2026-12-03 12:00:${String(i % 60).padStart(2, "0")},000 ERROR chat: HARD LIMIT: User u${i} still over limit after cleanup (20/20)`);
    await appendFile(log, `${lines.join("\n")}\n`);
    await eventually(() => operator!.lines.some((l) => l.event === "operator.source_error" && l.kind === "not_understood"), 10_000, "the not_understood ERROR");
    const alarm = operator.lines.find((l) => l.kind === "not_understood")!;
    expect(alarm).toMatchObject({ severity: "ERROR", source: `file:${log}`, notUnderstood: 150 });
    const metrics = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    expect(metrics).toContain(`reclaim_operator_lines_by_shape_total{source="file:${log}",shape="text"} 150`);
    expect(metrics).toContain(`reclaim_operator_source_not_understood_total{source="file:${log}"} 1`);
    expect(await operator.incidents()).toEqual([]);
  });
});
