/**
 * The Cloud Logging source through the real `@google-cloud/logging` client
 * against a local gRPC server speaking LoggingServiceV2 (test/support/gcp):
 * entries become LogEvents through the scanner; sessions that end or fail
 * are resumed with neither gap nor duplicate; suppression is counted; the
 * filter sent is the rules'; a dead endpoint is retried, not fatal; a
 * restart resumes from the saved position.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { LogEvent } from "../../../src/operator/sources/event.js";
import {
  CloudLoggingSource,
  logEntryToJson,
  nanosToRfc3339,
  rfc3339ToNanos,
  type CloudLoggingSourceOptions,
  type CloudLoggingWarning,
} from "../../../src/operator/sources/gcp.js";
import { buildFilter } from "../../../src/operator/sources/gcp-filter.js";
import { Scanner } from "../../../src/operator/sources/scan.js";
import type { LineBatch } from "../../../src/operator/sources/source.js";
import { factoryEntry, type LogEntryJson } from "../../support/gcp/entries.js";
import { FakeLoggingServer, Status } from "../../support/gcp/logging-server.js";
import { eventually } from "../../support/factory.js";
import { rule } from "../../support/rules.js";

const PROJECT = "reclaim-test";
const rules = [rule("lockout")]; // factory.hard_limit, factory.error at ERROR and above
const FILTER = buildFilter(rules);
const WAIT = 15_000;

beforeAll(() => {
  process.env.METADATA_SERVER_DETECTION = "none";
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(port = 0): Promise<FakeLoggingServer> {
  const s = await FakeLoggingServer.start(port);
  cleanups.push(() => s.close());
  return s;
}

/** A running source and what it handed over. */
class Run {
  readonly lines: Record<string, unknown>[] = [];
  /** The insertIds of every batch handed over, handled or not, in order. */
  readonly attempts: string[][] = [];
  readonly events: LogEvent[] = [];
  readonly batches: LineBatch[] = [];
  readonly warnings: CloudLoggingWarning[] = [];
  readonly scanner = new Scanner(rules);
  readonly source: CloudLoggingSource;
  error: unknown = null;
  private readonly controller = new AbortController();
  readonly done: Promise<void>;

  /**
   * @param commit whether to commit a batch once handled (default: every one)
   * @param fail the error the handler throws for a batch with these insertIds, or null to handle it (default)
   */
  constructor(
    options: Partial<CloudLoggingSourceOptions> & { endpoint: string },
    commit: (batch: LineBatch) => boolean = () => true,
    source?: CloudLoggingSource,
    fail: (ids: string[]) => Error | null = () => null,
  ) {
    this.source =
      source ??
      new CloudLoggingSource({
        projectId: PROJECT,
        filter: FILTER,
        backoffInitialMs: 20,
        backoffMaxMs: 100,
        connectTimeoutMs: 500,
        callTimeoutMs: 2000,
        onWarning: (w) => this.warnings.push(w),
        ...options,
      });
    this.done = this.source
      .run(async (batch) => {
        const text = batch.data.toString("utf8");
        expect(text.endsWith("\n")).toBe(true);
        const lines = text.slice(0, -1).split("\n");
        expect(lines).toHaveLength(batch.lines);
        const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
        const ids = parsed.map((l) => l.insertId as string);
        this.attempts.push(ids);
        const error = fail(ids);
        if (error !== null) throw error;
        this.lines.push(...parsed);
        this.events.push(...this.scanner.scan(batch));
        this.batches.push(batch);
        if (commit(batch)) await batch.commit();
      }, this.controller.signal)
      .catch((err: unknown) => {
        this.error = err;
      });
    cleanups.push(() => this.stop());
  }

  get ids(): string[] {
    return this.lines.map((l) => l.insertId as string);
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.done;
  }
}

/** Milliseconds as the source writes a time (0, 3, 6 or 9 fraction digits). */
function rfc3339(ms: number): string {
  return nanosToRfc3339(BigInt(ms) * 1_000_000n);
}

/** Entries one user's lockout writes, `n` of them 100 ms apart from `start`. */
function lockouts(start: number, n: number, prefix: string): LogEntryJson[] {
  return Array.from({ length: n }, (_, i) =>
    factoryEntry(start + i * 100, { event: "factory.hard_limit", userId: `u-${prefix}${i}`, insertId: `${prefix}${i}`, managers: 20, limit: 20 }),
  );
}

describe("CloudLoggingSource", () => {
  it("hands over the tailed entries as Cloud Logging JSON lines that the scanner turns into LogEvents", async () => {
    const fake = await server();
    const run = new Run({ endpoint: fake.endpoint, bufferWindowMs: 1500 });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const now = Date.now();
    const hard = factoryEntry(now, { event: "factory.hard_limit", userId: "u1", pod: "factory-7", insertId: "hard-1", managers: 20, limit: 20 });
    const info = factoryEntry(now + 1, { event: "factory.hard_limit", userId: "u2", severity: "INFO", insertId: "info-1" });
    const other = factoryEntry(now + 2, { event: "factory.connection_opened", userId: "u3", insertId: "open-1" });
    expect(fake.write([hard, info, other])).toBe(1);
    await eventually(() => run.events.length === 1, WAIT, "the entry");

    // The line is the entry as written, in Cloud Logging's JSON.
    expect(run.lines).toEqual([hard]);
    const event = run.events[0]!;
    expect(event).toMatchObject({
      time: now,
      severity: "ERROR",
      event: "factory.hard_limit",
      insertId: "hard-1",
      resource: { pod_name: "factory-7", namespace_name: "chat" },
    });
    expect(event.fields).toMatchObject({ userId: "u1", pod: "factory-7", managers: 20, limit: 20 });
    expect(rules[0]!.match(event)).not.toBeNull();

    // The session asked for this project, the rules' filter and the buffer window.
    expect(fake.tailRequests).toEqual([{ resourceNames: [`projects/${PROJECT}`], filter: FILTER, bufferWindowMs: 1500 }]);
    expect(run.source.stats).toMatchObject({ linesRead: 1, sessions: 1, reconnects: 0, duplicates: 0, connected: true, newestEntryTime: now });
    expect(run.error).toBeNull();
  });

  it("resumes a session the server ended or failed with neither gap nor duplicate", async () => {
    const fake = await server();
    const run = new Run({ endpoint: fake.endpoint });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const t = Date.now();
    const [e1, e2, e3, e4, e5, e6, e7, e8] = lockouts(t, 8, "e");

    fake.write([e1!, e2!]);
    fake.write([e3!]);
    await eventually(() => run.lines.length === 3, WAIT, "e0..e2");

    // The server ends the session (as after an hour); e3, e4 arrive while no tail is open.
    fake.endTails();
    expect(fake.write([e4!, e5!])).toBe(0);
    await eventually(() => fake.openTails === 1 && run.source.stats.sessions === 2, WAIT, "a second session");
    // The new tail repeats an entry the catch-up already got, then brings a new one.
    fake.write([e5!], { history: false });
    fake.write([e6!]);
    await eventually(() => run.ids.includes("e5"), WAIT, "e5");

    // The server fails the session mid-way; e6 arrives in the break.
    fake.failTails(Status.UNAVAILABLE, "backend restarting");
    expect(fake.write([e7!])).toBe(0);
    await eventually(() => fake.openTails === 1 && run.source.stats.sessions === 3, WAIT, "a third session");
    fake.write([e8!]);
    await eventually(() => run.ids.includes("e7"), WAIT, "e7");

    expect([...run.ids].sort()).toEqual(["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"]);
    expect(run.events.map((e) => e.insertId)).toEqual(run.ids);
    const stats = run.source.stats;
    expect(stats).toMatchObject({ sessions: 3, reconnects: 2, failures: 1, linesRead: 8 });
    // The catch-ups' overlap and the repeated e4 were dropped, not handed over again.
    expect(stats.duplicates).toBeGreaterThanOrEqual(4);
    expect(stats.caughtUp).toBeGreaterThanOrEqual(3);
    expect(run.warnings.filter((w) => w.kind === "session_failed")).toHaveLength(1);

    // Each catch-up asked for the rules' entries from the newest seen minus the 5 s overlap, oldest first.
    const catchUps = fake.listRequests.slice(1);
    expect(catchUps).toHaveLength(2);
    expect(catchUps[0]).toMatchObject({
      resourceNames: [`projects/${PROJECT}`],
      orderBy: "timestamp asc",
      pageSize: 1000,
      filter: `${FILTER} AND timestamp>="${rfc3339(t + 200 - 5000)}"`,
    });
    expect(catchUps[1]!.filter).toBe(`${FILTER} AND timestamp>="${rfc3339(t + 500 - 5000)}"`);
    // Every session asked for the same live filter.
    expect(new Set(fake.tailRequests.map((r) => r.filter))).toEqual(new Set([FILTER]));
    expect(run.error).toBeNull();
  });

  it("pages through a long catch-up", async () => {
    const fake = await server();
    const run = new Run({ endpoint: fake.endpoint, pageSize: 3 });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const t = Date.now();
    fake.write(lockouts(t, 1, "a"));
    await eventually(() => run.lines.length === 1, WAIT, "the first entry");
    fake.endTails();
    fake.write(lockouts(t + 10, 10, "b"));
    await eventually(() => run.lines.length === 11, WAIT, "the ten entries of the break");
    expect(run.ids.slice(1)).toEqual(lockouts(t + 10, 10, "b").map((e) => e.insertId));
    expect(fake.listRequests.slice(1).map((r) => r.pageToken)).toEqual(["", "offset-3", "offset-6", "offset-9"]);
  });

  it("counts the entries Cloud Logging suppressed, by reason, and warns", async () => {
    const fake = await server();
    const run = new Run({ endpoint: fake.endpoint });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    fake.suppress("RATE_LIMIT", 7);
    fake.suppress("NOT_CONSUMED", 2);
    fake.suppress("RATE_LIMIT", 1);
    await eventually(() => run.source.stats.suppressed.RATE_LIMIT === 8 && run.source.stats.suppressed.NOT_CONSUMED === 2, WAIT, "the counts");
    expect(run.source.stats.suppressed.REASON_UNSPECIFIED).toBe(0);
    expect(run.warnings.filter((w) => w.kind === "suppressed").map((w) => w.details)).toEqual([
      { source: `gcp:${PROJECT}`, reason: "RATE_LIMIT", count: 7 },
      { source: `gcp:${PROJECT}`, reason: "NOT_CONSUMED", count: 2 },
      { source: `gcp:${PROJECT}`, reason: "RATE_LIMIT", count: 1 },
    ]);
    expect(run.lines).toEqual([]);
  });

  it("retries a dead endpoint, refused or silent, and reads once it lives", async () => {
    // Refused: a port nobody listens on (taken from the OS, then freed).
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const p = (probe.address() as { port: number }).port;
        probe.close(() => resolve(p));
      });
    });
    const run = new Run({ endpoint: `127.0.0.1:${port}` });
    await eventually(() => run.source.stats.failures >= 3, WAIT, "failed attempts");
    expect(run.error).toBeNull();
    expect(run.warnings.every((w) => w.kind === "session_failed")).toBe(true);
    expect(run.warnings[0]!.message).toMatch(/no connection to Cloud Logging: the connection attempt failed/);
    expect(run.warnings[0]!.details).toMatchObject({ connected: false });
    expect(run.source.stats.connected).toBe(false);

    // Comes to life on the same port: the source connects and reads.
    const fake = await server(port);
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    fake.write(lockouts(Date.now(), 1, "late"));
    await eventually(() => run.ids.includes("late0"), WAIT, "the entry");
    expect(run.error).toBeNull();

    // Silent: accepts TCP and never speaks HTTP/2. Fails after connectTimeoutMs, again and again.
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => {
      sockets.push(s);
      s.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          silent.close(() => resolve());
        }),
    );
    const hung = new Run({ endpoint: `127.0.0.1:${(silent.address() as { port: number }).port}`, connectTimeoutMs: 200 });
    await eventually(() => hung.source.stats.failures >= 2, WAIT, "timed-out attempts");
    expect(hung.warnings[0]!.message).toMatch(/no connection to Cloud Logging: none within 200 ms/);
    expect(hung.error).toBeNull();
  });

  it("fails for good when Cloud Logging refuses the filter", async () => {
    const fake = await server();
    const run = new Run({ endpoint: fake.endpoint, filter: "jsonPayload.event=(" });
    await run.done;
    expect(run.error).toMatchObject({ code: "ERR_RECLAIM_GCP_REQUEST", grpcCode: Status.INVALID_ARGUMENT });
  });

  it("resumes after a restart from the saved position, without gap or duplicate", async () => {
    const fake = await server();
    const state = await mkdtemp(join(tmpdir(), "reclaim-gcp-state-"));
    cleanups.push(() => rm(state, { recursive: true, force: true }));
    const first = new Run({ endpoint: fake.endpoint, stateDir: state });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const t = Date.now();
    const entries = lockouts(t, 5, "r");
    fake.write(entries.slice(0, 3));
    await eventually(() => first.lines.length === 3, WAIT, "r0..r2");
    await first.stop();

    const saved = JSON.parse(await readFile(join(state, `gcp-${PROJECT}.json`), "utf8")) as { lastSeen: string; recent: string[] };
    expect(rfc3339ToNanos(saved.lastSeen)).toBe(rfc3339ToNanos(entries[2]!.timestamp));
    expect(saved.recent.map((k) => k.split("/")[1])).toEqual(["r0", "r1", "r2"]);

    // Written while no operator runs.
    fake.write(entries.slice(3));
    const second = new Run({ endpoint: fake.endpoint, stateDir: state });
    await eventually(() => second.lines.length === 2, WAIT, "r3, r4");
    await eventually(() => fake.openTails === 1, WAIT, "the second tail");
    fake.write(lockouts(t + 1000, 1, "s"));
    await eventually(() => second.lines.length === 3, WAIT, "s0");
    expect(second.ids).toEqual(["r3", "r4", "s0"]);
    expect(second.source.stats.duplicates).toBe(3);
  });

  it("catches up at most maxCatchUpMs back, and warns only when that skips entries", async () => {
    const fake = await server();
    const state = await mkdtemp(join(tmpdir(), "reclaim-gcp-state-"));
    cleanups.push(() => rm(state, { recursive: true, force: true }));
    const T = Date.now();
    const saved = { version: 1, project: PROJECT, lastSeen: rfc3339(T - 2 * 3_600_000), recent: [] };
    await writeFile(join(state, `gcp-${PROJECT}.json`), JSON.stringify(saved));

    // Nothing in the skipped range: no warning.
    fake.write(lockouts(T - 200, 1, "recent"));
    const quiet = new Run({ endpoint: fake.endpoint, stateDir: state, maxCatchUpMs: 60_000, now: () => T });
    await eventually(() => quiet.ids.includes("recent0"), WAIT, "the recent entry");
    await quiet.stop();
    expect(quiet.warnings.filter((w) => w.kind === "gap")).toEqual([]);

    // An entry in the skipped range: a warning naming the range.
    await writeFile(join(state, `gcp-${PROJECT}.json`), JSON.stringify(saved));
    fake.write(lockouts(T - 30 * 60_000, 1, "old"));
    const gappy = new Run({ endpoint: fake.endpoint, stateDir: state, maxCatchUpMs: 60_000, now: () => T });
    await eventually(() => gappy.ids.includes("recent0"), WAIT, "the recent entry");
    expect(gappy.ids).not.toContain("old0");
    expect(gappy.warnings.filter((w) => w.kind === "gap").map((w) => w.details)).toEqual([
      { source: `gcp:${PROJECT}`, lastSeen: saved.lastSeen, from: rfc3339(T - 60_000) },
    ]);
  });

  it("starts a new run (a new leadership term) from the last committed batch", async () => {
    const fake = await server();
    // Commit only r0's batch: r1 is handed over but, as if leadership were lost mid-batch, never committed.
    const source = new CloudLoggingSource({ projectId: PROJECT, filter: FILTER, endpoint: fake.endpoint, backoffInitialMs: 20, backoffMaxMs: 100 });
    const first = new Run({ endpoint: fake.endpoint }, (batch) => !batch.data.toString().includes('"r1"'), source);
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const [r0, r1] = lockouts(Date.now(), 2, "r");
    fake.write([r0!]);
    await eventually(() => first.lines.length === 1, WAIT, "r0");
    fake.write([r1!]);
    await eventually(() => first.lines.length === 2, WAIT, "r1");
    await first.stop();

    const second = new Run({ endpoint: fake.endpoint }, () => true, source);
    await eventually(() => second.lines.length === 1, WAIT, "r1 again");
    expect(second.ids).toEqual(["r1"]);
  });

  it("hands a tailed batch whose handler failed over again on the next run, and nothing handled before it", async () => {
    const fake = await server();
    const source = new CloudLoggingSource({ projectId: PROJECT, filter: FILTER, endpoint: fake.endpoint, backoffInitialMs: 20, backoffMaxMs: 100 });
    // A pod lookup or an incident read failing once, on the batch that holds r1.
    const failure = Object.assign(new Error("incident store unreadable"), { code: "ERR_TEST_HANDLER" });
    let failed = false;
    const first = new Run({ endpoint: fake.endpoint }, () => true, source, (ids) => {
      if (failed || !ids.includes("r1")) return null;
      failed = true;
      return failure;
    });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const [r0, r1, r2, r3] = lockouts(Date.now(), 4, "r");
    fake.write([r0!]);
    await eventually(() => first.lines.length === 1, WAIT, "r0");
    // One response, so one batch; Cloud Logging may repeat an entry within it.
    fake.write([r1!, r2!, r1!]);
    await eventually(() => first.error !== null, WAIT, "the run to end with the handler's error");
    expect(first.error).toBe(failure);
    expect(first.attempts).toEqual([["r0"], ["r1", "r2"]]);
    // The handler's fault is not the session's: no reconnect was tried.
    expect(source.stats).toMatchObject({ sessions: 1, failures: 0, reconnects: 0 });
    expect(first.warnings).toEqual([]);

    // The next run (the caller's retry, or a new leadership term): r1 and r2 again, once each; r0 not again.
    const second = new Run({ endpoint: fake.endpoint }, () => true, source);
    await eventually(() => second.lines.length === 2 && fake.openTails === 1, WAIT, "r1, r2 again, and a tail");
    fake.write([r3!]);
    await eventually(() => second.ids.includes("r3"), WAIT, "r3");
    expect(second.attempts).toEqual([["r1", "r2"], ["r3"]]);
    expect(second.error).toBeNull();
  });

  it("hands a caught-up batch whose handler failed over again on the next run, and nothing handled before it", async () => {
    const fake = await server();
    const source = new CloudLoggingSource({ projectId: PROJECT, filter: FILTER, endpoint: fake.endpoint, backoffInitialMs: 20, backoffMaxMs: 100 });
    const failure = Object.assign(new Error("pod lookup failed"), { code: "ERR_TEST_HANDLER" });
    let failed = false;
    const first = new Run({ endpoint: fake.endpoint }, () => true, source, (ids) => {
      if (failed || !ids.includes("c1")) return null;
      failed = true;
      return failure;
    });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const [c0, c1, c2, c3] = lockouts(Date.now(), 4, "c");
    fake.write([c0!]);
    await eventually(() => first.lines.length === 1, WAIT, "c0");
    // The server ends the session; c1, c2 arrive in the break, so the next session's catch-up lists them (with c0).
    fake.endTails();
    expect(fake.write([c1!, c2!])).toBe(0);
    await eventually(() => first.error !== null, WAIT, "the run to end with the handler's error");
    expect(first.error).toBe(failure);
    expect(first.attempts).toEqual([["c0"], ["c1", "c2"]]);
    expect(source.stats).toMatchObject({ sessions: 2, failures: 0 });

    const second = new Run({ endpoint: fake.endpoint }, () => true, source);
    await eventually(() => second.lines.length === 2 && fake.openTails === 1, WAIT, "c1, c2 again, and a tail");
    fake.write([c3!]);
    await eventually(() => second.ids.includes("c3"), WAIT, "c3");
    expect(second.attempts).toEqual([["c1", "c2"], ["c3"]]);
    expect(second.error).toBeNull();
  });

  it("reconnects at once with a new filter", async () => {
    const fake = await server();
    const run = new Run({ endpoint: fake.endpoint });
    await eventually(() => fake.openTails === 1, WAIT, "a tail session");
    const narrower = buildFilter(rules, 'resource.labels.namespace_name="chat"');
    run.source.setFilter(narrower);
    await eventually(() => fake.tailRequests.length === 2 && fake.openTails === 1 && fake.listRequests.length === 2, WAIT, "a second session");
    expect(fake.tailRequests[1]!.filter).toBe(narrower);
    expect(run.source.filter).toBe(narrower);
    expect(run.source.stats.failures).toBe(0);
    expect(fake.listRequests.at(-1)!.filter.startsWith(`${narrower} AND timestamp>=`)).toBe(true);
  });

  it("refuses a bad project id or endpoint with a TypeError naming it", () => {
    expect(() => new CloudLoggingSource({ projectId: "Bad_Project" })).toThrow(/Bad_Project/);
    expect(() => new CloudLoggingSource({ projectId: PROJECT, endpoint: "nowhere" })).toThrow(/nowhere/);
    expect(() => new CloudLoggingSource({ projectId: PROJECT, bufferWindowMs: 61_000 })).toThrow(/bufferWindowMs/);
  });
});

describe("LogEntry to Cloud Logging JSON", () => {
  it("turns Struct, Timestamp and severity into plain JSON", () => {
    const json = logEntryToJson({
      logName: "projects/p/logs/stdout",
      resource: { type: "k8s_container", labels: { pod_name: "p0" } },
      timestamp: { seconds: "1795694400", nanos: 123456789 },
      receiveTimestamp: { seconds: 1795694401, nanos: 0 },
      severity: 500,
      insertId: "x",
      labels: {},
      jsonPayload: {
        fields: {
          s: { kind: "stringValue", stringValue: "text" },
          n: { kind: "numberValue", numberValue: 2.5 },
          b: { kind: "boolValue", boolValue: false },
          z: { kind: "nullValue", nullValue: "NULL_VALUE" },
          l: { kind: "listValue", listValue: { values: [{ numberValue: 1 }, { stringValue: "two" }, { structValue: { fields: {} } }] } },
          o: { kind: "structValue", structValue: { fields: { deep: { boolValue: true } } } },
        },
      },
      trace: "",
      httpRequest: { requestMethod: "GET", status: 200, latency: { seconds: "0", nanos: 500_000_000 }, responseSize: "12" },
      operation: null,
    });
    expect(json).toEqual({
      logName: "projects/p/logs/stdout",
      resource: { type: "k8s_container", labels: { pod_name: "p0" } },
      timestamp: "2026-11-26T12:00:00.123456789Z",
      receiveTimestamp: "2026-11-26T12:00:01Z",
      severity: "ERROR",
      insertId: "x",
      jsonPayload: { s: "text", n: 2.5, b: false, z: null, l: [1, "two", {}], o: { deep: true } },
      httpRequest: { requestMethod: "GET", status: 200, responseSize: "12", latency: "0.5s" },
    });
    expect(logEntryToJson({ textPayload: "plain", severity: "DEFAULT", timestamp: { seconds: "0", nanos: 1000 } })).toEqual({
      textPayload: "plain",
      timestamp: "1970-01-01T00:00:00.000001Z",
    });
  });

  it.each([
    ["2026-11-26T12:00:00Z", 1795694400000000000n],
    ["2026-11-26T12:00:00.100Z", 1795694400100000000n],
    ["2026-11-26T12:00:00.000100Z", 1795694400000100000n],
    ["2026-11-26T12:00:00.000000001Z", 1795694400000000001n],
  ])("RFC 3339 %s is %s ns and back", (text, ns) => {
    expect(rfc3339ToNanos(text)).toBe(ns);
    expect(nanosToRfc3339(ns)).toBe(text);
  });
});
