/**
 * ControlCheck: the operator asks each factory's control API one cheap
 * authenticated question at start and every minute, and keeps what it found:
 * a wrong token is an ERROR at once, an unreachable factory a WARN, and every
 * call ends at its deadline. Against a real factory, and local HTTP servers
 * for what a factory would not do (403, hang, a body that is not the API's).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { ControlCheck, CONTROL_CHECK_EVENT, CONTROL_CHECK_USER, type ControlCheckState } from "../../../src/operator/act/control-check.js";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import { createOperatorLog, type OperatorLog } from "../../../src/operator/log.js";
import { ManualClock } from "../../support/clock.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The operator's real log, its lines parsed. */
function capturedLog(): { log: OperatorLog; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString("utf8").split("\n")) if (text !== "") lines.push(JSON.parse(text) as Record<string, unknown>);
      done();
    },
  });
  return { log: createOperatorLog({ streams: [sink], level: "debug", pod: "operator-0" }), lines };
}

type Behaviour = "ok" | 401 | 403 | 404 | 500 | "not-json" | "hang";

/** A local HTTP server answering the admission question as told; it counts what it was asked. */
async function fakeFactory(initial: Behaviour): Promise<{ url: string; requests: IncomingMessage[]; set(b: Behaviour): void }> {
  let behaviour = initial;
  const requests: IncomingMessage[] = [];
  const hanging: ServerResponse[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req);
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (behaviour === "hang") hanging.push(res);
    else if (behaviour === "ok") json(200, { userId: CONTROL_CHECK_USER, admit: true, active: 0, effectiveLimit: 20, queued: 0 });
    else if (behaviour === "not-json") {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end("<html>a login page</html>");
    } else json(behaviour, { error: { code: behaviour === 404 ? "not_found" : behaviour === 500 ? "internal" : "unauthorized", message: "no" } });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, set: (b) => (behaviour = b) };
}

/** A URL nothing listens on: a port that was just free. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

async function factory(): Promise<TestFactory> {
  const f = await startTestFactory();
  cleanups.push(() => f.close());
  return f;
}

/** A check over `clients`, stopped after the test; its log lines and every onChange. */
function checkOf(clients: ConstructorParameters<typeof ControlCheck>[0]["clients"], timers: ManualClock, extra: { registry?: Registry; onChange?: () => void } = {}) {
  const { log, lines } = capturedLog();
  const changes: [ControlCheckState, ControlCheckState][] = [];
  const check = new ControlCheck({
    clients,
    log,
    timers,
    registry: extra.registry,
    onChange: (state, previous) => {
      changes.push([state, previous]);
      extra.onChange?.();
    },
  });
  cleanups.push(() => check.stop());
  const logged = (): { severity: unknown; message: unknown }[] => lines.filter((l) => l.event === CONTROL_CHECK_EVENT).map((l) => ({ severity: l.severity, message: l.message }));
  return { check, changes, logged };
}

describe("ControlCheck against a real factory", () => {
  it("with the right token: ok, one INFO line, and the factory holds nothing for the user it asked about", async () => {
    const f = await factory();
    const clock = new ManualClock();
    const { check, changes, logged } = checkOf(new ControlClient(f.controlUrl, TEST_CONTROL_TOKEN, clock), clock);
    const state = await check.start();
    expect(state).toMatchObject({ ok: true, kind: "ok", checkedAt: clock.now(), factories: [{ control: f.controlUrl, kind: "ok", status: 200 }] });
    expect(check.state).toBe(state);
    expect(logged()).toEqual([{ severity: "INFO", message: `Control API check: ${f.controlUrl} answered and accepted the token` }]);
    expect(changes.map(([s, p]) => [s.kind, p.checkedAt])).toEqual([["ok", null]]);
    // It asked, and changed nothing.
    expect(f.registry.holds(CONTROL_CHECK_USER)).toBe(false);
    expect((await f.control("GET", "/v1/users")).body.users).toEqual([]);
  });

  it("with a wrong token: unauthorized, an ERROR naming RECLAIM_CONTROL_TOKEN at start, not repeated every minute", async () => {
    const f = await factory();
    const clock = new ManualClock();
    const start = clock.now();
    const { check, changes, logged } = checkOf(new ControlClient(f.controlUrl, "not-the-factory-token-0000", clock), clock);
    const state = await check.start();
    expect(state).toMatchObject({ ok: false, kind: "unauthorized", factories: [{ kind: "unauthorized", status: 401 }] });
    expect(logged()).toEqual([{ severity: "ERROR", message: expect.stringContaining("RECLAIM_CONTROL_TOKEN is wrong") }]);
    await clock.run(60_000);
    await eventually(() => check.state.checkedAt === start + 60_000, 5000, "the second round");
    expect(check.state.kind).toBe("unauthorized");
    expect(logged()).toHaveLength(1);
    expect(changes).toHaveLength(1);
  });
});

describe("ControlCheck: what each answer means", () => {
  it.each<[Behaviour, string, RegExp]>([
    [403, "unauthorized", /answered 403: it does not take the operator's RECLAIM_CONTROL_TOKEN/],
    [404, "error", /answered 404 \(not_found: no\)/],
    [500, "error", /answered 500 \(internal: no\)/],
    ["not-json", "error", /answered 200 with malformed JSON/],
  ])("%s is %s", async (behaviour, kind, detail) => {
    const server = await fakeFactory(behaviour);
    const clock = new ManualClock();
    const { check, logged } = checkOf(new ControlClient(server.url, "token-0123456789abcdef", clock), clock);
    const state = await check.start();
    expect(state).toMatchObject({ ok: false, kind });
    expect(state.detail).toMatch(detail);
    expect(logged()).toEqual([{ severity: kind === "unauthorized" ? "ERROR" : "WARNING", message: expect.stringMatching(detail) }]);
    expect(server.requests.map((r) => [r.method, r.url, r.headers.authorization])).toEqual([["GET", `/v1/users/${CONTROL_CHECK_USER}/admission`, "Bearer token-0123456789abcdef"]]);
  });

  it("a factory that refuses connections is unreachable: a WARN", async () => {
    const url = await deadUrl();
    const clock = new ManualClock();
    const { check, logged } = checkOf(new ControlClient(url, "token-0123456789abcdef", clock), clock);
    const state = await check.start();
    expect(state).toMatchObject({ ok: false, kind: "unreachable", factories: [{ control: url, kind: "unreachable", status: null }] });
    expect(logged()).toEqual([{ severity: "WARNING", message: expect.stringMatching(/^Control API check: .* failed: .*; rungs will fail until it answers$/) }]);
  });

  it("a factory that never answers: the first round ends at its deadline, not before, as unreachable", async () => {
    const server = await fakeFactory("hang");
    const clock = new ManualClock();
    const { check } = checkOf(new ControlClient(server.url, "token-0123456789abcdef", clock), clock);
    let settled = false;
    const started = check.start().then((s) => {
      settled = true;
      return s;
    });
    await eventually(() => server.requests.length === 1, 5000, "the request to reach the server");
    await clock.run(4_999);
    expect(settled).toBe(false);
    await clock.run(1);
    const state = await started;
    expect(state).toMatchObject({ ok: false, kind: "unreachable" });
    expect(state.detail).toMatch(/timed out after 5000 ms/);
  });

  it("several factories: the worst kind wins, and the detail names the failing ones", async () => {
    const f = await factory();
    const clock = new ManualClock();
    const dead = await deadUrl();
    const clients = [
      new ControlClient(f.controlUrl, TEST_CONTROL_TOKEN, clock),
      new ControlClient(dead, TEST_CONTROL_TOKEN, clock),
      new ControlClient(f.controlUrl.replace("127.0.0.1", "localhost"), "not-the-factory-token-0000", clock),
    ];
    const { check } = checkOf(clients, clock);
    const state = await check.start();
    expect(state.kind).toBe("unauthorized");
    expect(state.factories.map((c) => c.kind)).toEqual(["ok", "unreachable", "unauthorized"]);
    expect(state.detail).toMatch(new RegExp(`^1 of 3 factories OK; ${dead} unreachable: .*; http://localhost:\\d+ unauthorized: answered 401`));
  });
});

describe("ControlCheck: the factories to ask, looked up each round", () => {
  it("a lookup that fails is an error; one that finds none, unreachable", async () => {
    const clock = new ManualClock();
    const failing = checkOf(() => Promise.reject(new Error("the API server said 403")), clock);
    expect(await failing.check.start()).toMatchObject({ ok: false, kind: "error", detail: "cannot list the factories: the API server said 403" });
    const empty = checkOf(() => Promise.resolve([]), clock);
    expect(await empty.check.start()).toMatchObject({ ok: false, kind: "unreachable", detail: "no factory to check" });
  });

  it("a lookup that hangs ends at the deadline, and the lookup is told to stop", async () => {
    const clock = new ManualClock();
    let signal: AbortSignal | undefined;
    const { check } = checkOf((s) => {
      signal = s;
      return new Promise(() => {});
    }, clock);
    const started = check.start();
    await clock.run(5_000);
    expect(await started).toMatchObject({ ok: false, kind: "error", detail: "listing the factories took longer than 5000 ms" });
    expect(signal?.aborted).toBe(true);
  });

  it("asks at most maxFactories a round, going round the list", async () => {
    const server = await fakeFactory("ok");
    const clock = new ManualClock();
    // One server, told apart by the token each client sends.
    const clients = [1, 2, 3].map((i) => new ControlClient(server.url, `token-${i}-0123456789abcdef`, clock));
    const { log } = capturedLog();
    const check = new ControlCheck({ clients, log, timers: clock, maxFactories: 2 });
    cleanups.push(() => check.stop());
    await check.check();
    await check.check();
    expect(server.requests.map((r) => r.headers.authorization)).toEqual(["Bearer token-1-0123456789abcdef", "Bearer token-2-0123456789abcdef", "Bearer token-3-0123456789abcdef", "Bearer token-1-0123456789abcdef"]);
  });
});

describe("ControlCheck: every minute", () => {
  it("asks again every interval, tells onChange when the answer changes (a token fixed), and stops asking after stop()", async () => {
    const server = await fakeFactory(401);
    const clock = new ManualClock();
    const { check, changes, logged } = checkOf(new ControlClient(server.url, "token-0123456789abcdef", clock), clock);
    expect((await check.start()).kind).toBe("unauthorized");
    server.set("ok");
    await clock.run(60_000);
    await eventually(() => check.state.kind === "ok", 5000, "the second round");
    expect(server.requests).toHaveLength(2);
    expect(changes.map(([s, p]) => [p.kind, s.kind])).toEqual([
      ["unreachable", "unauthorized"], // the state before the first round
      ["unauthorized", "ok"],
    ]);
    expect(logged().map((l) => l.severity)).toEqual(["ERROR", "INFO"]);
    check.stop();
    expect(clock.timers).toBe(0);
    await clock.run(180_000);
    expect(server.requests).toHaveLength(2);
  });

  it("does not start a round while one runs, and a listener that throws does not stop the rounds", async () => {
    const server = await fakeFactory("hang");
    const clock = new ManualClock();
    const { check, changes } = checkOf(new ControlClient(server.url, "token-0123456789abcdef", clock), clock, {
      onChange: () => {
        throw new Error("a broken listener");
      },
    });
    const first = check.start();
    expect(check.check()).toBe(first);
    await eventually(() => server.requests.length === 1, 5000, "the request");
    await clock.run(5_000);
    expect((await first).kind).toBe("unreachable");
    server.set(500);
    await clock.run(55_000);
    await eventually(() => check.state.kind === "error", 5000, "the next round");
    expect(changes.map(([s]) => s.kind)).toEqual(["unreachable", "error"]);
  });

  it("stop() during a round cuts the call off at once and keeps the state it had", async () => {
    const server = await fakeFactory("hang");
    const clock = new ManualClock();
    const { check, changes } = checkOf(new ControlClient(server.url, "token-0123456789abcdef", clock), clock);
    const started = check.start();
    await eventually(() => server.requests.length === 1, 5000, "the request");
    check.stop();
    const state = await started;
    expect(state).toMatchObject({ ok: false, checkedAt: null, detail: "not checked yet" });
    expect(changes).toEqual([]);
    expect(await check.start()).toBe(state);
    expect(server.requests).toHaveLength(1);
  });
});

describe("ControlCheck: metrics and options", () => {
  it("exports ok, the kind and when it checked", async () => {
    const f = await factory();
    const clock = new ManualClock();
    const registry = new Registry();
    const { check } = checkOf(new ControlClient(f.controlUrl, TEST_CONTROL_TOKEN, clock), clock, { registry });
    expect(await registry.getSingleMetricAsString("reclaim_operator_control_api_ok")).toMatch(/^reclaim_operator_control_api_ok 0$/m);
    await check.start();
    const text = await registry.metrics();
    expect(text).toMatch(/^reclaim_operator_control_api_ok 1$/m);
    expect(text).toMatch(/^reclaim_operator_control_api_state\{kind="ok"\} 1$/m);
    expect(text).toMatch(/^reclaim_operator_control_api_state\{kind="unauthorized"\} 0$/m);
    expect(text).toMatch(new RegExp(`^reclaim_operator_control_api_checked_timestamp_seconds ${clock.now() / 1000}$`, "m"));
  });

  it.each([
    ["intervalMs", { intervalMs: 0 }],
    ["timeoutMs", { timeoutMs: 1.5 }],
    ["maxFactories", { maxFactories: -1 }],
  ])("refuses a bad %s", (name, options) => {
    const { log } = capturedLog();
    expect(() => new ControlCheck({ clients: [], log, ...options })).toThrow(new RegExp(`ControlCheck: ${name} must be a positive whole number`));
  });
});
