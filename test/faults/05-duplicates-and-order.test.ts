/**
 * Fault matrix, row 5: the same log entries delivered twice, and entries out
 * of order — as a log shipper that retries a chunk, or several pods' logs
 * merged, deliver them.
 *
 * The operator tails a file into which the test writes the factory's HARD
 * LIMIT lines; a real factory serves the control API. A repeated entry never
 * counts twice, never opens a second incident and never runs a rung again —
 * in the same batch, in a later batch, or re-read from the start by a
 * restarted operator that lost its position; entries count in event time,
 * whatever order they arrive in.
 */
import { appendFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { faultRule, hardLimitLine, rungsRun } from "../support/fault-matrix.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  operator = factory = undefined;
});

async function setUp(rule: string): Promise<{ dir: string; file: string }> {
  const dir = await tempDir("reclaim-fault5-");
  const file = join(dir, "factory.log");
  await writeFile(file, "");
  factory = await startTestFactory();
  operator = await startTestOperator({ dir, source: `file:${file}`, control: factory.controlUrl, rule });
  return { dir, file };
}

async function metric(op: TestOperator, pattern: RegExp): Promise<string | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${op.metricsPort}/metrics`)).text();
  return text.split("\n").find((l) => pattern.test(l));
}

describe("fault matrix, row 5: entries delivered twice and out of order", () => {
  it("the same entry twice in a batch, again in a later batch, and again after a restart that lost its position: one incident, one rung", async () => {
    const { dir, file } = await setUp(faultRule());
    const line = hardLimitLine("twice", Date.now());
    await appendFile(file, line + line);
    await operator!.until((all) => all.some((i) => i.status === "resolved"), "the incident");
    await appendFile(file, line + hardLimitLine("sentinel", Date.now()));
    await operator!.until((all) => all.some((i) => i.target.userId === "sentinel" && i.status === "resolved"), "the sentinel's incident");
    await operator!.idle();
    let all = await operator!.incidents();
    expect(all.map((i) => i.target.userId).sort()).toEqual(["sentinel", "twice"]);
    expect(all.find((i) => i.target.userId === "twice")!.evidence.total).toBe(1);
    expect(await metric(operator!, /^reclaim_operator_entries_dropped_total\{rule="lockout",reason="duplicate"\}/)).toMatch(/ 2$/);
    expect(rungsRun(factory!, "twice")).toEqual(["probe"]);

    // A restart that lost its saved position reads the whole file again. The records say an incident already acted on
    // each of those entries, so every one is a duplicate: not a new incident, and not even a cooldown suppression (a
    // rule whose cooldown had passed would otherwise act on them a second time).
    await operator!.close();
    await rm(join(dir, "state"), { recursive: true, force: true });
    operator = await startTestOperator({ dir, source: `file:${file}`, control: factory!.controlUrl, rule: faultRule(), fromStart: true });
    const restarted = operator;
    // Four: the two re-read triggers ("twice", "sentinel") and the two repeats of "twice" the detector drops itself.
    await eventually(async () => / 4$/.test((await metric(restarted, /^reclaim_operator_entries_dropped_total\{rule="lockout",reason="duplicate"\}/)) ?? ""), 10_000, "the re-read to be counted");
    await operator.idle();
    all = await operator.incidents();
    expect(all).toHaveLength(2);
    expect(all.map((i) => i.suppressed)).toEqual([{}, {}]);
    expect(rungsRun(factory!, "twice")).toEqual(["probe"]);
    expect(rungsRun(factory!, "sentinel")).toEqual(["probe"]);

    // Still serving.
    await appendFile(file, hardLimitLine("after-restart", Date.now()));
    await operator.until((list) => list.some((i) => i.target.userId === "after-restart" && i.status === "resolved"), "a new incident");
    expect(rungsRun(factory!, "after-restart")).toEqual(["probe"]);
  });

  it("out of order: a rule that needs two entries fires on the pair whatever order they arrive in, and a repeat does not stand in for the second", async () => {
    const { file } = await setUp(faultRule({ threshold: "{ count: 2, window: 1m }" }));
    const t = Date.now() - 10_000;
    const later = hardLimitLine("late-first", t + 1000);
    // The later entry, twice, then a pair for another user that marks how far the operator has read.
    await appendFile(file, later + later + hardLimitLine("marker", t + 500) + hardLimitLine("marker", t));
    await operator!.until((all) => all.some((i) => i.target.userId === "marker" && i.status === "resolved"), "the marker's incident");
    expect((await operator!.incidents()).map((i) => i.target.userId)).toEqual(["marker"]); // the repeat did not count as a second entry
    // The earlier entry arrives last.
    await appendFile(file, hardLimitLine("late-first", t));
    const all = await operator!.until((list) => list.some((i) => i.target.userId === "late-first" && i.status === "resolved"), "the incident");
    await operator!.idle();
    const incident = all.find((i) => i.target.userId === "late-first")!;
    expect(incident.evidence.total).toBe(2);
    expect(incident.evidence.entries.map((e) => e.time)).toEqual([new Date(t).toISOString(), new Date(t + 1000).toISOString()]); // in event time
    expect(incident.firstEntryAt).toBe(new Date(t).toISOString());
    expect(all).toHaveLength(2);
    expect(rungsRun(factory!, "late-first")).toEqual(["probe"]);
    expect(rungsRun(factory!, "marker")).toEqual(["probe"]);
  });
});
