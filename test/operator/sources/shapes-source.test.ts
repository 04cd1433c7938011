/**
 * A wrong file through the real pieces the live operator joins: the file
 * source, the scanner (with the shape watch the wiring hands it) and the
 * operator's own log. A plain-text log is an ERROR once, not a quiet day.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../support/clock.js";
import { createOperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import type { CompiledRule } from "../../../src/operator/rules/compile.js";
import { FileSource } from "../../../src/operator/sources/file.js";
import { Scanner } from "../../../src/operator/sources/scan.js";
import { watchShapes } from "../../../src/operator/sources/shapes.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-shapes-source-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("a source whose lines are not understood", () => {
  it("logs one ERROR for a plain-text file however many batches it takes, and counts its lines by shape", async () => {
    const path = join(dir, "backend.log");
    const text = Array.from({ length: 3000 }, (_, i) => `2026-11-26 12:00:${String(i % 60).padStart(2, "0")} ERROR chat HARD LIMIT: User ${i} still over limit after cleanup (20/20)`);
    await writeFile(path, `${text.join("\n")}\n`);
    const out = new PassThrough();
    let written = "";
    out.on("data", (d: Buffer) => (written += d.toString()));
    const log = createOperatorLog({ streams: [out], pod: "op-0" });
    const metrics = new OperatorMetrics({ defaultMetrics: false });
    const source = new FileSource({ path, follow: false, fromStart: true, chunkBytes: 16 * 1024 });
    const watch = watchShapes({ source: source.name, clock: new ManualClock(), metrics, log });
    const rule = { name: "r", needles: ['"factory.hard_limit"'] } as unknown as CompiledRule;
    const scanner = new Scanner([rule], { watch });
    let batches = 0;
    let entries = 0;
    await source.run(async (batch) => {
      batches++;
      for (const _ of scanner.lazy(batch)) entries++;
      await batch.commit();
    }, new AbortController().signal);
    await log.close();
    expect(batches).toBeGreaterThan(5);
    expect(entries).toBe(0);
    const errors = written.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ severity: "ERROR", kind: "not_understood", source: `file:${path}` });
    expect(await metrics.registry.metrics()).toContain(`reclaim_operator_lines_by_shape_total{source="file:${path}",shape="text"} 3000`);
  });
});
