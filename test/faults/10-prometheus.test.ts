/**
 * Fault matrix, row 10: Prometheus unreachable, or answering garbage. The
 * operator's metric rule must keep being evaluated, count and log every
 * failure, never act on an answer it could not read (nor on a condition it
 * did not see hold for the whole `for`), and act once Prometheus answers
 * properly again — one incident, its rung run once, the process serving.
 *
 * The operator's `--prometheus` URL is a port this test controls: first
 * closed (connection refused), then a small HTTP server answering garbage
 * (500s, HTML, cut-off JSON, wrong shapes, dropped connections), then one
 * that alternates garbage with real answers, then a plain pass-through to
 * the real Prometheus (Debian's package), which scrapes a real factory where
 * one user sits at the limit in zombie connections.
 */
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { join } from "node:path";
import { rm, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { lockOut, rungsRun } from "../support/fault-matrix.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";
import { describeWithPrometheus, startTestPrometheus, type TestPrometheus } from "../support/prometheus.js";

const USER = "105945141827451681156";
const POD = "test-factory-0";
const RULE = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: users-at-limit }
spec:
  trigger:
    metric: { query: "max by (pod) (reclaim_factory_users_at_limit)", op: ">", threshold: 0, for: 1s, interval: 200ms, podLabel: pod }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s, params: { timeoutMs: 300 } }
  verify: { settle: 100ms, timeout: 2s }
  guards: { cooldown: 10m }
`;

/** What the operator gets from its Prometheus URL. */
type Mode = "garbage" | "flapping" | "real";

/** Answers that are not a usable query result. Some would "fire" if read leniently (a value of 1 for the pod). */
const GARBAGE: { name: string; status: number; body: string; hangUp?: boolean }[] = [
  { name: "500 with text", status: 500, body: "internal server error" },
  { name: "502 HTML page", status: 502, body: "<html><body><h1>502 Bad Gateway</h1></body></html>" },
  { name: "200 HTML page", status: 200, body: "<html><body>Prometheus is starting</body></html>" },
  { name: "JSON cut off", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"${POD}"},"value":[1,"1` },
  { name: "value as a number", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"${POD}"},"value":[1,1]}]}}` },
  { name: "no metric labels", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]}]}}` },
  { name: "a matrix", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"${POD}"},"values":[[1,"1"]]}]}}` },
  { name: "no data", status: 200, body: `{"status":"success"}` },
  { name: "dropped connection", status: 200, body: "", hangUp: true },
];

describeWithPrometheus("fault matrix 10: Prometheus unreachable or answering garbage", () => {
  let factory: TestFactory;
  let prometheus: TestPrometheus;
  let operator: TestOperator;
  let port: number;
  let front: Server | null = null;
  let mode: Mode = "garbage";
  const served = new Map<string, number>();
  let requests = 0;

  beforeAll(async () => {
    factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 300 });
    await lockOut(factory, USER, 20);
    prometheus = await startTestPrometheus([{ address: new URL(factory.controlUrl).host, labels: { pod: POD } }]);
    // A port that was free: nothing listens there until the garbage phase.
    port = await new Promise<number>((resolve) => {
      const probe = createNetServer().listen(0, "127.0.0.1", () => {
        const { port: p } = probe.address() as { port: number };
        probe.close(() => resolve(p));
      });
    });
    const dir = await tempDir("reclaim-fault10-");
    await writeFile(join(dir, "factory.log"), "");
    operator = await startTestOperator({
      dir,
      source: `file:${join(dir, "factory.log")}`,
      control: factory.controlUrl,
      rule: RULE,
      prometheus: { url: `http://127.0.0.1:${port}`, timeoutMs: 1000 },
    });
  }, 30_000);

  afterAll(async () => {
    await operator?.close();
    if (operator !== undefined) await rm(operator.dir, { recursive: true, force: true });
    await new Promise<void>((resolve) => (front === null ? resolve() : (front.closeAllConnections(), front.close(() => resolve()))));
    await prometheus?.close();
    await factory?.close();
  });

  async function errors(): Promise<number> {
    const text = await operator.metrics.registry.metrics();
    const match = /^reclaim_operator_metric_errors_total\{rule="users-at-limit",kind="query"\} (\d+)$/m.exec(text);
    return match === null ? 0 : Number(match[1]);
  }
  const metricErrorLines = (): Record<string, unknown>[] => operator.lines.filter((l) => l.event === "operator.metric_error");

  /** Serves the operator's Prometheus URL as `mode` says. */
  async function listen(): Promise<void> {
    let turn = 0;
    front = createServer((req, res) => {
      requests++;
      const real = mode === "real" || (mode === "flapping" && turn++ % 2 === 0);
      if (real) {
        void fetch(`${prometheus.url}${req.url ?? "/"}`).then(
          async (answer) => res.writeHead(answer.status, { "Content-Type": "application/json" }).end(await answer.text()),
          () => res.writeHead(599).end(),
        );
        return;
      }
      const garbage = GARBAGE[(requests - 1) % GARBAGE.length]!;
      served.set(garbage.name, (served.get(garbage.name) ?? 0) + 1);
      if (garbage.hangUp === true) return void req.socket.destroy();
      res.writeHead(garbage.status, { "Content-Type": garbage.body.startsWith("{") ? "application/json" : "text/html" }).end(garbage.body);
    });
    await new Promise<void>((resolve, reject) => {
      front!.once("error", reject);
      front!.listen(port, "127.0.0.1", () => resolve());
    });
  }

  it("unreachable: every evaluation fails, is counted and logged, and nothing is acted on", async () => {
    await eventually(async () => (await errors()) >= 4, 10_000, "four failed evaluations against the closed port");
    expect(metricErrorLines().some((l) => /connect|ECONNREFUSED|fetch failed/i.test(String(l.message)))).toBe(true);
    expect(await operator.incidents()).toEqual([]);
    expect(rungsRun(factory, USER)).toEqual([]);
  });

  it("garbage: each kind is refused (counted, logged), none is read as a firing series", async () => {
    const before = await errors();
    await listen();
    await eventually(() => GARBAGE.every((g) => (served.get(g.name) ?? 0) >= 2), 15_000, "every kind of garbage served twice");
    // Each one served is counted once the evaluator has read it.
    await eventually(async () => (await errors()) >= before + GARBAGE.length * 2, 5000, "every one counted as an error");
    expect(await operator.incidents()).toEqual([]);
    expect(rungsRun(factory, USER)).toEqual([]);
    expect(factory.registry.active(USER)).toBe(20);
  });

  it("good answers between garbage never add up to `for`: still nothing acted on", async () => {
    // The factory's gauge is in the real Prometheus: a real answer says the condition holds.
    await prometheus.until("max by (pod) (reclaim_factory_users_at_limit)", (r) => r.length === 1 && r[0]!.value[1] === "1");
    mode = "flapping";
    const start = requests;
    await eventually(() => requests - start >= 14, 10_000, "seven good and seven bad answers (well past for: 1s)");
    expect(await operator.incidents()).toEqual([]);
    expect(rungsRun(factory, USER)).toEqual([]);
  });

  it("recovers: once Prometheus answers properly for `for`, one incident, its rung run once; the operator served throughout", async () => {
    mode = "real";
    // An evaluation that got a garbage answer just before the switch may not be counted yet: the next request
    // (evaluations of a rule run one after another) means it is, so the count from then on must not move.
    const switched = requests;
    await eventually(() => requests > switched, 5000, "an evaluation after the switch");
    const before = await errors();
    const all = await operator.until((incidents) => incidents.some((i) => i.status === "resolved"), "the metric rule to act and resolve", 20_000);
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({ rule: "users-at-limit", target: { userId: USER, pod: POD } });
    expect(all[0]!.evidence.entries[0]!.message).toBe("max by (pod) (reclaim_factory_users_at_limit) = 1 > 0 for 1s");
    expect(rungsRun(factory, USER)).toEqual(["probe"]);
    expect(factory.registry.active(USER)).toBe(0);
    expect(await errors()).toBe(before);
    // Repeats while the gauge is still 1 in Prometheus are suppressions counted on that incident, not new ones.
    const seen = requests;
    await eventually(() => requests - seen >= 3, 5000, "three more evaluations");
    expect(await operator.incidents()).toHaveLength(1);
    expect(rungsRun(factory, USER)).toEqual(["probe"]);
    expect((await fetch(`http://127.0.0.1:${operator.metricsPort}/healthz`)).status).toBe(200);
  });
});
