/**
 * Fault matrix, row 6: clock skew — entries from the future (a pod whose
 * clock runs ahead, or one absurd timestamp) and from long ago (a pod whose
 * clock runs behind, or an old line delivered late).
 *
 * The operator tails a file into which the test writes the factory's HARD
 * LIMIT lines with skewed times; a real factory serves the control API. An
 * entry read now is evidence of a lockout now, so one from the future is
 * acted on and counts in its window as if it had just happened (it cannot be
 * later than the moment it was read); one older than the rule's `maxAge` is
 * not acted on, and counted; an impossible time is a malformed line. In every
 * case the operator keeps reading and remediates the next lockout.
 */
import { appendFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Incident } from "../../src/operator/incidents/model.js";
import { Incident as IncidentSchema } from "../../src/operator/incidents/model.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { faultRule, hardLimitLine, rungsRun } from "../support/fault-matrix.js";
import { factoryEntry } from "../support/gcp/entries.js";
import { FakeLoggingServer } from "../support/gcp/logging-server.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const MINUTE = 60_000;

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let logging: FakeLoggingServer | undefined;
afterEach(async () => {
  await operator?.close();
  await logging?.close();
  await factory?.close();
  operator = factory = logging = undefined;
  delete process.env.RECLAIM_GCP_ENDPOINT;
});

async function setUp(rule = faultRule()): Promise<string> {
  const dir = await tempDir("reclaim-fault6-");
  const file = join(dir, "factory.log");
  await writeFile(file, "");
  factory = await startTestFactory();
  operator = await startTestOperator({ dir, source: `file:${file}`, control: factory.controlUrl, rule });
  return file;
}

async function resolvedFor(userId: string): Promise<Incident> {
  const all = await operator!.until((list) => list.some((i) => i.target.userId === userId && i.status === "resolved"), `the incident of ${userId}`);
  return all.find((i) => i.target.userId === userId)!;
}

async function metricLine(pattern: RegExp): Promise<string | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${operator!.metricsPort}/metrics`)).text();
  return text.split("\n").find((l) => pattern.test(l));
}

/** The row's invariants: exactly these users have incidents, one each, each with one rung run on the factory; and a new lockout is remediated. */
async function onceEachAndServing(file: string, users: string[]): Promise<void> {
  await appendFile(file, hardLimitLine("on-time", Date.now()));
  await resolvedFor("on-time");
  await operator!.idle();
  const all = await operator!.incidents();
  expect(all.map((i) => i.target.userId).sort()).toEqual([...users, "on-time"].sort());
  for (const i of all) {
    expect(IncidentSchema.safeParse(i).success).toBe(true);
    expect(rungsRun(factory!, i.target.userId)).toEqual(["probe"]);
  }
}

describe("fault matrix, row 6: clock skew", () => {
  it("an entry from a pod whose clock runs 10 minutes ahead is acted on; the record stays valid, its durations never negative", async () => {
    const file = await setUp();
    await appendFile(file, hardLimitLine("clock-ahead", Date.now() + 10 * MINUTE));
    const incident = await resolvedFor("clock-ahead");
    expect(Date.parse(incident.firstEntryAt)).toBeGreaterThan(Date.parse(incident.detectedAt)); // as written by the pod
    expect(incident.durations.detectMs).toBe(0);
    expect(incident.durations.totalMs).toBeGreaterThanOrEqual(0);
    await onceEachAndServing(file, ["clock-ahead"]);
  });

  it("an entry from the future does not hold a window open: with a rule that needs two entries, one from an hour ahead and one on time fire together", async () => {
    const file = await setUp(faultRule({ threshold: "{ count: 2, window: 1m }" }));
    await appendFile(file, hardLimitLine("ahead-then-now", Date.now() + 60 * MINUTE));
    await appendFile(file, hardLimitLine("ahead-then-now", Date.now()));
    const incident = await resolvedFor("ahead-then-now");
    expect(incident.evidence.total).toBe(2);
    // Two on-time entries for the marker user fire as usual.
    await appendFile(file, hardLimitLine("on-time-pair", Date.now()) + hardLimitLine("on-time-pair", Date.now() + 1));
    await resolvedFor("on-time-pair");
    await operator!.idle();
    expect((await operator!.incidents()).map((i) => i.target.userId).sort()).toEqual(["ahead-then-now", "on-time-pair"]);
    expect(rungsRun(factory!, "ahead-then-now")).toEqual(["probe"]);
  });

  it("an entry older than the rule's maxAge (a pod clock 20 minutes behind, or a late line) is not acted on, and counted as stale", async () => {
    const file = await setUp();
    await appendFile(file, hardLimitLine("clock-behind", Date.now() - 20 * MINUTE));
    await appendFile(file, hardLimitLine("marker", Date.now()));
    await resolvedFor("marker");
    expect(await metricLine(/^reclaim_operator_entries_dropped_total\{rule="lockout",reason="stale"\}/)).toMatch(/ 1$/);
    expect(rungsRun(factory!, "clock-behind")).toEqual([]);
    // Said in the log, not only counted: a pod whose clock runs behind would otherwise lose every lockout silently.
    const warned = operator!.lines.filter((l) => l.event === "operator.entry_stale");
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ severity: "WARNING", rule: "lockout", entries: 1 });
    expect(warned[0]!.oldestAgeMs).toBeGreaterThanOrEqual(20 * MINUTE);
    // More stale entries within the minute are counted, not logged again.
    await appendFile(file, hardLimitLine("clock-behind-2", Date.now() - 30 * MINUTE) + hardLimitLine("marker-2", Date.now()));
    await resolvedFor("marker-2");
    expect(await metricLine(/^reclaim_operator_entries_dropped_total\{rule="lockout",reason="stale"\}/)).toMatch(/ 2$/);
    expect(operator!.lines.filter((l) => l.event === "operator.entry_stale")).toHaveLength(1);
    // The same user, on time: acted on (the stale entry left nothing behind that would stop it).
    await appendFile(file, hardLimitLine("clock-behind", Date.now()));
    await resolvedFor("clock-behind");
    await onceEachAndServing(file, ["marker", "marker-2", "clock-behind"]);
  });

  it.each([
    ["a time beyond what a date can hold", 1e17],
    ["the year 10000", Date.parse("+010000-01-01T00:00:00Z")],
    ["a time before the year 0", Date.parse("-000001-01-01T00:00:00Z")],
  ])("an entry with an impossible time (%s) is a malformed line: counted, not acted on, and the tail goes on", async (_what, time) => {
    const file = await setUp();
    await appendFile(
      file,
      `${JSON.stringify({ severity: "ERROR", time, pod: "test-factory-0", event: "factory.hard_limit", userId: "absurd", managers: 20, limit: 20, message: "HARD LIMIT" })}\n`,
    );
    await onceEachAndServing(file, []);
    expect(rungsRun(factory!, "absurd")).toEqual([]);
    expect(await metricLine(/^reclaim_operator_lines_malformed_total\{/)).toMatch(/ 1$/);
  });

  it("Cloud Logging: an entry stamped an hour ahead does not move the tail's position past now, so a reconnect still catches up what arrived on time", async () => {
    factory = await startTestFactory();
    logging = await FakeLoggingServer.start();
    process.env.RECLAIM_GCP_ENDPOINT = logging.endpoint;
    operator = await startTestOperator({ dir: await tempDir("reclaim-fault6-gcp-"), source: "gcp:reclaim-test", control: factory.controlUrl, rule: faultRule() });
    const entry = (userId: string, time: number): ReturnType<typeof factoryEntry> =>
      factoryEntry(time, { event: "factory.hard_limit", userId, managers: 20, limit: 20, pod: "test-factory-0" });
    const tailsOpened = (n: number): Promise<void> => eventually(() => logging!.openTails > 0 && logging!.tailRequests.length >= n, 10_000, `tail session ${n}`);
    await tailsOpened(1);
    logging.write([entry("stamped-ahead", Date.now() + 60 * MINUTE)]);
    await resolvedFor("stamped-ahead");
    logging.endTails();
    logging.write([entry("while-disconnected", Date.now())], { tail: false });
    await tailsOpened(2);
    await resolvedFor("while-disconnected");
    logging.write([entry("on-time", Date.now())]);
    await resolvedFor("on-time");
    await operator.idle();
    expect((await operator.incidents()).map((i) => i.target.userId).sort()).toEqual(["on-time", "stamped-ahead", "while-disconnected"]);
    for (const u of ["on-time", "stamped-ahead", "while-disconnected"]) expect(rungsRun(factory, u)).toEqual(["probe"]);
  });
});
