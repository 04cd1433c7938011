/**
 * Issue 11, "every failure fails safe", end to end: a real factory, its log
 * file as the source, the operator calling the factory's control API through
 * a misbehaving HTTP server where the fault needs one.
 *
 * - verification that cannot reach the factory stops the ladder (failed), it
 *   never escalates on a guess;
 * - a resumed rung is sent as it was first sent, whatever the rule says now;
 * - a damaged record or a failing source never ends the operator;
 * - an incident left open whose pod is gone is closed as interrupted;
 * - nothing is sent once the term ended, retries included.
 */
import { appendFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { faultRule, hardLimitLine, lockOut, rungsRun } from "../support/fault-matrix.js";
import { startFaultyControl, type FaultyControl } from "../support/faulty-control.js";
import { buildIncident } from "../support/incidents.js";
import { emptyLog, startTestOperator, tempDir, type TestOperator } from "../support/operator.js";
import { QueueSource } from "../support/queue-source.js";

const SLOTS = 3;

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let control: FaultyControl | undefined;
afterEach(async () => {
  await operator?.close();
  await control?.close();
  await factory?.close();
  operator = factory = control = undefined;
});



const isAdmission = (method: string, path: string): boolean => method === "GET" && path.endsWith("/admission");

describe("verification that cannot reach the factory fails safe", () => {
  it.each([
    ["answers 500", "500" as const],
    ["hangs past each check's deadline", "hang" as const],
  ])("the admission check %s after the probe: the incident fails with the reason, and force is never run", async (_name, fault) => {
    const dir = await tempDir("reclaim-failsafe-");
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ cleanup: "legacy", limit: SLOTS, probeTimeoutMs: 200, logFile, logLevel: "info" });
    control = await startFaultyControl(factory.controlUrl);
    // probe, then force: without the fix, a verification that got no answer counts as "not recovered" and force runs.
    operator = await startTestOperator({
      dir,
      source: `file:${logFile}`,
      control: control.url,
      rule: faultRule({ extraRungs: ["{ rung: force, timeout: 2s, params: { max: 3 } }"] }).replace("settle: 100ms, timeout: 2s", "settle: 100ms, timeout: 1s"),
    });
    control.fault(fault, { match: isAdmission });
    await lockOut(factory, "unverifiable", SLOTS);
    const incident = await operator.ended("unverifiable");

    expect(incident.status).toBe("failed");
    expect(rungsRun(factory, "unverifiable")).toEqual(["probe"]);
    expect(incident.rungs.map((r) => [r.rung, r.outcome])).toEqual([["probe", "ok"]]);
    expect(incident.rungs[0]!.verification).toMatchObject({ verified: false, unknown: true });
    expect(incident.rungs[0]!.verification!.detail).toMatch(/^could not tell whether the user can connect: GET .*\/admission (answered 500|timed out)/);
    expect(incident.decisions.at(-1)!.detail).toMatch(/^could not verify after probe \(.*\); stopped without running the next rung/);
    expect(incident.followUps.join("\n")).toContain("Check by hand whether user unverifiable can connect");
  });
});

describe("a resumed rung is the same rung", () => {
  it("is sent with the parameters it was first sent with (kept in the record), even though the rule changed since", async () => {
    factory = await startTestFactory({ limit: SLOTS });
    for (let i = 0; i < SLOTS; i++) await factory.open("resumed", "live");
    const dir = await tempDir();
    const store = new FileIncidentStore({ dir: join(dir, "incidents") });
    const left = buildIncident({ status: "remediating", userId: "resumed", pod: "test-factory-0", rule: "lockout", detectedAt: new Date(Date.now() - 5_000).toISOString() });
    left.target.control = factory.controlUrl;
    // force with max 1 was in flight when the operator stopped; the rule now says max 3.
    left.rungs = [
      {
        ...left.rungs[0]!,
        index: 0,
        rung: "force",
        params: { max: 1 },
        timeoutMs: 5000,
        outcome: "pending",
        finishedAt: null,
        durationMs: null,
        response: null,
        result: null,
        error: null,
        verification: null,
      },
    ];
    left.updatedAt = new Date(Date.now() - 1000).toISOString();
    await store.save(left);
    const rule = faultRule().replace("{ rung: probe, timeout: 2s, params: { timeoutMs: 200 } }", "{ rung: force, timeout: 5s, params: { max: 3 } }");
    operator = await startTestOperator({ dir, source: `file:${await emptyLog(dir)}`, control: factory.controlUrl, rule });
    const incident = await operator.ended("resumed");

    expect(incident.id).toBe(left.id);
    expect(incident.rungs[0]).toMatchObject({ rung: "force", params: { max: 1 }, outcome: "ok", result: { removed: [expect.anything()] } });
    expect(factory.registry.active("resumed")).toBe(SLOTS - 1); // one live tab closed, not three
    expect(incident.decisions.find((d) => d.kind === "resumed" && d.detail.startsWith("rung force was in flight"))!.detail).toContain('as first sent ({"max":1})');
  });
});

describe("a transient error never stops the operator", () => {
  it("a damaged incident record is not the end of the tail: the suppression gets its own record and the next lockout is remediated", async () => {
    const dir = await tempDir();
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ cleanup: "legacy", limit: SLOTS, probeTimeoutMs: 200, logFile, logLevel: "info" });
    operator = await startTestOperator({ dir, source: `file:${logFile}`, control: factory.controlUrl, rule: faultRule() });
    await lockOut(factory, "first", SLOTS);
    const first = await operator.ended("first");
    expect(first.status).toBe("resolved");
    await writeFile(join(dir, "incidents", `${first.id}.json`), "{ not json");
    // Within the cooldown: counted on the latest record, which cannot be read.
    await appendFile(logFile, hardLimitLine("first", Date.now()));
    await eventually(async () => (await operator!.incidents()).some((i) => i.target.userId === "first" && i.suppressed.cooldown !== undefined), 10_000, "the suppression's own record");
    await lockOut(factory, "second", SLOTS);
    expect((await operator.ended("second")).status).toBe("resolved");
    expect(operator.lines.some((l) => l.event === "operator.store_error" && String(l.message).includes(`latest incident ${first.id} of`))).toBe(true);
  });

  it("a source that fails is started again from the last position handled; one that fails for good makes `done` reject", async () => {
    factory = await startTestFactory();
    const source = new QueueSource();
    source.failNextRun = new Error("the log API is restarting");
    operator = await startTestOperator(
      { dir: await tempDir(), source: "queue", control: factory.controlUrl, term: { sourceBackoffMs: [10, 10], sourceFailures: 3 } },
      { source },
    );
    await eventually(() => source.runs === 2, 5000, "the tail to start again");
    expect(operator.lines.find((l) => l.event === "operator.source_error")!.message).toBe(
      "Source queue failed (the log API is restarting); starting it again from the last position handled in 10 ms",
    );
    let settled: "pending" | "resolved" | Error = "pending";
    operator.done.then(
      () => (settled = "resolved"),
      (err: unknown) => (settled = err as Error),
    );
    expect(settled).toBe("pending");
  });

  it("a source that keeps failing ends the operator with an error (so the process exits non-zero), never quietly", async () => {
    factory = await startTestFactory();
    const source = new QueueSource();
    source.run = (): Promise<void> => Promise.reject(Object.assign(new Error("disk gone"), { code: "ERR_RECLAIM_SOURCE_READ" }));
    operator = await startTestOperator(
      { dir: await tempDir(), source: "queue", control: factory.controlUrl, term: { sourceBackoffMs: [5, 5], sourceFailures: 3 } },
      { source },
    );
    await expect(operator.done).rejects.toMatchObject({ code: "ERR_RECLAIM_SOURCE_FAILED", message: "source queue failed 3 times in a row: disk gone" });
  });
});

describe("no incident stays open without a ladder", () => {
  it("an incident left open whose factory cannot be found is closed as interrupted at the start, and the open-incidents gauge says 0", async () => {
    const dir = await tempDir();
    const store = new FileIncidentStore({ dir: join(dir, "incidents") });
    const left = buildIncident({ status: "remediating", userId: "nowhere", pod: "gone-pod", rule: "lockout", detectedAt: new Date(Date.now() - 5_000).toISOString() });
    left.updatedAt = new Date(Date.now() - 1000).toISOString();
    left.rungs = [];
    await store.save(left);
    operator = await startTestOperator(
      { dir, source: `file:${await emptyLog(dir)}`, control: "http://127.0.0.1:9" },
      { targets: { resolve: () => Promise.resolve(null) } },
    );
    const [incident] = await operator.incidents();
    expect(incident).toMatchObject({ id: left.id, status: "interrupted" });
    expect(incident!.decisions.at(-1)!.detail).toBe("the operator restarted and pod gone-pod it acted on is gone: nothing left to act on");
    expect(await operator.metrics.registry.getSingleMetricAsString("reclaim_operator_open_incidents")).toMatch(/reclaim_operator_open_incidents 0$/m);
  });

  it("one whose pod lookup keeps failing is closed as interrupted once the bound has passed, not left open", async () => {
    const dir = await tempDir();
    const store = new FileIncidentStore({ dir: join(dir, "incidents") });
    const left = buildIncident({ status: "remediating", userId: "lost", pod: "some-pod", rule: "lockout", detectedAt: new Date(Date.now() - 5_000).toISOString() });
    left.updatedAt = new Date(Date.now() - 1000).toISOString();
    left.rungs = [];
    await store.save(left);
    let lookups = 0;
    operator = await startTestOperator(
      { dir, source: `file:${await emptyLog(dir)}`, control: "http://127.0.0.1:9", term: { orphanAfterMs: 300 } },
      { targets: { resolve: () => (lookups++, Promise.reject(new Error("the Kubernetes API answered 500"))) } },
    );
    const [incident] = await operator.incidents();
    expect(incident).toMatchObject({ id: left.id, status: "interrupted" });
    expect(incident!.decisions.at(-1)!.detail).toMatch(/^the operator restarted and could not look up pod some-pod for 0 s: the Kubernetes API answered 500$/);
    expect(lookups).toBeGreaterThan(1);
  });
});

describe("nothing is sent once the term ended", () => {
  it("a rung retry waiting out its backoff when the operator stops is never sent; the record keeps the rung pending for the next term", async () => {
    const dir = await tempDir("reclaim-failsafe-");
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ cleanup: "legacy", limit: SLOTS, probeTimeoutMs: 200, logFile, logLevel: "info" });
    control = await startFaultyControl(factory.controlUrl);
    operator = await startTestOperator({ dir, source: `file:${logFile}`, control: control.url, rule: faultRule(), ladder: { attempts: 5, backoffMs: [60_000] } });
    control.fault("500");
    await lockOut(factory, "held", SLOTS);
    await eventually(() => control!.rungCalls().length === 1, 10_000, "the first attempt");
    await operator.until((all) => all.some((i) => i.decisions.some((d) => d.kind === "retry")), "the retry to be recorded");
    await operator.close();
    const [incident] = await new FileIncidentStore({ dir: join(dir, "incidents") }).list();
    expect(control.rungCalls()).toHaveLength(1);
    expect(incident!.rungs[0]).toMatchObject({ rung: "probe", outcome: "pending", attempts: 1 });
    expect(incident!.status).toBe("remediating");
    operator = undefined;
  });
});
