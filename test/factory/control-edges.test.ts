/**
 * The control API at its edges (issue 12, item 10), over raw TCP so that the
 * exact bytes reach the server (fetch and node:http refuse to send most of
 * these requests): malformed request lines and targets answer a JSON 4xx,
 * never a 500 or a bare close; `degrade` for a user with no connection is
 * refused and leaves no state behind; slow headers, slow bodies and idle
 * kept-alive connections are cut; one address cannot hold more than its cap
 * of connections that have not sent their request yet.
 *
 * The timeout tests build a control API of their own with short limits (the
 * factory's config does not carry them yet) from the same real parts the
 * factory wires. No test sleeps: a cut connection is its socket's `close`.
 */
import type { Socket } from "node:net";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock, type Timers } from "../../src/contract/clock.js";
import { ControlError, RungResult, type ControlErrorCode } from "../../src/contract/control.js";
import { FactoryEvent } from "../../src/contract/events.js";
import { AdmissionControl } from "../../src/factory/admission.js";
import { InProcessCleanup } from "../../src/factory/cleanup.js";
import { ControlApi } from "../../src/factory/control.js";
import { Evictor } from "../../src/factory/evict.js";
import { addressKey, ERROR_LINGER_MS, type HttpLimits } from "../../src/factory/http-limits.js";
import { createEventLog } from "../../src/factory/log.js";
import { FactoryMetrics } from "../../src/factory/metrics.js";
import { AdmissionQueue } from "../../src/factory/queue.js";
import { RefusalTracker } from "../../src/factory/refusals.js";
import { Registry } from "../../src/factory/registry.js";
import { RungRunner } from "../../src/factory/rungs/runner.js";
import { ManualClock } from "../support/clock.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { openRaw, parseRaw as parse, sample, type RawReply } from "../support/raw-http.js";

const AUTH = `Authorization: Bearer ${TEST_CONTROL_TOKEN}\r\n`;

let factory: TestFactory | undefined;
let api: ControlApi | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await factory?.close();
  await api?.close();
  factory = undefined;
  api = undefined;
});

// ---------------------------------------------------------------------------
// Raw HTTP over TCP
// ---------------------------------------------------------------------------



/** Sends `bytes` and resolves with the answer once the server closes the connection. */
/** A connection to `port` that has sent `bytes` (see `openRaw`). */
function open(port: number, bytes: string, halfOpen = false): Promise<{ socket: Socket; closed: Promise<RawReply> }> {
  return openRaw(port, bytes, sockets, halfOpen);
}

async function exchange(port: number, bytes: string): Promise<RawReply> {
  return (await open(port, bytes)).closed;
}


/** A request with `Host`, the token and `Connection: close` after the given request line and extra header lines. */
function request(line: string, extra = ""): string {
  return `${line}\r\nHost: control\r\n${AUTH}${extra}Connection: close\r\n\r\n`;
}

/** Asserts a JSON error answer with this status and code, in the control API's error shape. */
function expectError(reply: RawReply, status: number, code: ControlErrorCode): void {
  expect({ status: reply.status, code: reply.body?.error?.code }, reply.raw).toEqual({ status, code });
  expect(reply.headers["content-type"]).toMatch(/^application\/json/);
  expect(ControlError.safeParse(reply.body).success, reply.raw).toBe(true);
}


// ---------------------------------------------------------------------------
// A control API with limits of the test's choosing
// ---------------------------------------------------------------------------

/** Starts a control API on 127.0.0.1 with these HTTP limits, wired from real parts as the factory wires them. */
async function startControl(httpLimits: Partial<HttpLimits>, timers?: Timers): Promise<{ api: ControlApi; port: number; metrics: FactoryMetrics }> {
  const clock = systemClock;
  const log = createEventLog({ level: "error", streams: [new Writable({ write: (_c, _e, done) => done() })] });
  const registry = new Registry(20, clock);
  const refusals = new RefusalTracker(clock, (userId) => registry.holds(userId));
  const queue = new AdmissionQueue(() => false);
  const metrics = new FactoryMetrics(
    { managers: () => registry.size, connections: () => 0, usersAtLimit: () => registry.countAtLimit(), queueLength: () => queue.size },
    { defaultMetrics: false },
  );
  const evictor = new Evictor(registry, log, metrics, 1000);
  const defaults = { idleMs: 120_000, probeTimeoutMs: 1000, probeDeadline: "phi" as const, probeFloorMs: 100, bufferThresholdBytes: 1 << 20, degradeLimit: 25, maxDegradeLimit: 40 };
  const runner: RungRunner = new RungRunner({ registry, evictor, clock, metrics, defaults }, log, (userId: string): boolean => admission.wouldAdmit(userId));
  const cleanup = new InProcessCleanup("ladder", ["conservative", "probe"], { registry, evictor, runner, clock, metrics, log });
  const admission = new AdmissionControl(registry, queue, cleanup, clock, log, metrics, { queueTimeoutMs: 0, queueMax: 10, retryAfterSeconds: 5 }, refusals);
  api = new ControlApi({
    token: TEST_CONTROL_TOKEN,
    registry,
    queue,
    admission,
    runner,
    metrics,
    refusals,
    clock,
    ready: () => true,
    httpLimits,
    ...(timers === undefined ? {} : { timers }),
  });
  return { api, port: await api.listen(0, "127.0.0.1"), metrics };
}

// ---------------------------------------------------------------------------
// Malformed requests
// ---------------------------------------------------------------------------

/** Request lines (and headers) that are malformed somewhere, with the answer each must get. Each once reached a 500 or a bare answer. */
const MALFORMED: readonly (readonly [label: string, bytes: string, status: number, code: ControlErrorCode])[] = [
  // Targets the server's URL parsing threw on (500 before).
  ["an absolute-form URL with a broken IPv6 host", request("GET http://[ HTTP/1.1"), 400, "bad_request"],
  ["an absolute-form URL with an unclosed IPv6 host and a path", request("GET http://[::1/ HTTP/1.1"), 400, "bad_request"],
  ["an absolute-form URL with a port out of range", request("GET http://x:99999/v1/users HTTP/1.1"), 400, "bad_request"],
  ["an absolute-form URL with no host", request("GET http:// HTTP/1.1"), 400, "bad_request"],
  ["a path starting with // and a broken host-like part", request("GET //[ HTTP/1.1"), 404, "not_found"],
  // Targets that are not a path at all (404 before).
  ["the asterisk form", request("OPTIONS * HTTP/1.1"), 400, "bad_request"],
  // Percent-encoding that does not decode (404 before).
  ["a path outside /v1 with %ZZ", request("GET /%ZZ HTTP/1.1"), 400, "bad_request"],
  ["a /v1 path with %ZZ where no route matches", request("GET /v1/%ZZ HTTP/1.1"), 400, "bad_request"],
  ["a rung segment with %ZZ", request("POST /v1/users/alice/rungs/%ZZ HTTP/1.1"), 400, "bad_request"],
  ["a user id segment with %ZZ", request("GET /v1/users/%ZZ HTTP/1.1"), 400, "invalid_user_id"],
  ["a user id segment with a truncated UTF-8 escape", request("GET /v1/users/%E0%A4%A/admission HTTP/1.1"), 400, "invalid_user_id"],
  // What Node's parser refuses itself (a bare status line and no body before).
  ["a request line that is not HTTP", "GARBAGE\r\n\r\n", 400, "bad_request"],
  ["an unknown HTTP version", request("GET /healthz HTTP/9.9"), 400, "bad_request"],
  ["a control character in the path", request("GET /\u0001 HTTP/1.1"), 400, "bad_request"],
  ["a Content-Length that is not a number", request("POST /v1/users/alice/rungs/force HTTP/1.1", "Content-Length: abc\r\n"), 400, "bad_request"],
  ["a URL over the header size limit", request(`GET /v1/users/${"a".repeat(20_000)} HTTP/1.1`), 431, "headers_too_large"],
  ["an HTTP/1.1 request without Host", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "bad_request"],
  // A method Node answers by closing without a word (an empty close before).
  ["CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, "method_not_allowed"],
];

describe("malformed requests on the control API", () => {
  it.each(MALFORMED.map(([label, bytes, status, code]) => ({ label, bytes, status, code })))(
    "$label → $status $code in the JSON error shape",
    async ({ bytes, status, code }) => {
      const f = (factory = await startTestFactory());
      expectError(await exchange(f.controlPort, bytes), status, code);
    },
  );

  it("none of them is a 500: the control API counts no 5xx afterwards, and still answers", async () => {
    const f = (factory = await startTestFactory());
    for (const [, bytes] of MALFORMED) await exchange(f.controlPort, bytes);
    const metrics = await f.metrics.registry.metrics();
    expect(metrics).not.toMatch(/reclaim_factory_control_requests_total\{[^}]*status="5\d\d"\}/);
    // Parser-level refusals never reach a handler, so they are counted apart, by the code answered.
    expect(sample(metrics, 'reclaim_factory_http_refused_total{server="control",code="bad_request"}')).toBeGreaterThanOrEqual(5);
    expect(sample(metrics, 'reclaim_factory_http_refused_total{server="control",code="headers_too_large"}')).toBe(1);
    expect((await exchange(f.controlPort, request("GET /healthz HTTP/1.1"))).status).toBe(200);
  });

  it("a target routes by its path only: //evil/v1/users is a path (no route), http://elsewhere/v1/users is /v1/users", async () => {
    const f = (factory = await startTestFactory());
    expectError(await exchange(f.controlPort, request("GET //evil/v1/users HTTP/1.1")), 404, "not_found");
    // The absolute form, which a server must accept (RFC 9112 §3.2.2), still works.
    const reply = await exchange(f.controlPort, request("GET http://elsewhere.example/v1/users HTTP/1.1"));
    expect(reply.status, reply.raw).toBe(200);
    expect(reply.body.users).toEqual([]);
  });

  it("under /v1 a malformed path without the token is 401: an unauthenticated caller learns nothing", async () => {
    const f = (factory = await startTestFactory());
    const reply = await exchange(f.controlPort, "GET /v1/%ZZ HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n");
    expectError(reply, 401, "unauthorized");
  });
});

// ---------------------------------------------------------------------------
// degrade for a user with no connection
// ---------------------------------------------------------------------------

function degrade(userId: string, headers = ""): string {
  const body = JSON.stringify({ limit: 25, ttlMs: 60_000 });
  return request(`POST /v1/users/${userId}/rungs/degrade HTTP/1.1`, `${headers}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n`) + body;
}

describe("degrade for a user with no connection", () => {
  it("→ 409 no_connections, and nothing is held, raised, logged or counted for that user", async () => {
    const f = (factory = await startTestFactory());
    expectError(await exchange(f.controlPort, degrade("nobody-7c1e")), 409, "no_connections");
    expect(f.registry.holds("nobody-7c1e")).toBe(false);
    expect(f.registry.raiseOf("nobody-7c1e")).toBeNull();
    expect(f.events(FactoryEvent.degraded, "nobody-7c1e")).toHaveLength(0);
    expect(f.events(FactoryEvent.cleanup, "nobody-7c1e")).toHaveLength(0);
    expect(sample(await f.metrics.registry.metrics(), 'reclaim_factory_cleanup_runs_total{rung="degrade",trigger="control"}')).toBeUndefined();
    // Once the user holds a connection, the same call raises their limit as before.
    await f.open("nobody-7c1e");
    const reply = await exchange(f.controlPort, degrade("nobody-7c1e"));
    expect(reply.status, reply.raw).toBe(200);
    expect(RungResult.parse(reply.body)).toMatchObject({ effectiveLimit: 25, remaining: 1 });
  });

  it("200 users with no connection cannot grow the registry: it still holds no one", async () => {
    const f = (factory = await startTestFactory());
    for (let i = 0; i < 200; i++) expect((await exchange(f.controlPort, degrade(`ghost-${i}`))).status).toBe(409);
    expect(f.registry.userCount).toBe(0);
  });

  it("a refusal under an Idempotency-Key is not remembered: once the user connects, the same key runs the rung", async () => {
    const f = (factory = await startTestFactory());
    const key = "Idempotency-Key: incident-1/2\r\n";
    expectError(await exchange(f.controlPort, degrade("carol", key)), 409, "no_connections");
    await f.open("carol");
    const reply = await exchange(f.controlPort, degrade("carol", key));
    expect(reply.status, reply.raw).toBe(200);
    expect(reply.headers["idempotent-replayed"]).toBeUndefined();
    expect(f.registry.effectiveLimit("carol")).toBe(25);
  });
});

// ---------------------------------------------------------------------------
// Slow clients
// ---------------------------------------------------------------------------

describe("slow connections on the control port", () => {
  it("headers that never finish are cut after headersTimeoutMs with 408 request_timeout", async () => {
    const { port, metrics } = await startControl({ headersTimeoutMs: 200 });
    const { closed } = await open(port, "GET /healthz HTTP/1.1\r\nHost: control\r\nX-Slow: ");
    expectError(await closed, 408, "request_timeout");
    expect(sample(await metrics.registry.metrics(), 'reclaim_factory_http_refused_total{server="control",code="request_timeout"}')).toBe(1);
  });

  it("a connection that sends nothing at all is cut too", async () => {
    const { port } = await startControl({ headersTimeoutMs: 200 });
    const { closed } = await open(port, "");
    expectError(await closed, 408, "request_timeout");
  });

  it("a body that never finishes is cut after requestTimeoutMs with 408", async () => {
    const { port } = await startControl({ headersTimeoutMs: 200, requestTimeoutMs: 300 });
    const head = request("POST /v1/users/alice/rungs/force HTTP/1.1", "Content-Type: application/json\r\nContent-Length: 100\r\n");
    const { closed } = await open(port, `${head}{"max":`);
    expectError(await closed, 408, "request_timeout");
  });

  it("an idle kept-alive connection is closed after keepAliveTimeoutMs", async () => {
    const { port } = await startControl({ keepAliveTimeoutMs: 100 });
    const { closed } = await open(port, "GET /healthz HTTP/1.1\r\nHost: control\r\n\r\n");
    expect((await closed).status).toBe(200);
  });
});

describe("after an error answer", () => {
  it("a client that never hangs up is disconnected once ERROR_LINGER_MS pass on the server's timers", async () => {
    const clock = new ManualClock();
    const { api: control, port } = await startControl({}, clock);
    const connections = (): Promise<number> => new Promise((resolve, reject) => control.http.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    let received = "";
    const { socket } = await open(port, "GARBAGE\r\n\r\n", true);
    socket.on("data", (chunk: string) => (received += chunk));
    // The answer, and the server's end of the stream, arrive; the client keeps its own side open.
    await new Promise<void>((resolve) => socket.once("end", resolve));
    expect(parse(received).body.error.code).toBe("bad_request");
    expect(await connections()).toBe(1);
    clock.advance(ERROR_LINGER_MS - 1);
    expect(await connections()).toBe(1);
    clock.advance(1);
    await eventually(async () => (await connections()) === 0, 5000, "the server to let go of the connection");
  });
});

describe("connections per client address that have not sent their request", () => {
  it("one over the cap is answered 503 too_many_connections and closed; a finished request frees its place", async () => {
    const { api: control, port, metrics } = await startControl({ maxPendingPerAddress: 2 });
    const first = await open(port, "GET /healthz HTTP/1.1\r\nHost: control\r\n");
    await open(port, "GET /healthz HTTP/1.1\r\nHost: con");
    await eventually(() => control.guard.pendingFrom("127.0.0.1") === 2, 5000, "both connections to be accepted");

    const over = await exchange(port, "");
    expectError(over, 503, "too_many_connections");
    expect(over.headers["retry-after"]).toBe("1");
    expect(sample(await metrics.registry.metrics(), 'reclaim_factory_http_refused_total{server="control",code="too_many_connections"}')).toBe(1);

    // The first finishes its request: it no longer counts, and a new connection gets in.
    first.socket.write("Connection: close\r\n\r\n");
    expect((await first.closed).status).toBe(200);
    expect((await exchange(port, request("GET /healthz HTTP/1.1"))).status).toBe(200);
  });

  it("a connection that leaves before its request frees its place", async () => {
    const { api: control, port } = await startControl({ maxPendingPerAddress: 1 });
    const gone = await open(port, "GET /healthz HTTP/1.1\r\n");
    await eventually(() => control.guard.pendingFrom("127.0.0.1") === 1, 5000, "the connection to be accepted");
    gone.socket.destroy();
    await eventually(() => control.guard.pending === 0, 5000, "the server to see it leave");
    expect((await exchange(port, request("GET /healthz HTTP/1.1"))).status).toBe(200);
  });
});

describe("addressKey", () => {
  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["::ffff:10.1.2.3", "10.1.2.3"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"],
    ["2001:0db8:0001:0002::1", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    [undefined, "unknown"],
  ])("%s → %s", (address, key) => {
    expect(addressKey(address)).toBe(key);
  });
});
