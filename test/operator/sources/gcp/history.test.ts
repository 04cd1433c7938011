/**
 * The Cloud Logging history source (src/operator/sources/gcp/history.ts), in
 * process, through the real `@google-cloud/logging` client against the local
 * gRPC server of test/support/gcp: pages oldest first within the time range,
 * a page per batch; a failed page is retried, then given up with
 * ERR_RECLAIM_GCP_READ; no connection is ERR_RECLAIM_GCP_CONNECT.
 * (test/cli/rules-replay-gcp.test.ts runs the same through `bin/reclaim`.)
 */
import { afterEach, describe, expect, it } from "vitest";
import { CloudLoggingHistorySource, nanosToRfc3339, type CloudLoggingHistoryOptions } from "../../../../src/operator/sources/gcp.js";
import type { LineBatch } from "../../../../src/operator/sources/source.js";
import { factoryEntry } from "../../../support/gcp/entries.js";
import { FakeLoggingServer, Status } from "../../../support/gcp/logging-server.js";

const PROJECT = "reclaim-test";
const T0 = Date.parse("2026-01-01T00:00:00Z");

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(): Promise<FakeLoggingServer> {
  const fake = await FakeLoggingServer.start();
  cleanups.push(() => fake.close());
  return fake;
}

/** Reads the whole history; the insertIds of each batch, in order. */
async function read(options: CloudLoggingHistoryOptions): Promise<{ source: CloudLoggingHistorySource; batches: string[][] }> {
  const source = new CloudLoggingHistorySource({ callTimeoutMs: 2000, connectTimeoutMs: 2000, ...options });
  const batches: string[][] = [];
  await source.run((batch: LineBatch) => {
    const lines = batch.data.toString("utf8").split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(batch.lines);
    batches.push(lines.map((line) => (JSON.parse(line) as { insertId: string }).insertId));
    return Promise.resolve();
  }, new AbortController().signal);
  return { source, batches };
}

describe("CloudLoggingHistorySource", () => {
  it("pages through the range oldest first, one batch a page, with the filter AND the time bounds", async () => {
    const fake = await server();
    // Written newest first: the order must come from the request, not from the writes.
    const inRange = [4, 3, 2, 1, 0].map((i) => factoryEntry(T0 + i * 1000, { event: "factory.hard_limit", insertId: `in${i}` }));
    const before = factoryEntry(T0 - 1, { event: "factory.hard_limit", insertId: "before" });
    const atUntil = factoryEntry(T0 + 5000, { event: "factory.hard_limit", insertId: "at-until" });
    const otherEvent = factoryEntry(T0 + 500, { event: "factory.connection_opened", insertId: "other" });
    fake.write([...inRange, before, atUntil, otherEvent]);

    const filter = 'jsonPayload.event="factory.hard_limit"';
    const { source, batches } = await read({ projectId: PROJECT, endpoint: fake.endpoint, filter, since: T0, until: T0 + 5000, pageSize: 2 });

    expect(batches).toEqual([["in0", "in1"], ["in2", "in3"], ["in4"]]);
    expect(source.stats).toMatchObject({ pages: 3, linesRead: 5 });
    expect(source.stats.bytesRead).toBeGreaterThan(0);
    expect(source.filter).toBe(`${filter} AND timestamp>="${nanosToRfc3339(BigInt(T0) * 1_000_000n)}" AND timestamp<"${nanosToRfc3339(BigInt(T0 + 5000) * 1_000_000n)}"`);
    expect(fake.listRequests.map((r) => r.pageToken)).toEqual(["", "offset-2", "offset-4"]);
    for (const request of fake.listRequests) {
      expect(request).toMatchObject({ resourceNames: [`projects/${PROJECT}`], filter: source.filter, orderBy: "timestamp asc", pageSize: 2 });
    }
  });

  it("reads one empty page, and hands over nothing, when nothing matches", async () => {
    const fake = await server();
    const { source, batches } = await read({ projectId: PROJECT, endpoint: fake.endpoint, since: T0 });
    expect(batches).toEqual([]);
    expect(source.stats).toMatchObject({ pages: 1, linesRead: 0 });
  });

  it("retries a page that failed with UNAVAILABLE", async () => {
    const fake = await server();
    fake.write([factoryEntry(T0, { event: "factory.hard_limit", insertId: "a" })]);
    fake.failLists(1, Status.UNAVAILABLE);
    const { batches } = await read({ projectId: PROJECT, endpoint: fake.endpoint, since: T0, attempts: 2 });
    expect(batches).toEqual([["a"]]);
    expect(fake.listRequests).toHaveLength(2);
  });

  it.each([
    ["UNAVAILABLE after its last attempt", Status.UNAVAILABLE, 2, 2],
    ["INVALID_ARGUMENT at once", Status.INVALID_ARGUMENT, 3, 1],
  ])("gives up on a page that failed with %s: ERR_RECLAIM_GCP_READ with the gRPC code", async (_what, code, attempts, calls) => {
    const fake = await server();
    fake.failLists(attempts, code);
    const err = await read({ projectId: PROJECT, endpoint: fake.endpoint, since: T0, attempts }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ERR_RECLAIM_GCP_READ", grpcCode: code, message: expect.stringMatching(/^gcp:reclaim-test: could not list entries: /) as unknown });
    expect(fake.listRequests).toHaveLength(calls);
  });

  it("fails with ERR_RECLAIM_GCP_CONNECT when nothing listens at the endpoint", async () => {
    const fake = await FakeLoggingServer.start();
    const endpoint = fake.endpoint;
    await fake.close();
    const err = await read({ projectId: PROJECT, endpoint, since: T0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ERR_RECLAIM_GCP_CONNECT", message: expect.stringContaining("no connection to Cloud Logging") as unknown });
  });

  it.each([
    [{ since: Number.NaN }, /since must be a time/],
    [{ since: T0, until: T0 }, /until .* must be after since/],
    [{ since: T0, pageSize: 1001 }, /pageSize must be an integer from 1 to 1000/],
    [{ since: T0, attempts: 0 }, /attempts must be an integer from 1 to 10/],
    [{ since: T0, projectId: "Not_A_Project" }, /projectId must match/],
  ])("refuses %j with a TypeError naming it", (options, message) => {
    expect(() => new CloudLoggingHistorySource({ projectId: PROJECT, endpoint: "127.0.0.1:9", ...options })).toThrow(TypeError);
    expect(() => new CloudLoggingHistorySource({ projectId: PROJECT, endpoint: "127.0.0.1:9", ...options })).toThrow(message);
  });
});
