/**
 * The control client's HTTP call (node:http since ADR 36) against real HTTP
 * servers on 127.0.0.1: what it sends, how each answer is read, and how every
 * failure is classified — the deadline (on a ManualClock: the call ends when
 * its time is up, not before), the caller's signal, a refused connection, a
 * connection closed before or during the answer, and bodies that are not the
 * control API's, or too long to be one (more than MAX_ANSWER_BYTES: not
 * read whole). Every wait is for an event (a request arriving, a socket
 * closing), never a fixed time.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../../src/contract/clock.js";
import { ControlCallError, ControlClient, MAX_ANSWER_BYTES, type CallFailureKind } from "../../../src/operator/act/control-client.js";

const TOKEN = "token-0123456789abcdef";
const USER = "alice";
const ADMISSION = { userId: USER, admit: true, active: 1, effectiveLimit: 20, queued: 0 };
const RUNG = { rung: "probe", userId: USER, removed: [], remaining: 2, limit: 3, effectiveLimit: 3, degradedUntil: null, admit: true, durationMs: 12 };

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  /** The client's port: the same for two requests over one kept-alive connection. */
  remotePort: number | undefined;
  /** Resolves when the client's side of this request's connection closed. */
  closed: Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A server on 127.0.0.1 that records each request (with its body) and then hands it to `handler`. */
async function serve(handler: Handler): Promise<{ url: string; requests: Received[]; request(): Promise<Received> }> {
  const requests: Received[] = [];
  const waiting: ((r: Received) => void)[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const received: Received = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        remotePort: req.socket.remotePort,
        // Closed, after an error or not (a client that cuts an answer off resets the connection).
        closed: req.socket.destroyed ? Promise.resolve() : new Promise<void>((resolve) => req.socket.once("close", () => resolve())),
      };
      requests.push(received);
      waiting.shift()?.(received);
      handler(req, res);
    });
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
    await once(server, "close");
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    request: () => (requests.length > waiting.length ? Promise.resolve(requests[waiting.length]!) : new Promise<Received>((resolve) => waiting.push(resolve))),
  };
}

/** A URL on 127.0.0.1 where nothing listens (a port the OS gave and took back). */
async function deadUrl(): Promise<string> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return `http://127.0.0.1:${port}`;
}

/**
 * Resolves when this process's next HTTP client response head has been read
 * (Node's `http.client.response.finish` diagnostics channel, published as
 * the head is parsed, before the `response` event).
 */
function nextResponseHead(): Promise<void> {
  return new Promise<void>((resolve) => {
    const onHead = (): void => {
      unsubscribe("http.client.response.finish", onHead);
      resolve();
    };
    subscribe("http.client.response.finish", onHead);
  });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

/** What a call rejected with; fails the test if it resolved or threw anything but a ControlCallError. */
async function failure(call: Promise<unknown>): Promise<ControlCallError> {
  try {
    await call;
  } catch (err) {
    expect(err).toBeInstanceOf(ControlCallError);
    return err as ControlCallError;
  }
  throw new Error("expected the call to fail");
}

function shape(err: ControlCallError): { kind: CallFailureKind; status: number | null; recoverable: boolean; code: string } {
  return { kind: err.kind, status: err.status, recoverable: err.recoverable, code: err.code };
}

describe("ControlClient: what it sends and reads", () => {
  it("GET with the bearer token and no body; the answer validated and recorded", async () => {
    const server = await serve((_req, res) => json(res, 200, ADMISSION));
    const client = new ControlClient(server.url, TOKEN);
    const record = await client.admission(USER, 5000);
    expect(record).toEqual({
      request: { method: "GET", url: `${server.url}/v1/users/${USER}/admission`, body: null },
      status: 200,
      body: ADMISSION,
      value: ADMISSION,
      replayed: false,
    });
    const [sent] = server.requests;
    expect(sent).toMatchObject({ method: "GET", url: `/v1/users/${USER}/admission`, body: "" });
    expect(sent!.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(sent!.headers["content-type"]).toBeUndefined();
    expect(sent!.headers["idempotency-key"]).toBeUndefined();
  });

  it("POST with a JSON body, its length, and the idempotency key; a replayed answer is flagged", async () => {
    const server = await serve((_req, res) => json(res, 200, RUNG, { "Idempotent-Replayed": "true" }));
    const client = new ControlClient(server.url, TOKEN);
    const params = { note: "é ≤ …" };
    const record = await client.runRung(USER, "probe", params, 5000, "key-1");
    expect(record).toMatchObject({ status: 200, value: RUNG, replayed: true, request: { method: "POST", url: `${server.url}/v1/users/${USER}/rungs/probe`, body: params } });
    const [sent] = server.requests;
    expect(sent).toMatchObject({ method: "POST", url: `/v1/users/${USER}/rungs/probe`, body: JSON.stringify(params) });
    expect(sent!.headers).toMatchObject({ authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "idempotency-key": "key-1", "content-length": String(Buffer.byteLength(JSON.stringify(params))) });
  });

  it("runRung without params sends {}", async () => {
    const server = await serve((_req, res) => json(res, 200, RUNG));
    await new ControlClient(server.url, TOKEN).runRung(USER, "probe", undefined, 5000);
    expect(server.requests[0]!.body).toBe("{}");
  });

  it("reads a body sent in many chunks, and drops a leading byte order mark", async () => {
    const text = JSON.stringify({ users: Array.from({ length: 2000 }, (_, i) => ({ userId: `user-${i}`, active: 1, limit: 3, effectiveLimit: 3, queued: 0 })) });
    const server = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.write("\uFEFF");
      for (let i = 0; i < text.length; i += 1000) res.write(text.slice(i, i + 1000));
      res.end();
    });
    const record = await new ControlClient(server.url, TOKEN).usersAtLimit(5000);
    expect(record.body).toEqual(JSON.parse(text));
    expect(server.requests[0]!.url).toBe("/v1/users?atLimit=true");
  });

  it("a connection kept alive is used again for the next call", async () => {
    const server = await serve((_req, res) => json(res, 200, ADMISSION));
    const client = new ControlClient(server.url, TOKEN);
    await client.admission(USER, 5000);
    await client.admission(USER, 5000);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.remotePort).toBe(server.requests[0]!.remotePort);
  });
});

describe("ControlClient: answers that are not a success", () => {
  it.each([
    [404, { error: { code: "not_found", message: "no such user" } }, "answered 404 (not_found: no such user)", false],
    [401, { error: { code: "unauthorized", message: "bad token" } }, "answered 401 (unauthorized: bad token)", false],
    [429, { error: { code: "internal", message: "slow down" } }, "answered 429 (internal: slow down)", true],
    [500, { error: { code: "internal", message: "boom" } }, "answered 500 (internal: boom)", true],
    [503, "<html>down</html>", "answered 503 (HTTP 503)", true],
    [302, "", "answered 302 (HTTP 302)", false],
  ] as const)("%i: kind http, the body kept, recoverable %s", async (status, body, message, recoverable) => {
    const server = await serve((_req, res) => json(res, status, body, status === 302 ? { Location: "/elsewhere" } : {}));
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 5000));
    expect(shape(err)).toEqual({ kind: "http", status, recoverable, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toBe(`GET ${server.url}/v1/users/${USER}/admission ${message}`);
    expect(err.body).toEqual(body === "" ? null : body);
    // Redirects are not followed.
    expect(server.requests).toHaveLength(1);
  });

  it("200 with a body that is not JSON: invalid_response, the text kept (at most 500 characters)", async () => {
    const server = await serve((_req, res) => json(res, 200, `<html>${"x".repeat(1000)}</html>`));
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 5000));
    expect(shape(err)).toEqual({ kind: "invalid_response", status: 200, recoverable: false, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toMatch(/answered 200 with malformed JSON$/);
    expect(err.body).toBe(`<html>${"x".repeat(494)}`);
  });

  it("200 with JSON of another shape: invalid_response, the body kept", async () => {
    const server = await serve((_req, res) => json(res, 200, { admit: "yes" }));
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 5000));
    expect(shape(err)).toMatchObject({ kind: "invalid_response", status: 200 });
    expect(err.message).toMatch(/answered 200 with an unexpected body$/);
    expect(err.body).toEqual({ admit: "yes" });
  });
});

/** JSON of another shape than an admission, exactly `bytes` long: `{"admit":"yes","pad":"xxx…"}`. */
function paddedJson(bytes: number): string {
  const head = '{"admit":"yes","pad":"';
  return `${head}${"x".repeat(bytes - head.length - 2)}"}`;
}

describe("ControlClient: answers too long to be a factory's (MAX_ANSWER_BYTES)", () => {
  it("an answer of exactly MAX_ANSWER_BYTES is read whole (here: JSON of another shape, so invalid_response for its shape)", async () => {
    const body = paddedJson(MAX_ANSWER_BYTES);
    expect(Buffer.byteLength(body)).toBe(MAX_ANSWER_BYTES);
    const server = await serve((_req, res) => json(res, 200, body));
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 30_000));
    expect(shape(err)).toMatchObject({ kind: "invalid_response", status: 200, recoverable: false });
    expect(err.message).toMatch(/answered 200 with an unexpected body$/);
  });

  it("one byte more: invalid_response, not recoverable, nothing of it kept, the connection closed", async () => {
    // json() writes the head first, so the body goes chunked: only its bytes tell.
    const server = await serve((_req, res) => json(res, 200, paddedJson(MAX_ANSWER_BYTES + 1)));
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 30_000));
    expect(shape(err)).toEqual({ kind: "invalid_response", status: 200, recoverable: false, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toBe(
      `GET ${server.url}/v1/users/${USER}/admission answered 200 with a body of ${MAX_ANSWER_BYTES + 1} bytes so far, more than the ${MAX_ANSWER_BYTES} bytes read of an answer; not a factory's answer`,
    );
    expect(err.body).toBeNull();
    await (await server.request()).closed;
  });

  it("a Content-Length over the limit: refused at the head, before any of the body (which never comes)", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": String(MAX_ANSWER_BYTES + 1) });
      res.flushHeaders(); // and nothing more: only the head tells
    });
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 30_000));
    expect(shape(err)).toMatchObject({ kind: "invalid_response", status: 200, recoverable: false });
    expect(err.message).toContain(`answered 200 with a body of ${MAX_ANSWER_BYTES + 1} bytes, more than the ${MAX_ANSWER_BYTES} bytes read of an answer`);
    expect(err.message).not.toContain("so far");
    await (await server.request()).closed;
  });

  it("an endless chunked answer: cut off once past the limit, long before the deadline", async () => {
    let sent = 0;
    const server = await serve((req, res) => {
      res.on("error", () => undefined); // the client cuts it off mid-write: expected here
      res.writeHead(200, { "Content-Type": "application/json" }); // chunked: no length to judge by
      const chunk = Buffer.alloc(64 * 1024, "x");
      const more = (): void => {
        while (!req.socket.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", more);
        }
      };
      more();
    });
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 30_000));
    expect(shape(err)).toMatchObject({ kind: "invalid_response", status: 200, recoverable: false });
    expect(err.message).toMatch(new RegExp(`answered 200 with a body of \\d+ bytes so far, more than the ${MAX_ANSWER_BYTES} bytes read of an answer`));
    const read = Number(/a body of (\d+) bytes so far/.exec(err.message)![1]);
    expect(read).toBeGreaterThan(MAX_ANSWER_BYTES);
    expect(read).toBeLessThanOrEqual(MAX_ANSWER_BYTES + 64 * 1024);
    await (await server.request()).closed;
    expect(sent).toBeGreaterThan(MAX_ANSWER_BYTES);
  });
});

describe("ControlClient: failures on the way", () => {
  it("a refused connection: network, recoverable, the cause named", async () => {
    const url = await deadUrl();
    const err = await failure(new ControlClient(url, TOKEN).admission(USER, 5000));
    expect(shape(err)).toEqual({ kind: "network", status: null, recoverable: true, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toMatch(new RegExp(`^GET ${url}/v1/users/${USER}/admission failed: .*ECONNREFUSED`));
  });

  it("a connection closed before any answer: network", async () => {
    const server = await serve((req) => req.socket.destroy());
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 5000));
    expect(shape(err)).toMatchObject({ kind: "network", status: null, recoverable: true });
    expect(err.message).toMatch(/failed: (socket hang up|.*ECONNRESET)/);
  });

  it("a connection closed in the middle of the body: network, the status kept", async () => {
    const server = await serve((req, res) => {
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "100" });
      res.write('{"userId":"alice",', () => req.socket.destroy());
    });
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 5000));
    expect(shape(err)).toEqual({ kind: "network", status: 200, recoverable: true, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toMatch(/: the answer was cut off \(.+\)$/);
  });

  it("a URL that is not http or https: network, nothing sent", async () => {
    const err = await failure(new ControlClient("ftp://127.0.0.1:21", TOKEN).admission(USER, 5000));
    expect(shape(err)).toMatchObject({ kind: "network", status: null });
    expect(err.message).toMatch(/unsupported protocol "ftp:"/);
  });

  it("a server that never answers: timeout exactly at the deadline on the client's clock, and the connection is closed", async () => {
    const server = await serve(() => undefined);
    const clock = new ManualClock();
    let settled = false;
    const call = failure(new ControlClient(server.url, TOKEN, clock).admission(USER, 2000)).finally(() => {
      settled = true;
    });
    const received = await server.request();
    await clock.run(1999);
    expect(settled).toBe(false);
    await clock.run(1);
    const err = await call;
    expect(shape(err)).toEqual({ kind: "timeout", status: null, recoverable: true, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toBe(`GET ${server.url}/v1/users/${USER}/admission timed out after 2000 ms`);
    await received.closed;
  });

  it("a server that sends the head and part of the body, then hangs: timeout at the deadline (answer cut off), the status kept", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "100" });
      res.write('{"userId":');
    });
    const clock = new ManualClock();
    let settled = false;
    const head = nextResponseHead();
    const call = failure(new ControlClient(server.url, TOKEN, clock).admission(USER, 2000)).finally(() => {
      settled = true;
    });
    const received = await server.request();
    await head;
    await clock.run(1999);
    expect(settled).toBe(false);
    await clock.run(1);
    const err = await call;
    expect(shape(err)).toEqual({ kind: "timeout", status: 200, recoverable: true, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toMatch(/timed out after 2000 ms \(answer cut off\)$/);
    await received.closed;
  });
});

describe("ControlClient: the caller's signal", () => {
  it("already aborted: nothing is sent", async () => {
    const server = await serve((_req, res) => json(res, 200, ADMISSION));
    const err = await failure(new ControlClient(server.url, TOKEN).admission(USER, 5000, AbortSignal.abort()));
    expect(shape(err)).toEqual({ kind: "aborted", status: null, recoverable: false, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toMatch(/not sent: stopped$/);
    // A call that does go through afterwards is the first request the server sees.
    await new ControlClient(server.url, TOKEN).admission(USER, 5000);
    expect(server.requests).toHaveLength(1);
  });

  it("aborted while waiting for the answer: aborted (not a timeout), the connection closed", async () => {
    const server = await serve(() => undefined);
    const stop = new AbortController();
    const call = failure(new ControlClient(server.url, TOKEN, new ManualClock()).admission(USER, 5000, stop.signal));
    const received = await server.request();
    stop.abort(new Error("the term ended"));
    const err = await call;
    expect(shape(err)).toEqual({ kind: "aborted", status: null, recoverable: false, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toMatch(/stopped before an answer$/);
    await received.closed;
  });

  it("aborted while the body is coming: aborted, the status kept, the connection closed", async () => {
    const stop = new AbortController();
    const server = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "100" });
      res.write('{"userId":');
    });
    const head = nextResponseHead();
    const call = failure(new ControlClient(server.url, TOKEN, new ManualClock()).admission(USER, 5000, stop.signal));
    const received = await server.request();
    await head;
    stop.abort(new Error("the term ended"));
    const err = await call;
    expect(shape(err)).toEqual({ kind: "aborted", status: 200, recoverable: false, code: "ERR_RECLAIM_CONTROL_CALL" });
    expect(err.message).toMatch(/stopped before the whole answer$/);
    await received.closed;
  });
});
