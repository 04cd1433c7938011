/**
 * The Prometheus client: against the real server (Debian's prometheus,
 * scraping a real factory) for what Prometheus really answers, and against
 * tiny local HTTP servers for the answers a broken proxy or frontend gives.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrometheusClient, PrometheusError, type PrometheusFailureKind } from "../../../src/operator/sources/prometheus.js";
import { startTestFactory, type TestFactory } from "../../support/factory.js";
import { describeWithPrometheus, startFakePrometheus, startTestPrometheus, type FakeAnswer, type TestPrometheus } from "../../support/prometheus.js";

/** The error a query rejected with (fails the test if it resolved). */
async function failureOf(promise: Promise<unknown>): Promise<PrometheusError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(PrometheusError);
    return err as PrometheusError;
  }
  throw new Error("the query resolved; expected a PrometheusError");
}

/** A port nothing listens on: one that was just freed. */
async function closedPortUrl(): Promise<string> {
  const fake = await startFakePrometheus(() => ({ body: "" }));
  const url = fake.url;
  await fake.close();
  return url;
}

describeWithPrometheus("PrometheusClient against the real Prometheus", () => {
  let factory: TestFactory;
  let prometheus: TestPrometheus;
  let client: PrometheusClient;

  beforeAll(async () => {
    factory = await startTestFactory({ limit: 2 }, { pod: "factory-a" });
    prometheus = await startTestPrometheus([{ address: new URL(factory.controlUrl).host, labels: { pod: "factory-a" } }]);
    client = new PrometheusClient(prometheus.url, { timeoutMs: 5000 });
    // The first scrape lands a few seconds after start: wait for it rather than sleeping.
    await prometheus.until("reclaim_factory_users_at_limit", (r) => r.length > 0);
  });

  afterAll(async () => {
    await prometheus?.close();
    await factory?.close();
  });

  it("returns a vector: one sample per series, with its labels", async () => {
    const result = await client.query("max by (pod) (reclaim_factory_users_at_limit)", { time: Date.now() });
    expect(result.resultType).toBe("vector");
    expect(result.samples).toEqual([{ labels: { pod: "factory-a" }, value: 0, timestamp: expect.any(Number) as number }]);
    expect(result.warnings).toEqual([]);
  });

  it("keeps every label of a plain selector (__name__, job, instance and the added pod)", async () => {
    const result = await client.query("reclaim_factory_users_at_limit");
    expect(result.samples).toHaveLength(1);
    expect(result.samples[0]?.labels).toMatchObject({
      __name__: "reclaim_factory_users_at_limit",
      job: "reclaim-factory",
      instance: new URL(factory.controlUrl).host,
      pod: "factory-a",
    });
  });

  it("returns a scalar as one sample without labels", async () => {
    const result = await client.query("scalar(vector(2)) + 1");
    expect(result).toMatchObject({ resultType: "scalar", samples: [{ labels: {}, value: 3 }] });
  });

  it("an empty result is no samples, not an error", async () => {
    const result = await client.query('reclaim_factory_users_at_limit{pod="no-such-pod"}');
    expect(result).toMatchObject({ resultType: "vector", samples: [] });
  });

  it("refuses an invalid query clearly, and says retrying will not help", async () => {
    const err = await failureOf(client.query("max by (pod (reclaim_factory_users_at_limit"));
    expect(err.code).toBe("ERR_RECLAIM_PROMETHEUS");
    expect(err.kind).toBe("query");
    expect(err.errorType).toBe("bad_data");
    expect(err.status).toBe(400);
    expect(err.recoverable).toBe(false);
    expect(err.message).toContain("max by (pod (reclaim_factory_users_at_limit");
  });

  it.each([
    ["a range vector (matrix)", "reclaim_factory_users_at_limit[1m]", "matrix"],
    ["a string", '"hello"', "string"],
  ])("refuses %s: a rule compares one number per series", async (_what, query, type) => {
    const err = await failureOf(client.query(query));
    expect(err.kind).toBe("unsupported_result");
    expect(err.recoverable).toBe(false);
    expect(err.message).toContain(type);
  });

  it("an unreachable Prometheus is a recoverable network error", async () => {
    const err = await failureOf(new PrometheusClient(await closedPortUrl(), { timeoutMs: 2000 }).query("up"));
    expect(err.kind).toBe("network");
    expect(err.recoverable).toBe(true);
  });
});

describe("PrometheusClient against broken answers", () => {
  const success = (value: unknown): unknown => ({ status: "success", data: { resultType: "vector", result: [{ metric: { pod: "p" }, value: [1, value] }] } });

  it.each<[string, PrometheusFailureKind, boolean, FakeAnswer]>([
    ["200 with text that is not JSON", "invalid_response", false, { body: "<html>hello</html>" }],
    ["200 with JSON of another shape", "invalid_response", false, { body: { status: "success", data: { resultType: "vector", result: "x" } } }],
    ["200 with an unknown status", "invalid_response", false, { body: { status: "maybe" } }],
    ["200 with an unknown result type", "invalid_response", false, { body: { status: "success", data: { resultType: "table", result: [] } } }],
    ["200 with a value that is not a number", "invalid_response", false, { body: success("twelve") }],
    ["200 with an empty value", "invalid_response", false, { body: success("") }],
    ["502 from a proxy", "http", true, { status: 502, body: "<html>Bad Gateway</html>" }],
    ["429", "http", true, { status: 429, body: "slow down" }],
    ["401 from an auth proxy", "http", false, { status: 401, body: "Unauthorized" }],
    ["503 unavailable from Prometheus", "query", true, { status: 503, body: { status: "error", errorType: "unavailable", error: "TSDB not ready" } }],
    ["422 execution error", "query", false, { status: 422, body: { status: "error", errorType: "execution", error: "many-to-many matching not allowed" } }],
    ["503 timeout from Prometheus", "query", true, { status: 503, body: { status: "error", errorType: "timeout", error: "query timed out" } }],
    [
      "a native histogram sample",
      "unsupported_result",
      false,
      { body: { status: "success", data: { resultType: "vector", result: [{ metric: {}, histogram: [1, { count: "1", sum: "1" }] }] } } },
    ],
  ])("%s → %s (recoverable: %s)", async (_what, kind, recoverable, answer) => {
    const fake = await startFakePrometheus(() => answer);
    try {
      const err = await failureOf(new PrometheusClient(fake.url).query("up"));
      expect(err.kind).toBe(kind);
      expect(err.recoverable).toBe(recoverable);
    } finally {
      await fake.close();
    }
  });

  it("a slow answer is a recoverable timeout", async () => {
    const fake = await startFakePrometheus(() => ({ body: success("1"), delayMs: 5000 }));
    try {
      const err = await failureOf(new PrometheusClient(fake.url, { timeoutMs: 100 }).query("up"));
      expect(err.kind).toBe("timeout");
      expect(err.recoverable).toBe(true);
    } finally {
      await fake.close();
    }
  });

  it.each([
    ["announced by Content-Length", {}],
    ["streamed without a length", { "Transfer-Encoding": "chunked" }],
  ])("a body over maxResponseBytes is refused (%s)", async (_how, headers) => {
    const big = { ...(success("1") as object), padding: "x".repeat(10_000) };
    const fake = await startFakePrometheus(() => ({ body: big, headers }));
    try {
      const err = await failureOf(new PrometheusClient(fake.url, { maxResponseBytes: 1000 }).query("up"));
      expect(err.kind).toBe("too_large");
    } finally {
      await fake.close();
    }
  });

  it("decodes NaN and ±Inf, sends time, timeout and headers, and keeps a path prefix", async () => {
    const fake = await startFakePrometheus(() => ({
      body: {
        status: "success",
        warnings: ["partial data"],
        data: {
          resultType: "vector",
          result: [
            { metric: { s: "nan" }, value: [1700000000.5, "NaN"] },
            { metric: { s: "inf" }, value: [1700000000.5, "+Inf"] },
            { metric: { s: "-inf" }, value: [1700000000.5, "-Inf"] },
            { metric: { s: "exp" }, value: [1700000000.5, "1e3"] },
          ],
        },
      },
    }));
    try {
      // A prefix such as GMP's /v1/projects/P/location/global/prometheus, with a trailing slash.
      const client = new PrometheusClient(`${fake.url}/v1/projects/p/location/global/prometheus/`, { timeoutMs: 2500, headers: { Authorization: "Bearer t" } });
      const result = await client.query("max(x)", { time: 1_700_000_000_123 });
      expect(result.samples.map((s) => s.value)).toEqual([NaN, Infinity, -Infinity, 1000]);
      expect(result.samples[0]?.timestamp).toBe(1_700_000_000_500);
      expect(result.warnings).toEqual(["partial data"]);
      const params = fake.requests[0]!;
      expect(params.get("query")).toBe("max(x)");
      expect(params.get("time")).toBe("1700000000.123");
      expect(params.get("timeout")).toBe("2.5");
      expect(fake.lastHeaders?.authorization).toBe("Bearer t");
      expect(fake.paths).toEqual(["/v1/projects/p/location/global/prometheus/api/v1/query"]);
    } finally {
      await fake.close();
    }
  });

  it.each([
    ["not a URL", () => new PrometheusClient("http://[::1")],
    ["not http", () => new PrometheusClient("ftp://prometheus")],
    ["a zero timeout", () => new PrometheusClient("http://prometheus", { timeoutMs: 0 })],
    ["a fractional body limit", () => new PrometheusClient("http://prometheus", { maxResponseBytes: 1.5 })],
  ])("refuses %s at construction with a TypeError", (_what, build) => {
    expect(build).toThrow(TypeError);
  });
});
